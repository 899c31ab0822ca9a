import Foundation
import KilnJSON

/// A statement parameter or a result cell.
///
/// Parameters go to the server in text form with their type left for the server to infer
/// from the statement (so `$1` compared with an `integer` column is an integer), except
/// `bytes`, which goes in binary as `bytea`. Results always come back in binary, so
/// floats and blobs arrive exactly. Cast in SQL where the type is ambiguous
/// (`$1::float8 * interval '1 millisecond'`).
public enum PostgresValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case text(String)
    case bytes([UInt8])
    case json(JSON)
    case timestamp(Date)

    public var isNull: Bool { self == .null }
    public var intValue: Int? { if case let .int(v) = self { return v } else { return nil } }
    public var doubleValue: Double? {
        switch self {
        case let .double(v): return v
        case let .int(v): return Double(v)
        default: return nil
        }
    }
    public var stringValue: String? { if case let .text(v) = self { return v } else { return nil } }
    public var boolValue: Bool? { if case let .bool(v) = self { return v } else { return nil } }
    public var bytesValue: [UInt8]? { if case let .bytes(v) = self { return v } else { return nil } }
    public var jsonValue: JSON? { if case let .json(v) = self { return v } else { return nil } }
    public var dateValue: Date? { if case let .timestamp(v) = self { return v } else { return nil } }
}

extension PostgresValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}

// MARK: - Wire forms

/// Type OIDs from PostgreSQL's `pg_type` catalog (fixed since forever).
enum PostgresType {
    static let bool: UInt32 = 16, bytea: UInt32 = 17, name: UInt32 = 19, int8: UInt32 = 20, int2: UInt32 = 21
    static let int4: UInt32 = 23, text: UInt32 = 25, oid: UInt32 = 26, json: UInt32 = 114, float4: UInt32 = 700
    static let float8: UInt32 = 701, unknown: UInt32 = 705, bpchar: UInt32 = 1042, varchar: UInt32 = 1043
    static let timestamp: UInt32 = 1114, timestamptz: UInt32 = 1184, uuid: UInt32 = 2950, void: UInt32 = 2278
    static let jsonb: UInt32 = 3802
}

/// One parameter as libpq takes it: the type to declare (0 = let the server infer), the
/// bytes, and whether they are binary.
struct EncodedParameter {
    var type: UInt32
    var bytes: [UInt8]?
    var binary: Bool
}

/// PostgreSQL's timestamps count microseconds from 2000-01-01 00:00:00 UTC.
let postgresEpoch = Date(timeIntervalSince1970: 946_684_800)

extension PostgresValue {
    var encoded: EncodedParameter {
        switch self {
        case .null: return EncodedParameter(type: 0, bytes: nil, binary: false)
        case let .bool(v): return .text(v ? "t" : "f")
        case let .int(v): return .text(String(v))
        case let .double(v):
            if v.isNaN { return .text("NaN") }
            if v.isInfinite { return .text(v > 0 ? "Infinity" : "-Infinity") }
            return .text("\(v)")  // Swift prints the shortest form that reads back exactly.
        case let .text(v): return .text(v)
        case let .bytes(v): return EncodedParameter(type: PostgresType.bytea, bytes: v, binary: true)
        case let .json(v): return .text(v.serialized())
        case let .timestamp(v):
            // Whole microseconds in UTC, as ISO 8601, which every timestamp type reads.
            let micros = (v.timeIntervalSince1970 * 1_000_000).rounded()
            let seconds = Int64((micros / 1_000_000).rounded(.down))
            let fraction = Int64(micros) - seconds * 1_000_000
            var t = time_t(seconds)
            var parts = tm()
            gmtime_r(&t, &parts)
            let text = String(format: "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                              Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), fraction)
            return .text(text)
        }
    }
}

extension EncodedParameter {
    static func text(_ s: String) -> EncodedParameter { EncodedParameter(type: 0, bytes: Array(s.utf8), binary: false) }
}

// MARK: - Decoding binary results

enum BinaryDecoder {
    static func integer(_ p: UnsafeRawBufferPointer) -> Int {
        var v: Int64 = 0
        for b in p { v = (v << 8) | Int64(b) }
        // Sign-extend two- and four-byte integers.
        let bits = p.count * 8
        if bits < 64 && bits > 0 && (v >> (bits - 1)) & 1 == 1 { v -= Int64(1) << bits }
        return Int(v)
    }

    static func unsigned(_ p: UnsafeRawBufferPointer) -> UInt64 {
        var v: UInt64 = 0
        for b in p { v = (v << 8) | UInt64(b) }
        return v
    }

    /// Decodes one non-null cell of type `type` in binary format.
    static func value(type: UInt32, _ p: UnsafeRawBufferPointer, column: String) throws -> PostgresValue {
        func need(_ n: Int) throws {
            guard p.count == n else { throw PostgresError.decoding("column '\(column)': \(p.count) bytes for a \(n)-byte value") }
        }
        switch type {
        case PostgresType.bool:
            try need(1)
            return .bool(p[0] != 0)
        case PostgresType.int2:
            try need(2)
            return .int(integer(p))
        case PostgresType.int4:
            try need(4)
            return .int(integer(p))
        case PostgresType.int8:
            try need(8)
            return .int(integer(p))
        case PostgresType.oid:
            try need(4)
            return .int(Int(unsigned(p)))
        case PostgresType.float4:
            try need(4)
            return .double(Double(Float(bitPattern: UInt32(unsigned(p)))))
        case PostgresType.float8:
            try need(8)
            return .double(Double(bitPattern: unsigned(p)))
        case PostgresType.text, PostgresType.varchar, PostgresType.bpchar, PostgresType.name, PostgresType.unknown:
            return .text(String(decoding: p, as: UTF8.self))
        case PostgresType.bytea:
            return .bytes(Array(p))
        case PostgresType.json:
            return .json(try json(p, column: column))
        case PostgresType.jsonb:
            guard p.count >= 1, p[0] == 1 else { throw PostgresError.decoding("column '\(column)': unknown jsonb version") }
            return .json(try json(UnsafeRawBufferPointer(rebasing: p[1...]), column: column))
        case PostgresType.timestamp, PostgresType.timestamptz:
            try need(8)
            let micros = integer(p)
            return .timestamp(postgresEpoch.addingTimeInterval(Double(micros) / 1_000_000))
        case PostgresType.uuid:
            try need(16)
            let hex = p.map { String(format: "%02x", $0) }.joined()
            let c = Array(hex)
            return .text(String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20...]))
        case PostgresType.void:
            return .null
        default:
            throw PostgresError.decoding("column '\(column)' has type oid \(type), which Kiln does not decode; cast it in SQL (::text, ::float8, ::bigint)")
        }
    }

    static func json(_ p: UnsafeRawBufferPointer, column: String) throws -> JSON {
        do {
            return try JSON.parse(Array(p))
        } catch {
            throw PostgresError.decoding("column '\(column)': \(error)")
        }
    }
}
