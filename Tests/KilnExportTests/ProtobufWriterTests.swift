import XCTest
@testable import KilnExport

/// The wire format against the byte strings of the protocol-buffers encoding guide,
/// and messages read back by a small reader written here.
final class ProtobufWriterTests: XCTestCase {
    func testVarintsMatchTheEncodingGuide() {
        var w = ProtobufWriter()
        w.int(1, 150)
        XCTAssertEqual(w.bytes, [0x08, 0x96, 0x01])

        var zero = ProtobufWriter()
        zero.varint(0)
        XCTAssertEqual(zero.bytes, [0x00])

        var big = ProtobufWriter()
        big.varint(UInt64.max)
        XCTAssertEqual(big.bytes, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    func testNegativeIntsTakeTenBytes() {
        var w = ProtobufWriter()
        w.int(2, -1)
        XCTAssertEqual(w.bytes, [0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    func testStringsAndNestedMessages() {
        var w = ProtobufWriter()
        w.string(2, "testing")
        XCTAssertEqual(w.bytes, [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6E, 0x67])

        var nested = ProtobufWriter()
        nested.message(3) { $0.int(1, 150) }
        XCTAssertEqual(nested.bytes, [0x1A, 0x03, 0x08, 0x96, 0x01])
    }

    func testPackedRepeatedFields() {
        var w = ProtobufWriter()
        w.packedInts(4, [3, 270, 86942])
        XCTAssertEqual(w.bytes, [0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05])

        var f = ProtobufWriter()
        f.packedFloats(7, [1, -2])
        XCTAssertEqual(f.bytes, [0x3A, 0x08, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])

        var empty = ProtobufWriter()
        empty.packedInts(4, [])
        XCTAssertEqual(empty.bytes, [], "an empty packed field is left out")
    }

    func testFloatsAreLittleEndianFixed32() {
        var w = ProtobufWriter()
        w.float(2, 1)
        XCTAssertEqual(w.bytes, [0x15, 0x00, 0x00, 0x80, 0x3F])
    }

    func testLongPayloadLengthIsAVarint() {
        var w = ProtobufWriter()
        w.lengthDelimited(9, [UInt8](repeating: 7, count: 300))
        XCTAssertEqual(Array(w.bytes.prefix(3)), [0x4A, 0xAC, 0x02])
        XCTAssertEqual(w.bytes.count, 303)
        let fields = try? ProtobufReader.fields(w.bytes)
        XCTAssertEqual(fields?.first?.number, 9)
        XCTAssertEqual(fields?.first?.payload.count, 300)
    }

    func testRoundTripThroughTheReader() throws {
        var w = ProtobufWriter()
        w.int(1, 8)
        w.string(2, "kiln")
        w.message(7) { g in
            g.string(2, "graph")
            g.message(1) { n in n.string(4, "Relu") }
        }
        let top = try ProtobufReader.fields(w.bytes)
        XCTAssertEqual(top.map(\.number), [1, 2, 7])
        XCTAssertEqual(top[0].varint, 8)
        XCTAssertEqual(String(decoding: top[1].payload, as: UTF8.self), "kiln")
        let graph = try ProtobufReader.fields(top[2].payload)
        XCTAssertEqual(graph.map(\.number), [2, 1])
        let node = try ProtobufReader.fields(graph[1].payload)
        XCTAssertEqual(String(decoding: node[0].payload, as: UTF8.self), "Relu")
    }
}

/// Reads the top-level fields of a message (test side only): varints, fixed32 and
/// length-delimited payloads; anything else or a truncated message throws.
struct ProtobufReader {
    struct Field {
        var number: Int
        var wireType: Int
        var varint: UInt64 = 0
        var payload: [UInt8] = []
    }

    struct Truncated: Error {}

    static func fields(_ bytes: [UInt8]) throws -> [Field] {
        var i = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < bytes.count, shift < 64 else { throw Truncated() }
                let b = bytes[i]
                i += 1
                v |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return v }
                shift += 7
            }
        }
        var out: [Field] = []
        while i < bytes.count {
            let key = try varint()
            var f = Field(number: Int(key >> 3), wireType: Int(key & 7))
            switch f.wireType {
            case 0: f.varint = try varint()
            case 2:
                let n = Int(try varint())
                guard i + n <= bytes.count else { throw Truncated() }
                f.payload = Array(bytes[i..<(i + n)])
                i += n
            case 5:
                guard i + 4 <= bytes.count else { throw Truncated() }
                f.payload = Array(bytes[i..<(i + 4)])
                i += 4
            default: throw Truncated()
            }
            out.append(f)
        }
        return out
    }

    static func strings(_ fields: [Field], _ number: Int) -> [String] {
        fields.filter { $0.number == number }.map { String(decoding: $0.payload, as: UTF8.self) }
    }
}
