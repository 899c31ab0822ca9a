// multipart/form-data bodies (RFC 7578 on RFC 2046 §5.1), as `curl -F name=@file` sends them.

/// One part of a form: its field name, the file name it was sent with, its own
/// content type and its bytes.
public struct MultipartPart: Sendable, Equatable {
    public var name: String
    public var filename: String?
    public var contentType: String?
    public var body: [UInt8]

    public init(name: String, filename: String?, contentType: String?, body: [UInt8]) {
        self.name = name
        self.filename = filename
        self.contentType = contentType
        self.body = body
    }
}

public enum Multipart {
    /// The `boundary` parameter of a `multipart/form-data` Content-Type header.
    /// - Throws: `DatasetError` when the type is not multipart/form-data or the boundary
    ///   is missing or longer than RFC 2046's 70 characters.
    public static func boundary(contentType: String) throws(DatasetError) -> String {
        let parts = contentType.split(separator: ";", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
        guard parts.first?.lowercased() == "multipart/form-data" else {
            throw DatasetError(field: "multipart", "Content-Type '\(contentType.prefix(80))' is not multipart/form-data")
        }
        for parameter in parts.dropFirst() {
            guard let eq = parameter.firstIndex(of: "=") else { continue }
            guard String(parameter[..<eq]).trimmingSpaces.lowercased() == "boundary" else { continue }
            var value = String(parameter[parameter.index(after: eq)...]).trimmingSpaces
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard (1...70).contains(value.utf8.count) else {
                throw DatasetError(field: "multipart", "the boundary must be 1 to 70 characters, got \(value.utf8.count)")
            }
            return value
        }
        throw DatasetError(field: "multipart", "Content-Type multipart/form-data lacks its boundary parameter")
    }

    /// Splits a body into its parts. The preamble before the first delimiter and the
    /// epilogue after the closing one are ignored; each part needs a
    /// `Content-Disposition: form-data; name="…"` header.
    /// - Throws: `DatasetError` naming the part (by position and name) and what is wrong:
    ///   no delimiter, no closing delimiter, a header without a colon, no name.
    public static func parse(_ body: [UInt8], boundary: String) throws(DatasetError) -> [MultipartPart] {
        let delimiter = Array("--\(boundary)".utf8)
        func fail(_ why: String) -> DatasetError { DatasetError(field: "multipart", why) }
        // The first delimiter may open the body or follow a preamble line.
        guard var cursor = find(delimiter, in: body, from: 0, atLineStart: true) else {
            throw fail("no part starts with the boundary '--\(boundary)'")
        }
        var parts: [MultipartPart] = []
        while true {
            cursor += delimiter.count
            if body[cursor...].starts(with: Array("--".utf8)) { break }  // the closing delimiter
            // Transport padding, then the line end after the delimiter.
            while cursor < body.count, body[cursor] == 0x20 || body[cursor] == 0x09 { cursor += 1 }
            guard let afterLine = lineEnd(body, cursor), afterLine.start == cursor else {
                throw fail("part \(parts.count + 1): the boundary line does not end with CRLF")
            }
            cursor = afterLine.next
            // Headers up to an empty line.
            var headers: [(String, String)] = []
            while true {
                guard let end = lineEnd(body, cursor) else { throw fail("part \(parts.count + 1): its headers do not end with an empty line") }
                let line = body[cursor..<end.start]
                cursor = end.next
                if line.isEmpty { break }
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                    throw fail("part \(parts.count + 1): header line '\(String(decoding: line.prefix(60), as: UTF8.self))' has no colon")
                }
                headers.append((String(decoding: line[..<colon], as: UTF8.self).trimmingSpaces.lowercased(),
                                String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces))
            }
            // The body runs to CRLF + delimiter.
            guard let next = find(Array("\r\n".utf8) + delimiter, in: body, from: cursor, atLineStart: false) else {
                throw fail("part \(parts.count + 1) is not closed by '--\(boundary)' (truncated body?)")
            }
            let partBody = Array(body[cursor..<next])
            cursor = next + 2
            guard let disposition = headers.first(where: { $0.0 == "content-disposition" })?.1 else {
                throw fail("part \(parts.count + 1) has no Content-Disposition header")
            }
            let parameters = dispositionParameters(disposition)
            guard parameters.type == "form-data", let name = parameters.values["name"], !name.isEmpty else {
                throw fail("part \(parts.count + 1): Content-Disposition must be form-data with a name, got '\(disposition.prefix(80))'")
            }
            parts.append(MultipartPart(name: name, filename: parameters.values["filename"],
                                       contentType: headers.first(where: { $0.0 == "content-type" })?.1, body: partBody))
        }
        return parts
    }

    /// `form-data; name="file"; filename="a b.csv"` → type and parameters (quoted
    /// strings unescaped; names lowercased).
    static func dispositionParameters(_ value: String) -> (type: String, values: [String: String]) {
        let chars = Array(value)
        var i = 0
        var type = ""
        while i < chars.count, chars[i] != ";" { type.append(chars[i]); i += 1 }
        var values: [String: String] = [:]
        while i < chars.count {
            i += 1  // past ';'
            while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
            var key = ""
            while i < chars.count, chars[i] != "=", chars[i] != ";" { key.append(chars[i]); i += 1 }
            var v = ""
            if i < chars.count, chars[i] == "=" {
                i += 1
                if i < chars.count, chars[i] == "\"" {
                    i += 1
                    while i < chars.count, chars[i] != "\"" {
                        if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                        v.append(chars[i]); i += 1
                    }
                    i += 1
                    while i < chars.count, chars[i] != ";" { i += 1 }
                } else {
                    while i < chars.count, chars[i] != ";" { v.append(chars[i]); i += 1 }
                }
            }
            values[key.trimmingSpaces.lowercased()] = v
        }
        return (type.trimmingSpaces.lowercased(), values)
    }

    /// The end of the line starting at `from`: where its CRLF (or bare LF) starts, and
    /// the index after it.
    static func lineEnd(_ b: [UInt8], _ from: Int) -> (start: Int, next: Int)? {
        var i = from
        while i < b.count {
            if b[i] == 0x0A { return (i > from && b[i - 1] == 0x0D ? i - 1 : i, i + 1) }
            i += 1
        }
        return nil
    }

    /// The first index of `needle` at or after `from`; with `atLineStart`, only at the
    /// start of the body or right after a line end.
    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int, atLineStart: Bool) -> Int? {
        guard let first = needle.first, hay.count >= needle.count else { return nil }
        var i = from
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first, !atLineStart || i == 0 || hay[i - 1] == 0x0A {
                var match = true
                for k in 1..<needle.count where hay[i + k] != needle[k] { match = false; break }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}
