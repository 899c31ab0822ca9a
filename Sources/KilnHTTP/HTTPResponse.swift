import KilnJSON

/// A response a handler returns. The server adds `Date`, `Server`, `Content-Length`
/// (or chunked framing for a stream) and `Connection: close` when it closes.
public struct HTTPResponse {
    public enum Body {
        case bytes([UInt8])
        /// A body the event loop drives, for server-sent events: see `HTTPStreamBody`.
        case stream(HTTPStreamBody)
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
        var headers = headers
        if !headers.contains("Content-Type") { headers.add("Content-Type", "application/json") }
        return HTTPResponse(status: status, headers: headers, body: .bytes(Array(value.serialized().utf8)))
    }

    public static func text(_ status: Int, _ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": contentType], body: .bytes(Array(text.utf8)))
    }

    /// The default error body, `{"error": {"code", "message", "path"}}` (`path` omitted
    /// when nil). A router can render its errors otherwise (`Router.renderError`).
    public static func error(_ reply: ErrorReply) -> HTTPResponse {
        .error(reply.status, code: reply.code, message: reply.message, path: reply.path, headers: reply.headers)
    }

    public static func error(_ status: Int, code: String, message: String, path: String? = nil,
                             headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var members: [(String, JSON)] = [("code", .string(code)), ("message", .string(message))]
        if let path { members.append(("path", .string(path))) }
        return .json(status, .object([("error", .object(members))]), headers: headers)
    }
}

/// How an error is answered: a status, a machine-readable code, a message for people
/// and, where the problem is in the request's content, the path of the offending field.
public struct ErrorReply: Sendable {
    public var status: Int
    public var code: String
    public var message: String
    public var path: String?
    /// Extra headers for the answer (`Retry-After`, `WWW-Authenticate`, …).
    public var headers: HTTPHeaders

    public init(status: Int, code: String, message: String, path: String? = nil, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers
    }
}

/// An error that knows how it is answered. Domain errors conform by extension where
/// they meet HTTP (KilnService); the router renders any `ResponseError` a handler or
/// middleware throws.
public protocol ResponseError: Error {
    var reply: ErrorReply { get }
}

/// A `ResponseError` built on the spot, for problems that belong to HTTP itself (an
/// unknown route, a wrong method, a missing token) or to one handler.
public struct HTTPError: ResponseError {
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

    public var reply: ErrorReply { ErrorReply(status: status, code: code, message: message, path: path, headers: headers) }

    public var response: HTTPResponse { .error(reply) }
}

// MARK: - Reason phrases

extension HTTPResponse {
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    /// Statuses whose responses never carry a body (RFC 9110 §6.4.1).
    static func forbidsBody(_ status: Int) -> Bool {
        (100..<200).contains(status) || status == 204 || status == 304
    }
}
