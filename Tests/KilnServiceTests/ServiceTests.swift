import Foundation
import KilnJSON
import KilnTrain
@testable import KilnService
import XCTest

/// The service over real sockets, with jobs on inline data (no downloads).
final class ServiceTests: ServiceTestCase {
    func testTokenGuardsStateChangingCalls() throws {
        try start(token: "s3cret")
        let denied = try client.json("POST", "/jobs", spec())
        XCTAssertEqual(denied.status, 401)
        XCTAssertEqual(denied.headers["www-authenticate"]?.hasPrefix("Bearer"), true)
        let wrong = try client.request("POST", "/jobs", body: spec().bytes, headers: ["Authorization": "Bearer s3cres", "Content-Type": "application/json"])
        XCTAssertEqual(wrong.status, 401)
        XCTAssertEqual(try client.json("GET", "/jobs").json?["jobs"]?.arrayValue?.count, 0)
        let allowed = try client.request("POST", "/jobs", body: spec().bytes, headers: ["Authorization": "Bearer s3cret", "Content-Type": "application/json"])
        XCTAssertEqual(allowed.status, 201)
        // Reads need no token.
        XCTAssertEqual(try client.json("GET", "/jobs").status, 200)
    }

    func testJobLifecycleMetricsModelsAndWeights() throws {
        try start()
        let created = try client.json("POST", "/jobs", spec())
        XCTAssertEqual(created.status, 201)
        XCTAssertEqual(created.headers["location"], "/jobs/\(created.json!["id"]!.stringValue!)")
        let id = created.json!["id"]!.stringValue!
        let job = try wait(id)
        XCTAssertEqual(job["status"]?.stringValue, "succeeded", job.serialized())
        let metrics = try client.json("GET", "/jobs/\(id)/metrics").json!
        XCTAssertEqual(metrics["epochs"]?.arrayValue?.count, 3)
        XCTAssertNotNil(metrics["epochs"]?[2]?["mae"]?.doubleValue)

        // Models: listed by name, summary, weights as safetensors.
        XCTAssertEqual(try client.json("GET", "/models").json?["models"]?[0]?["name"]?.stringValue, "tiny")
        XCTAssertEqual(try client.json("GET", "/models/tiny").json?["summary"]?["total_params"]?.intValue, 2 * 8 + 8 + 8 + 1)
        let weights = try client.request("GET", "/models/tiny/weights")
        XCTAssertEqual(weights.status, 200)
        XCTAssertEqual(weights.headers["content-type"], "application/octet-stream")
        XCTAssertGreaterThan(weights.body.count, 33 * 4)

        // The metrics stream replays the finished epochs and ends.
        let stream = try client.request("GET", "/jobs/\(id)/metrics?follow=1")
        let text = String(decoding: stream.body, as: UTF8.self)
        XCTAssertEqual(text.components(separatedBy: "event: epoch").count - 1, 3, text)
        XCTAssertTrue(text.contains("event: end"))

        // Prometheus text and the dashboard.
        let prom = String(decoding: try client.request("GET", "/metrics").body, as: UTF8.self)
        XCTAssertTrue(prom.contains("kiln_http_requests_total{method=\"POST\",route=\"/jobs\",status=\"201\"} 1"), prom)
        XCTAssertTrue(prom.contains("kiln_jobs{status=\"succeeded\"} 1"))
        let page = try client.request("GET", "/")
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        let html = String(decoding: page.body, as: UTF8.self)
        XCTAssertTrue(html.contains(id) && html.contains("<svg") && html.contains("<polyline"))

        // DELETE on a finished job removes it (cancelling is for queued and running jobs).
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(id)").status, 200)
        XCTAssertEqual(try client.json("GET", "/jobs/\(id)").status, 404)
    }

    func testCancelQueuedJobAndQueueLimit() throws {
        try start(maxQueued: 1)
        // A long job occupies the runner; the next waits in the queue.
        let long = try client.json("POST", "/jobs", spec(epochs: 100_000)).json!["id"]!.stringValue!
        Thread.sleep(forTimeInterval: 0.3)
        let queued = try client.json("POST", "/jobs", spec()).json!["id"]!.stringValue!
        let full = try client.json("POST", "/jobs", spec())
        XCTAssertEqual(full.status, 503)
        XCTAssertNotNil(full.headers["retry-after"])
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(queued)").status, 202)
        XCTAssertEqual(try client.json("GET", "/jobs/\(queued)").json?["status"]?.stringValue, "cancelled")
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(long)").status, 202)
        XCTAssertEqual(try wait(long)["status"]?.stringValue, "cancelled")
        // The cancelled running job keeps its last checkpoint if it finished an epoch.
    }

    func testUploadedDatasetTrainsAndBadUploadsAreNamed() throws {
        try start()
        let grid = ServiceTests.grid(32, side: 4).map { ($0.0 * 4, $0.1 * 4) }
        let xs = JSON.array(grid.map { JSON([$0.0, $0.1]) })
        let ys = JSON.array(grid.map { JSON([$0.0 + $0.1]) })
        let uploaded = try client.json("POST", "/datasets", ["name": "grid", "fields": ["x": xs, "y": ys]])
        XCTAssertEqual(uploaded.status, 201, String(decoding: uploaded.body, as: UTF8.self))
        XCTAssertEqual(uploaded.json?["fields"]?["x"]?["shape"], [32, 2])
        XCTAssertEqual(try client.json("GET", "/datasets").json?["datasets"]?.arrayValue?.count, 1)
        let job = try client.json("POST", "/jobs", spec(data: ["dataset": "grid"])).json!["id"]!.stringValue!
        XCTAssertEqual(try wait(job)["status"]?.stringValue, "succeeded")

        let ragged = try client.json("POST", "/datasets", ["fields": ["x": [[1, 2], [3]]]])
        XCTAssertEqual(ragged.status, 400)
        let mismatched = try client.json("POST", "/datasets", ["fields": ["x": [[1], [2]], "y": [1, 2, 3]]])
        XCTAssertEqual(mismatched.status, 400)
        XCTAssertTrue(String(decoding: mismatched.body, as: UTF8.self).contains("y") )
        let traversal = try client.json("POST", "/datasets", ["name": "../x", "fields": ["x": [1, 2]]])
        XCTAssertEqual(traversal.status, 400)
        XCTAssertEqual(traversal.json?["error"]?["path"]?.stringValue, "name")

        // A job on a field the uploaded data lacks is refused with the path, nothing queued.
        let missing = spec(data: ["dataset": "grid"]).setting("train", to: spec()["train"]!.setting("losses", to: [["node": "y", "type": "mse", "target": "z"]]))
        let refused = try client.json("POST", "/jobs", missing)
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual(refused.json?["error"]?["path"]?.stringValue, "train.losses[0].target")
        XCTAssertTrue(refused.json?["error"]?["message"]?.stringValue?.contains("'z'") ?? false)
        // Inline data is checked at once too: ragged rows and mismatched row counts.
        let raggedJob = spec(data: ["fields": ["x": [[1, 2], [3]], "y": [[1], [2]]]])
        let r = try client.json("POST", "/jobs", raggedJob)
        XCTAssertEqual(r.status, 400)
        XCTAssertEqual(r.json?["error"]?["path"]?.stringValue, "data.fields.x")
        let uneven = spec(data: ["fields": ["x": [[1, 2], [3, 4]], "y": [[1], [2], [3]]]])
        let u = try client.json("POST", "/jobs", uneven)
        XCTAssertEqual(u.status, 400)
        XCTAssertTrue(u.json?["error"]?["path"]?.stringValue?.hasPrefix("data.fields.") ?? false, u.json?.serialized() ?? "")
        let shape = spec(data: ["fields": ["x": [[1, 2, 3]], "y": [[1]]]])
        let sh = try client.json("POST", "/jobs", shape)
        XCTAssertEqual(sh.status, 400)
        XCTAssertEqual(sh.json?["error"]?["path"]?.stringValue, "model.inputs.x")
        // Class indices out of range for the prediction are found at POST, not mid-training.
        var classes = spec(data: ["fields": ["x": [[1, 2], [3, 4], [5, 6]], "y": [0, 2, 1]]])
        classes = classes.setting("model", to: ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 2, "activation": "softmax", "name": "p"]]])
        classes = classes.setting("train", to: classes["train"]!.setting("losses", to: [["node": "p", "type": "sparse_categorical_crossentropy", "target": "y"]]).setting("metrics", to: []))
        let c = try client.json("POST", "/jobs", classes)
        XCTAssertEqual(c.status, 400, c.json?.serialized() ?? "")
        XCTAssertEqual(c.json?["error"]?["path"]?.stringValue, "data.fields.y")
        XCTAssertTrue(c.json?["error"]?["message"]?.stringValue?.contains("row 1: 2.0 is not a class index in 0..<2") ?? false, c.json?.serialized() ?? "")
        XCTAssertEqual(try client.json("GET", "/jobs").json?["jobs"]?.arrayValue?.count, 1, "only the good job was queued")
    }

    func testHostileNamesNeverBecomePaths() throws {
        try start()
        for path in ["/jobs/..%2f..%2fetc%2fpasswd", "/jobs/%2e%2e", "/jobs/a%00b", "/models/..%2fjobs/weights"] {
            XCTAssertEqual(try client.json("GET", path).status, 404, path)
        }
        let bad = try client.json("POST", "/jobs", spec(name: "../evil"))
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(bad.json?["error"]?["path"]?.stringValue, "name")
        XCTAssertEqual(try client.json("GET", "/healthz").status, 200)
    }

    func testPredictRejectsBadInputsWithPaths() throws {
        try start()
        let id = try client.json("POST", "/jobs", spec()).json!["id"]!.stringValue!
        _ = try wait(id)
        let ok = try client.json("POST", "/predict", ["model": "tiny", "instances": [[0.5, 0.5], [0.25, 0]]])
        XCTAssertEqual(ok.json?["predictions"]?.arrayValue?.count, 2)
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertEqual(try client.request("POST", "/predict", body: Array("{\"model\":\"tiny\",\"inputs\":{\"x\":\(deep)}}".utf8)).status, 400)
        XCTAssertEqual(try client.request("POST", "/predict", body: Array("{\"model\":\"tiny\",\"inputs\":{\"x\":[[1e309,1]]}}".utf8)).status, 400)
        let wrong = try client.json("POST", "/predict", ["model": "tiny", "inputs": ["x": [[1, 2, 3]]]])
        XCTAssertEqual(wrong.status, 400)
        XCTAssertTrue(wrong.json?["error"]?["message"]?.stringValue?.contains("'x'") ?? false)
        let missing = try client.json("POST", "/predict", ["model": "tiny", "inputs": ["z": [[1, 2]]]])
        XCTAssertEqual(missing.json?["error"]?["path"]?.stringValue, "inputs.x")
        let unknownOutput = try client.json("POST", "/predict", ["model": "tiny", "inputs": ["x": [[1, 2]]], "outputs": ["nope"]])
        XCTAssertEqual(unknownOutput.json?["error"]?["path"]?.stringValue, "outputs[0]")
        XCTAssertEqual(try client.json("GET", "/healthz").status, 200)
    }

    func testOpenInferenceProtocol() throws {
        try start()
        _ = try wait(try client.json("POST", "/jobs", spec()).json!["id"]!.stringValue!)
        let meta = try client.json("GET", "/v2/models/tiny").json!
        XCTAssertEqual(meta["inputs"]?[0]?["shape"], [-1, 2])
        XCTAssertEqual(meta["outputs"]?[0]?["name"]?.stringValue, "y")
        XCTAssertEqual(try client.json("GET", "/v2/models/tiny/ready").status, 200)
        let flat = try client.json("POST", "/v2/models/tiny/infer", [
            "id": "r1", "inputs": [["name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 0.5, 0.25, 0]]],
        ])
        XCTAssertEqual(flat.status, 200, String(decoding: flat.body, as: UTF8.self))
        XCTAssertEqual(flat.json?["id"]?.stringValue, "r1")
        XCTAssertEqual(flat.json?["outputs"]?[0]?["shape"], [2, 1])
        XCTAssertEqual(flat.json?["outputs"]?[0]?["datatype"]?.stringValue, "FP32")
        // Nested data gives the same answer as flat data and as /predict.
        let nested = try client.json("POST", "/v2/models/tiny/infer", [
            "inputs": [["name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[0.5, 0.5], [0.25, 0]]]],
        ])
        XCTAssertEqual(nested.json?["outputs"]?[0]?["data"], flat.json?["outputs"]?[0]?["data"])
        let predicted = try client.json("POST", "/predict", ["model": "tiny", "inputs": ["x": [[0.5, 0.5], [0.25, 0]]]]).json!
        XCTAssertEqual(predicted["outputs"]?["y"]?[1]?[0], flat.json?["outputs"]?[0]?["data"]?[1])
        // Errors use the protocol's form and name the tensor.
        let wrong = try client.json("POST", "/v2/models/tiny/infer", ["inputs": [["name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]]]])
        XCTAssertEqual(wrong.status, 400)
        XCTAssertTrue(wrong.json?["error"]?.stringValue?.contains("inputs[0].shape") ?? false, wrong.json?.serialized() ?? "")
        let short = try client.json("POST", "/v2/models/tiny/infer", ["inputs": [["name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]]]])
        XCTAssertEqual(short.status, 400)
        let bytes = try client.json("POST", "/v2/models/tiny/infer", ["inputs": [["name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]]]])
        XCTAssertEqual(bytes.status, 400)
        XCTAssertEqual(try client.json("GET", "/v2/models/nope").status, 404)
        XCTAssertNotNil(try client.json("GET", "/v2/models/nope").json?["error"]?.stringValue)
    }

    func testInitFromRestoresMatchingWeightsAndReportsTheRest() throws {
        try start()
        let first = try client.json("POST", "/jobs", spec(epochs: 2)).json!["id"]!.stringValue!
        _ = try wait(first)
        // Same first layer, a differently shaped head: the head starts anew.
        var warm = spec(epochs: 1, name: "warm")
        warm = warm.setting("init_from", to: .string(first))
        warm = warm.setting("model", to: warm["model"]!.setting("layers", to: [
            ["type": "dense", "units": 8, "activation": "tanh"], ["type": "dense", "units": 4, "name": "h"], ["type": "dense", "units": 1, "name": "y"],
        ]))
        let second = try client.json("POST", "/jobs", warm).json!["id"]!.stringValue!
        XCTAssertEqual(try wait(second)["status"]?.stringValue, "succeeded")
        let warnings = try client.json("GET", "/jobs/\(second)/metrics").json!["warnings"]!.arrayValue!.compactMap(\.stringValue)
        XCTAssertTrue(warnings.contains { $0.contains("init_from \(first)") && $0.contains("h.kernel") && $0.contains("y.kernel") && !$0.contains("dense_1.kernel") }, "\(warnings)")
        let bad = try client.json("POST", "/jobs", spec().setting("init_from", to: "job-none"))
        let failed = try wait(bad.json!["id"]!.stringValue!)
        XCTAssertTrue(failed["error"]?.stringValue?.contains("init_from") ?? false)
    }

    /// A data directory on a tiny tmpfs: the second checkpoint cannot be written, the job
    /// fails with the reason, the first checkpoint is intact, the server keeps serving.
    func testFullDiskFailsTheJobAndKeepsTheLastCheckpoint() throws {
        let mountPoint = NSTemporaryDirectory() + "kiln-tmpfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]
        mount.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try? mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a tmpfs here (needs root)") }
        defer {
            service?.stop()
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try? umount.run()
            umount.waitUntilExit()
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
        var config = Config()
        config.port = 0
        config.dataDirectory = mountPoint
        service = try Service(config: config)
        try service.start()
        client = HTTPTestClient(port: service.port)
        // 2·400 + 400 + 400·400 + 400 + 400 + 1 ≈ 162k weights: a 650 kB checkpoint, so
        // the second write (temp file beside the first) does not fit in 1 MB.
        var big = spec(epochs: 3, name: "big")
        big = big.setting("model", to: big["model"]!.setting("layers", to: [
            ["type": "dense", "units": 400, "activation": "tanh"], ["type": "dense", "units": 400, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"],
        ]))
        let id = try client.json("POST", "/jobs", big).json!["id"]!.stringValue!
        let job = try wait(id)
        XCTAssertEqual(job["status"]?.stringValue, "failed", job.serialized())
        XCTAssertTrue(job["error"]?.stringValue?.contains("No space left on device") ?? false, job.serialized())
        let checkpoint = try XCTUnwrap(FileManager.default.contents(atPath: "\(mountPoint)/jobs/\(id)/checkpoint.safetensors"))
        XCTAssertGreaterThan(checkpoint.count, 600_000, "the first epoch's checkpoint is intact")
        XCTAssertEqual(try client.json("GET", "/healthz").status, 200)
        XCTAssertEqual(try client.json("GET", "/jobs").json?["jobs"]?.arrayValue?.count, 1)
        // The metrics name no epoch past the checkpoint's (an epoch whose metrics were not
        // written is recorded from the checkpoint when the job resumes).
        let recorded = try XCTUnwrap(client.json("GET", "/jobs/\(id)/metrics").json?["epochs"]?.arrayValue?.count)
        XCTAssertLessThanOrEqual(recorded, Int(try Checkpoint.metadata([UInt8](checkpoint))["epoch"] ?? "-1") ?? -1)

        // An upload that does not fit is a 507 and leaves nothing behind.
        let rows = JSON.array((0..<25_000).map { i in JSON([Double(i), 1, 2, 3]) })
        let upload = try client.json("POST", "/datasets", ["name": "toolarge", "fields": ["x": rows]])
        XCTAssertEqual(upload.status, 507, String(decoding: upload.body, as: UTF8.self))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(mountPoint)/uploads"), [])
        XCTAssertEqual(try client.json("GET", "/datasets").json?["datasets"]?.arrayValue?.count, 0)

        // Once there is room, the job resumes from its checkpoint and finishes.
        let remount = Process()
        remount.executableURL = URL(fileURLWithPath: "/bin/mount")
        remount.arguments = ["-o", "remount,size=8m", mountPoint]
        try remount.run()
        remount.waitUntilExit()
        XCTAssertEqual(remount.terminationStatus, 0)
        XCTAssertEqual(try client.json("POST", "/jobs/\(id)/resume").status, 202)
        let resumed = try wait(id)
        XCTAssertEqual(resumed["status"]?.stringValue, "succeeded", resumed.serialized())
        XCTAssertEqual(try client.json("GET", "/jobs/\(id)/metrics").json?["epochs"]?.arrayValue?.compactMap { $0["epoch"]?.intValue }, [1, 2, 3])
    }

    /// Log times read as ISO8601DateFormatter writes them (UTC, milliseconds).
    /// Training threads run at `training_nice`, below the HTTP core and the predictions
    /// (nice values are per thread on Linux).
    func testTrainingRunsAtTheConfiguredNiceValue() throws {
        try start { $0.trainingNice = 7 }
        let posted = try client.json("POST", "/jobs", spec(epochs: 100_000, name: "long"))
        let id = try XCTUnwrap(posted.json?["id"]?.stringValue)
        /// The nice values of this process's threads named kiln-training.
        func trainingNice() -> [Int] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.compactMap { tid -> Int? in
                guard let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                      comm.trimmingCharacters(in: .whitespacesAndNewlines) == "kiln-training",
                      let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return nil }
                // Fields after the command: state is field 3, nice field 19.
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                return fields.count > 16 ? Int(fields[16]) : nil
            }
        }
        // Services of earlier tests in this process may still be winding a job down at
        // the default nice value; this service's thread is the one at 7.
        var seen: [Int] = []
        let deadline = Date().addingTimeInterval(20)
        while !seen.contains(7) && Date() < deadline {
            seen = trainingNice()
            if !seen.contains(7) { usleep(20_000) }
        }
        XCTAssertEqual(seen.filter { $0 == 7 }.count, 1, "one training thread at nice 7, got \(seen)")
        XCTAssertFalse(seen.contains(0), "no training thread at the default priority")
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(id)").status, 202)
        XCTAssertEqual(try wait(id)["status"], "cancelled")
    }

    func testLogTimeStampMatchesISO8601() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for (seconds, milliseconds) in [(0, 0), (1_798_000_000, 7), (1_798_000_059, 42), (1_798_012_345, 999), (951_782_400, 500)] {
            let time = timespec(tv_sec: seconds, tv_nsec: milliseconds * 1_000_000 + 400_000)
            let date = Date(timeIntervalSince1970: Double(seconds) + Double(milliseconds) / 1000 + 0.0004)
            XCTAssertEqual(Log.stamp(time), formatter.string(from: date))
        }
    }
}
