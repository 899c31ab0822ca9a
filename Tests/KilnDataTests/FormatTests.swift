import KilnTestSupport
import Foundation
import XCTest
@testable import KilnData

final class GzipTests: XCTestCase {
    func testRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        let sizes = [0, 1, 1000, 300_000]
        for n in sizes {
            // Mixed compressible and random content.
            let data = (0..<n).map { i in i % 3 == 0 ? UInt8.random(in: 0...255, using: &rng) : UInt8(i % 7) }
            XCTAssertEqual(try Gzip.decompress(ArchiveFixtures.gzip(data)), data, "size \(n)")
        }
    }

    func testConcatenatedMembers() throws {
        let a = Array("hello ".utf8), b = Array("world".utf8)
        XCTAssertEqual(try Gzip.decompress(ArchiveFixtures.gzip(a) + ArchiveFixtures.gzip(b)), a + b)
    }

    func testTruncatedCorruptAndOversized() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        let gz = ArchiveFixtures.gzip(data)
        assertDatasetError(try Gzip.decompress(Array(gz.prefix(gz.count / 2)), name: "f.gz"),
                           contains: ["f.gz", "truncated gzip stream"])
        assertDatasetError(try Gzip.decompress(Array(gz.prefix(gz.count - 3)), name: "f.gz"),
                           contains: ["f.gz", "truncated"])
        var corrupt = gz
        corrupt[gz.count / 2] ^= 0xff
        assertDatasetError(try Gzip.decompress(corrupt, name: "f.gz"), contains: ["f.gz", "corrupt gzip stream"])
        var badCRC = gz
        badCRC[gz.count - 6] ^= 0x01
        assertDatasetError(try Gzip.decompress(badCRC, name: "f.gz"), contains: ["f.gz", "corrupt"])
        assertDatasetError(try Gzip.decompress(Array("plain text, not gzip".utf8), name: "f.gz"), contains: ["not a gzip file"])
        assertDatasetError(try Gzip.decompress([], name: "f.gz"), contains: ["f.gz", "empty"])
        assertDatasetError(try Gzip.decompress(gz, name: "f.gz", maxOutputBytes: 50_000), contains: ["exceeds the limit"])
        XCTAssertEqual(try Gzip.decompress(gz, maxOutputBytes: data.count), data)
    }
}

final class IDXTests: XCTestCase {
    func header(type: UInt8, dims: [Int]) -> [UInt8] {
        [0, 0, type, UInt8(dims.count)] + dims.flatMap { ArchiveFixtures.be32($0) }
    }

    func testParseUnsignedBytes() throws {
        let bytes = header(type: 0x08, dims: [2, 2, 3]) + (0..<12).map { UInt8($0 * 20) }
        let a = try IDX.parse(bytes, name: "x.idx")
        XCTAssertEqual(a.shape, [2, 2, 3])
        XCTAssertEqual(a.dtype, .int32)
        XCTAssertEqual(a.values, (0..<12).map { Float($0 * 20) })
        XCTAssertEqual(a.rowShape, [2, 3])
        let scaled = try IDX.parse(bytes, name: "x", scale: 1 / 255, trailingShape: [1])
        XCTAssertEqual(scaled.shape, [2, 2, 3, 1])
        XCTAssertEqual(scaled.dtype, .float32)
        XCTAssertEqual(scaled.values[11], 220 / 255, accuracy: 1e-6)
    }

    func testParseOtherTypes() throws {
        let ints = header(type: 0x0C, dims: [3]) + ArchiveFixtures.be32(-5 & 0xffff_ffff) + ArchiveFixtures.be32(7) + ArchiveFixtures.be32(1 << 20)
        XCTAssertEqual(try IDX.parse(ints, name: "i").values, [-5, 7, 1_048_576])
        let floats = header(type: 0x0D, dims: [2]) + ArchiveFixtures.be32(Int(Float(1.5).bitPattern)) + ArchiveFixtures.be32(Int(Float(-2).bitPattern))
        let f = try IDX.parse(floats, name: "f")
        XCTAssertEqual(f.values, [1.5, -2])
        XCTAssertEqual(f.dtype, .float32)
        let shorts = header(type: 0x0B, dims: [2]) + [0xff, 0xfe, 0x01, 0x00]
        XCTAssertEqual(try IDX.parse(shorts, name: "s").values, [-2, 256])
        let signed = header(type: 0x09, dims: [2]) + [0xff, 0x05]
        XCTAssertEqual(try IDX.parse(signed, name: "b").values, [-1, 5])
        let nan = header(type: 0x0D, dims: [1]) + ArchiveFixtures.be32(Int(Float.nan.bitPattern))
        assertDatasetError(try IDX.parse(nan, name: "n.idx"), contains: ["n.idx", "non-finite"])
    }

    func testMalformedHeaders() {
        assertDatasetError(try IDX.parse([0, 0], name: "a.idx"), contains: ["a.idx", "too short"])
        assertDatasetError(try IDX.parse([0x1f, 0x8b, 8, 0, 0, 0], name: "a.idx"), contains: ["a.idx", "not an IDX file"])
        assertDatasetError(try IDX.parse([0, 0, 0x07, 1, 0, 0, 0, 1, 0], name: "a.idx"), contains: ["a.idx", "unknown IDX element type code 0x7"])
        assertDatasetError(try IDX.parse([0, 0, 0x08, 0], name: "a.idx"), contains: ["a.idx", "0 dimensions"])
        assertDatasetError(try IDX.parse([0, 0, 0x08, 3, 0, 0, 0, 1, 0, 0], name: "a.idx"), contains: ["a.idx", "too short for its header"])
        // Fewer items than declared: the MNIST-style message.
        let short = header(type: 0x08, dims: [10000, 2]) + [UInt8](repeating: 1, count: 9000 * 2)
        assertDatasetError(try IDX.parse(short, name: "t10k-labels-idx1-ubyte.gz"),
                           contains: ["t10k-labels-idx1-ubyte.gz", "IDX header says 10000 items but file holds 9000"])
        let extra = header(type: 0x08, dims: [3]) + [1, 2, 3, 4]
        assertDatasetError(try IDX.parse(extra, name: "a.idx"), contains: ["says 3 items but file holds 4"])
        let partial = header(type: 0x08, dims: [2, 4]) + [UInt8](repeating: 0, count: 6)
        assertDatasetError(try IDX.parse(partial, name: "a.idx"), contains: ["says 2 items but file holds 1 and 2 extra bytes"])
        let huge = header(type: 0x0E, dims: [0xffff_ffff, 0xffff_ffff, 0xffff_ffff])
        assertDatasetError(try IDX.parse(huge, name: "a.idx"), contains: ["impossibly large"])
    }
}

final class NPYTests: XCTestCase {
    func testFloat32AndInt32() throws {
        let f = Fixtures.npy(descr: "<f4", shape: [2, 3], data: Fixtures.bytes([Float](arrayLiteral: 1, 2, 3, 4, 5, -6.5)))
        let a = try NPY.parse(f, name: "x")
        XCTAssertEqual(a.shape, [2, 3])
        XCTAssertEqual(a.dtype, .float32)
        XCTAssertEqual(a.values, [1, 2, 3, 4, 5, -6.5])
        let i = Fixtures.npy(descr: "<i4", shape: [4], data: Fixtures.bytes([Int32](arrayLiteral: 0, -1, 9, 2_000_000)))
        let b = try NPY.parse(i, name: "y")
        XCTAssertEqual(b.shape, [4])
        XCTAssertEqual(b.dtype, .int32)
        XCTAssertEqual(b.values, [0, -1, 9, 2_000_000])
    }

    func testOtherDtypes() throws {
        let i64 = Fixtures.npy(descr: "<i8", shape: [3], data: Fixtures.bytes([Int64](arrayLiteral: 1, -2, 3)))
        XCTAssertEqual(try NPY.parse(i64, name: "a").values, [1, -2, 3])
        XCTAssertEqual(try NPY.parse(i64, name: "a").dtype, .int32)
        let f64 = Fixtures.npy(descr: "<f8", shape: [2, 1], data: Fixtures.bytes([Double](arrayLiteral: 0.25, -1e10)))
        let d = try NPY.parse(f64, name: "b")
        XCTAssertEqual(d.values, [0.25, -1e10])
        XCTAssertEqual(d.dtype, .float32)
        let u8 = Fixtures.npy(descr: "|u1", shape: [3], data: [0, 128, 255])
        XCTAssertEqual(try NPY.parse(u8, name: "c").values, [0, 128, 255])
        let b1 = Fixtures.npy(descr: "|b1", shape: [2], data: [1, 0])
        XCTAssertEqual(try NPY.parse(b1, name: "d").values, [1, 0])
        let bigEndian = Fixtures.npy(descr: ">i4", shape: [1], data: [0, 0, 1, 2])
        XCTAssertEqual(try NPY.parse(bigEndian, name: "e").values, [258])
        let v2 = Fixtures.npy(descr: "<f4", shape: [1], data: Fixtures.bytes([Float(3)]), version: 2)
        XCTAssertEqual(try NPY.parse(v2, name: "f").values, [3])
        let empty = Fixtures.npy(descr: "<f4", shape: [0, 5], data: [])
        XCTAssertEqual(try NPY.parse(empty, name: "g").shape, [0, 5])
    }

    func testErrors() {
        let fortran = Fixtures.npy(descr: "<f4", shape: [2, 2], data: Fixtures.bytes([Float](repeating: 0, count: 4)), fortran: true)
        assertDatasetError(try NPY.parse(fortran, name: "x"), contains: ["x", "Fortran-order"])
        let unicode = Fixtures.npy(descr: "<U10", shape: [1], data: [UInt8](repeating: 0, count: 40))
        assertDatasetError(try NPY.parse(unicode, name: "labels"), contains: ["labels: ", "unsupported dtype '<U10'"])
        let object = Fixtures.npy(descr: "|O", shape: [1], data: [UInt8](repeating: 0, count: 8))
        assertDatasetError(try NPY.parse(object, name: "obj"), contains: ["obj: ", "unsupported dtype"])
        let short = Fixtures.npy(descr: "<f4", shape: [3], data: Fixtures.bytes([Float](arrayLiteral: 1, 2)))
        assertDatasetError(try NPY.parse(short, name: "x"), contains: ["x", "needs 12 bytes of data but the file holds 8"])
        let scalar = Fixtures.npy(descr: "<f4", shape: [], data: Fixtures.bytes([Float(1)]))
        assertDatasetError(try NPY.parse(scalar, name: "s"), contains: ["0-dimensional"])
        let nan = Fixtures.npy(descr: "<f4", shape: [2], data: Fixtures.bytes([Float](arrayLiteral: 1, .nan)))
        assertDatasetError(try NPY.parse(nan, name: "n"), contains: ["n: ", "non-finite value", "element 1"])
        let big = Fixtures.npy(descr: "<i8", shape: [1], data: Fixtures.bytes([Int64(1) << 40]))
        assertDatasetError(try NPY.parse(big, name: "b"), contains: ["does not fit in int32"])
        let overflow = Fixtures.npy(descr: "<f4", shape: [1 << 40, 1 << 40], data: [])
        assertDatasetError(try NPY.parse(overflow, name: "o"), contains: ["too large"])
        assertDatasetError(try NPY.parse(Array("not numpy at all".utf8), name: "z"), contains: ["z", "magic"])
        var garbled = Fixtures.npy(descr: "<f4", shape: [1], data: Fixtures.bytes([Float(1)]))
        garbled[10] = UInt8(ascii: "#")
        assertDatasetError(try NPY.parse(garbled, name: "g"), contains: ["g", "malformed .npy header"])
    }

    func testEncodeRoundTrip() throws {
        let a = DataArray(shape: [2, 2], dtype: .float32, values: [0.5, -1, 3, 4])
        let b = DataArray(shape: [3], dtype: .int32, values: [1, 2, 3])
        for x in [a, b] {
            let bytes = NPY.encode(x)
            let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            XCTAssertEqual((10 + headerLength) % 64, 0)
            let y = try NPY.parse(bytes, name: "x")
            XCTAssertEqual(y.shape, x.shape)
            XCTAssertEqual(y.dtype, x.dtype)
            XCTAssertEqual(y.values, x.values)
        }
    }
}

final class NPZTests: XCTestCase {
    let x = DataArray(shape: [3, 2], dtype: .float32, values: [1, 2, 3, 4, 5, 6])
    let y = DataArray(shape: [3], dtype: .int32, values: [0, 1, 0])

    func testStoredAndDeflated() throws {
        for deflated in [false, true] {
            let zip = ArchiveFixtures.zip([("x.npy", NPY.encode(x), deflated), ("y.npy", NPY.encode(y), deflated)])
            let fields = try NPZ.parse(zip)
            XCTAssertEqual(Set(fields.keys), ["x", "y"])
            XCTAssertEqual(fields["x"]?.shape, [3, 2])
            XCTAssertEqual(fields["x"]?.values, x.values)
            XCTAssertEqual(fields["y"]?.dtype, .int32)
            XCTAssertEqual(fields["y"]?.values, y.values)
        }
        // Mixed members, one bigger than a deflate window.
        let big = DataArray(shape: [50_000], dtype: .float32, values: (0..<50_000).map { Float($0 % 17) })
        let zip = ArchiveFixtures.zip([("big.npy", NPY.encode(big), true), ("y.npy", NPY.encode(y), false)])
        XCTAssertEqual(try NPZ.parse(zip)["big"]?.values, big.values)
    }

    func testErrors() {
        let good = ArchiveFixtures.zip([("x.npy", NPY.encode(x), true)])
        assertDatasetError(try NPZ.parse(Array(good.prefix(good.count - 10))), contains: ["truncated zip archive"])
        assertDatasetError(try NPZ.parse(Array("hello".utf8) + [UInt8](repeating: 0, count: 30)), contains: ["not a zip archive"])
        var corrupt = good
        corrupt[45] ^= 0x55 // inside the compressed payload
        assertDatasetError(try NPZ.parse(corrupt), contains: ["x: "])
        let stored = ArchiveFixtures.zip([("x.npy", NPY.encode(x), false)])
        var flipped = stored
        flipped[30 + 5 + 128 + 2] ^= 0x01 // a data byte of the stored member
        assertDatasetError(try NPZ.parse(flipped), contains: ["x: ", "CRC-32 mismatch"])
        let text = ArchiveFixtures.zip([("readme.txt", Array("hi".utf8), false)])
        assertDatasetError(try NPZ.parse(text), contains: ["readme.txt", "not a .npy array"])
        let badMember = ArchiveFixtures.zip([("w.npy", Fixtures.npy(descr: "<c8", shape: [1], data: [UInt8](repeating: 0, count: 8)), true)])
        assertDatasetError(try NPZ.parse(badMember), contains: ["w: ", "unsupported dtype '<c8'"])
        assertDatasetError(try NPZ.parse(ArchiveFixtures.zip([])), contains: ["no .npy arrays"])
    }
}

final class NumPyWrittenNPZTests: XCTestCase {
    // Written by numpy 2.4: np.savez / np.savez_compressed(x=float32 [[0, .25, .5], [.75, 1, 1.25]],
    // y=int64 [3, -1], m=bool [True, False]). numpy writes zip64 local headers.
    static let stored = "UEsDBC0AAAAAAAAAIQAKnACk//////////8FABQAeC5ucHkBABAAmAAAAAAAAACYAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzogJzxmNCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgyLCAzKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAAAgD4AAAA/AABAPwAAgD8AAKA/UEsDBC0AAAAAAAAAIQBn3v9o//////////8FABQAeS5ucHkBABAAkAAAAAAAAACQAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzogJzxpOCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgyLCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAwAAAAAAAAD//////////1BLAwQtAAAAAAAAACEA7hm7Xf//////////BQAUAG0ubnB5AQAQAIIAAAAAAAAAggAAAAAAAACTTlVNUFkBAHYAeydkZXNjcic6ICd8YjEnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgCgEAUEsBAi0DLQAAAAAAAAAhAAqcAKSYAAAAmAAAAAUAAAAAAAAAAAAAAIABAAAAAHgubnB5UEsBAi0DLQAAAAAAAAAhAGfe/2iQAAAAkAAAAAUAAAAAAAAAAAAAAIABzwAAAHkubnB5UEsBAi0DLQAAAAAAAAAhAO4Zu12CAAAAggAAAAUAAAAAAAAAAAAAAIABlgEAAG0ubnB5UEsFBgAAAAADAAMAmQAAAE8CAAAAAA=="
    static let compressed = "UEsDBC0AAAAIAAAAIQAKnACk//////////8FABQAeC5ucHkBABAAmAAAAAAAAABWAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CsaaOgq1CmQDLgYwaLADEvYMDA5A3ADEC+wBUEsDBC0AAAAIAAAAIQBn3v9o//////////8FABQAeS5ucHkBABAAkAAAAAAAAABKAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6mjoKtQoUAC5mBgj4DwUAUEsDBC0AAAAIAAAAIQDuGbtd//////////8FABQAbS5ucHkBABAAggAAAAAAAABGAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loF6TZKiuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6mjoKtQoUAC5GBgBQSwECLQMtAAAACAAAACEACpwApFYAAACYAAAABQAAAAAAAAAAAAAAgAEAAAAAeC5ucHlQSwECLQMtAAAACAAAACEAZ97/aEoAAACQAAAABQAAAAAAAAAAAAAAgAGNAAAAeS5ucHlQSwECLQMtAAAACAAAACEA7hm7XUYAAACCAAAABQAAAAAAAAAAAAAAgAEOAQAAbS5ucHlQSwUGAAAAAAMAAwCZAAAAiwEAAAAA"

    func testArchivesWrittenByNumPy() throws {
        for text in [Self.stored, Self.compressed] {
            let fields = try NPZ.parse(Array(try XCTUnwrap(Data(base64Encoded: text))))
            XCTAssertEqual(fields["x"]?.shape, [2, 3])
            XCTAssertEqual(fields["x"]?.values, [0, 0.25, 0.5, 0.75, 1, 1.25])
            XCTAssertEqual(fields["y"]?.dtype, .int32)
            XCTAssertEqual(fields["y"]?.values, [3, -1])
            XCTAssertEqual(fields["m"]?.values, [1, 0])
        }
    }
}
