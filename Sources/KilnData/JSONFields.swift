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
        let array: NumberArray
        do {
            array = try NumberArray.decode(value, maxValues: maxValues, requireArray: true)
        } catch {
            let message = error.message.hasPrefix("expected an array") ? "must be an array (one entry per row), got \(value.kindName)" : error.message
            throw DatasetError(field: name, "\(path)\(error.suffix)\(error.suffix.isEmpty ? " " : ": ")\(message)")
        }
        let dtype: DType = (array.shape.count == 1 && array.allIntegers) ? .int32 : .float32
        return DataArray(shape: array.shape, dtype: dtype, values: array.values)
    }
}
