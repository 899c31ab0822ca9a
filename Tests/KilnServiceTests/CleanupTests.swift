import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// A model alone validates, a model without inputs predicts without them, and what a
/// user is done with can be removed, leaving the data directory as it is listed.
final class CleanupTests: ServiceTestCase {
    func example(_ name: String) throws -> JSON {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/\(name)")
        return try JSON.parse([UInt8](Data(contentsOf: url)))
    }

    func testAModelAloneValidatesWithNotes() throws {
        try start()
        let w7 = try example("w7-conv-transpose.json")
        XCTAssertNil(w7["train"])
        let r = try client.json("POST", "/validate", w7)
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        let features = r.json?["summary"]?["nodes"]?.arrayValue?.first { $0["name"] == "features" }
        XCTAssertEqual(features?["output_shape"], [.null, 8, 8, 64])
        // Each node's configuration as the spec states it after defaults.
        let up = r.json?["summary"]?["nodes"]?.arrayValue?.first { $0["name"] == "up" }
        XCTAssertEqual(up?["config"]?["strides"], [2, 2])
        XCTAssertEqual(up?["config"]?["padding"], "same")
        let notes = try XCTUnwrap(r.json?["notes"]?.arrayValue)
        XCTAssertEqual(Set(notes.compactMap { $0["path"]?.stringValue }), ["data", "train.losses"])
        // The same spec as a job: refused, with the path of what is missing.
        let job = try client.json("POST", "/jobs", w7)
        XCTAssertEqual(job.status, 400)
        XCTAssertEqual(job.json?["error"]?["path"], "data")
        // A complete spec has no notes.
        XCTAssertNil(try client.json("POST", "/validate", spec()).json?["notes"])
    }

    func testAModelWithoutInputsPredictsWithoutThem() throws {
        try start()
        var w2 = try example("w2-free-matrix.json")
        w2 = w2.setting("train", to: w2["train"]!.setting("epochs", to: 2))
        let id = try XCTUnwrap(client.json("POST", "/jobs", w2).json?["id"]?.stringValue)
        XCTAssertEqual(try wait(id)["status"], "succeeded")
        let r = try client.json("POST", "/predict", ["model": .string(id), "outputs": ["XXt"]])
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        XCTAssertEqual(r.json?["outputs"]?["XXt"]?.arrayValue?.count, 4)
        let v2 = try client.json("POST", "/v2/models/\(id)/infer", ["outputs": [["name": "XXt"]]])
        XCTAssertEqual(v2.status, 200, String(decoding: v2.body, as: UTF8.self))
        XCTAssertEqual(v2.json?["outputs"]?[0]?["shape"], [4, 4])
        // A model with inputs still needs them.
        let tiny = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1)).json?["id"]?.stringValue)
        _ = try wait(tiny)
        XCTAssertEqual(try client.json("POST", "/predict", ["model": .string(tiny)]).json?["error"]?["path"], "inputs")
    }

    /// Job and dataset ids present on disk.
    func onDisk() throws -> (jobs: Set<String>, datasets: Set<String>) {
        let jobs = try FileManager.default.contentsOfDirectory(atPath: "\(temp)/jobs")
        let datasets = try FileManager.default.contentsOfDirectory(atPath: "\(temp)/uploads")
        return (Set(jobs), Set(datasets))
    }

    func listed() throws -> (jobs: Set<String>, datasets: Set<String>) {
        let jobs = try client.json("GET", "/jobs").json?["jobs"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
        let datasets = try client.json("GET", "/datasets").json?["datasets"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
        return (Set(jobs), Set(datasets))
    }

    func testFinishedJobsAndDatasetsAreRemovedAndTheDirectoryMatchesTheListing() throws {
        try start(maxQueued: 100)
        let base = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1, name: "base")).json?["id"]?.stringValue)
        XCTAssertEqual(try wait(base)["status"], "succeeded")
        let warm = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1, name: "warm").setting("init_from", to: .string(base))).json?["id"]?.stringValue)
        XCTAssertEqual(try wait(warm)["status"], "succeeded")

        // The base model is another job's init_from: 409 naming it.
        let refused = try client.json("DELETE", "/jobs/\(base)")
        XCTAssertEqual(refused.status, 409)
        XCTAssertTrue(refused.json?["error"]?["message"]?.stringValue?.contains(warm) ?? false)
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(warm)").status, 200)
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(base)").status, 200)
        XCTAssertEqual(try client.json("GET", "/jobs/\(base)").status, 404)
        XCTAssertEqual(try client.json("POST", "/predict", ["model": "base", "inputs": ["x": [[0, 0]]]]).status, 404)

        // A dataset a queued job reads cannot go; once nothing reads it, it can.
        let coordinates = ServiceTestCase.grid(16, side: 4)
        let upload: JSON = ["name": "grid", "fields": ["x": .array(coordinates.map { JSON([$0.0, $0.1]) }), "y": .array(coordinates.map { JSON([$0.0]) })]]
        let ds = try XCTUnwrap(client.json("POST", "/datasets", upload).json?["id"]?.stringValue)
        let reader = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 200, name: "reader", data: ["dataset": "grid"])).json?["id"]?.stringValue)
        let busy = try client.json("DELETE", "/datasets/grid")
        XCTAssertEqual(busy.status, 409)
        XCTAssertTrue(busy.json?["error"]?["message"]?.stringValue?.contains(reader) ?? false)
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(reader)").status, 202)
        XCTAssertEqual(try wait(reader)["status"], "cancelled")
        XCTAssertEqual(try client.json("DELETE", "/datasets/grid").status, 200)
        XCTAssertEqual(try client.json("DELETE", "/datasets/\(ds)").status, 404)
        XCTAssertEqual(try client.json("DELETE", "/jobs/\(reader)").status, 200)

        let kept = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1, name: "kept")).json?["id"]?.stringValue)
        _ = try wait(kept)
        let (diskJobs, diskDatasets) = try onDisk()
        let (listedJobs, listedDatasets) = try listed()
        XCTAssertEqual(diskJobs, listedJobs)
        XCTAssertEqual(diskDatasets, listedDatasets)
        XCTAssertEqual(listedJobs, [kept])
        XCTAssertEqual(listedDatasets, [])
    }

    func testRetentionKeepsTheNewestOfEachName() throws {
        try start()
        var ids: [String] = []
        for _ in 0..<3 {
            let id = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1, name: "sweep")).json?["id"]?.stringValue)
            _ = try wait(id)
            ids.append(id)
        }
        let other = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 1, name: "other")).json?["id"]?.stringValue)
        _ = try wait(other)
        service.stop()
        var config = service.config
        config.keepLastPerName = 1
        service = try Service(config: config)
        try service.start()
        client = HTTPTestClient(port: service.port)
        XCTAssertEqual(try listed().jobs, [ids[2], other])
        XCTAssertEqual(try onDisk().jobs, [ids[2], other])
    }
}

/// A job that failed for a reason that has gone resumes from its checkpoint; no
/// credential in a URL reaches a job's record, the API or the log.
final class ResumeAndRedactionTests: ServiceTestCase {
    func testFailedJobResumesOnRequest() throws {
        try start()
        let id = try XCTUnwrap(client.json("POST", "/jobs", spec(epochs: 2, name: "late", data: ["dataset": "later"])).json?["id"]?.stringValue)
        let failed = try wait(id)
        XCTAssertEqual(failed["status"], "failed")
        XCTAssertTrue(failed["error"]?.stringValue?.contains("later") ?? false, failed.serialized())
        XCTAssertEqual(try client.json("POST", "/jobs/\(id)/resume").status, 202)
        XCTAssertEqual(try wait(id)["status"], "failed", "still no dataset")
        let coordinates = ServiceTestCase.grid(16, side: 4)
        let upload: JSON = ["name": "later", "fields": ["x": .array(coordinates.map { JSON([$0.0, $0.1]) }), "y": .array(coordinates.map { JSON([$0.0]) })]]
        XCTAssertEqual(try client.json("POST", "/datasets", upload).status, 201)
        XCTAssertEqual(try client.json("POST", "/jobs/\(id)/resume").status, 202)
        let done = try wait(id)
        XCTAssertEqual(done["status"], "succeeded", done.serialized())
        XCTAssertNil(done["error"])
        XCTAssertEqual(try client.json("GET", "/jobs/\(id)/metrics").json?["epochs"]?.arrayValue?.count, 2)
        XCTAssertEqual(try client.json("POST", "/jobs/\(id)/resume").status, 409)
    }

    func testCredentialsInTheMirrorURLNeverShow() throws {
        temp = NSTemporaryDirectory() + "kiln-service-\(UUID().uuidString)"
        var config = Config()
        config.port = 0
        config.dataDirectory = temp
        config.datasetMirror = "http://kiln:hunter2@127.0.0.1:1/base?token=abc123&x=1"
        service = try Service(config: config)
        try service.start()
        client = HTTPTestClient(port: service.port)
        var mnist = spec(epochs: 1, name: "mnist-fails")
        mnist = mnist.setting("model", to: ["inputs": ["image": [28, 28, 1]], "layers": [["type": "flatten"], ["type": "dense", "units": 10, "activation": "softmax", "name": "y"]]])
        mnist = mnist.setting("data", to: ["source": "mnist"])
        mnist = mnist.setting("train", to: ["losses": [["node": "y", "type": "categorical_crossentropy", "target": "label"]]])
        let created = try client.json("POST", "/jobs", mnist)
        XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
        let id = try XCTUnwrap(created.json?["id"]?.stringValue)
        let job = try wait(id)
        XCTAssertEqual(job["status"], "failed")
        let error = try XCTUnwrap(job["error"]?.stringValue)
        XCTAssertTrue(error.contains("REDACTED@127.0.0.1:1"), error)
        for body in [job.serialized(), String(decoding: try client.request("GET", "/jobs").body, as: UTF8.self),
                     String(decoding: try Data(contentsOf: URL(fileURLWithPath: "\(temp)/jobs/\(id)/job.json")), as: UTF8.self)] {
            XCTAssertFalse(body.contains("hunter2"), body)
            XCTAssertFalse(body.contains("abc123"), body)
        }
    }
}
