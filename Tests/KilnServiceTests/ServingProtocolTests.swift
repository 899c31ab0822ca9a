import Foundation
import KilnJSON
@testable import KilnService
import KilnTestSupport
import XCTest

/// TensorFlow Serving REST, the Open Inference Protocol's extensions (binary tensor
/// data, compressed bodies, versions, config, repository index, statistics) and the
/// metrics, with hand-written requests over real sockets. The same routes are driven
/// by the real client libraries in `tests/compat/` (scripts/compat-tests.sh).
final class ServingProtocolTests: ServiceTestCase {
    /// Two versions of `tiny` (different seeds) and their job ids, oldest first.
    func trainTwoVersions() throws -> [String] {
        var ids: [String] = []
        for seed in [1, 2] {
            var s = spec(epochs: 1)
            s = s.setting("train", to: s["train"]!.setting("seed", to: JSON(seed)))
            let id = try client.json("POST", "/jobs", s).json!["id"]!.stringValue!
            XCTAssertEqual(try wait(id)["status"]?.stringValue, "succeeded")
            ids.append(id)
        }
        return ids
    }

    func predicted(_ model: String, _ rows: [[Double]]) throws -> [Float] {
        let answer = try client.json("POST", "/predict", ["model": .string(model), "inputs": ["x": table(rows)]]).json!
        return answer["outputs"]!["y"]!.arrayValue!.map { Float($0[0]!.doubleValue!) }
    }

    func table(_ rows: [[Double]]) -> JSON { .array(rows.map { JSON($0) }) }

    func floats(_ json: JSON?) -> [Float] { json?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] }

    // MARK: - TensorFlow Serving

    func testTensorFlowServingStatusMetadataAndPredict() throws {
        try start()
        let ids = try trainTwoVersions()
        let status = try client.json("GET", "/v1/models/tiny").json!
        XCTAssertEqual(status["model_version_status"]?.arrayValue?.map { $0["version"]!.stringValue! }, ["2", "1"])
        XCTAssertEqual(status["model_version_status"]?[0]?["state"]?.stringValue, "AVAILABLE")
        XCTAssertEqual(try client.json("GET", "/v1/models/tiny/versions/1").json?["model_version_status"]?[0]?["version"]?.stringValue, "1")
        XCTAssertEqual(try client.json("GET", "/v1/models/tiny/labels/stable").json?["model_version_status"]?[0]?["version"]?.stringValue, "2")

        let meta = try client.json("GET", "/v1/models/tiny/metadata").json!
        let signature = meta["metadata"]?["signature_def"]?["signature_def"]?["serving_default"]
        XCTAssertEqual(signature?["inputs"]?["x"]?["dtype"]?.stringValue, "DT_FLOAT")
        XCTAssertEqual(signature?["inputs"]?["x"]?["tensor_shape"]?["dim"]?.arrayValue?.map { $0["size"]!.stringValue! }, ["-1", "2"])
        XCTAssertEqual(signature?["outputs"]?["y"]?["tensor_shape"]?["dim"]?[1]?["size"]?.stringValue, "1")
        XCTAssertEqual(meta["model_spec"]?["version"]?.stringValue, "2")

        let rows: [[Double]] = [[0.5, 0.25], [0.125, 1]]
        let expected = try predicted("tiny", rows)
        let rowForm = try client.json("POST", "/v1/models/tiny:predict", ["signature_name": "serving_default", "instances": table(rows)])
        XCTAssertEqual(rowForm.status, 200, String(decoding: rowForm.body, as: UTF8.self))
        XCTAssertEqual(rowForm.json?["predictions"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, expected)
        let objects = try client.json("POST", "/v1/models/tiny:predict", ["instances": .array(rows.map { ["x": JSON($0)] })]).json
        XCTAssertEqual(objects?["predictions"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, expected)
        let bare = try client.json("POST", "/v1/models/tiny:predict", ["inputs": table(rows)]).json
        XCTAssertEqual(bare?["outputs"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, expected)
        let named = try client.json("POST", "/v1/models/tiny:predict", ["inputs": ["x": table(rows)]]).json
        XCTAssertEqual(named?["outputs"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, expected)
        // Versions are the name's succeeded jobs in order; `stable` is the latest.
        let first = try client.json("POST", "/v1/models/tiny/versions/1:predict", ["instances": table(rows)]).json
        XCTAssertEqual(first?["predictions"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, try predicted(ids[0], rows))
        XCTAssertNotEqual(try predicted(ids[0], rows), expected)
        let stable = try client.json("POST", "/v1/models/tiny/labels/stable:predict", ["instances": table(rows)]).json
        XCTAssertEqual(stable?["predictions"]?.arrayValue?.map { Float($0[0]!.doubleValue!) }, expected)
    }

    func testTensorFlowServingErrorsAreStrings() throws {
        try start()
        _ = try wait(try client.json("POST", "/jobs", spec(epochs: 1)).json!["id"]!.stringValue!)
        let cases: [(String, String, JSON?, Int, String)] = [
            ("POST", "/v1/models/nope:predict", ["instances": [[1, 2]]], 404, "nope"),
            ("GET", "/v1/models/tiny/versions/3", nil, 404, "Specific(tiny, 3)"),
            ("GET", "/v1/models/tiny/labels/canary", nil, 404, "canary"),
            ("POST", "/v1/models/tiny:predict", ["signature_name": "other", "instances": [[1, 2]]], 400, "signature_name"),
            ("POST", "/v1/models/tiny:predict", ["instances": [[1, 2, 3]]], 400, "instances"),
            ("POST", "/v1/models/tiny:predict", ["instances": [[1, 2]], "inputs": [[1, 2]]], 400, "not both"),
            ("POST", "/v1/models/tiny:predict", ["instances": [[1, 2]], "extra": 1], 400, "extra"),
            ("GET", "/v1/nowhere", nil, 404, "no route"),
        ]
        for (method, path, body, status, fragment) in cases {
            let r = try client.json(method, path, body)
            XCTAssertEqual(r.status, status, path)
            let message = r.json?["error"]?.stringValue ?? ""
            XCTAssertTrue(message.contains(fragment), "\(path): \(message)")
        }
        let notJSON = try client.request("POST", "/v1/models/tiny:predict", body: Array("{".utf8), headers: ["Content-Type": "application/json"])
        XCTAssertEqual(notJSON.status, 400)
        XCTAssertNotNil(notJSON.json?["error"]?.stringValue)
    }

    // MARK: - Open Inference Protocol

    /// The binary tensor data extension both ways, framed by hand.
    func testBinaryTensorDataBothWays() throws {
        try start()
        _ = try wait(try client.json("POST", "/jobs", spec(epochs: 1)).json!["id"]!.stringValue!)
        let rows: [[Double]] = [[0.5, 0.25], [0.125, 1], [-1, 0.75]]
        let expected = try predicted("tiny", rows)
        func send(_ datatype: String, _ bytes: [UInt8], binaryOutput: Bool, size: Int? = nil) throws -> HTTPTestClient.Response {
            let header: JSON = [
                "inputs": [["name": "x", "shape": [3, 2], "datatype": .string(datatype), "parameters": ["binary_data_size": JSON(size ?? bytes.count)]]],
                "parameters": ["binary_data_output": .bool(binaryOutput)],
            ]
            let json = Array(header.serialized().utf8)
            return try client.request("POST", "/v2/models/tiny/infer", body: json + bytes,
                                      headers: ["Inference-Header-Content-Length": String(json.count), "Content-Type": "application/octet-stream"])
        }
        let values = rows.flatMap { $0 }
        let fp32 = values.flatMap { Predictor.littleEndian(Float($0).bitPattern) }
        let fp64 = values.flatMap { Predictor.littleEndian($0.bitPattern) }
        for (datatype, bytes) in [("FP32", fp32), ("FP64", fp64)] {
            let r = try send(datatype, bytes, binaryOutput: true)
            XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
            let length = Int(r.headers["inference-header-content-length"] ?? "") ?? -1
            XCTAssertGreaterThan(length, 0)
            let header = try JSON.parse(Array(r.body[0..<length]))
            XCTAssertEqual(header["outputs"]?[0]?["parameters"]?["binary_data_size"]?.intValue, 12)
            XCTAssertNil(header["outputs"]?[0]?["data"])
            let tail = Array(r.body[length...])
            XCTAssertEqual(tail.count, 12)
            let out = (0..<3).map { i in Predictor.decode(tail, from: i * 4, count: 1, datatype: "FP32")[0] }
            XCTAssertEqual(out, expected, datatype)
        }
        // Binary in, JSON out; integer types.
        let json = try send("FP32", fp32, binaryOutput: false)
        XCTAssertNil(json.headers["inference-header-content-length"])
        XCTAssertEqual(floats(json.json?["outputs"]?[0]?["data"]), expected)
        let ints: [Int64] = [1, 0, 2, 3, 0, 1]
        let int64 = try send("INT64", ints.flatMap { Predictor.littleEndian($0) }, binaryOutput: false)
        XCTAssertEqual(floats(int64.json?["outputs"]?[0]?["data"]), try predicted("tiny", [[1, 0], [2, 3], [0, 1]]))
        // Framing errors name the field, as a string.
        let short = try send("FP32", Array(fp32.prefix(20)), binaryOutput: true, size: 24)
        XCTAssertEqual(short.status, 400)
        XCTAssertTrue(short.json?["error"]?.stringValue?.contains("binary_data_size") ?? false, short.json?.serialized() ?? "")
        let wrongSize = try send("FP32", fp32, binaryOutput: true, size: 20)
        XCTAssertEqual(wrongSize.status, 400)
        let extra = try send("FP32", fp32 + [0, 0, 0, 0], binaryOutput: true, size: 24)
        XCTAssertEqual(extra.status, 400)
        XCTAssertTrue(extra.json?["error"]?.stringValue?.contains("belong to no input") ?? false)
        let badLength = try client.request("POST", "/v2/models/tiny/infer", body: Array("{}".utf8), headers: ["Inference-Header-Content-Length": "9"])
        XCTAssertEqual(badLength.status, 400)
        XCTAssertNotNil(badLength.json?["error"]?.stringValue)
    }

    func testCompressedRequestBodies() throws {
        try start()
        _ = try wait(try client.json("POST", "/jobs", spec(epochs: 1)).json!["id"]!.stringValue!)
        let body: JSON = ["inputs": [["name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 0.25, 0.125, 1]]]]
        let plain = Array(body.serialized().utf8)
        let expected = try predicted("tiny", [[0.5, 0.25], [0.125, 1]])
        for (encoding, bytes) in [("gzip", ArchiveFixtures.gzip(plain)), ("deflate", ArchiveFixtures.deflate(plain, windowBits: 15)),
                                  ("deflate", ArchiveFixtures.rawDeflate(plain))] {
            let r = try client.request("POST", "/v2/models/tiny/infer", body: bytes, headers: ["Content-Type": "application/json", "Content-Encoding": encoding])
            XCTAssertEqual(r.status, 200, "\(encoding): \(String(decoding: r.body, as: UTF8.self))")
            XCTAssertEqual(floats(r.json?["outputs"]?[0]?["data"]), expected, encoding)
        }
        // The binary extension inside gzip: the header length counts the inflated bytes.
        let headerJSON: JSON = ["inputs": [["name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": ["binary_data_size": 16]]]]
        let header = Array(headerJSON.serialized().utf8)
        let tensor = [0.5, 0.25, 0.125, 1].flatMap { Predictor.littleEndian(Float($0).bitPattern) }
        let framed = try client.request("POST", "/v2/models/tiny/infer", body: ArchiveFixtures.gzip(header + tensor),
                                        headers: ["Content-Encoding": "gzip", "Inference-Header-Content-Length": String(header.count)])
        XCTAssertEqual(floats(framed.json?["outputs"]?[0]?["data"]), expected)
        // /predict takes compressed bodies too.
        let predictBody: JSON = ["model": "tiny", "inputs": ["x": [[0.5, 0.25]]]]
        let predict = try client.request("POST", "/predict", body: ArchiveFixtures.gzip(Array(predictBody.serialized().utf8)),
                                         headers: ["Content-Type": "application/json", "Content-Encoding": "gzip"])
        XCTAssertEqual(predict.status, 200)
        // Corrupt, unknown and oversized encodings.
        let corrupt = try client.request("POST", "/v2/models/tiny/infer", body: [0x1f, 0x8b] + [UInt8](repeating: 7, count: 30), headers: ["Content-Encoding": "gzip"])
        XCTAssertEqual(corrupt.status, 400)
        XCTAssertNotNil(corrupt.json?["error"]?.stringValue)
        let unknown = try client.request("POST", "/v2/models/tiny/infer", body: plain, headers: ["Content-Encoding": "br"])
        XCTAssertEqual(unknown.status, 415)
        let bomb = ArchiveFixtures.gzip([UInt8](repeating: 32, count: (64 << 20) + 1))
        let tooLarge = try client.request("POST", "/v2/models/tiny/infer", body: bomb, headers: ["Content-Encoding": "gzip"])
        XCTAssertEqual(tooLarge.status, 413)
        XCTAssertNotNil(tooLarge.json?["error"]?.stringValue)
    }

    func testVersionsConfigRepositoryIndexAndStatistics() throws {
        try start()
        let ids = try trainTwoVersions()
        let meta = try client.json("GET", "/v2/models/tiny").json!
        XCTAssertEqual(meta["versions"], JSON(ids))
        XCTAssertEqual(try client.json("GET", "/v2/models/tiny/versions/\(ids[0])").json?["versions"], JSON([ids[0]]))
        XCTAssertEqual(try client.json("GET", "/v2/models/tiny/versions/\(ids[0])/ready").status, 200)
        let unknown = try client.json("GET", "/v2/models/tiny/versions/job-nope/ready")
        XCTAssertEqual(unknown.status, 404)
        XCTAssertNotNil(unknown.json?["error"]?.stringValue)
        let config = try client.json("GET", "/v2/models/tiny/config").json!
        XCTAssertEqual(config["input"]?[0]?["dims"], [2])
        XCTAssertEqual(config["output"]?[0]?["data_type"]?.stringValue, "TYPE_FP32")
        XCTAssertEqual(try client.json("GET", "/v2/models/tiny/versions/\(ids[1])/config").json?["name"]?.stringValue, "tiny")

        let rows: [[Double]] = [[0.5, 0.25]]
        let infer: JSON = ["inputs": [["name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 0.25]]]]
        let old = try client.json("POST", "/v2/models/tiny/versions/\(ids[0])/infer", infer).json!
        XCTAssertEqual(old["model_version"]?.stringValue, ids[0])
        XCTAssertEqual(floats(old["outputs"]?[0]?["data"]), try predicted(ids[0], rows))
        XCTAssertEqual(try client.json("POST", "/v2/models/tiny/infer", infer).json?["model_version"]?.stringValue, ids[1])
        _ = try client.json("POST", "/v2/models/tiny/infer", ["inputs": [["name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]]]])

        let index = try client.request("POST", "/v2/repository/index")
        XCTAssertEqual(index.status, 200)
        XCTAssertEqual(index.json?[0]?["name"]?.stringValue, "tiny")
        XCTAssertEqual(index.json?[0]?["version"]?.stringValue, ids[1])
        XCTAssertEqual(index.json?[0]?["state"]?.stringValue, "READY")

        let stats = try client.json("GET", "/v2/models/tiny/versions/\(ids[1])/stats").json!["model_stats"]![0]!
        XCTAssertEqual(stats["inference_stats"]?["success"]?["count"]?.intValue, 1)
        XCTAssertEqual(stats["inference_stats"]?["fail"]?["count"]?.intValue, 1)
        XCTAssertEqual(stats["inference_count"]?.intValue, 1)
        XCTAssertGreaterThan(stats["inference_stats"]?["success"]?["ns"]?.intValue ?? 0, 0)
        // /predict counts for the model too; the name's stats list every version.
        _ = try predicted("tiny", [[1, 2], [3, 4]])
        let all = try client.json("GET", "/v2/models/tiny/stats").json!["model_stats"]!.arrayValue!
        XCTAssertEqual(all.map { $0["version"]!.stringValue! }, ids)
        XCTAssertEqual(all[1]["inference_count"]?.intValue, 3)
        XCTAssertEqual(try client.json("GET", "/v2/models/stats").json?["model_stats"]?.arrayValue?.count, 2)
    }

    func testClassificationExtension() throws {
        try start()
        var s = spec(epochs: 1, name: "cls")
        s = s.setting("model", to: ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 3, "activation": "softmax", "name": "y"]]])
        s = s.setting("data", to: ["fields": ["x": [[0, 1], [1, 0]], "y": [[1, 0, 0], [0, 0, 1]]]])
        _ = try wait(try client.json("POST", "/jobs", s).json!["id"]!.stringValue!)
        let r = try client.json("POST", "/v2/models/cls/infer", [
            "inputs": [["name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0, 1, 1, 0]]],
            "outputs": [["name": "y", "parameters": ["classification": 2]]],
        ])
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        let out = r.json!["outputs"]![0]!
        XCTAssertEqual(out["datatype"]?.stringValue, "BYTES")
        XCTAssertEqual(out["shape"], [2, 2])
        let probabilities = try client.json("POST", "/predict", ["model": "cls", "inputs": ["x": [[0, 1], [1, 0]]]]).json!["outputs"]!["y"]!
        for row in 0..<2 {
            let p = probabilities[row]!.arrayValue!.map { Float($0.doubleValue!) }
            let best = p.indices.max { p[$0] < p[$1] }!
            XCTAssertEqual(out["data"]?[row * 2]?.stringValue, "\(p[best]):\(best)")
        }
    }

    func testUnknownPathsUnderV2AnswerWithStringErrors() throws {
        try start()
        for (method, path) in [("GET", "/v2/nowhere"), ("GET", "/v2/models/m/versions/1/nope"), ("DELETE", "/v2/health/live"), ("POST", "/v2/models/nope/infer")] {
            let r = try client.json(method, path, method == "POST" ? ["inputs": []] : nil)
            XCTAssertGreaterThanOrEqual(r.status, 400, path)
            XCTAssertNotNil(r.json?["error"]?.stringValue, "\(path): \(String(decoding: r.body, as: UTF8.self))")
        }
        // Kiln's own routes keep Kiln's envelope.
        XCTAssertEqual(try client.json("GET", "/jobs/nope").json?["error"]?["code"]?.stringValue, "job_not_found")
    }

    // MARK: - Metrics

    func testMetricsProcessBuildInfoModelsAndRoutes() throws {
        try start()
        _ = try wait(try client.json("POST", "/jobs", spec(epochs: 2)).json!["id"]!.stringValue!)
        _ = try client.json("GET", "/v2/health/ready")
        _ = try client.json("GET", "/v2/models/tiny")
        _ = try client.json("POST", "/v2/models/tiny/infer", ["inputs": [["name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]]]])
        _ = try client.json("POST", "/v1/models/tiny:predict", ["instances": [[1, 2]]])
        let r = try client.request("GET", "/metrics")
        XCTAssertEqual(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let text = String(decoding: r.body, as: UTF8.self)
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            samples[String(parts[0])] = Double(parts[1])
        }
        XCTAssertGreaterThan(samples["process_resident_memory_bytes"] ?? 0, 1_000_000)
        XCTAssertGreaterThan(samples["process_open_fds"] ?? 0, 2)
        XCTAssertNotNil(samples["process_cpu_seconds_total"])
        let start = samples["process_start_time_seconds"] ?? 0
        XCTAssertLessThan(abs(start - Date().timeIntervalSince1970), 24 * 3600)
        XCTAssertEqual(samples["kiln_build_info{version=\"\(Kiln.version)\"}"], 1)
        XCTAssertEqual(samples[#"kiln_model_inference_requests_total{model="tiny",outcome="success"}"#], 2)
        XCTAssertEqual(samples[#"kiln_model_inference_duration_seconds_count{model="tiny"}"#], 2)
        XCTAssertEqual(samples[#"kiln_job_duration_seconds_count{status="succeeded"}"#], 1)
        XCTAssertEqual(samples["kiln_job_queue_wait_seconds_count"], 1)
        XCTAssertEqual(samples["kiln_epochs_trained_total"], 2)
        for route in ["/v2/health/ready", "/v2/models/:name", "/v2/models/:name/infer", "/v1/models/:name:predict"] {
            XCTAssertNotNil(samples["kiln_http_request_duration_seconds_count{route=\"\(route)\"}"], route)
        }
        let open = try client.request("GET", "/metrics", headers: ["Accept": "application/openmetrics-text; version=1.0.0"])
        XCTAssertTrue(open.headers["content-type"]?.hasPrefix("application/openmetrics-text") ?? false)
        let om = String(decoding: open.body, as: UTF8.self)
        XCTAssertTrue(om.hasSuffix("# EOF\n"))
        XCTAssertTrue(om.contains("# TYPE kiln_http_requests counter\n"))
        XCTAssertTrue(om.contains("kiln_http_requests_total{"))
        XCTAssertFalse(om.contains("le=\"1\""))
    }
}
