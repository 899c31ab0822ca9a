import KilnData
import KilnGraph
import KilnHTTP
import KilnJSON

// Where domain errors meet HTTP: each says how it is answered. Nothing below
// KilnService knows a status code.

extension SpecError: ResponseError {
    /// 422 for a well-formed model over budget or one Kiln cannot run as given (a Keras
    /// layer it does not have), 400 for everything else.
    public var reply: ErrorReply {
        ErrorReply(status: code == .tooLarge || code == .unsupportedLayer ? 422 : 400, code: code.rawValue, message: description, path: path)
    }
}

extension ServiceError: ResponseError {
    public var reply: ErrorReply {
        let status: Int
        switch kind {
        case .invalid: status = 400
        case .notFound: status = 404
        case .conflict: status = 409
        case .tooLarge: status = 413
        case .unprocessable: status = 422
        case .unavailable: status = 503
        case .insufficientStorage: status = 507
        case .internalError: status = 500
        }
        var headers = HTTPHeaders()
        if let retryAfter { headers.add("Retry-After", String(retryAfter)) }
        return ErrorReply(status: status, code: code, message: message, path: path, headers: headers)
    }
}

extension JSONParseError: ResponseError {
    public var reply: ErrorReply { ErrorReply(status: 400, code: "invalid_json", message: description) }
}

/// Kiln's error body (DESIGN.md §3): `{"error": {"code", "message", "path"}}`.
enum ErrorBody {
    static func envelope(_ e: ErrorReply) -> HTTPResponse {
        var members: [(String, JSON)] = [("code", .string(e.code)), ("message", .string(e.message))]
        if let path = e.path { members.append(("path", .string(path))) }
        return .json(e.status, .object([("error", .object(members))]), headers: e.headers)
    }

    /// The Open Inference Protocol's `{"error": "<message>"}`.
    static func openInference(_ e: ErrorReply) -> HTTPResponse {
        .json(e.status, ["error": .string(e.path.map { "\($0): \(e.message)" } ?? e.message)], headers: e.headers)
    }
}
