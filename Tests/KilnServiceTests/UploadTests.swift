import Foundation
import KilnData
import KilnJSON
@testable import KilnService
import KilnTestSupport
import XCTest

/// `POST /datasets` reads what users have: CSV, image folders, Keras's array names,
/// multipart forms; a taken name is a conflict, a field is added with PUT, and a
/// decompression bomb is refused before it inflates.
final class UploadTests: ServiceTestCase {
    func upload(_ body: [UInt8], _ contentType: String, query: String = "") throws -> HTTPTestClient.Response {
        try client.request("POST", "/datasets\(query)", body: body, headers: ["Content-Type": contentType])
    }

    func fields(_ r: HTTPTestClient.Response, _ split: String = "fields") -> [String: JSON] {
        Dictionary(uniqueKeysWithValues: (r.json?[split]?.objectMembers ?? []).map { ($0.0, $0.1) })
    }

    func testCSVImagesKerasArraysAndMultipart() throws {
        try start()
        var csv = "x1,x2,cls\n"
        for i in 0..<20 { csv += "\(Double(i) / 20),\(1 - Double(i) / 20),\(i % 2)\n" }
        let table = try upload(Array(csv.utf8), "text/csv", query: "?name=table&label=cls")
        XCTAssertEqual(table.status, 201, String(decoding: table.body, as: UTF8.self))
        XCTAssertEqual(fields(table)["features"]?["shape"], [20, 2])
        XCTAssertEqual(fields(table)["label"]?["dtype"], "int32")

        // PNG class folders in a zip, as Keras's image_dataset_from_directory reads them.
        var members: [(name: String, data: [UInt8], deflated: Bool)] = []
        for (c, cls) in ["cat", "dog"].enumerated() {
            for k in 0..<3 {
                let image = DecodedImage(width: 4, height: 4, channels: 1, pixels: (0..<16).map { UInt8(($0 * 16 + c * 100 + k) % 256) })
                members.append(("pets/\(cls)/\(k).png", try XCTUnwrap(ImageCodec.encodePNG(image)), true))
            }
        }
        let images = try upload(ArchiveFixtures.zip(members), "application/zip", query: "?name=pets")
        XCTAssertEqual(images.status, 201, String(decoding: images.body, as: UTF8.self))
        XCTAssertEqual(fields(images)["image"]?["shape"], [6, 4, 4, 1])
        XCTAssertEqual(fields(images)["image"]?["dtype"], "uint8")

        // Keras's mnist.npz names become the train and test splits of image and label.
        func npy(_ shape: [Int], _ dtype: DType, _ n: Int) -> [UInt8] {
            NPY.encode(DataArray(shape: shape, dtype: dtype, values: (0..<n).map { Float($0 % 10) }))
        }
        let npz = ArchiveFixtures.zip([
            ("x_train.npy", npy([5, 4, 4], .uint8, 80), false), ("y_train.npy", npy([5], .int32, 5), false),
            ("x_test.npy", npy([2, 4, 4], .uint8, 32), false), ("y_test.npy", npy([2], .int32, 2), false),
        ])
        let keras = try upload(npz, "application/octet-stream", query: "?name=kerasnpz")
        XCTAssertEqual(keras.status, 201, String(decoding: keras.body, as: UTF8.self))
        XCTAssertEqual(fields(keras)["image"]?["shape"], [5, 4, 4, 1])
        XCTAssertEqual(fields(keras, "test")["label"]?["shape"], [2])

        // curl -F name=form -F data=@table.csv
        let boundary = "----kiln\(UUID().uuidString.prefix(8))"
        var form = "--\(boundary)\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nform\r\n"
        form += "--\(boundary)\r\nContent-Disposition: form-data; name=\"data\"; filename=\"table.csv\"\r\nContent-Type: text/csv\r\n\r\n\(csv.replacingOccurrences(of: "cls", with: "label"))\r\n--\(boundary)--\r\n"
        let multipart = try upload(Array(form.utf8), "multipart/form-data; boundary=\(boundary)")
        XCTAssertEqual(multipart.status, 201, String(decoding: multipart.body, as: UTF8.self))
        XCTAssertEqual(multipart.json?["name"], "form")
        XCTAssertEqual(fields(multipart)["features"]?["shape"], [20, 2])

        // An unreadable upload says what it was read as.
        let bad = try upload(Array("x1,x2\n1,oops\n".utf8), "text/csv")
        XCTAssertEqual(bad.status, 400)
        XCTAssertTrue(bad.json?["error"]?["message"]?.stringValue?.contains("CSV") ?? false, String(decoding: bad.body, as: UTF8.self))
    }

    func testTakenNamesConflictAndFieldsAreAddedWithPut() throws {
        try start()
        let json: JSON = ["name": "grid", "fields": ["x": [[0, 1], [1, 0], [1, 1]]]]
        XCTAssertEqual(try client.json("POST", "/datasets", json).status, 201)
        let again = try client.json("POST", "/datasets", json)
        XCTAssertEqual(again.status, 409)
        XCTAssertEqual(again.json?["error"]?["path"], "name")
        let y = NPY.encode(DataArray(shape: [3], dtype: .float32, values: [1, 2, 3]))
        let put = try client.request("PUT", "/datasets/grid/fields/y", body: y, headers: ["Content-Type": "application/octet-stream"])
        XCTAssertEqual(put.status, 200, String(decoding: put.body, as: UTF8.self))
        let listed = try client.json("GET", "/datasets").json?["datasets"]?[0]?["fields"]?.objectMembers?.map(\.0)
        XCTAssertEqual(listed.map(Set.init), ["x", "y"])
        XCTAssertEqual(try client.request("PUT", "/datasets/grid/fields/y", body: y, headers: ["Content-Type": "application/octet-stream"]).status, 409)
        let short = NPY.encode(DataArray(shape: [2], dtype: .float32, values: [1, 2]))
        XCTAssertEqual(try client.request("PUT", "/datasets/grid/fields/z", body: short, headers: ["Content-Type": "application/octet-stream"]).status, 400)
        XCTAssertEqual(try client.request("PUT", "/datasets/none/fields/z", body: short, headers: ["Content-Type": "application/octet-stream"]).status, 404)
        // A job trains on the added field.
        let spec = spec(epochs: 1, name: "put", data: ["dataset": "grid"])
            .setting("model", to: ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 1, "name": "y"]]])
        let id = try XCTUnwrap(client.json("POST", "/jobs", spec).json?["id"]?.stringValue)
        XCTAssertEqual(try wait(id)["status"], "succeeded")
    }

    func testDecompressionBombIsRefusedBeforeItInflates() throws {
        try start()
        // 64 MiB of zeros deflate to about 64 KiB: a ratio no real array reaches.
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        let packed = ArchiveFixtures.rawDeflate(zeros)
        var bytes: [UInt8] = []
        // A local header, the data and a central directory naming one deflated .npy member.
        let name = Array("x.npy".utf8), crc = ArchiveFixtures.crc(zeros)
        bytes += ArchiveFixtures.le32(0x0403_4b50) + ArchiveFixtures.le16(20) + ArchiveFixtures.le16(0) + ArchiveFixtures.le16(8)
            + ArchiveFixtures.le32(0) + ArchiveFixtures.le32(Int(crc)) + ArchiveFixtures.le32(packed.count) + ArchiveFixtures.le32(zeros.count)
            + ArchiveFixtures.le16(name.count) + ArchiveFixtures.le16(0) + name + packed
        let central = bytes.count
        bytes += ArchiveFixtures.le32(0x0201_4b50) + ArchiveFixtures.le16(20) + ArchiveFixtures.le16(20) + ArchiveFixtures.le16(0)
            + ArchiveFixtures.le16(8) + ArchiveFixtures.le32(0) + ArchiveFixtures.le32(Int(crc)) + ArchiveFixtures.le32(packed.count)
            + ArchiveFixtures.le32(zeros.count) + ArchiveFixtures.le16(name.count) + [0, 0, 0, 0, 0, 0, 0, 0] + ArchiveFixtures.le32(0)
            + ArchiveFixtures.le32(0) + name
        let size = bytes.count - central
        bytes += ArchiveFixtures.le32(0x0605_4b50) + [0, 0, 0, 0] + ArchiveFixtures.le16(1) + ArchiveFixtures.le16(1)
            + ArchiveFixtures.le32(size) + ArchiveFixtures.le32(central) + ArchiveFixtures.le16(0)
        XCTAssertLessThan(bytes.count, 1 << 20)
        let r = try client.request("POST", "/datasets?name=bomb", body: bytes, headers: ["Content-Type": "application/octet-stream"])
        XCTAssertEqual(r.status, 413, String(decoding: r.body, as: UTF8.self))
        XCTAssertTrue(r.json?["error"]?["message"]?.stringValue?.contains("x.npy") ?? false)
        XCTAssertEqual(try client.json("GET", "/datasets").json?["datasets"]?.arrayValue?.count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(temp)/uploads"), [])
    }
}
