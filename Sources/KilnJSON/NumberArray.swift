/// A rectangular array of numbers given as nested JSON arrays (`[[1, 2], [3, 4]]`):
/// its shape from the nesting and its values in row-major order. The one decoder of
/// nested number arrays, for spec values, inline data, loss targets and predict inputs.
public struct NumberArray: Sendable {
    public var shape: [Int]
    public var values: [Float]
    /// Whether every value is a whole number that fits in Int32 (class labels).
    public var allIntegers: Bool

    public init(shape: [Int], values: [Float], allIntegers: Bool) {
        self.shape = shape
        self.values = values
        self.allIntegers = allIntegers
    }

    /// What is wrong, and where below the decoded value (`[2][0]`, empty for the value itself).
    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public var suffix: String
        public var message: String
        public var description: String { suffix.isEmpty ? message : "\(suffix): \(message)" }
    }

    /// The shape of `json` as its first element at each depth gives it (no checks).
    public static func probeShape(_ json: JSON) -> [Int] {
        var shape: [Int] = []
        var probe = json
        while case let .array(items) = probe {
            shape.append(items.count)
            guard let first = items.first else { break }
            probe = first
        }
        return shape
    }

    /// Decodes nested arrays of numbers; a bare number is a 0-d array.
    /// - Parameters:
    ///   - maxValues: refuse more values than this before allocating them.
    ///   - requireArray: a bare number is an error.
    public static func decode(_ json: JSON, maxValues: Int = Int.max, requireArray: Bool = false) throws(DecodeError) -> NumberArray {
        let shape = probeShape(json)
        if shape.isEmpty && requireArray {
            throw DecodeError(suffix: "", message: "expected an array of numbers, got \(json.kindName)")
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= maxValues else { throw DecodeError(suffix: "", message: "has more than \(maxValues) values") }
            count = p
        }
        var values = [Float]()
        values.reserveCapacity(count)
        var allIntegers = true
        // The element path is built only for error messages.
        var index = [Int]()
        func here() -> String { index.map { "[\($0)]" }.joined() }
        func walk(_ v: JSON, depth: Int) throws(DecodeError) {
            if depth == shape.count {
                guard case let .number(d) = v else {
                    if case .array = v {
                        throw DecodeError(suffix: here(), message: "ragged array (expected a number at depth \(depth), got an array; shape so far \(shape))")
                    }
                    throw DecodeError(suffix: here(), message: "expected a number, got \(v.kindName)")
                }
                let f = Float(d)
                guard f.isFinite else { throw DecodeError(suffix: here(), message: "\(d) is outside the float32 range") }
                if allIntegers && !(d.rounded() == d && d >= -2147483648 && d <= 2147483647) { allIntegers = false }
                values.append(f)
                return
            }
            guard case let .array(items) = v else {
                throw DecodeError(suffix: here(), message: "ragged array (expected an array of \(shape[depth]) elements, got \(v.kindName))")
            }
            guard items.count == shape[depth] else {
                throw DecodeError(suffix: here(), message: "ragged array (expected \(shape[depth]) elements, got \(items.count))")
            }
            index.append(0)
            for (i, item) in items.enumerated() {
                index[depth] = i
                try walk(item, depth: depth + 1)
            }
            index.removeLast()
        }
        try walk(json, depth: 0)
        return NumberArray(shape: shape, values: values, allIntegers: allIntegers && !values.isEmpty)
    }

    /// The same for a packed value: packed numbers convert without a tree of JSON.
    public static func decode(_ packed: PackedJSON, maxValues: Int = Int.max, requireArray: Bool = false) throws(DecodeError) -> NumberArray {
        if case let .numbers(shape, numbers) = packed, numbers.count <= maxValues {
            var floats = [Float](repeating: 0, count: numbers.count)
            var finite = true
            var integers = true
            floats.withUnsafeMutableBufferPointer { out in
                for i in 0..<numbers.count {
                    let d = numbers[i]
                    out[i] = Float(d)
                    if !out[i].isFinite { finite = false }
                    if integers && !(d.rounded() == d && d >= -2147483648 && d <= 2147483647) { integers = false }
                }
            }
            // A value outside float32 is reported with its position by the tree decoder.
            if finite { return NumberArray(shape: shape, values: floats, allIntegers: integers && !floats.isEmpty) }
        }
        return try decode(packed.json, maxValues: maxValues, requireArray: requireArray)
    }
}
