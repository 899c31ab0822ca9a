// Datasets: named arrays (fields) that share their first axis.

/// The element type a field represents. Values are always stored as `Float`; `int32`
/// marks fields such as class labels whose values are whole numbers, `uint8` whole
/// numbers in 0...255 (images as decoded or uploaded), kept as such on disk.
public enum DType: String, Sendable {
    case float32, int32, uint8
}

/// One named field: a dense row-major array whose axis 0 indexes rows (examples).
public struct DataArray: Sendable {
    public var shape: [Int]
    public var dtype: DType
    public var values: [Float]

    /// `values.count` must equal the product of `shape` (checked with a precondition;
    /// the parsers in this module check it for user input before constructing).
    public init(shape: [Int], dtype: DType, values: [Float]) {
        precondition(!shape.isEmpty, "a data array needs at least one axis (rows)")
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == values.count,
                     "shape \(shape) holds \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.dtype = dtype
        self.values = values
    }

    /// Number of values in one row.
    public var rowSize: Int { shape.dropFirst().reduce(1, *) }

    /// Rows `range` (clamped to the valid rows) as a new array.
    public func rows(_ range: Range<Int>) -> DataArray {
        let lo = min(max(range.lowerBound, 0), rowCount)
        let hi = min(max(range.upperBound, lo), rowCount)
        let size = rowSize
        var newShape = shape
        newShape[0] = hi - lo
        return DataArray(shape: newShape, dtype: dtype, values: Array(values[(lo * size)..<(hi * size)]))
    }

    /// The rows at `indices`, in that order (indices may repeat). Traps on an index out of range.
    public func gather(rows indices: [Int]) -> DataArray {
        let size = rowSize
        let n = rowCount
        var out = [Float](repeating: 0, count: indices.count * size)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (i, r) in indices.enumerated() {
                    precondition(r >= 0 && r < n, "row index \(r) out of range 0..<\(n)")
                    guard size > 0 else { continue }
                    (dst.baseAddress! + i * size).update(from: src.baseAddress! + r * size, count: size)
                }
            }
        }
        var newShape = shape
        newShape[0] = indices.count
        return DataArray(shape: newShape, dtype: dtype, values: out)
    }
}

/// Fields that share axis 0.
public struct Dataset: Sendable {
    public var fields: [String: DataArray]

    /// Checks that every field has at least one axis and that all fields have the same
    /// number of rows; the error names the first field that disagrees.
    public init(fields: [String: DataArray]) throws(DatasetError) {
        try Dataset.checkRows(fields)
        self.fields = fields
    }

    /// The check of `init` for arrays known by their shapes.
    public static func checkRows<A: ShapedArray>(_ fields: [String: A]) throws(DatasetError) {
        let names = fields.keys.sorted()
        if let first = names.first {
            let expected = fields[first]!.rowCount
            for name in names.dropFirst() where fields[name]!.rowCount != expected {
                throw DatasetError(field: name,
                    "has \(fields[name]!.rowCount) rows but field '\(first)' has \(expected); all fields must share axis 0")
            }
        }
    }

    /// Rows shared by all fields (0 for a dataset with no fields).
    public var rowCount: Int { fields.values.first?.rowCount ?? 0 }

    /// The first `n` rows of every field (all rows if `n` is larger).
    public func take(_ n: Int) -> Dataset {
        var out = self
        for (k, v) in fields { out.fields[k] = v.rows(0..<max(0, n)) }
        return out
    }

    public subscript(field: String) -> DataArray? { fields[field] }
}

public struct DatasetSplits: Sendable {
    public var train: Dataset
    public var test: Dataset?
    public init(train: Dataset, test: Dataset?) {
        self.train = train
        self.test = test
    }
}

/// A problem a user can cause (bad upload, unreachable mirror, corrupt file). Names the
/// file or field involved and says why.
public struct DatasetError: Error, CustomStringConvertible, Sendable {
    public var field: String?
    public var message: String
    /// Whether the data is refused for its size (a decompression bound) rather than its form.
    public var tooLarge = false

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }
    init(field: String?, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String {
        if let field { return "\(field): \(message)" }
        return message
    }
}
