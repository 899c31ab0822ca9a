import KilnJSON

/// Reads the fields of one JSON object in a spec, with the object's path, so every
/// error names the exact field; `finish()` rejects fields nobody read, suggesting the
/// closest known name.
public struct FieldReader {
    public let object: JSON
    public let path: String
    public let node: String?
    /// The row shape of each data field, when known, for layers that read the data
    /// (`constant` with `from_data`).
    public var schema: DataSchema = DataSchema()
    private var allowed: Set<String> = []

    public init(_ object: JSON, path: String, node: String? = nil) throws(SpecError) {
        guard case .object = object else {
            throw SpecError(.invalidField, "expected an object, got \(object.kindName)", path: path, node: node)
        }
        self.object = object
        self.path = path
        self.node = node
    }

    public func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ message: String, _ code: SpecError.Code = .invalidField) -> SpecError {
        SpecError(code, message, path: fieldPath(key), node: node)
    }

    /// Marks keys as known without reading them (read elsewhere).
    public mutating func allow(_ keys: String...) { allowed.formUnion(keys) }

    public mutating func has(_ key: String) -> Bool {
        allowed.insert(key)
        return object[key].map { !$0.isNull } ?? false
    }

    public mutating func raw(_ key: String) -> JSON? {
        allowed.insert(key)
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    public mutating func required(_ key: String) throws(SpecError) -> JSON {
        guard let v = raw(key) else { throw error(key, "is required", .missingField) }
        return v
    }

    public mutating func string(_ key: String) throws(SpecError) -> String? {
        guard let v = raw(key) else { return nil }
        guard let s = v.stringValue else { throw error(key, "expected a string, got \(v.kindName)") }
        return s
    }

    public mutating func string(_ key: String, oneOf choices: [String], default value: String? = nil) throws(SpecError) -> String? {
        guard let s = try string(key) else { return value }
        guard choices.contains(s) else {
            throw error(key, "'\(s)' is not one of \(choices.joined(separator: ", "))\(Suggest.hint(s, choices))")
        }
        return s
    }

    public mutating func int(_ key: String, minimum: Int? = nil) throws(SpecError) -> Int? {
        guard let v = raw(key) else { return nil }
        guard let i = v.intValue else { throw error(key, "expected an integer, got \(v.serialized().prefix(40))") }
        if let minimum, i < minimum { throw error(key, "must be at least \(minimum), got \(i)") }
        return i
    }

    public mutating func positiveInt(_ key: String) throws(SpecError) -> Int? {
        guard let v = raw(key) else { return nil }
        guard let i = v.intValue, i > 0 else {
            throw error(key, "expected a positive integer. Received: \(key)=\(v.serialized().prefix(40))")
        }
        return i
    }

    public mutating func double(_ key: String, range: ClosedRange<Double>? = nil) throws(SpecError) -> Double? {
        guard let v = raw(key) else { return nil }
        guard let d = v.doubleValue else { throw error(key, "expected a number, got \(v.kindName)") }
        if let range, !range.contains(d) { throw error(key, "must be in [\(range.lowerBound), \(range.upperBound)], got \(d)") }
        return d
    }

    public mutating func bool(_ key: String) throws(SpecError) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard let b = v.boolValue else { throw error(key, "expected true or false, got \(v.kindName)") }
        return b
    }

    public mutating func intList(_ key: String, minimum: Int = 1) throws(SpecError) -> [Int]? {
        guard let v = raw(key) else { return nil }
        guard let items = v.arrayValue else { throw error(key, "expected a list of integers, got \(v.kindName)") }
        var out: [Int] = []
        for (i, item) in items.enumerated() {
            guard let n = item.intValue, n >= minimum else {
                throw SpecError(.invalidField, "expected an integer ≥ \(minimum), got \(item.serialized().prefix(40))", path: "\(fieldPath(key))[\(i)]", node: node)
            }
            out.append(n)
        }
        return out
    }

    public mutating func stringList(_ key: String) throws(SpecError) -> [String]? {
        guard let v = raw(key) else { return nil }
        if let s = v.stringValue { return [s] }
        guard let items = v.arrayValue else { throw error(key, "expected a list of names, got \(v.kindName)") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else {
                throw SpecError(.invalidField, "expected a name, got \(item.kindName)", path: "\(fieldPath(key))[\(i)]", node: node)
            }
            out.append(s)
        }
        return out
    }

    public func object(_ key: String) -> JSON? { object[key] }

    /// Rejects any key not read or allowed, with a "did you mean" hint.
    public func finish() throws(SpecError) {
        guard let members = object.objectMembers else { return }
        for (key, _) in members where !allowed.contains(key) {
            throw error(key, "unknown field '\(key)'\(Suggest.hint(key, allowed.sorted()))", .unknownField)
        }
    }
}

/// What the spec decoder knows about the data before it is loaded: each field's row
/// shape, and the number of classes of label fields where known.
public struct DataSchema: Sendable {
    public var fields: [String: [Int]]
    public var classes: [String: Int]
    /// False when the data is not known at decode time (then layers defer their checks).
    public var known: Bool

    public init(fields: [String: [Int]] = [:], classes: [String: Int] = [:], known: Bool = false) {
        self.fields = fields
        self.classes = classes
        self.known = known
    }

    /// The built-in datasets' fields.
    public static func builtIn(_ name: String) -> DataSchema? {
        switch name {
        case "mnist": return DataSchema(fields: ["image": [28, 28, 1], "label": []], classes: ["label": 10], known: true)
        case "cifar10": return DataSchema(fields: ["image": [32, 32, 3], "label": []], classes: ["label": 10], known: true)
        default: return nil
        }
    }
}
