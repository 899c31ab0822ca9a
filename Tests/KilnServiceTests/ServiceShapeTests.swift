import Foundation
import KilnJSON
import KilnSpec
@testable import KilnService
import XCTest

/// What the service's shape guarantees: one decode per request and per job start,
/// models served from their artifacts alone, bounded metrics labels, errors rendered
/// at the edge, auth as middleware.
final class ServiceShapeTests: ServiceTestCase {
    var base: ServiceShapeTests { self }

    func testSpecIsDecodedOncePerRequestAndOncePerJobStart() throws {
        try base.start()
        var before = JobSpec.decodeCount
        XCTAssertEqual(try client.json("POST", "/validate", base.spec()).status, 200)
        XCTAssertEqual(JobSpec.decodeCount - before, 1, "POST /validate")

        before = JobSpec.decodeCount
        let created = try client.json("POST", "/jobs", base.spec(epochs: 2))
        XCTAssertEqual(created.status, 201)
        let id = try XCTUnwrap(created.json?["id"]?.stringValue)
        XCTAssertEqual(try base.wait(id)["status"], "succeeded")
        // Posting, queueing, starting and training the job: one decode in all.
        XCTAssertEqual(JobSpec.decodeCount - before, 1, "POST /jobs and the job's run")

        before = JobSpec.decodeCount
        for _ in 0..<3 { XCTAssertEqual(try client.json("POST", "/predict", ["model": .string(id), "inputs": ["x": [[0.5, 0.5]]]]).status, 200) }
        XCTAssertEqual(try client.json("GET", "/models/\(id)").status, 200)
        XCTAssertEqual(JobSpec.decodeCount - before, 0, "predictions read the artifact, never the spec")

        // A job queued before a restart is decoded once when it starts in the new process.
        base.service.stop()
        let dir = base.temp
        let queued = try DirectoryJobStore(directory: dir)
        let spec = try JobSpec(json: base.spec(epochs: 1, name: "after-restart"))
        let job = Job(id: queued.newID(), name: spec.name, epochs: 1, specHash: "x", seed: 0)
        try queued.create(job, spec: spec)
        before = JobSpec.decodeCount
        try base.start(directory: dir)
        XCTAssertEqual(try base.wait(job.id)["status"], "succeeded")
        XCTAssertEqual(JobSpec.decodeCount - before, 1, "a recovered job is decoded once, at its start")
    }

    func testPredictorLoadsTheArtifactWithTheSpecDeleted() throws {
        try base.start()
        let created = try client.json("POST", "/jobs", base.spec(epochs: 2, name: "artifact"))
        let id = try XCTUnwrap(created.json?["id"]?.stringValue)
        XCTAssertEqual(try base.wait(id)["status"], "succeeded")
        let request: JSON = ["model": "artifact", "inputs": ["x": [[0.25, 0.5], [1, 0]]]]
        let first = try XCTUnwrap(client.json("POST", "/predict", request).json?["outputs"])
        let dir = base.temp
        base.service.stop()

        // The job's directory holds the artifact: the graph beside the checkpoint.
        let jobDir = "\(dir)/jobs/\(id)"
        let graph = try JSON.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: "\(jobDir)/model.json"))))
        XCTAssertNil(graph["train"])
        XCTAssertNil(graph["data"])
        XCTAssertNotNil(graph["layers"])
        try FileManager.default.removeItem(atPath: "\(jobDir)/spec.json")

        try base.start(directory: dir)
        let again = try client.json("POST", "/predict", request)
        XCTAssertEqual(again.status, 200, String(decoding: again.body, as: UTF8.self))
        XCTAssertEqual(again.json?["outputs"], first)
        XCTAssertEqual(try client.json("GET", "/models/artifact").status, 200)
        XCTAssertEqual(try client.json("GET", "/jobs/\(id)/spec").status, 500)

        // A damaged checkpoint is a 500 with a request id, and its cause goes to the log.
        base.service.stop()
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: "\(jobDir)/checkpoint.safetensors"))
        try base.start(directory: dir)
        let broken = try client.json("POST", "/predict", request)
        XCTAssertEqual(broken.status, 500)
        XCTAssertEqual(broken.json?["error"]?["code"], "internal_error")
        let requestID = try XCTUnwrap(broken.headers["x-request-id"])
        XCTAssertTrue(broken.json?["error"]?["message"]?.stringValue?.contains(requestID) ?? false)
    }

    func testRandom404PathsDoNotAddMetricsSeries() throws {
        try base.start()
        func series() throws -> Set<String> {
            let text = String(decoding: try client.request("GET", "/metrics").body, as: UTF8.self)
            return Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { String($0.split(separator: " ")[0]) })
        }
        XCTAssertEqual(try client.request("GET", "/models/x/nope").status, 404)
        XCTAssertEqual(try client.request("GET", "/jobs/x/metrics").status, 404)
        _ = try series()
        let settled = try series()
        for i in 0..<1000 {
            let path = ["/models/\(UUID().uuidString)/x/\(i)", "/jobs/\(i)/\(UUID().uuidString)", "/\(UUID().uuidString)", "/v2/models/m\(i)/nope"][i % 4]
            XCTAssertEqual(try client.request("GET", path).status, 404, path)
        }
        XCTAssertEqual(try series(), settled)
        XCTAssertTrue(settled.contains(#"kiln_http_requests_total{method="GET",route="unmatched",status="404"}"#), "\(settled)")
        XCTAssertTrue(settled.contains(#"kiln_http_requests_total{method="GET",route="/jobs/:id/metrics",status="404"}"#), "\(settled)")
    }

    func testModelOverBudgetIs422AtTheEdge() throws {
        try base.start()
        var spec = base.spec()
        spec = spec.setting("model", to: spec["model"]!.setting("layers", to: [["type": "dense", "units": 1_000_000], ["type": "dense", "units": 1_000_000, "name": "y"]]))
        let r = try client.json("POST", "/validate", spec)
        XCTAssertEqual(r.status, 422)
        XCTAssertEqual(r.json?["error"]?["code"], "model_too_large")
        XCTAssertNotNil(r.json?["error"]?["path"]?.stringValue)
    }

    func testAuthSchemeIsCaseInsensitiveAndScopeAllGuardsReads() throws {
        try base.start(token: "s3cret", scope: AuthMiddleware.Scope.all)
        for header in ["bearer s3cret", "BEARER s3cret", "Bearer  s3cret"] {
            XCTAssertEqual(try client.request("GET", "/jobs", headers: ["Authorization": header]).status, 200, header)
        }
        XCTAssertEqual(try client.request("GET", "/jobs").status, 401)
        XCTAssertEqual(try client.request("POST", "/predict", body: Array(#"{"model": "x"}"#.utf8), headers: ["Content-Type": "application/json"]).status, 401)
        XCTAssertEqual(try client.request("GET", "/models/x/weights").status, 401)
        XCTAssertEqual(try client.request("GET", "/healthz").status, 200)
        XCTAssertEqual(try client.request("GET", "/models/x/weights", headers: ["Authorization": "Bearer s3cret"]).status, 404)
    }
}
