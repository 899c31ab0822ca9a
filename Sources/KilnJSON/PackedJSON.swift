/// A JSON value in which every non-empty rectangular array of numbers (`[1, 2]`,
/// `[[0.5], [1.5]]`: every leaf a number, all at one depth, every array at a depth of
/// the same length) is one flat buffer with its shape, instead of a tree of `JSON`
/// values. Request bodies that carry tensors parse this way without an allocation per
/// number or per innermost array.
public enum PackedJSON: Sendable {
    /// Values in row-major order; `shape` has one length per level of nesting.
    case numbers(shape: [Int], values: [Double])
    case array([PackedJSON])
    case object([(String, PackedJSON)])
    /// null, a boolean, a number or a string.
    case scalar(JSON)

    /// `json` as it is, nothing packed.
    public init(_ json: JSON) {
        switch json {
        case let .array(items): self = .array(items.map(PackedJSON.init))
        case let .object(members): self = .object(members.map { ($0.0, PackedJSON($0.1)) })
        default: self = .scalar(json)
        }
    }

    /// The same value as an ordinary tree (packed numbers become nested arrays).
    public var json: JSON {
        switch self {
        case let .scalar(value): return value
        case let .array(items): return .array(items.map(\.json))
        case let .object(members): return .object(members.map { ($0.0, $0.1.json) })
        case let .numbers(shape, values):
            func nest(_ level: Int, _ offset: Int) -> JSON {
                if level == shape.count - 1 { return .array(values[offset..<(offset + shape[level])].map { .number($0) }) }
                let stride = shape[(level + 1)...].reduce(1, *)
                return .array((0..<shape[level]).map { nest(level + 1, offset + $0 * stride) })
            }
            return nest(0, 0)
        }
    }

    public subscript(key: String) -> PackedJSON? {
        guard case let .object(members) = self else { return nil }
        return members.first(where: { $0.0 == key })?.1
    }

    public var objectMembers: [(String, PackedJSON)]? {
        if case let .object(members) = self { return members }
        return nil
    }

    public var stringValue: String? {
        if case let .scalar(value) = self { return value.stringValue }
        return nil
    }
}

extension JSON {
    /// Parses a complete JSON document like `parse(_:)`, accepting and rejecting exactly
    /// the same texts with the same errors, into a `PackedJSON`.
    public static func parsePacked(_ bytes: [UInt8]) throws(JSONParseError) -> PackedJSON {
        var parser = JSONParser(bytes: bytes)
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { parser.index = 3 }
        parser.skipWhitespace()
        let value = try parser.parsePackedValue()
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }
}

extension JSONParser {
    mutating func parsePackedValue() throws(JSONParseError) -> PackedJSON {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            return .object(try parseMembers { (p: inout JSONParser) throws(JSONParseError) in try p.parsePackedValue() })
        case UInt8(ascii: "["):
            if index >= unpackedUntil, let packed = packNumbers() { return packed }
            return .array(try parseElements { (p: inout JSONParser) throws(JSONParseError) in try p.parsePackedValue() })
        default:
            return .scalar(try parseValue())
        }
    }

    /// Reads the array at `index` as a rectangular array of numbers, or returns nil with
    /// `index` unchanged when it is anything else (including invalid JSON: the ordinary
    /// parser then reads it again and reports the error). Arrays starting before the
    /// point where an attempt stopped are not attempted again, so no byte is read by
    /// more than one failed attempt and parsing stays linear.
    mutating func packNumbers() -> PackedJSON? {
        let start = index
        let levels = JSON.maximumDepth - depth
        guard levels > 0 else { return nil }
        // Per level: its length (-1 until the first array there closes) and the elements
        // so far in the open array; on the stack, as nesting is bounded.
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * levels) { storage -> PackedJSON? in
            let shape = UnsafeMutableBufferPointer(rebasing: storage[0..<levels])
            let counts = UnsafeMutableBufferPointer(rebasing: storage[levels...])
            var open = 0              // arrays open now
            var known = 0             // levels whose `shape` entry exists
            var leafLevel = -1        // the level holding numbers, once one is seen
            var values: [Double] = []
            func fail(_ p: inout JSONParser) -> PackedJSON? {
                p.unpackedUntil = max(p.unpackedUntil, p.index + 1)
                p.index = start
                return nil
            }
            let end = bytes.count
            while true {
                // A value: open arrays down to the numbers, then one number.
                while index < end, bytes[index] == UInt8(ascii: "[") {
                    guard open < levels, leafLevel < 0 || open <= leafLevel else { return fail(&self) }
                    counts[open] = 0
                    if known == open { shape[open] = -1; known += 1 }
                    open += 1
                    index += 1
                    skipWhitespace()
                }
                guard index < end else { return fail(&self) }
                let c = bytes[index]
                guard c == UInt8(ascii: "-") || (c &- UInt8(ascii: "0")) < 10 else { return fail(&self) }
                if leafLevel < 0 { leafLevel = open - 1 } else if leafLevel != open - 1 { return fail(&self) }
                do { values.append(try scanNumber()) } catch { return fail(&self) }
                // After a value: commas and closing brackets.
                while true {
                    counts[open - 1] += 1
                    skipWhitespace()
                    guard index < end else { return fail(&self) }
                    if bytes[index] == UInt8(ascii: ",") {
                        index += 1
                        skipWhitespace()
                        break
                    }
                    guard bytes[index] == UInt8(ascii: "]") else { return fail(&self) }
                    index += 1
                    open -= 1
                    if shape[open] < 0 { shape[open] = counts[open] } else if shape[open] != counts[open] { return fail(&self) }
                    if open == 0 { return .numbers(shape: Array(shape[0..<known]), values: values) }
                }
            }
        }
    }
}
