/// An ordered list of header fields with case-insensitive lookup.
///
/// Order is kept because it matters on the wire (and in tests); lookups compare names
/// ASCII-case-insensitively, as RFC 9110 §5.1 requires.
public struct HTTPHeaders: Sequence, ExpressibleByDictionaryLiteral, Sendable {
    public typealias Element = (name: String, value: String)

    private var fields: [Element]

    public init(_ pairs: [(String, String)] = []) {
        fields = pairs.map { (name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The first value for `name`, or nil.
    public subscript(name: String) -> String? {
        for field in fields where HTTPHeaders.equalNames(field.name, name) { return field.value }
        return nil
    }

    /// Every value for `name`, in order of appearance.
    public func values(for name: String) -> [String] {
        fields.filter { HTTPHeaders.equalNames($0.name, name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { HTTPHeaders.equalNames($0.name, name) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Sets `name` to a single value: the first occurrence keeps its position, later ones go.
    public mutating func replace(_ name: String, _ value: String) {
        guard let first = fields.firstIndex(where: { HTTPHeaders.equalNames($0.name, name) }) else {
            add(name, value)
            return
        }
        fields[first] = (name: name, value: value)
        var index = fields.count - 1
        while index > first {
            if HTTPHeaders.equalNames(fields[index].name, name) { fields.remove(at: index) }
            index -= 1
        }
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { HTTPHeaders.equalNames($0.name, name) }
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[Element]> {
        fields.makeIterator()
    }

    /// Comma-separated list members of every `name` field, trimmed and lower-cased
    /// (for `Connection`, `Transfer-Encoding`).
    func tokens(for name: String) -> [String] {
        values(for: name).flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { HTTPHeaders.trimWhitespace(Substring($0)).lowercased() }
    }

    static func equalNames(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        for (p, q) in zip(x, y) where p != q {
            if lowerASCII(p) != lowerASCII(q) { return false }
        }
        return true
    }

    @inline(__always) static func lowerASCII(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
    }

    static func trimWhitespace(_ text: Substring) -> String {
        var slice = text[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
