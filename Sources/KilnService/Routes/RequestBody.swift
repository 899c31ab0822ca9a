import KilnData
import KilnHTTP
import KilnJSON

/// Request bodies read as JSON: the content type is checked (415) and the body parsed
/// (400 with the line and column). Bodies sent with `Content-Encoding: gzip` or
/// `deflate` are inflated first, bounded by the same size limit as any upload.
enum RequestBody {
    /// The cap on an inflated body when the caller gives none (the default `max_body_bytes`).
    static let defaultMaxBytes = 64 << 20

    static func json(_ request: HTTPRequest, maxBytes: Int = defaultMaxBytes) throws -> JSON {
        try parse(request, maxBytes: maxBytes, with: JSON.parse)
    }

    static func packed(_ request: HTTPRequest, maxBytes: Int = defaultMaxBytes) throws -> PackedJSON {
        try parse(request, maxBytes: maxBytes, with: JSON.parsePacked)
    }

    /// The body as the client meant it: inflated per `Content-Encoding` (gzip, deflate
    /// or identity; anything else is a 415), at most `maxBytes` once inflated (413).
    static func decoded(_ request: HTTPRequest, maxBytes: Int = defaultMaxBytes) throws -> [UInt8] {
        guard let encoding = request.headers["Content-Encoding"] else { return request.body }
        var body = request.body
        // Codings are listed in the order they were applied; undo them last first.
        let codings = encoding.lowercased().split(separator: ",").map { trimmedWhitespace($0) }.filter { !$0.isEmpty }
        for coding in codings.reversed() {
            do {
                switch coding {
                case "identity": continue
                case "gzip", "x-gzip": body = try Gzip.decompress(body, maxOutputBytes: maxBytes)
                case "deflate": body = try Gzip.inflateZlib(body, maxOutputBytes: maxBytes)
                default:
                    throw HTTPError(415, code: "unsupported_encoding", message: "Content-Encoding '\(coding.prefix(40))' is not supported; use gzip or deflate",
                                    headers: HTTPHeaders([("Accept-Encoding", "gzip, deflate")]))
                }
            } catch let e as DatasetError {
                let tooLarge = e.message.contains("exceeds the limit")
                throw HTTPError(tooLarge ? 413 : 400, code: tooLarge ? "body_too_large" : "invalid_encoding",
                                message: tooLarge ? "the \(coding) body inflates to more than \(maxBytes) bytes" : "the \(coding) body does not inflate: \(e.message)")
            }
        }
        return body
    }

    static func parse<Value>(_ request: HTTPRequest, maxBytes: Int = defaultMaxBytes, with parse: ([UInt8]) throws(JSONParseError) -> Value) throws -> Value {
        if let type = request.headers["Content-Type"] {
            let media = mediaType(type)
            guard media == "application/json" || media.hasSuffix("+json") else {
                throw HTTPError(415, code: "unsupported_media_type", message: "expected Content-Type: application/json, got '\(media.prefix(100))'")
            }
        }
        return try parse(try decoded(request, maxBytes: maxBytes))
    }

    /// The media type of a Content-Type value, lower-cased, without parameters.
    static func mediaType(_ value: String) -> String {
        let media = value.lowercased().split(separator: ";").first ?? ""
        return trimmedWhitespace(media)
    }

    /// `text` without leading and trailing blanks (the ASCII case without Foundation).
    static func trimmedWhitespace(_ text: Substring) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !blank($0) }), let last = text.lastIndex(where: { !blank($0) }) else { return "" }
        return String(text[first...last])
    }
}
