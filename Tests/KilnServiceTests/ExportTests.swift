import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// `GET /models/{name}/export`, the format checks of `/weights`, the graph in
/// `GET /models/{name}` and `kiln export`. ONNX Runtime's side is scripts/onnx-tests.sh.
final class ExportTests: ServiceTestCase {
    func trained() throws {
        try start()
        let created = try client.json("POST", "/jobs", spec(epochs: 1))
        XCTAssertEqual(created.status, 201)
        XCTAssertEqual(try wait(created.json!["id"]!.stringValue!)["status"], "succeeded")
    }

    /// The top-level field numbers of a serialized ModelProto, in order.
    func topFields(_ bytes: [UInt8]) -> [Int] {
        var fields: [Int] = []
        var i = 0
        func varint() -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.count {
                let b = bytes[i]; i += 1
                v |= UInt64(b & 0x7F) << shift
                if b < 0x80 { break }
                shift += 7
            }
            return v
        }
        while i < bytes.count {
            let key = varint()
            fields.append(Int(key >> 3))
            switch key & 7 {
            case 0: _ = varint()
            case 2: i += Int(varint())
            default: return fields + [-1]
            }
        }
        return fields
    }

    func testExportWritesAnONNXModel() throws {
        try trained()
        let r = try client.request("GET", "/models/tiny/export?format=onnx")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-type"], "application/octet-stream")
        XCTAssertEqual(r.headers["content-disposition"], "attachment; filename=\"tiny.onnx\"")
        XCTAssertEqual(Array(r.body.prefix(2)), [0x08, 0x08], "ir_version 8 first")
        XCTAssertEqual(topFields(r.body), [1, 2, 3, 6, 7, 8])
        // The initializers carry the checkpoint's names.
        let text = String(decoding: r.body, as: UTF8.self)
        XCTAssertTrue(text.contains("dense_1.kernel") && text.contains("y.bias"))
    }

    func testFormatsAreCheckedByName() throws {
        try trained()
        for path in ["/models/tiny/export?format=tflite", "/models/tiny/export"] {
            let r = try client.request("GET", path)
            XCTAssertEqual(r.status, 400, path)
            XCTAssertEqual(r.json?["error"]?["code"], "unsupported_format")
            XCTAssertEqual(r.json?["error"]?["path"], "format")
            XCTAssertTrue(r.json?["error"]?["message"]?.stringValue?.contains("supported: onnx") ?? false)
        }
        let weights = try client.request("GET", "/models/tiny/weights?format=onnx")
        XCTAssertEqual(weights.status, 400)
        XCTAssertTrue(weights.json?["error"]?["message"]?.stringValue?.contains("supported: safetensors") ?? false)
        XCTAssertEqual(try client.request("GET", "/models/tiny/weights?format=safetensors").status, 200)
        XCTAssertEqual(try client.request("GET", "/models/nothing/export?format=onnx").status, 404)
    }

    func testUnknownOutputsAndInputsNameTheirPosition() throws {
        try trained()
        let r = try client.request("GET", "/models/tiny/export?format=onnx&outputs=y,nope")
        XCTAssertEqual(r.status, 400)
        XCTAssertEqual(r.json?["error"]?["path"], "outputs[1]")
        let given = try client.request("GET", "/models/tiny/export?format=onnx&outputs=y&inputs=dense_1")
        XCTAssertEqual(given.status, 200)
        XCTAssertTrue(String(decoding: given.body, as: UTF8.self).contains("dense_1"))
    }

    func testANodeWithoutAnONNXFormIsUnprocessable() {
        XCTAssertEqual(ServiceError(.unprocessable, code: "not_exportable", "node 'n' (t): has no ONNX form").reply.status, 422)
    }

    func testModelIncludesTheArtifactGraph() throws {
        try trained()
        let model = try client.json("GET", "/models/tiny").json!
        let layers = model["graph"]?["layers"]?.arrayValue ?? []
        XCTAssertEqual(layers.map { $0["type"]?.stringValue }, ["dense", "dense"])
        XCTAssertEqual(layers.first?["activation"], "tanh")
        XCTAssertEqual(layers.first?["units"], 8)
        XCTAssertEqual(model["graph"]?["outputs"], ["y"])
        XCTAssertEqual(model["graph"]?["inputs"]?["x"], [2])
    }

    func testCommandLineExportFromDataDirectoryAndJobDirectory() throws {
        try trained()
        let out = temp + "/tiny.onnx"
        XCTAssertEqual(ModelExport.command(path: temp, model: "tiny", output: out, format: nil), 0)
        let fromDirectory = try XCTUnwrap(FileManager.default.contents(atPath: out))
        let served = try client.request("GET", "/models/tiny/export?format=onnx").body
        XCTAssertTrue([UInt8](fromDirectory) == served, "the file is what the server sends")
        let id = try XCTUnwrap(try client.json("GET", "/models/tiny").json?["job"]?["id"]?.stringValue)
        let out2 = temp + "/job.onnx"
        XCTAssertEqual(ModelExport.command(path: "\(temp)/jobs/\(id)", model: nil, output: out2, format: "onnx"), 0)
        XCTAssertTrue(FileManager.default.contents(atPath: out2).map { [UInt8]($0) } == served, "the job's artifact gives the same file")
        XCTAssertEqual(ModelExport.command(path: temp, model: "missing", output: out2, format: nil), 1)
        XCTAssertEqual(ModelExport.command(path: temp, model: "tiny", output: out2, format: "tflite"), 1)
        XCTAssertEqual(ModelExport.command(path: nil, model: "tiny", output: out2, format: nil), 2)
    }
}
