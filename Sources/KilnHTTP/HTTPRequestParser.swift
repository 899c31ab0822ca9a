/// Why a request was rejected; each maps to its status. The connection closes after.
public struct HTTPParseError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var description: String { "\(status): \(message)" }
    static func bad(_ m: String) -> HTTPParseError { HTTPParseError(status: 400, message: m) }
}

/// A byte-fed HTTP/1.1 request parser with no socket code (RFC 9112). Feed it bytes as
/// they arrive; it reports when a head is complete (so the server can answer
/// `Expect: 100-continue` or refuse an oversized body before reading it) and when a
/// whole request is ready.
public struct HTTPRequestParser {
    public struct Limits: Sendable {
        public var maxTarget = 8 * 1024
        public var maxHeaderLine = 8 * 1024
        public var maxHeaders = 100
        public var maxHeaderBlock = 16 * 1024
        public var maxBody = 64 << 20
        public var maxChunkLine = 4 * 1024
        public init() {}
    }

    public enum Event: Equatable {
        /// The head is parsed; a body of `contentLength` (nil: chunked) follows.
        case head(expectContinue: Bool)
        case request
    }

    enum State { case requestLine, headers, body(Int), chunkSize, chunkData(Int), chunkCRLF, trailers, done }

    public let limits: Limits
    var state = State.requestLine
    var buffer: [UInt8] = []
    var headerBytes = 0
    var method = "", target = "", minor = 1
    var headers = HTTPHeaders()
    var body: [UInt8] = []
    public private(set) var request: HTTPRequest?
    public private(set) var keepAlive = true

    public static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Adds bytes; returns the events they complete. After `.request`, take `request`
    /// and call `reset()` before feeding the next request's bytes (left in the buffer).
    public mutating func feed(_ bytes: [UInt8]) throws(HTTPParseError) -> [Event] {
        buffer.append(contentsOf: bytes)
        return try advance()
    }

    /// Starts the next request, keeping bytes already received (pipelining).
    public mutating func reset() {
        state = .requestLine
        headerBytes = 0
        method = ""; target = ""; minor = 1
        headers = HTTPHeaders()
        body = []
        request = nil
    }

    public var hasBufferedBytes: Bool { !buffer.isEmpty }

    /// Takes one CRLF-terminated line from the buffer, or nil if it is not complete.
    mutating func line(limit: Int, tooLong: HTTPParseError) throws(HTTPParseError) -> [UInt8]? {
        guard let lf = buffer.firstIndex(of: 0x0A) else {
            if buffer.count > limit { throw tooLong }
            return nil
        }
        guard lf > 0, buffer[lf - 1] == 0x0D else { throw .bad("line not terminated by CRLF") }
        if lf - 1 > limit { throw tooLong }
        let l = Array(buffer[0..<(lf - 1)])
        buffer.removeFirst(lf + 1)
        return l
    }

    mutating func advance() throws(HTTPParseError) -> [Event] {
        var events: [Event] = []
        while true {
            switch state {
            case .requestLine:
                // Tolerate empty lines before a request (RFC 9112 §2.2).
                while buffer.count >= 2 && buffer[0] == 0x0D && buffer[1] == 0x0A { buffer.removeFirst(2) }
                guard let l = try line(limit: limits.maxTarget + 32, tooLong: HTTPParseError(status: 414, message: "request target longer than \(limits.maxTarget) bytes")) else { return events }
                try parseRequestLine(l)
                state = .headers
            case .headers:
                guard let l = try line(limit: limits.maxHeaderLine, tooLong: HTTPParseError(status: 431, message: "a header line is longer than \(limits.maxHeaderLine) bytes")) else {
                    if headerBytes + buffer.count > limits.maxHeaderBlock { throw HTTPParseError(status: 431, message: "header block over \(limits.maxHeaderBlock) bytes") }
                    return events
                }
                headerBytes += l.count + 2
                if headerBytes > limits.maxHeaderBlock { throw HTTPParseError(status: 431, message: "header block over \(limits.maxHeaderBlock) bytes") }
                if l.isEmpty {
                    let framing = try finishHead()
                    events.append(.head(expectContinue: minor == 1 && headers["Expect"]?.lowercased() == "100-continue"))
                    switch framing {
                    case .none: finish(); events.append(.request); return events
                    case .length(let n): state = .body(n)
                    case .chunked: state = .chunkSize
                    }
                } else {
                    try parseHeader(l)
                }
            case .body(let n):
                let take = min(n, buffer.count)
                body.append(contentsOf: buffer[0..<take])
                buffer.removeFirst(take)
                if take == n { finish(); events.append(.request); return events }
                state = .body(n - take)
                return events
            case .chunkSize:
                guard let l = try line(limit: limits.maxChunkLine, tooLong: .bad("chunk size line too long")) else { return events }
                let sizeText = l.prefix { $0 != UInt8(ascii: ";") }
                guard !sizeText.isEmpty, sizeText.count <= 15, sizeText.allSatisfy({ isHex($0) }) else { throw .bad("invalid chunk size") }
                let size = Int(String(decoding: sizeText, as: UTF8.self), radix: 16)!
                if size == 0 { state = .trailers; continue }
                if body.count + size > limits.maxBody { throw HTTPParseError(status: 413, message: "body larger than \(limits.maxBody) bytes") }
                state = .chunkData(size)
            case .chunkData(let n):
                let take = min(n, buffer.count)
                body.append(contentsOf: buffer[0..<take])
                buffer.removeFirst(take)
                if take < n { state = .chunkData(n - take); return events }
                state = .chunkCRLF
            case .chunkCRLF:
                guard buffer.count >= 2 else { return events }
                guard buffer[0] == 0x0D && buffer[1] == 0x0A else { throw .bad("chunk data longer than its size or missing CRLF") }
                buffer.removeFirst(2)
                state = .chunkSize
            case .trailers:
                guard let l = try line(limit: limits.maxHeaderLine, tooLong: HTTPParseError(status: 431, message: "trailer line too long")) else { return events }
                headerBytes += l.count + 2
                if headerBytes > limits.maxHeaderBlock { throw HTTPParseError(status: 431, message: "header block over \(limits.maxHeaderBlock) bytes") }
                if l.isEmpty { finish(); events.append(.request); return events }
            case .done:
                return events
            }
        }
    }

    func isHex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x41...0x46).contains(c) || (0x61...0x66).contains(c) }

    static func isTokenChar(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || Array("!#$%&'*+-.^_`|~".utf8).contains(c)
    }

    mutating func parseRequestLine(_ l: [UInt8]) throws(HTTPParseError) {
        let parts = l.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { throw .bad("malformed request line") }
        guard parts[0].allSatisfy(HTTPRequestParser.isTokenChar) else { throw .bad("invalid method") }
        method = String(decoding: parts[0], as: UTF8.self)
        if parts[1].count > limits.maxTarget { throw HTTPParseError(status: 414, message: "request target longer than \(limits.maxTarget) bytes") }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .bad("invalid byte in request target") }
        target = String(decoding: parts[1], as: UTF8.self)
        let version = Array(parts[2])
        guard version.count == 8, Array(version[0..<5]) == Array("HTTP/".utf8), version[6] == UInt8(ascii: "."),
              (0x30...0x39).contains(version[5]), (0x30...0x39).contains(version[7]) else { throw .bad("malformed HTTP version") }
        let major = Int(version[5] - 0x30)
        minor = Int(version[7] - 0x30)
        guard major == 1 else { throw HTTPParseError(status: 505, message: "HTTP/\(major).\(minor) is not supported") }
        guard minor <= 1 else { minor = 1; return }
        guard target.hasPrefix("/") || target.lowercased().hasPrefix("http://") || target.lowercased().hasPrefix("https://") || (method == "OPTIONS" && target == "*") else {
            throw .bad("request target must be a path or an absolute URL")
        }
    }

    mutating func parseHeader(_ l: [UInt8]) throws(HTTPParseError) {
        if l[0] == 0x20 || l[0] == 0x09 { throw .bad("obsolete line folding is not accepted") }
        guard let colon = l.firstIndex(of: UInt8(ascii: ":")) else { throw .bad("header line without a colon") }
        let name = l[0..<colon]
        guard !name.isEmpty, name.allSatisfy(HTTPRequestParser.isTokenChar) else { throw .bad("invalid header name") }
        var value = l[(colon + 1)...]
        while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
        while let b = value.last, b == 0x20 || b == 0x09 { value = value.dropLast() }
        guard value.allSatisfy({ $0 != 0 && $0 != 0x0D && $0 != 0x0A && ($0 >= 0x20 || $0 == 0x09) && $0 != 0x7F }) else { throw .bad("invalid byte in a header value") }
        if headers.count >= limits.maxHeaders { throw HTTPParseError(status: 431, message: "more than \(limits.maxHeaders) headers") }
        headers.add(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    enum Framing { case none, length(Int), chunked }

    mutating func finishHead() throws(HTTPParseError) -> Framing {
        let hosts = headers.values(for: "Host")
        if minor == 1 && hosts.count != 1 { throw .bad(hosts.isEmpty ? "HTTP/1.1 request without Host" : "more than one Host header") }
        if minor == 0 && hosts.count > 1 { throw .bad("more than one Host header") }
        guard HTTPRequestParser.knownMethods.contains(method) else { throw HTTPParseError(status: 501, message: "method \(method.prefix(20)) is not implemented") }
        let connection = headers.values(for: "Connection").joined(separator: ",").lowercased()
        let tokens = connection.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        keepAlive = minor == 1 ? !tokens.contains("close") : tokens.contains("keep-alive")
        let te = headers.values(for: "Transfer-Encoding")
        let cl = headers.values(for: "Content-Length")
        if !te.isEmpty {
            if !cl.isEmpty { throw .bad("both Content-Length and Transfer-Encoding") }
            if minor == 0 { throw .bad("Transfer-Encoding in an HTTP/1.0 request") }
            let codings = te.joined(separator: ",").lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard codings.last == "chunked" else { throw HTTPParseError(status: 501, message: "transfer coding \(codings.last ?? "") is not supported") }
            guard codings.count == 1 else { throw HTTPParseError(status: 501, message: "only chunked transfer coding is supported") }
            return .chunked
        }
        if !cl.isEmpty {
            let values = cl.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
            guard let first = values.first, values.allSatisfy({ $0 == first }), !first.isEmpty, first.count <= 18,
                  first.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let n = Int(first) else {
                throw .bad("invalid Content-Length")
            }
            if n > limits.maxBody { throw HTTPParseError(status: 413, message: "body of \(n) bytes is larger than \(limits.maxBody)") }
            return n == 0 ? .none : .length(n)
        }
        return .none
    }

    mutating func finish() {
        var r = HTTPRequest(method: method, target: target, headers: headers, body: body, versionMinor: minor)
        r.pathParameters = [:]
        request = r
        state = .done
    }
}
