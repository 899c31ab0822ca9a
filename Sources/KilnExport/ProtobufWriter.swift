/// The protocol-buffers wire format, write side only: enough to serialize the messages
/// of an ONNX model (varints, length-delimited fields, packed repeated numbers, 32-bit
/// floats). Fields are written in the order they are called; a message nested in
/// another is written to its own writer first, then added as length-delimited bytes.
public struct ProtobufWriter {
    /// The wire types this writer emits.
    public enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// An unsigned base-128 varint, least significant group first.
    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// A field key: the field number shifted left by three, or'ed with the wire type.
    public mutating func key(_ field: Int, _ type: WireType) {
        precondition(field > 0 && field < (1 << 29), "protobuf field numbers are 1…2²⁹−1")
        varint(UInt64(field) << 3 | UInt64(type.rawValue))
    }

    /// An `int64`/`int32`/enum field. Negative values take ten bytes (two's complement),
    /// as protobuf specifies for these types.
    public mutating func int(_ field: Int, _ value: Int64) {
        key(field, .varint)
        varint(UInt64(bitPattern: value))
    }

    /// A `float` field (little-endian IEEE 754).
    public mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        appendLittleEndian(value.bitPattern)
    }

    public mutating func string(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    /// A `bytes` field, or any length-delimited payload.
    public mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, .lengthDelimited)
        varint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    /// An embedded message, built by `body` on a writer of its own.
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        body(&inner)
        lengthDelimited(field, inner.bytes)
    }

    /// A packed `repeated int64` field (proto3's default; proto2 parsers accept it too).
    public mutating func packedInts(_ field: Int, _ values: [Int64]) {
        guard !values.isEmpty else { return }
        var inner = ProtobufWriter()
        for v in values { inner.varint(UInt64(bitPattern: v)) }
        lengthDelimited(field, inner.bytes)
    }

    /// A packed `repeated float` field.
    public mutating func packedFloats(_ field: Int, _ values: [Float]) {
        guard !values.isEmpty else { return }
        key(field, .lengthDelimited)
        varint(UInt64(values.count * 4))
        bytes.reserveCapacity(bytes.count + values.count * 4)
        for v in values { appendLittleEndian(v.bitPattern) }
    }

    /// Floats as raw little-endian bytes (ONNX `TensorProto.raw_data`).
    public static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        var w = ProtobufWriter()
        w.bytes.reserveCapacity(values.count * 4)
        for v in values { w.appendLittleEndian(v.bitPattern) }
        return w.bytes
    }

    mutating func appendLittleEndian(_ value: UInt32) {
        bytes.append(UInt8(value & 0xFF))
        bytes.append(UInt8((value >> 8) & 0xFF))
        bytes.append(UInt8((value >> 16) & 0xFF))
        bytes.append(UInt8(value >> 24))
    }
}
