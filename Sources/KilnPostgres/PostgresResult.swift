import CLibPQ
import Foundation
import KilnJSON

/// The rows a statement returned, in binary format. Owns the libpq result and frees it
/// when the last reference goes; cells are decoded on access.
public final class PostgresResult: @unchecked Sendable {
    let handle: OpaquePointer
    /// Number of rows returned.
    public let rowCount: Int
    /// Column names, in order.
    public let columns: [String]
    private let columnIndex: [String: Int]
    private let columnTypes: [UInt32]
    /// Rows changed by an INSERT, UPDATE or DELETE (0 for other statements).
    public let affectedRows: Int

    init(handle: OpaquePointer) {
        self.handle = handle
        rowCount = Int(PQntuples(handle))
        let count = Int(PQnfields(handle))
        var names: [String] = [], types: [UInt32] = [], index: [String: Int] = [:]
        for i in 0..<count {
            let name = String(cString: PQfname(handle, Int32(i)))
            names.append(name)
            types.append(UInt32(PQftype(handle, Int32(i))))
            if index[name] == nil { index[name] = i }
        }
        columns = names
        columnTypes = types
        columnIndex = index
        affectedRows = Int(String(cString: PQcmdTuples(handle))) ?? 0
    }

    deinit { PQclear(handle) }

    public subscript(row: Int) -> PostgresRow {
        precondition(row >= 0 && row < rowCount, "row \(row) of \(rowCount)")
        return PostgresRow(result: self, row: row)
    }

    public var rows: [PostgresRow] { (0..<rowCount).map { PostgresRow(result: self, row: $0) } }

    /// The first row, or nil when there is none.
    public var first: PostgresRow? { rowCount > 0 ? self[0] : nil }

    func column(_ name: String) throws -> Int {
        guard let i = columnIndex[name] else { throw PostgresError.decoding("no column '\(name)' in the result (columns: \(columns.joined(separator: ", ")))") }
        return i
    }

    func isNull(row: Int, column: Int) -> Bool { PQgetisnull(handle, Int32(row), Int32(column)) != 0 }

    /// The raw binary cell; valid while this result lives.
    func cell(row: Int, column: Int) -> UnsafeRawBufferPointer {
        let length = Int(PQgetlength(handle, Int32(row), Int32(column)))
        guard let p = PQgetvalue(handle, Int32(row), Int32(column)) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: length)
    }

    func value(row: Int, column: Int) throws -> PostgresValue {
        if isNull(row: row, column: column) { return .null }
        return try BinaryDecoder.value(type: columnTypes[column], cell(row: row, column: column), column: columns[column])
    }
}

/// One row of a result. Typed accessors throw `PostgresError.decoding` when the cell is
/// NULL or of another type; `value(_:)` returns `.null` instead.
public struct PostgresRow {
    let result: PostgresResult
    let row: Int

    public func value(_ column: String) throws -> PostgresValue {
        try result.value(row: row, column: result.column(column))
    }

    public func isNull(_ column: String) throws -> Bool { try result.isNull(row: row, column: result.column(column)) }

    public func int(_ column: String) throws -> Int { try typed(column, "an integer") { $0.intValue } }
    public func double(_ column: String) throws -> Double { try typed(column, "a number") { $0.doubleValue } }
    public func string(_ column: String) throws -> String { try typed(column, "text") { $0.stringValue } }
    public func bool(_ column: String) throws -> Bool { try typed(column, "a boolean") { $0.boolValue } }
    public func bytes(_ column: String) throws -> [UInt8] { try typed(column, "bytea") { $0.bytesValue } }
    public func json(_ column: String) throws -> JSON { try typed(column, "json") { $0.jsonValue } }
    public func date(_ column: String) throws -> Date { try typed(column, "a timestamp") { $0.dateValue } }

    /// The raw bytes of a `bytea` (or any) cell without copying them; the pointer is
    /// valid only inside `body`.
    public func withBytes<R>(_ column: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let i = try result.column(column)
        guard !result.isNull(row: row, column: i) else { throw PostgresError.decoding("column '\(column)' is NULL") }
        return try withExtendedLifetime(result) { try body(result.cell(row: row, column: i)) }
    }

    private func typed<T>(_ column: String, _ what: String, _ extract: (PostgresValue) -> T?) throws -> T {
        let v = try value(column)
        if let t = extract(v) { return t }
        if v.isNull { throw PostgresError.decoding("column '\(column)' is NULL, expected \(what)") }
        throw PostgresError.decoding("column '\(column)' holds \(v), expected \(what)")
    }
}
