// Fields given as JSON: {"x": [[0, 1], [1, 0]], "y": [1, 1]}.
import KilnJSON

public enum JSONFields {
    /// Cap on the number of values in one field given as JSON.
    public static let maxValues = 50_000_000

    /// Parses an object of fields, each a (possibly nested) array of numbers. The shape is
    /// inferred from the nesting; every sub-array at one depth must have the same length
    /// (a ragged array is an error naming the field and the JSON path of the offending
    /// element, under `path`, e.g. "data.fields.x[2]").
    ///
    /// dtype: a field is `int32` when it is one-dimensional and every value is an integer
    /// that fits in Int32 (class labels, e.g. "y": [0, 1, 1, 0]); every other field is
    /// `float32`, including multi-dimensional arrays written with whole numbers such as
    /// XOR inputs [[0, 0], [0, 1]] or targets [[0], [1]]. JSON cannot tell 1 from 1.0, so a
    /// 1-D regression target of whole numbers also comes out `int32`; values are stored as
    /// Float either way and consumers may use an int32 field as float data.
    /// Values must fit in Float (JSON itself has no NaN or infinity).
    public static func parse(_ fields: JSON, path: String) throws(DatasetError) -> [String: DataArray] {
        guard case let .object(members) = fields else {
            throw DatasetError(field: nil, "\(path) must be an object of fields, got \(fields.kindName)")
        }
        guard !members.isEmpty else { throw DatasetError(field: nil, "\(path) has no fields") }
        var out = [String: DataArray]()
        for (name, value) in members {
            let fieldPath = "\(path).\(name)"
            guard out[name] == nil else { throw DatasetError(field: name, "\(fieldPath) is given twice") }
            out[name] = try parseField(value, name: name, path: fieldPath)
        }
        return out
    }

    static func parseField(_ value: JSON, name: String, path: String) throws(DatasetError) -> DataArray {
        // Shape from the first element at each depth.
        var shape = [Int]()
        var probe = value
        while case let .array(items) = probe {
            shape.append(items.count)
            guard let first = items.first else { break }
            probe = first
        }
        guard !shape.isEmpty else {
            throw DatasetError(field: name, "\(path) must be an array (one entry per row), got \(value.kindName)")
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= maxValues else { throw DatasetError(field: name, "\(path) has more than \(maxValues) values") }
            count = p
        }
        var values = [Float]()
        values.reserveCapacity(count)
        var allIntegers = true

        // The element path is built only for error messages.
        var index = [Int]()
        func here() -> String { path + index.map { "[\($0)]" }.joined() }
        func walk(_ v: JSON, depth: Int) throws(DatasetError) {
            if depth == shape.count {
                guard case let .number(d) = v else {
                    if case .array = v {
                        throw DatasetError(field: name, "\(here()): ragged array (expected a number at depth \(depth), got an array; shape so far \(shape))")
                    }
                    throw DatasetError(field: name, "\(here()): expected a number, got \(v.kindName)")
                }
                let f = Float(d)
                guard f.isFinite else { throw DatasetError(field: name, "\(here()): \(d) is outside the float32 range") }
                if allIntegers && !(d.rounded() == d && d >= -2147483648 && d <= 2147483647) { allIntegers = false }
                values.append(f)
                return
            }
            guard case let .array(items) = v else {
                throw DatasetError(field: name, "\(here()): ragged array (expected an array of \(shape[depth]) elements, got \(v.kindName))")
            }
            guard items.count == shape[depth] else {
                throw DatasetError(field: name, "\(here()): ragged array (expected \(shape[depth]) elements, got \(items.count))")
            }
            index.append(0)
            for (i, item) in items.enumerated() {
                index[depth] = i
                try walk(item, depth: depth + 1)
            }
            index.removeLast()
        }
        try walk(value, depth: 0)
        let dtype: DType = (shape.count == 1 && allIntegers && !values.isEmpty) ? .int32 : .float32
        return DataArray(shape: shape, dtype: dtype, values: values)
    }
}
