/// A complete request as the parser hands it to a handler.
public struct HTTPRequest {
    public var method: String
    /// The request target exactly as sent.
    public var target: String
    /// Percent-decoded once, without the query; an absolute-form target is reduced to its path.
    public var path: String
    /// Decoded query parameters (`+` is a space); for a repeated name the first value wins.
    public var query: [String: String]
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    public var versionMinor: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The body, when the server wrote it to a file as it arrived (routes that take large
    /// uploads, `HTTPServerConfiguration.spooledBodyLimit`); `body` is empty then.
    public var bodyFile: HTTPBodyFile?
    /// Filled by the `Router` from `:name` segments of the matched pattern.
    public var pathParameters: [String: String] = [:]

    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                versionMinor: Int = 1) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.versionMinor = versionMinor
        let (rawPath, rawQuery) = HTTPRequest.splitTarget(target)
        path = HTTPRequest.percentDecode(rawPath, plusIsSpace: false)
        query = HTTPRequest.decodeQuery(rawQuery)
    }

    /// Whether the connection stays open after this request: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 never (Kiln does not do 1.0 keep-alive).
    public var keepAlive: Bool {
        versionMinor >= 1 && !headers.tokens(for: "Connection").contains("close")
    }
}

// MARK: - Target decoding

extension HTTPRequest {
    /// Splits a target into its raw (still encoded) path and query. Absolute-form
    /// (`http://host:port/p?q`) is reduced to its path; an empty path becomes "/".
    static func splitTarget(_ target: String) -> (path: Substring, query: Substring?) {
        var rest = Substring(target)
        if !rest.hasPrefix("/"), let schemeEnd = rest.range(of: "://") {
            let afterAuthority = rest[schemeEnd.upperBound...]
            if let slash = afterAuthority.firstIndex(where: { $0 == "/" || $0 == "?" }) {
                rest = afterAuthority[slash...]
            } else {
                rest = "/"
            }
            if rest.hasPrefix("?") { rest = "/" + rest }
        }
        if let mark = rest.firstIndex(of: "?") {
            return (rest[..<mark], rest[rest.index(after: mark)...])
        }
        return (rest, nil)
    }

    static func decodeQuery(_ raw: Substring?) -> [String: String] {
        guard let raw, !raw.isEmpty else { return [:] }
        var result: [String: String] = [:]
        for pair in raw.split(separator: "&") {
            let name: Substring, value: Substring
            if let equals = pair.firstIndex(of: "=") {
                name = pair[..<equals]
                value = pair[pair.index(after: equals)...]
            } else {
                name = pair
                value = ""
            }
            let key = percentDecode(name, plusIsSpace: true)
            if result[key] == nil { result[key] = percentDecode(value, plusIsSpace: true) }
        }
        return result
    }

    /// Decodes `%XX` escapes once. A malformed escape is kept literally; invalid UTF-8
    /// becomes U+FFFD, so callers validating names see something they can reject.
    static func percentDecode<S: StringProtocol>(_ text: S, plusIsSpace: Bool) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(text)
        }
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), index + 2 < utf8.count,
               let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2]) {
                out.append(high << 4 | low)
                index += 3
            } else if plusIsSpace && byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
                index += 1
            } else {
                out.append(byte)
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
