import CZlib
import Foundation
@testable import KilnData
import KilnJSON
import XCTest

/// Builds test files in the formats Kiln reads.
enum Fixtures {
    /// gzip-compresses with zlib (windowBits 31).
    static func gzip(_ bytes: [UInt8]) -> [UInt8] { deflate(bytes, windowBits: 31) }

    static func deflate(_ bytes: [UInt8], windowBits: Int32) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(bytes.count))) + 32)
        var input = bytes
        let produced: Int = input.withUnsafeMutableBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                stream.next_in = src.baseAddress
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = uInt(dst.count)
                _ = CZlib.deflate(&stream, Z_FINISH)
                return Int(stream.total_out)
            }
        }
        return Array(out[0..<produced])
    }

    /// A zip archive with the given members, each stored or raw-deflated.
    static func zip(_ members: [(String, [UInt8], deflated: Bool)]) -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
        var out: [UInt8] = [], central: [UInt8] = []
        for (name, data, deflated) in members {
            let body = deflated ? deflate(data, windowBits: -15) : data
            let crc = data.withUnsafeBufferPointer { Int(crc32(0, $0.baseAddress, uInt($0.count))) }
            let offset = out.count
            let common = le16(20) + le16(0) + le16(deflated ? 8 : 0) + le16(0) + le16(0) + le32(crc) + le32(body.count) + le32(data.count) + le16(name.utf8.count)
            out += [0x50, 0x4B, 0x03, 0x04] + common + le16(0) + Array(name.utf8) + body
            central += [0x50, 0x4B, 0x01, 0x02] + le16(20) + common + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + Array(name.utf8)
        }
        let cdOffset = out.count
        out += central
        out += [0x50, 0x4B, 0x05, 0x06] + le16(0) + le16(0) + le16(members.count) + le16(members.count) + le32(central.count) + le32(cdOffset) + le16(0)
        return out
    }

    /// A tar archive of regular files (ustar headers).
    static func tar(_ files: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, data) in files {
            var header = [UInt8](repeating: 0, count: 512)
            for (i, b) in name.utf8.enumerated() { header[i] = b }
            let size = Array(String(format: "%011o", data.count).utf8)
            for (i, b) in size.enumerated() { header[124 + i] = b }
            header[156] = 0x30
            for (i, b) in "ustar\u{0}00".utf8.enumerated() { header[257 + i] = b }
            for i in 148..<156 { header[i] = 0x20 }
            let sum = header.reduce(0) { $0 + Int($1) }
            for (i, b) in String(format: "%06o\u{0} ", sum).utf8.enumerated() { header[148 + i] = b }
            out += header + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
        return out + [UInt8](repeating: 0, count: 1024)
    }

    static func idx(_ shape: [Int], _ values: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for d in shape { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return out + values
    }
}

final class FormatTests: XCTestCase {
    func testSHA256StandardVectors() {
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Fed in uneven pieces, the digest is the same.
        var hasher = SHA256()
        var fed = 0
        for size in [1, 63, 64, 65, 7, 200_000, 799_800] {
            hasher.update([UInt8](repeating: 0x61, count: size))
            fed += size
        }
        XCTAssertEqual(fed, 1_000_000)
        XCTAssertEqual(hasher.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testGzipRoundTripAndDamage() throws {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 % 251) }
        let packed = Fixtures.gzip(data)
        XCTAssertEqual(try Gzip.decompress(packed), data)
        XCTAssertThrowsError(try Gzip.decompress(Array(packed.prefix(packed.count / 2)), name: "f.gz")) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        var corrupt = packed
        for i in 20..<60 { corrupt[i] ^= 0x5A }
        XCTAssertThrowsError(try Gzip.decompress(corrupt, name: "f.gz")) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "f.gz")
        }
    }

    func testIDXParsingAndHeaderErrors() throws {
        let a = try IDX.parse(Fixtures.idx([2, 2, 3], Array(0..<12)), name: "x")
        XCTAssertEqual(a.shape, [2, 2, 3])
        XCTAssertEqual(a.values[11], 11)
        XCTAssertThrowsError(try IDX.parse([1, 2, 3], name: "x"))
        XCTAssertThrowsError(try IDX.parse([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], name: "x")) { error in
            XCTAssertTrue("\(error)".contains("not supported"))
        }
        XCTAssertThrowsError(try IDX.parse(Fixtures.idx([10], Array(0..<9)), name: "labels")) { error in
            XCTAssertTrue("\(error)".contains("10 items") && "\(error)".contains("9 bytes"), "\(error)")
        }
    }

    func testNPYRoundTripAndDtypes() throws {
        let a = DataArray(shape: [2, 3], dtype: .float32, values: [1, 2.5, -3, 4, 5, 6])
        let back = try NPY.parse(NPY.encode(a), name: "a")
        XCTAssertEqual(back.shape, [2, 3])
        XCTAssertEqual(back.values, a.values)
        let labels = try NPY.parse(NPY.encode(DataArray(shape: [3], dtype: .int32, values: [0, 7, 9])), name: "y")
        XCTAssertEqual(labels.dtype, .int32)
        XCTAssertEqual(labels.values, [0, 7, 9])
        // A hand-written header: int64, and a Fortran-ordered array that is refused.
        func npy(_ header: String, _ payload: [UInt8]) -> [UInt8] {
            var h = header
            while (10 + h.utf8.count + 1) % 16 != 0 { h += " " }
            h += "\n"
            return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.utf8.count), 0] + Array(h.utf8) + payload
        }
        let int64 = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", [5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try NPY.parse(int64, name: "y").values, [5, 2])
        XCTAssertThrowsError(try NPY.parse(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", [0, 0, 0, 0]), name: "x"))
        XCTAssertThrowsError(try NPY.parse(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", [UInt8](repeating: 0, count: 8)), name: "z")) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "z")
            XCTAssertTrue("\(error)".contains("<c8"))
        }
        XCTAssertThrowsError(try NPY.parse(Array(NPY.encode(a).dropLast(3)), name: "a")) { error in
            XCTAssertTrue("\(error)".contains("bytes"))
        }
    }

    func testNPZStoredAndDeflated() throws {
        let x = NPY.encode(DataArray(shape: [4, 2], dtype: .float32, values: [1, 2, 3, 4, 5, 6, 7, 8]))
        let y = NPY.encode(DataArray(shape: [4], dtype: .int32, values: [0, 1, 0, 1]))
        for deflated in [false, true] {
            let fields = try NPZ.parse(Fixtures.zip([("x.npy", x, deflated), ("y.npy", y, deflated)]))
            XCTAssertEqual(fields["x"]?.shape, [4, 2])
            XCTAssertEqual(fields["y"]?.values, [0, 1, 0, 1])
        }
        var damaged = Fixtures.zip([("x.npy", x, true)])
        damaged[40] ^= 0xFF
        XCTAssertThrowsError(try NPZ.parse(damaged))
        XCTAssertThrowsError(try NPZ.parse(Array("not a zip".utf8)))
    }

    func testCIFAR10BinaryArchive() throws {
        // Six batches of two records each: label, then R, G, B planes of 1024 bytes.
        func batch(_ labels: [UInt8]) -> [UInt8] {
            labels.flatMap { l -> [UInt8] in [l] + [UInt8](repeating: 10, count: 1024) + [UInt8](repeating: 20, count: 1024) + [UInt8](repeating: 255, count: 1024) }
        }
        var files: [(String, [UInt8])] = (1...5).map { ("cifar-10-batches-bin/data_batch_\($0).bin", batch([UInt8($0), 9])) }
        files.append(("cifar-10-batches-bin/test_batch.bin", batch([3, 4])))
        files.append(("cifar-10-batches-bin/batches.meta.txt", Array("airplane\n".utf8)))
        let splits = try CIFAR10.parse(tarGz: Fixtures.gzip(Fixtures.tar(files)))
        XCTAssertEqual(splits.train.rowCount, 10)
        XCTAssertEqual(splits.train.fields["image"]?.shape, [10, 32, 32, 3])
        XCTAssertEqual(splits.train.fields["label"]?.values.prefix(4), [1, 9, 2, 9])
        XCTAssertEqual(splits.test?.fields["label"]?.values, [3, 4])
        // NHWC: each pixel holds its R, G, B values.
        let image = splits.train.fields["image"]!.values
        XCTAssertEqual(Array(image[0..<3]), [10 / 255, 20 / 255, 1], accuracy: 1e-6)
        let missing = Fixtures.gzip(Fixtures.tar(Array(files.dropLast(2))))
        XCTAssertThrowsError(try CIFAR10.parse(tarGz: missing)) { error in
            XCTAssertTrue("\(error)".contains("test_batch.bin"))
        }
    }

    func testJSONFieldsAndDatasetChecks() throws {
        let fields = try JSONFields.parse(["x": [[1, 2], [3, 4.5]], "y": [0, 1]], path: "data.fields")
        XCTAssertEqual(fields["x"]?.shape, [2, 2])
        XCTAssertEqual(fields["y"]?.dtype, .int32)
        XCTAssertThrowsError(try JSONFields.parse(["x": [[1, 2], [3]]], path: "data.fields")) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "x")
            XCTAssertTrue("\(error)".contains("ragged"))
        }
        XCTAssertThrowsError(try JSONFields.parse(["x": [1, "a"]], path: "data.fields"))
        XCTAssertThrowsError(try Dataset(fields: ["x": DataArray(shape: [2], dtype: .float32, values: [1, 2]),
                                                  "y": DataArray(shape: [3], dtype: .int32, values: [0, 1, 2])])) { error in
            XCTAssertTrue("\(error)".contains("different row counts"))
        }
        let d = try Dataset(fields: fields)
        XCTAssertEqual(d.take(1).rowCount, 1)
        XCTAssertEqual(d.fields["x"]!.gather(rows: [1, 0]).values, [3, 4.5, 1, 2])
    }
}

func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
