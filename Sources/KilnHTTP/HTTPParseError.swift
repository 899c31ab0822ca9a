/// Why the parser rejected a request. Each case maps to the status the server answers
/// with before closing the connection (swift-nio `HTTPParserError` style).
public enum HTTPParseError: Error, Equatable, Sendable, CaseIterable {
    case invalidRequestLine
    case unknownMethod
    case invalidTarget
    case targetTooLong
    case invalidVersion
    case unsupportedVersion
    /// A bare CR or a bare LF where CRLF is required.
    case invalidLineEnding
    case invalidHeaderName
    case headerWithoutColon
    case spaceBeforeColon
    case obsoleteLineFolding
    case invalidHeaderValue
    case headerTooLong
    case tooManyHeaders
    case headerBlockTooLarge
    case missingHost
    case duplicateHost
    /// A Host value that is not `uri-host [":" port]` (spaces, userinfo, a path).
    case invalidHost
    case contentLengthWithTransferEncoding
    case invalidContentLength
    case conflictingContentLength
    case unsupportedTransferEncoding
    case invalidTransferEncoding
    case transferEncodingInHTTP10
    case invalidChunkSize
    case invalidChunkExtension
    case chunkExtensionTooLong
    case invalidChunkData
    case invalidTrailer
    case bodyTooLarge
    /// A body being written to a file could not be (no space, or the spool is missing).
    case bodyNotStored
    /// As many bodies are being written to files as the spool allows.
    case tooManyUploads

    public var status: Int {
        switch self {
        case .unknownMethod, .unsupportedTransferEncoding: return 501
        case .targetTooLong: return 414
        case .unsupportedVersion: return 505
        case .headerTooLong, .tooManyHeaders, .headerBlockTooLarge: return 431
        case .bodyTooLarge: return 413
        case .bodyNotStored: return 507
        case .tooManyUploads: return 503
        default: return 400
        }
    }

    /// The `code` of the error envelope.
    public var code: String {
        switch status {
        case 413: return "payload_too_large"
        case 414: return "uri_too_long"
        case 431: return "headers_too_large"
        case 503: return "too_many_uploads"
        case 507: return "insufficient_storage"
        case 501: return "not_implemented"
        case 505: return "http_version_not_supported"
        default: return "bad_request"
        }
    }

    public var message: String {
        switch self {
        case .invalidRequestLine: return "malformed request line"
        case .unknownMethod: return "method not implemented"
        case .invalidTarget: return "invalid request target"
        case .targetTooLong: return "request target longer than 8192 bytes"
        case .invalidVersion: return "malformed HTTP version"
        case .unsupportedVersion: return "only HTTP/1.0 and HTTP/1.1 are supported"
        case .invalidLineEnding: return "lines must end with CRLF (bare CR or LF received)"
        case .invalidHeaderName: return "invalid character in a header name"
        case .headerWithoutColon: return "header line without a colon"
        case .spaceBeforeColon: return "whitespace between a header name and the colon"
        case .obsoleteLineFolding: return "obsolete line folding is not accepted"
        case .invalidHeaderValue: return "invalid character in a header value"
        case .headerTooLong: return "a header line is longer than 8192 bytes"
        case .tooManyHeaders: return "more than 100 header fields"
        case .headerBlockTooLarge: return "header section larger than 16384 bytes"
        case .missingHost: return "HTTP/1.1 request without a Host header"
        case .duplicateHost: return "more than one Host header"
        case .invalidHost: return "invalid Host header value"
        case .contentLengthWithTransferEncoding: return "both Content-Length and Transfer-Encoding present"
        case .invalidContentLength: return "invalid Content-Length"
        case .conflictingContentLength: return "conflicting Content-Length values"
        case .unsupportedTransferEncoding: return "transfer coding not implemented (only chunked is)"
        case .invalidTransferEncoding: return "invalid Transfer-Encoding (chunked must be last and once)"
        case .transferEncodingInHTTP10: return "Transfer-Encoding in an HTTP/1.0 request"
        case .invalidChunkSize: return "invalid chunk size"
        case .invalidChunkExtension: return "invalid chunk extension"
        case .chunkExtensionTooLong: return "chunk extension too long"
        case .invalidChunkData: return "chunk data not followed by CRLF"
        case .invalidTrailer: return "invalid trailer field"
        case .bodyTooLarge: return "request body exceeds the size limit"
        case .bodyNotStored: return "the request body could not be stored: the server is out of disk space"
        case .tooManyUploads: return "too many large uploads are in progress; retry later"
        }
    }

    /// The error response, which always closes the connection.
    public var response: HTTPResponse {
        .error(status, code: code, message: message,
               headers: self == .tooManyUploads ? ["Connection": "close", "Retry-After": "5"] : ["Connection": "close"])
    }
}
