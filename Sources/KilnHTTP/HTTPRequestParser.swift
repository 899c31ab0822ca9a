/// What feeding bytes to the parser produced, in order.
public enum HTTPParserEvent {
    /// A request head with `Expect: 100-continue` and a body to come, within limits.
    /// The server answers `100 Continue` unless the body already arrived.
    case continueExpected
    case request(HTTPRequest)
    /// The parser stopped; nothing more on this connection is parsed.
    case failure(HTTPParseError)
}

/// An incremental HTTP/1.1 request parser: a pure state machine fed bytes, with no
/// socket code. Bytes may arrive in any split (one at a time gives the same result as
/// all at once). After a failure, or after a request that closes the connection
/// (`Connection: close`, HTTP/1.0), it ignores further input.
///
/// Strict by design (RFC 9112): CRLF line endings only, no obs-fold, no whitespace
/// before a colon, one Host, never Content-Length with Transfer-Encoding.
public struct HTTPRequestParser {
    public struct Limits: Sendable {
        public var maxTargetBytes = 8192
        public var maxHeaderLineBytes = 8192
        public var maxHeaderCount = 100
        public var maxHeaderBlockBytes = 16384
        public var maxBodyBytes = 64 << 20
        /// A chunk-size line including extensions.
        public var maxChunkLineBytes = 4096
        public init(maxBodyBytes: Int = 64 << 20) { self.maxBodyBytes = maxBodyBytes }
    }

    /// Chunk sizes above this are malformed rather than merely too large (no overflow).
    static let maxChunkSize = 1 << 56

    public static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"]

    enum State {
        case start, startLF
        case method, target, version, versionLF
        case headerLineStart, headerName, headerValue, headerValueLF, headersEndLF
        case body(remaining: Int)
        case chunkSize, chunkExtension, chunkSizeLF
        case chunkData(remaining: Int), chunkDataCR, chunkDataLF
        case trailerLineStart, trailerLine, trailerLineLF, trailerEndLF
        case closed
    }

    public let limits: Limits
    private var state: State = .start
    private var emptyLines = 0
    private var method: [UInt8] = []
    private var target: [UInt8] = []
    private var version: [UInt8] = []
    private var versionMinor = 1
    private var name: [UInt8] = []
    private var value: [UInt8] = []
    private var headers: [(String, String)] = []
    private var lineBytes = 0
    private var blockBytes = 0
    private var body: [UInt8] = []
    /// The body's file when this request's body is spooled rather than held.
    private var bodyFile: HTTPBodyFile?
    private var chunkSize = 0
    private var chunkDigits = 0

    /// Decides, once a request's head is complete and a body follows, whether the body
    /// goes to a file (with that route's own limit) instead of memory. Unset: always memory.
    public var bodyDestination: ((_ method: String, _ target: String) throws(HTTPParseError) -> HTTPBodyFile?)?

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public init(maxBodyBytes: Int) {
        self.init(limits: Limits(maxBodyBytes: maxBodyBytes))
    }

    /// True between requests (nothing of a next request received yet).
    public var isIdle: Bool {
        switch state {
        case .start, .startLF: return true
        default: return false
        }
    }

    /// True while the body of a request is being received (its head is complete).
    public var isReadingBody: Bool {
        switch state {
        case .body, .chunkSize, .chunkExtension, .chunkSizeLF, .chunkData, .chunkDataCR, .chunkDataLF,
             .trailerLineStart, .trailerLine, .trailerLineLF, .trailerEndLF:
            return true
        default:
            return false
        }
    }

    /// Bytes of the body being received that went to a file so far (nil: not spooling).
    public var spooledBodyBytes: Int? { isReadingBody ? bodyFile?.size : nil }

    /// True once the parser has failed or finished a connection-closing request.
    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    public mutating func feed(_ bytes: [UInt8]) -> [HTTPParserEvent] {
        bytes.withUnsafeBytes { feed($0) }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [HTTPParserEvent] {
        var events: [HTTPParserEvent] = []
        var index = 0
        let count = bytes.count
        while index < count {
            switch state {
            case .closed:
                return events
            case let .body(remaining):
                let take = min(remaining, count - index)
                if let error = appendBody(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + take)])) {
                    fail(error, &events)
                    return events
                }
                index += take
                if take == remaining { complete(&events) } else { state = .body(remaining: remaining - take) }
            case let .chunkData(remaining):
                let take = min(remaining, count - index)
                if let error = appendBody(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + take)])) {
                    fail(error, &events)
                    return events
                }
                index += take
                state = take == remaining ? .chunkDataCR : .chunkData(remaining: remaining - take)
            default:
                if let error = step(bytes[index], &events) {
                    fail(error, &events)
                    return events
                }
                index += 1
            }
        }
        return events
    }

    private mutating func fail(_ error: HTTPParseError, _ events: inout [HTTPParserEvent]) {
        events.append(.failure(error))
        state = .closed
        reset()
    }

    private mutating func appendBody(_ bytes: UnsafeRawBufferPointer) -> HTTPParseError? {
        guard let bodyFile else {
            body.append(contentsOf: bytes)
            return nil
        }
        do { try bodyFile.append(bytes) } catch { return error }
        return nil
    }

    /// The body's limit and length so far, wherever it goes.
    private var bodyLimit: Int { bodyFile?.maxBytes ?? limits.maxBodyBytes }
    private var bodyCount: Int { bodyFile?.size ?? body.count }
}

// MARK: - Byte steps

private let CR = UInt8(ascii: "\r")
private let LF = UInt8(ascii: "\n")
private let SP = UInt8(ascii: " ")
private let HTAB = UInt8(ascii: "\t")
private let COLON = UInt8(ascii: ":")

extension HTTPRequestParser {
    /// One byte of the request line, header section, chunk framing or trailers.
    private mutating func step(_ byte: UInt8, _ events: inout [HTTPParserEvent]) -> HTTPParseError? {
        switch state {
        case .start:
            if byte == CR { state = .startLF; return nil }
            if byte == LF { return .invalidLineEnding }
            guard HTTPRequestParser.isTokenByte(byte) else { return .invalidRequestLine }
            method = [byte]
            state = .method
        case .startLF:
            // RFC 9112 §2.2: empty lines before a request line are ignored (a few).
            guard byte == LF else { return .invalidLineEnding }
            emptyLines += 1
            guard emptyLines <= 4 else { return .invalidRequestLine }
            state = .start
        case .method:
            if byte == SP {
                guard HTTPRequestParser.knownMethods.contains(String(decoding: method, as: UTF8.self)) else {
                    return .unknownMethod
                }
                state = .target
                return nil
            }
            guard HTTPRequestParser.isTokenByte(byte) else { return .invalidRequestLine }
            guard method.count < 16 else { return .unknownMethod }
            method.append(byte)
        case .target:
            if byte == SP {
                guard !target.isEmpty else { return .invalidRequestLine }
                guard HTTPRequestParser.isValidTargetForm(target) else { return .invalidTarget }
                state = .version
                return nil
            }
            if byte == CR || byte == LF { return .invalidRequestLine }
            guard byte > 0x20 && byte < 0x7F else { return .invalidTarget }
            guard target.count < limits.maxTargetBytes else { return .targetTooLong }
            target.append(byte)
        case .version:
            if byte == CR { state = .versionLF; return nil }
            if byte == LF { return .invalidLineEnding }
            guard version.count < 8, byte > 0x20 && byte < 0x7F else { return .invalidVersion }
            version.append(byte)
        case .versionLF:
            guard byte == LF else { return .invalidLineEnding }
            return parseVersion()
        case .headerLineStart:
            blockBytes += 1
            if byte == CR { state = .headersEndLF; return nil }
            if byte == LF { return .invalidLineEnding }
            if byte == SP || byte == HTAB { return .obsoleteLineFolding }
            guard HTTPRequestParser.isTokenByte(byte) else { return .invalidHeaderName }
            guard headers.count < limits.maxHeaderCount else { return .tooManyHeaders }
            name = [byte]
            value = []
            lineBytes = 1
            state = .headerName
        case .headerName:
            if let error = countHeaderByte() { return error }
            if byte == COLON { state = .headerValue; return nil }
            if byte == SP || byte == HTAB { return .spaceBeforeColon }
            if byte == CR || byte == LF { return .headerWithoutColon }
            guard HTTPRequestParser.isTokenByte(byte) else { return .invalidHeaderName }
            name.append(byte)
        case .headerValue:
            if let error = countHeaderByte() { return error }
            if byte == CR { state = .headerValueLF; return nil }
            if byte == LF { return .invalidLineEnding }
            guard HTTPRequestParser.isFieldValueByte(byte) else { return .invalidHeaderValue }
            value.append(byte)
        case .headerValueLF:
            if let error = countHeaderByte() { return error }
            guard byte == LF else { return .invalidLineEnding }
            headers.append((String(decoding: name, as: UTF8.self), HTTPRequestParser.trimmedValue(value)))
            state = .headerLineStart
        case .headersEndLF:
            guard byte == LF else { return .invalidLineEnding }
            return headComplete(&events)
        case .chunkSize:
            lineBytes += 1
            if let digit = HTTPRequest.hexValue(byte) {
                // The value is bounded, not the digit count: leading zeros are valid
                // (RFC 9112 §7.1), and the line limit stops a flood of them.
                guard lineBytes <= limits.maxChunkLineBytes else { return .chunkExtensionTooLong }
                guard chunkSize <= HTTPRequestParser.maxChunkSize >> 4 else { return .invalidChunkSize }
                chunkDigits += 1
                chunkSize = chunkSize << 4 | Int(digit)
                return nil
            }
            guard chunkDigits > 0 else { return .invalidChunkSize }
            if byte == UInt8(ascii: ";") { state = .chunkExtension; return nil }
            if byte == CR { state = .chunkSizeLF; return nil }
            return .invalidChunkSize
        case .chunkExtension:
            lineBytes += 1
            guard lineBytes <= limits.maxChunkLineBytes else { return .chunkExtensionTooLong }
            if byte == CR { state = .chunkSizeLF; return nil }
            if byte == LF { return .invalidLineEnding }
            guard HTTPRequestParser.isFieldValueByte(byte) else { return .invalidChunkExtension }
        case .chunkSizeLF:
            guard byte == LF else { return .invalidLineEnding }
            let size = chunkSize
            chunkSize = 0
            chunkDigits = 0
            lineBytes = 0
            if size == 0 {
                blockBytes = 0
                state = .trailerLineStart
            } else {
                guard size <= bodyLimit - bodyCount else { return .bodyTooLarge }
                state = .chunkData(remaining: size)
            }
        case .chunkDataCR:
            guard byte == CR else { return .invalidChunkData }
            state = .chunkDataLF
        case .chunkDataLF:
            guard byte == LF else { return .invalidChunkData }
            state = .chunkSize
        case .trailerLineStart:
            // Trailers are accepted and ignored (only checked for framing and size).
            if byte == CR { state = .trailerEndLF; return nil }
            if byte == SP || byte == HTAB { return .obsoleteLineFolding }
            state = .trailerLine
            return trailerByte(byte)
        case .trailerLine:
            if byte == CR { state = .trailerLineLF; return nil }
            return trailerByte(byte)
        case .trailerLineLF:
            guard byte == LF else { return .invalidLineEnding }
            state = .trailerLineStart
        case .trailerEndLF:
            guard byte == LF else { return .invalidLineEnding }
            complete(&events)
        case .body, .chunkData, .closed:
            preconditionFailure("bulk states are handled in feed")
        }
        return nil
    }

    private mutating func countHeaderByte() -> HTTPParseError? {
        lineBytes += 1
        blockBytes += 1
        if lineBytes > limits.maxHeaderLineBytes { return .headerTooLong }
        if blockBytes > limits.maxHeaderBlockBytes { return .headerBlockTooLarge }
        return nil
    }

    private mutating func trailerByte(_ byte: UInt8) -> HTTPParseError? {
        blockBytes += 1
        if blockBytes > limits.maxHeaderBlockBytes { return .headerBlockTooLarge }
        if byte == LF { return .invalidLineEnding }
        guard HTTPRequestParser.isFieldValueByte(byte) else { return .invalidTrailer }
        return nil
    }

    /// Exactly `HTTP/<digit>.<digit>`; 1.0 and 1.x (treated as 1.1) are served, other
    /// majors get 505.
    private mutating func parseVersion() -> HTTPParseError? {
        let prefix = Array("HTTP/".utf8)
        guard version.count == 8, Array(version[0..<5]) == prefix, version[6] == UInt8(ascii: "."),
              let major = HTTPRequestParser.decimalDigit(version[5]),
              let minor = HTTPRequestParser.decimalDigit(version[7])
        else { return .invalidVersion }
        guard major == 1 else { return .unsupportedVersion }
        versionMinor = minor == 0 ? 0 : 1
        blockBytes = 0
        state = .headerLineStart
        return nil
    }

    /// Checks framing once the header section is complete and picks the body mode.
    private mutating func headComplete(_ events: inout [HTTPParserEvent]) -> HTTPParseError? {
        let fields = HTTPHeaders(headers)
        let hosts = fields.values(for: "Host")
        if hosts.count > 1 { return .duplicateHost }
        if versionMinor >= 1 && hosts.isEmpty { return .missingHost }
        if let host = hosts.first, !HTTPRequestParser.isValidHost(host) { return .invalidHost }

        let hasTransferEncoding = fields.contains("Transfer-Encoding")
        let lengths = fields.values(for: "Content-Length")
        var expectsBody = false
        if hasTransferEncoding || lengths.contains(where: { HTTPRequestParser.parseContentLength($0).map { $0 > 0 } ?? false }),
           let bodyDestination {
            do {
                bodyFile = try bodyDestination(String(decoding: method, as: UTF8.self), String(decoding: target, as: UTF8.self))
            } catch {
                return error
            }
        }
        if hasTransferEncoding {
            if versionMinor == 0 { return .transferEncodingInHTTP10 }
            if !lengths.isEmpty { return .contentLengthWithTransferEncoding }
            let codings = fields.tokens(for: "Transfer-Encoding")
            if codings.contains("") || codings.last != "chunked" { return .invalidTransferEncoding }
            if codings.filter({ $0 == "chunked" }).count > 1 { return .invalidTransferEncoding }
            if codings.count > 1 { return .unsupportedTransferEncoding }
            chunkSize = 0
            chunkDigits = 0
            lineBytes = 0
            state = .chunkSize
            expectsBody = true
        } else if !lengths.isEmpty {
            var length: Int?
            for text in lengths {
                guard let parsed = HTTPRequestParser.parseContentLength(text) else { return .invalidContentLength }
                if let length, length != parsed { return .conflictingContentLength }
                length = parsed
            }
            let bodyLength = length ?? 0
            guard bodyLength <= bodyLimit else { return .bodyTooLarge }
            if bodyLength > 0 {
                if bodyFile == nil { body.reserveCapacity(bodyLength) }
                state = .body(remaining: bodyLength)
                expectsBody = true
            }
        }
        // No interim responses to HTTP/1.0 clients (RFC 9110 §10.1.1).
        if expectsBody, versionMinor >= 1, let expect = fields["Expect"], expect.lowercased() == "100-continue" {
            events.append(.continueExpected)
        }
        if !expectsBody { complete(&events) }
        return nil
    }

    private mutating func complete(_ events: inout [HTTPParserEvent]) {
        var request = HTTPRequest(method: String(decoding: method, as: UTF8.self),
                                  target: String(decoding: target, as: UTF8.self),
                                  headers: HTTPHeaders(headers), body: body, versionMinor: versionMinor)
        bodyFile?.finishWriting()
        request.bodyFile = bodyFile
        events.append(.request(request))
        state = request.keepAlive ? .start : .closed
        reset()
    }

    private mutating func reset() {
        emptyLines = 0
        method = []
        target = []
        version = []
        versionMinor = 1
        headers = []
        name = []
        value = []
        lineBytes = 0
        blockBytes = 0
        body = []
        bodyFile = nil
        chunkSize = 0
        chunkDigits = 0
    }
}

// MARK: - Character classes

extension HTTPRequestParser {
    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// field-vchar, SP, HTAB and obs-text (UTF-8 passes); no NUL, CR, LF or other CTLs.
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == HTAB || (byte >= 0x20 && byte != 0x7F)
    }

    static func decimalDigit(_ byte: UInt8) -> Int? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// `1*DIGIT` only: no sign, no hex, no spaces inside, no lists; overflow is invalid.
    static func parseContentLength(_ text: String) -> Int? {
        guard !text.isEmpty else { return nil }
        var result = 0
        for byte in text.utf8 {
            guard let digit = decimalDigit(byte) else { return nil }
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            result = sum
        }
        return result
    }

    /// origin-form (`/...`), asterisk-form (`*`) or absolute-form with an http(s) scheme.
    static func isValidTargetForm(_ target: [UInt8]) -> Bool {
        if target.first == UInt8(ascii: "/") { return true }
        if target == [UInt8(ascii: "*")] { return true }
        let lower = target.prefix(8).map(HTTPHeaders.lowerASCII)
        return lower.starts(with: Array("http://".utf8)) || lower.starts(with: Array("https://".utf8))
    }

    /// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name or IPv4
    /// address of unreserved, sub-delims and pct-encoded characters, or a bracketed IP
    /// literal; empty is allowed. Rejects `a b`, `u@evil/x` and the like.
    static func isValidHost(_ value: String) -> Bool {
        var bytes = Substring(value).utf8[...]
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = bytes[bytes.index(after: bytes.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy({ byte in
                HTTPRequest.hexValue(byte) != nil || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
                    || isUnreservedOrSubDelim(byte)
            }) else { return false }
            bytes = bytes[bytes.index(after: close)...]
        } else {
            let end = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.endIndex
            let name = Array(bytes[bytes.startIndex..<end])
            var index = 0
            while index < name.count {
                if name[index] == UInt8(ascii: "%") {
                    guard index + 2 < name.count, HTTPRequest.hexValue(name[index + 1]) != nil, HTTPRequest.hexValue(name[index + 2]) != nil else {
                        return false
                    }
                    index += 3
                    continue
                }
                guard isUnreservedOrSubDelim(name[index]) else { return false }
                index += 1
            }
            bytes = bytes[end...]
        }
        guard let colon = bytes.first else { return true }
        guard colon == UInt8(ascii: ":") else { return false }
        let port = bytes.dropFirst()
        return port.count <= 5 && port.allSatisfy { decimalDigit($0) != nil }
    }

    private static func isUnreservedOrSubDelim(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~!$&'()*+,;=".utf8.contains(byte)
        }
    }

    static func trimmedValue(_ bytes: [UInt8]) -> String {
        var start = 0, end = bytes.count
        while start < end, bytes[start] == SP || bytes[start] == HTAB { start += 1 }
        while end > start, bytes[end - 1] == SP || bytes[end - 1] == HTAB { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}
