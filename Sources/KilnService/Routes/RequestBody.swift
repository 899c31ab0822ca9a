import KilnHTTP
import KilnJSON

/// Request bodies read as JSON: the content type is checked (415) and the body parsed
/// (400 with the line and column).
enum RequestBody {
    static func json(_ request: HTTPRequest) throws -> JSON {
        try parse(request, with: JSON.parse)
    }

    static func packed(_ request: HTTPRequest) throws -> PackedJSON {
        try parse(request, with: JSON.parsePacked)
    }

    static func parse<Value>(_ request: HTTPRequest, with parse: ([UInt8]) throws(JSONParseError) -> Value) throws -> Value {
        if let type = request.headers["Content-Type"] {
            let media = mediaType(type)
            guard media == "application/json" || media.hasSuffix("+json") else {
                throw HTTPError(415, code: "unsupported_media_type", message: "expected Content-Type: application/json, got '\(media.prefix(100))'")
            }
        }
        return try parse(request.body)
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
