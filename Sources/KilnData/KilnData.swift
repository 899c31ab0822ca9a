import CCurl
import CZlib
import Foundation
import KilnJSON

public enum DType: String, Sendable { case float32, int32 }

public struct DataArray: Sendable {
    public var shape: [Int]
    public var dtype: DType
    public var values: [Float]
    public init(shape: [Int], dtype: DType, values: [Float]) { self.shape = shape; self.dtype = dtype; self.values = values }
    public var rowCount: Int { shape.first ?? 0 }
    public var rowShape: [Int] { Array(shape.dropFirst()) }
    var rowSize: Int { rowShape.reduce(1, *) }
    public func rows(_ range: Range<Int>) -> DataArray {
        DataArray(shape: [range.count] + rowShape, dtype: dtype, values: Array(values[(range.lowerBound * rowSize)..<(range.upperBound * rowSize)]))
    }
    public func gather(rows indices: [Int]) -> DataArray {
        var out = [Float](); out.reserveCapacity(indices.count * rowSize)
        for i in indices { out.append(contentsOf: values[(i * rowSize)..<((i + 1) * rowSize)]) }
        return DataArray(shape: [indices.count] + rowShape, dtype: dtype, values: out)
    }
}

public struct DatasetError: Error, CustomStringConvertible, Sendable {
    public var field: String?
    public var message: String
    public init(field: String?, message: String) { self.field = field; self.message = message }
    public var description: String { field.map { "\($0): \(message)" } ?? message }
}

public struct Dataset: Sendable {
    public var fields: [String: DataArray]
    public init(fields: [String: DataArray]) throws(DatasetError) {
        let counts = Set(fields.values.map(\.rowCount))
        if counts.count > 1 {
            let desc = fields.keys.sorted().map { "\($0): \(fields[$0]!.rowCount)" }.joined(separator: ", ")
            let odd = fields.keys.sorted().first { fields[$0]!.rowCount != fields.values.first!.rowCount } ?? fields.keys.sorted().last
            throw DatasetError(field: odd, message: "fields have different row counts (\(desc))")
        }
        self.fields = fields
    }
    public var rowCount: Int { fields.values.first?.rowCount ?? 0 }
    public func take(_ n: Int) -> Dataset { (try? Dataset(fields: fields.mapValues { $0.rows(0..<min(n, $0.rowCount)) })) ?? self }
}

public struct DatasetSplits: Sendable {
    public var train: Dataset
    public var test: Dataset?
    public init(train: Dataset, test: Dataset?) { self.train = train; self.test = test }
}
