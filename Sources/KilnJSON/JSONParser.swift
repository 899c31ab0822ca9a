/// Why a JSON text could not be parsed, and where (byte offset, line and column, 1-based).
public struct JSONParseError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let offset: Int
    public let line: Int
    public let column: Int
    public var description: String { "invalid JSON at line \(line), column \(column): \(message)" }
}

extension JSON {
    /// The deepest nesting accepted; deeper documents are rejected instead of
    /// exhausting the stack.
    public static let maximumDepth = 256

    /// Parses a complete JSON document (RFC 8259). Numbers that overflow a Double are
    /// rejected, so `1e309` never becomes infinity.
    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSON {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument()
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8))
    }
}

struct JSONParser {
    let bytes: [UInt8]
    var index = 0
    var depth = 0
    /// Arrays starting before this offset are not packed (see `packNumbers`).
    var unpackedUntil = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
        // Skip a UTF-8 byte order mark.
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected data after the JSON value") }
        return value
    }

    func error(_ message: String, at position: Int? = nil) -> JSONParseError {
        let offset = min(position ?? index, bytes.count)
        var line = 1, column = 1
        for b in bytes[0..<offset] {
            if b == UInt8(ascii: "\n") { line += 1; column = 1 } else if b & 0xC0 != 0x80 { column += 1 }
        }
        return JSONParseError(message: message, offset: offset, line: line, column: column)
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSON {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default:
            let c = bytes[index]
            let shown = (0x21...0x7E).contains(c) ? "'\(Character(UnicodeScalar(c)))'" : "byte 0x\(String(c, radix: 16))"
            throw error("unexpected \(shown)")
        }
    }

    mutating func expectLiteral(_ literal: String) throws(JSONParseError) {
        let start = index
        for b in literal.utf8 {
            guard index < bytes.count, bytes[index] == b else { throw error("invalid literal, expected '\(literal)'", at: start) }
            index += 1
        }
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > JSON.maximumDepth { throw error("nesting deeper than \(JSON.maximumDepth) levels") }
    }

    mutating func parseObject() throws(JSONParseError) -> JSON {
        .object(try parseMembers { (p: inout JSONParser) throws(JSONParseError) in try p.parseValue() })
    }

    mutating func parseArray() throws(JSONParseError) -> JSON {
        .array(try parseElements { (p: inout JSONParser) throws(JSONParseError) in try p.parseValue() })
    }

    /// The members of the object at `index`, each value parsed by `value`.
    mutating func parseMembers<Value>(_ value: (inout JSONParser) throws(JSONParseError) -> Value) throws(JSONParseError) -> [(String, Value)] {
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [(String, Value)] = []
        var seen = Set<String>()
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return members }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = index
            let key = try parseString()
            guard seen.insert(key).inserted else { throw error("duplicate key \"\(key)\"", at: keyStart) }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after key") }
            index += 1
            skipWhitespace()
            members.append((key, try value(&self)))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return members }
            throw error("expected ',' or '}' in object")
        }
    }

    /// The elements of the array at `index`, each parsed by `value`.
    mutating func parseElements<Value>(_ value: (inout JSONParser) throws(JSONParseError) -> Value) throws(JSONParseError) -> [Value] {
        try enter()
        defer { depth -= 1 }
        index += 1
        var items: [Value] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return items }
        while true {
            skipWhitespace()
            items.append(try value(&self))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return items }
            throw error("expected ',' or ']' in array")
        }
    }

    /// Exact powers of ten up to 10^22 (every one is a Double without rounding).
    static let powersOfTen: [Double] = (0...22).map { (e: Int) -> Double in
        var v = 1.0
        for _ in 0..<e { v *= 10 }
        return v
    }

    mutating func parseNumber() throws(JSONParseError) -> JSON {
        .number(try scanNumber())
    }

    /// The number at `index` (which holds '-' or a digit).
    mutating func scanNumber() throws(JSONParseError) -> Double {
        let start = index
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        // The digits are gathered into an integer mantissa and a decimal exponent as
        // they are scanned; when both are small the value is exact in one IEEE
        // operation (Clinger's fast path), otherwise the text goes to strtod.
        var mantissa: UInt64 = 0
        var exact = true
        var exponent = 0
        @inline(__always) func digit(_ p: JSONParser) -> UInt8? {
            guard p.index < p.bytes.count else { return nil }
            let d = p.bytes[p.index] &- UInt8(ascii: "0")
            return d < 10 ? d : nil
        }
        @inline(__always) func accumulate(_ d: UInt8) -> Bool {
            guard mantissa < 100_000_000_000_000_000 else { return false }
            mantissa = mantissa &* 10 &+ UInt64(d)
            return true
        }
        guard index < bytes.count else { throw error("incomplete number", at: start) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            var n = 0
            while let d = digit(self) {
                if !accumulate(d) { exact = false }
                index += 1; n += 1
            }
            guard n > 0 else { throw error("invalid number", at: start) }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var n = 0
            while let d = digit(self) {
                if accumulate(d) { exponent -= 1 } else { exact = false }
                index += 1; n += 1
            }
            guard n > 0 else { throw error("expected digits after '.'", at: start) }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var sign = 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                if bytes[index] == UInt8(ascii: "-") { sign = -1 }
                index += 1
            }
            var n = 0, e = 0
            while let d = digit(self) {
                if e < 100_000 { e = e * 10 + Int(d) } else { exact = false }
                index += 1; n += 1
            }
            guard n > 0 else { throw error("expected digits in exponent", at: start) }
            exponent += sign * e
        }
        if exact, mantissa <= 1 << 53, exponent >= -22, exponent <= 22 {
            var value = Double(mantissa)
            if exponent >= 0 { value *= JSONParser.powersOfTen[exponent] } else { value /= JSONParser.powersOfTen[-exponent] }
            return negative ? -value : value
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw error("number \(text.prefix(40)) is out of range", at: start)
        }
        return value
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("incomplete \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            v = v * 16 + d
            index += 1
        }
        return v
    }

    mutating func parseString() throws(JSONParseError) -> String {
        let start = index
        index += 1
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let c = bytes[index]
            if c == UInt8(ascii: "\"") { index += 1; break }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); index += 1; continue }
            index += 1
            guard index < bytes.count else { throw error("unterminated escape", at: start) }
            let e = bytes[index]
            index += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    index += 2
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw error("unpaired surrogate in \\u escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw error("invalid escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in string", at: start) }
        return s
    }
}
