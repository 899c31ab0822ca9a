import Foundation
import KilnJSON

/// Header fields in order, looked up case-insensitively.
public struct HTTPHeaders: Sequence, Sendable {
    private var pairs: [(name: String, value: String)]

    public init(_ pairs: [(String, String)] = []) { self.pairs = pairs.map { (name: $0.0, value: $0.1) } }

    public subscript(name: String) -> String? {
        let lower = name.lowercased()
        return pairs.first { $0.name.lowercased() == lower }?.value
    }

    public func values(for name: String) -> [String] {
        let lower = name.lowercased()
        return pairs.filter { $0.name.lowercased() == lower }.map(\.value)
    }

    public mutating func add(_ name: String, _ value: String) { pairs.append((name, value)) }

    public mutating func replace(_ name: String, _ value: String) {
        let lower = name.lowercased()
        pairs.removeAll { $0.name.lowercased() == lower }
        pairs.append((name, value))
    }

    public var count: Int { pairs.count }
    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { pairs.makeIterator() }
}

public struct HTTPRequest: Sendable {
    public var method: String
    public var target: String
    public var path: String
    public var query: [String: String]
    public var versionMinor: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var pathParameters: [String: String] = [:]

    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], versionMinor: Int = 1) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.versionMinor = versionMinor
        (path, query) = HTTPRequest.split(target)
    }

    /// The path (absolute-form reduced to its path, percent-decoded once) and query.
    static func split(_ target: String) -> (String, [String: String]) {
        var t = Substring(target)
        if t.lowercased().hasPrefix("http://") || t.lowercased().hasPrefix("https://") {
            let afterScheme = t[t.index(t.firstIndex(of: ":")!, offsetBy: 3)...]
            t = afterScheme.firstIndex(of: "/").map { afterScheme[$0...] } ?? "/"
        }
        let parts = t.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = percentDecode(String(parts[0])) ?? String(parts[0])
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = percentDecode(String(kv[0]).replacingOccurrences(of: "+", with: " ")) ?? ""
                let value = kv.count > 1 ? (percentDecode(String(kv[1]).replacingOccurrences(of: "+", with: " ")) ?? "") : ""
                if query[key] == nil { query[key] = value }
            }
        }
        return (path, query)
    }

    static func percentDecode(_ s: String) -> String? {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%") {
                guard bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// For streamed bodies (server-sent events); `write` returns false once the client is gone.
public protocol HTTPStreamWriter: AnyObject {
    func write(_ bytes: [UInt8]) -> Bool
}

public struct HTTPResponse {
    public enum Body {
        case bytes([UInt8])
        case stream((HTTPStreamWriter) -> Void)
    }

    public var status: Int
    public var headers: HTTPHeaders
    public var body: Body

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int, _ value: JSON, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var h = headers
        h.replace("Content-Type", "application/json")
        return HTTPResponse(status: status, headers: h, body: .bytes(Array((value.serialized() + "\n").utf8)))
    }

    public static func text(_ status: Int, _ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, headers: HTTPHeaders([("Content-Type", contentType)]), body: .bytes(Array(text.utf8)))
    }

    /// The error envelope: {"error": {"code", "message", "path"}}.
    public static func error(_ status: Int, code: String, message: String, path: String? = nil, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var inner: [(String, JSON)] = [("code", .string(code)), ("message", .string(message))]
        if let path { inner.append(("path", .string(path))) }
        return json(status, .object([("error", .object(inner))]), headers: headers)
    }

    static let reasons: [Int: String] = [
        100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
        403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
        413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type", 422: "Unprocessable Content", 431: "Request Header Fields Too Large",
        500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported", 507: "Insufficient Storage",
    ]
}

/// An error that knows its status renders itself; anything else becomes a 500 that
/// reveals nothing.
public struct HTTPError: Error, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var path: String?
    public var headers: HTTPHeaders

    public init(_ status: Int, code: String, message: String, path: String? = nil, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers
    }

    public var description: String { "\(status) \(code): \(message)" }
    public var response: HTTPResponse { .error(status, code: code, message: message, path: path, headers: headers) }
}
