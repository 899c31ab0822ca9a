import KilnTestSupport
import KilnJSON
import XCTest
@testable import KilnData

final class CIFAR10Tests: XCTestCase {
    /// Records whose pixel values encode (record, channel, position) so the layout can be checked.
    static func batch(records: Int, seed: Int) -> [UInt8] {
        var out = [UInt8]()
        for r in 0..<records {
            out.append(UInt8((r + seed) % 10))
            for c in 0..<3 {
                for i in 0..<1024 { out.append(UInt8((r * 7 + c * 50 + i + seed) % 256)) }
            }
        }
        return out
    }

    static func archive(_ files: [(String, [UInt8])]) -> [UInt8] {
        ArchiveFixtures.gzip(ArchiveFixtures.tar(files.map { (path: "cifar-10-batches-bin/" + $0.0, data: $0.1) }))
    }

    static func standardFiles() -> [(String, [UInt8])] {
        (1...5).map { ("data_batch_\($0).bin", Self.batch(records: 3, seed: $0)) }
            + [("test_batch.bin", Self.batch(records: 2, seed: 100)), ("batches.meta.txt", Array("airplane\n".utf8))]
    }

    func testParse() throws {
        let splits = try CIFAR10.parse(tarGz: Self.archive(Self.standardFiles()))
        let train = splits.train
        XCTAssertEqual(train.rowCount, 15)
        XCTAssertEqual(train.fields["image"]?.shape, [15, 32, 32, 3])
        XCTAssertEqual(train.fields["label"]?.shape, [15])
        XCTAssertEqual(train.fields["label"]?.dtype, .int32)
        XCTAssertEqual(train.fields["image"]?.dtype, .float32)
        XCTAssertEqual(splits.test?.rowCount, 2)
        // Row 4 is record 1 of data_batch_2 (seed 2): label (1+2)%10, pixel (h=1,w=2,c=1) is CHW index 1024 + 34.
        let image = train.fields["image"]!
        let labels = train.fields["label"]!
        XCTAssertEqual(labels.values[4], 3)
        let i = 1 * 32 + 2
        let expected = Float((1 * 7 + 1 * 50 + i + 2) % 256) / 255
        XCTAssertEqual(image.values[4 * 3072 + i * 3 + 1], expected, accuracy: 1e-6)
        XCTAssertTrue(image.values.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(splits.test?.fields["label"]?.values, [0, 1])
    }

    func testErrors() {
        var files = Self.standardFiles()
        files.remove(at: 2)
        assertDatasetError(try CIFAR10.parse(tarGz: Self.archive(files)), contains: ["lacks data_batch_3.bin"])
        files = Self.standardFiles()
        files[5].1.removeLast(100)
        assertDatasetError(try CIFAR10.parse(tarGz: Self.archive(files)), contains: ["test_batch.bin", "not a whole number"])
        files = Self.standardFiles()
        files[0].1[3073] = 12
        assertDatasetError(try CIFAR10.parse(tarGz: Self.archive(files)), contains: ["data_batch_1.bin", "record 1 has label 12"])
        let gz = Self.archive(Self.standardFiles())
        assertDatasetError(try CIFAR10.parse(tarGz: Array(gz.prefix(gz.count - 100))),
                           contains: ["cifar-10-binary.tar.gz", "truncated gzip stream"])
        var tar = ArchiveFixtures.tar(Self.standardFiles().map { (path: $0.0, data: $0.1) })
        assertDatasetError(try CIFAR10.parse(tarGz: ArchiveFixtures.gzip(Array(tar.prefix(700)))), contains: ["truncated tar archive"])
        tar[10] ^= 0x40
        assertDatasetError(try CIFAR10.parse(tarGz: ArchiveFixtures.gzip(tar)), contains: ["checksum mismatch"])
    }
}

final class JSONFieldsTests: XCTestCase {
    func testShapesAndDtypes() throws {
        let json = try JSON.parse(#"{"x": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [0, 1, 1, 0], "t": [[0], [1], [1], [0]], "w": [0.5, 1, 2, 3]}"#)
        let fields = try JSONFields.parse(json, path: "data.fields")
        XCTAssertEqual(fields["x"]?.shape, [4, 2])
        XCTAssertEqual(fields["x"]?.dtype, .float32)
        XCTAssertEqual(fields["x"]?.values, [0, 0, 0, 1, 1, 0, 1, 1])
        XCTAssertEqual(fields["y"]?.shape, [4])
        XCTAssertEqual(fields["y"]?.dtype, .int32)
        XCTAssertEqual(fields["t"]?.shape, [4, 1])
        XCTAssertEqual(fields["t"]?.dtype, .float32)
        XCTAssertEqual(fields["w"]?.dtype, .float32)
        let deep = try JSONFields.parse(try JSON.parse(#"{"img": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}"#), path: "f")
        XCTAssertEqual(deep["img"]?.shape, [2, 2, 2])
        XCTAssertEqual(try JSONFields.parse(try JSON.parse(#"{"e": []}"#), path: "f")["e"]?.shape, [0])
        XCTAssertEqual(try JSONFields.parse(try JSON.parse(#"{"y": [1e10]}"#), path: "f")["y"]?.dtype, .float32)
    }

    func testErrors() throws {
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [[1, 2], [3]]}"#), path: "data.fields"),
                           contains: ["x: ", "data.fields.x[1]", "ragged", "expected 2 elements, got 1"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [[1, 2], 3]}"#), path: "data.fields"),
                           contains: ["data.fields.x[1]", "ragged"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [1, [2]]}"#), path: "data.fields"),
                           contains: ["data.fields.x[1]", "ragged"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [[1, "a"]]}"#), path: "p"),
                           contains: ["p.x[0][1]", "expected a number, got a string"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": 5}"#), path: "p"), contains: ["p.x must be an array"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"[1, 2]"#), path: "p"), contains: ["p must be an object"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [1e39]}"#), path: "p"), contains: ["outside the float32 range"])
        assertDatasetError(try JSONFields.parse(try JSON.parse(#"{"x": [true]}"#), path: "p"), contains: ["got a boolean"])
    }
}

final class DatasetTests: XCTestCase {
    func testRowCountsMustMatch() {
        let x = DataArray(shape: [3, 2], dtype: .float32, values: [1, 2, 3, 4, 5, 6])
        let y = DataArray(shape: [2], dtype: .int32, values: [0, 1])
        assertDatasetError(try Dataset(fields: ["x": x, "y": y]), contains: ["y: ", "has 2 rows", "'x' has 3"])
        XCTAssertEqual(try Dataset(fields: [:]).rowCount, 0)
    }

    func testRowsGatherTake() throws {
        let x = DataArray(shape: [4, 2], dtype: .float32, values: [0, 1, 10, 11, 20, 21, 30, 31])
        let y = DataArray(shape: [4], dtype: .int32, values: [0, 1, 2, 3])
        XCTAssertEqual(x.rows(1..<3).values, [10, 11, 20, 21])
        XCTAssertEqual(x.rows(1..<3).shape, [2, 2])
        XCTAssertEqual(x.rows(3..<10).shape, [1, 2])
        XCTAssertEqual(x.gather(rows: [3, 0, 3]).values, [30, 31, 0, 1, 30, 31])
        XCTAssertEqual(x.gather(rows: []).shape, [0, 2])
        let d = try Dataset(fields: ["x": x, "y": y])
        XCTAssertEqual(d.rowCount, 4)
        let t = d.take(2)
        XCTAssertEqual(t.rowCount, 2)
        XCTAssertEqual(t.fields["y"]?.values, [0, 1])
        XCTAssertEqual(t.fields["y"]?.dtype, .int32)
        XCTAssertEqual(d.take(100).rowCount, 4)
    }
}
