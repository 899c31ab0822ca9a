import Foundation
import KilnData
import KilnJSON
@testable import KilnService
import KilnTestSupport
import XCTest

/// Uploads larger than `max_body_bytes` arrive on disk: `.npy` and `.npz` arrays are
/// converted from the spooled file and stored exactly; formats parsed in memory are
/// refused past that limit; whatever happens, nothing is left in the spool.
final class UploadStreamingTests: ServiceTestCase {
    /// Well below the arrays sent, so every one of them must take the file path.
    let memoryLimit = 256 << 10

    func startSmall() throws {
        try start { $0.maxBodyBytes = self.memoryLimit }
    }

    var spool: [String] { (try? FileManager.default.contentsOfDirectory(atPath: "\(temp)/spool")) ?? [] }

    /// The spool once the last request let go of its body (just after its answer).
    var spoolAfterwards: [String] {
        for _ in 0..<300 where !spool.isEmpty { usleep(10_000) }
        return spool
    }

    func post(_ body: [UInt8], query: String, contentType: String = "application/octet-stream") throws -> HTTPTestClient.Response {
        try client.request("POST", "/datasets\(query)", body: body, headers: ["Content-Type": contentType])
    }

    /// A float64 .npy (so every value is converted) with values that survive float32 exactly.
    func float64NPY(rows: Int, columns: Int, value: (Int) -> Double) -> [UInt8] {
        var header = "{'descr': '<f8', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)] + Array(header.utf8)
        out.reserveCapacity(out.count + rows * columns * 8)
        for i in 0..<(rows * columns) { withUnsafeBytes(of: value(i).bitPattern.littleEndian) { out += $0 } }
        return out
    }

    func testLargeArraysAreStoredExactlyFromTheSpooledFile() throws {
        try startSmall()
        // 300,000 values: more than one conversion block, 2.4 MB on the wire.
        let rows = 3000, columns = 100
        let value = { (i: Int) in Double(i % 1000) / 8 - 60 }
        let npy = float64NPY(rows: rows, columns: columns, value: value)
        XCTAssertGreaterThan(npy.count, 8 * memoryLimit)
        let r = try post(npy, query: "?name=wide&field=features")
        XCTAssertEqual(r.status, 201, String(decoding: r.body, as: UTF8.self))
        XCTAssertEqual(r.json?["fields"]?["features"]?["shape"], [3000, 100])
        XCTAssertEqual(r.json?["fields"]?["features"]?["dtype"], "float32")
        let stored = try XCTUnwrap(service.datasets.load("wide")?.train["features"])
        XCTAssertEqual(stored.values.count, rows * columns)
        XCTAssertEqual(stored.values, (0..<(rows * columns)).map { Float(value($0)) })

        // Keras's naming in a deflated .npz: uint8 images gain their channel axis.
        let pixels: [Float] = (0..<(2000 * 144)).map { (i: Int) -> Float in
            // splitmix64's finaliser: bytes that deflate cannot shrink much.
            var h = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
            h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
            return Float((h ^ (h >> 31)) & 255)
        }
        let images = DataArray(shape: [2000, 12, 12], dtype: .uint8, values: pixels)
        let labels = DataArray(shape: [2000], dtype: .int32, values: (0..<2000).map { Float($0 % 10) })
        let testImages = DataArray(shape: [10, 12, 12], dtype: .uint8, values: (0..<1440).map { Float($0 % 256) })
        let testLabels = DataArray(shape: [10], dtype: .int32, values: (0..<10).map { Float($0) })
        let npz = ArchiveFixtures.zip([("x_train.npy", NPY.encode(images), true), ("y_train.npy", NPY.encode(labels), false),
                                       ("x_test.npy", NPY.encode(testImages), true), ("y_test.npy", NPY.encode(testLabels), true)])
        XCTAssertGreaterThan(npz.count, memoryLimit)
        let k = try post(npz, query: "?name=keras")
        XCTAssertEqual(k.status, 201, String(decoding: k.body, as: UTF8.self))
        let keras = try XCTUnwrap(service.datasets.load("keras"))
        XCTAssertEqual(keras.train["image"]?.shape, [2000, 12, 12, 1])
        XCTAssertEqual(keras.train["image"]?.dtype, .uint8)
        XCTAssertEqual(keras.train["image"]?.values, images.values)
        XCTAssertEqual(keras.train["label"]?.values, labels.values)
        XCTAssertEqual(keras.test?["image"]?.values, testImages.values)

        // A field added with PUT takes the same path.
        let codes: [Float] = (0..<120_000).map { (i: Int) -> Float in Float(i % 5000 - 2500) }
        let extra = DataArray(shape: [3000, 40], dtype: .int32, values: codes)
        let put = try client.request("PUT", "/datasets/wide/fields/codes", body: NPY.encode(extra), headers: ["Content-Type": "application/octet-stream"])
        XCTAssertEqual(put.status, 200, String(decoding: put.body, as: UTF8.self))
        XCTAssertEqual(service.datasets.load("wide")?.train["codes"]?.values, extra.values)
        XCTAssertEqual(spoolAfterwards, [], "nothing stays in the spool")
    }

    func testFormatsParsedInMemoryAreRefusedPastMaxBodyBytes() throws {
        try startSmall()
        var csv = "a,b,label\n"
        while csv.utf8.count <= memoryLimit { csv += "0.25,0.5,1\n" }
        let r = try post(Array(csv.utf8), query: "?name=table", contentType: "text/csv")
        XCTAssertEqual(r.status, 413, String(decoding: r.body, as: UTF8.self))
        XCTAssertEqual(r.json?["error"]?["code"], "dataset_too_large")
        XCTAssertTrue(r.json?["error"]?["message"]?.stringValue?.contains(".npy or .npz") ?? false)
        // The same table under the limit is read.
        let small = try post(Array("a,b,label\n0.25,0.5,1\n0.5,0.75,0\n".utf8), query: "?name=table", contentType: "text/csv")
        XCTAssertEqual(small.status, 201, String(decoding: small.body, as: UTF8.self))
        XCTAssertEqual(spoolAfterwards, [])
    }

    func testBadLargeArraysAreRefusedAndLeaveNothing() throws {
        try startSmall()
        // A NaN deep inside the array (past the first conversion block) is named by its index.
        let nan = float64NPY(rows: 4000, columns: 100) { $0 == 300_001 ? .nan : 1 }
        let r = try post(nan, query: "?name=nan&field=x")
        XCTAssertEqual(r.status, 400)
        XCTAssertTrue(r.json?["error"]?["message"]?.stringValue?.contains("element 300001") ?? false, String(decoding: r.body, as: UTF8.self))
        XCTAssertEqual(r.json?["error"]?["path"], "x")

        // Shorter than its header says.
        let truncated = Array(float64NPY(rows: 4000, columns: 100) { _ in 1 }.dropLast(8))
        let t = try post(truncated, query: "?name=short")
        XCTAssertEqual(t.status, 400)
        XCTAssertTrue(t.json?["error"]?["message"]?.stringValue?.contains("needs 3200000 bytes of data but the file holds 3199992") ?? false,
                      String(decoding: t.body, as: UTF8.self))

        // An .npz member whose deflated data is cut short (its CRC and size cannot match).
        let member = NPY.encode(DataArray(shape: [100_000], dtype: .float32, values: (0..<100_000).map { Float($0) }))
        var npz = ArchiveFixtures.zip([("x.npy", member, true), ("y.npy", NPY.encode(DataArray(shape: [100_000], dtype: .int32, values: [Float](repeating: 1, count: 100_000))), false)])
        npz[200] ^= 0xFF
        let z = try post(npz, query: "?name=corrupt")
        XCTAssertEqual(z.status, 400, String(decoding: z.body, as: UTF8.self))

        XCTAssertEqual(try client.json("GET", "/datasets").json?["datasets"]?.arrayValue?.count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(temp)/uploads"), [])
        XCTAssertEqual(spoolAfterwards, [])
    }

    func testLeftoversOfAnEarlierProcessAreRemovedAtStart() throws {
        let directory = NSTemporaryDirectory() + "kiln-service-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(directory)/spool", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: "\(directory)/spool/body-1-1", contents: Data([1, 2, 3]))
        FileManager.default.createFile(atPath: "\(directory)/spool/array-1-1.npy", contents: Data([1, 2, 3]))
        try start(directory: directory)
        XCTAssertEqual(spool, [])
    }
}
