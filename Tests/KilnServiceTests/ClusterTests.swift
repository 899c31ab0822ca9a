import Foundation
import KilnJSON
import KilnPostgres
import KilnTestSupport
import XCTest

/// Three real `kiln serve` processes on one throwaway PostgreSQL: an `api` node and two
/// `worker`s. Jobs posted to any node run exactly once, each epoch recorded once; a
/// worker killed with SIGKILL mid-job is replaced by the other from the checkpoint,
/// with the same final metrics as an uninterrupted run; every node serves every model;
/// a cancellation on one node stops the job on another.
final class ClusterTests: XCTestCase {
    struct Node {
        var name: String
        var process: Process
        var client: HTTPTestClient
        var directory: String
    }

    var nodes: [Node] = []
    var url = ""
    /// A loopback mirror of the MNIST files the tests use, shared by the nodes.
    var mirror: LoopbackFileServer?
    var mirrorDirectory = ""

    override func tearDown() {
        // A failed run shows the end of each node's log.
        if (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0 {
            for node in nodes {
                let text = (try? String(contentsOfFile: node.directory + "/kiln.log", encoding: .utf8)) ?? ""
                print("--- \(node.name) (running: \(node.process.isRunning))\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n"))
            }
        }
        for node in nodes {
            if node.process.isRunning { kill(node.process.processIdentifier, SIGKILL); node.process.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: node.directory)
        }
        mirror?.stop()
        if !mirrorDirectory.isEmpty { try? FileManager.default.removeItem(atPath: mirrorDirectory) }
    }

    /// Serves the MNIST files over loopback; the nodes download from it.
    func startMirror() throws -> LoopbackFileServer {
        if let mirror { return mirror }
        mirrorDirectory = NSTemporaryDirectory() + "kiln-cluster-mirror-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(mirrorDirectory)/mnist", withIntermediateDirectories: true)
        for name in MNISTFiles.names {
            try FileManager.default.createSymbolicLink(atPath: "\(mirrorDirectory)/mnist/\(name)", withDestinationPath: "\(MNISTFiles.directory())/\(name)")
        }
        let server = try LoopbackFileServer(root: mirrorDirectory)
        mirror = server
        return server
    }

    func launch(_ name: String, role: String) throws -> Node {
        let directory = NSTemporaryDirectory() + "kiln-cluster-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try PostgresServer.freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: KilnBinary.path)
        // Every node downloads MNIST from the loopback mirror, verified by the files' digests.
        let config: JSON = ["dataset_mirror": .string(try startMirror().baseURL),
                            "dataset_checksums": .object(try MNISTFiles.checksums().sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })]
        try Data(config.serialized().utf8).write(to: URL(fileURLWithPath: directory + "/kiln.json"))
        p.arguments = ["serve", "--config", directory + "/kiln.json", "--port", String(port), "--data-dir", directory]
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["KILN_DATABASE_URL"] = url
        environment["KILN_ROLE"] = role
        environment["KILN_NODE_NAME"] = name
        environment["KILN_LEASE_SECONDS"] = "3"
        p.environment = environment
        _ = FileManager.default.createFile(atPath: directory + "/kiln.log", contents: nil)
        let log = FileHandle(forWritingAtPath: directory + "/kiln.log")
        p.standardOutput = log
        p.standardError = log
        try p.run()
        let node = Node(name: name, process: p, client: HTTPTestClient(port: port), directory: directory)
        nodes.append(node)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = try? node.client.json("GET", "/healthz"), r.status == 200 { return node }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("node \(name) did not start")
        return node
    }

    /// A small MLP on the first MNIST rows (downloaded by the node that runs it).
    func mnistSpec(name: String, epochs: Int) -> JSON {
        [
            "name": .string(name),
            "model": ["inputs": ["image": [28, 28, 1]], "layers": [["type": "flatten"], ["type": "dense", "units": 16, "activation": "relu"],
                                                                   ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"]]],
            "data": ["source": "mnist", "take": ["train": 256, "test": 64]],
            "train": ["epochs": JSON(epochs), "batch_size": 64, "seed": 3, "optimizer": ["type": "adam", "learning_rate": 0.003],
                      "losses": [["node": "probs", "type": "categorical_crossentropy", "target": "label"]],
                      "metrics": ["accuracy"], "validation": ["split": "test"]],
        ]
    }

    /// A regression on inline data; `units` and `rows` set how long an epoch takes.
    func spec(name: String, epochs: Int, units: Int = 8, rows: Int = 64) -> JSON {
        let side = Int(Double(rows).squareRoot().rounded(.up))
        let points = ServiceTests.grid(rows, side: side)
        return [
            "name": .string(name),
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": JSON(units), "activation": "tanh"],
                                                       ["type": "dense", "units": JSON(units), "activation": "tanh"],
                                                       ["type": "dense", "units": 1, "name": "y"]]],
            "data": ["fields": ["x": .array(points.map { JSON([$0.0, $0.1]) }), "y": .array(points.map { JSON([$0.0 - $0.1]) })]],
            "train": ["epochs": JSON(epochs), "batch_size": 4, "seed": 11, "optimizer": ["type": "adam", "learning_rate": 0.001],
                      "losses": [["node": "y", "type": "mse", "target": "y"]]],
        ]
    }

    func job(_ id: String, on node: Node? = nil) throws -> JSON {
        try XCTUnwrap((node ?? nodes[0]).client.json("GET", "/jobs/\(id)").json)
    }

    func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)")
    }

    func finished(_ id: String) throws -> JSON {
        var last = JSON.null
        waitFor("job \(id) to finish", timeout: 40) {
            last = try job(id)
            return ["succeeded", "failed", "cancelled"].contains(last["status"]?.stringValue ?? "")
        }
        return last
    }

    func epochs(_ id: String) throws -> [JSON] {
        try nodes[0].client.json("GET", "/jobs/\(id)/metrics").json?["epochs"]?.arrayValue ?? []
    }

    func testThreeNodesShareOneDatabase() throws {
        guard !KilnBinary.path.isEmpty else { throw XCTSkip("kiln binary not built") }
        url = try ClusterDatabase.freshURL()
        let api = try launch("api-1", role: "api")
        let workerA = try launch("worker-a", role: "worker")
        let workerB = try launch("worker-b", role: "worker")
        let admin = try PostgresConnection(url: url)
        defer { admin.close() }
        XCTAssertEqual(try api.client.json("GET", "/healthz").json?["database"]?["status"], "ok")

        // 20 small MNIST jobs, posted round-robin: each succeeds once, on a worker, each epoch once.
        var ids: [String] = []
        for i in 0..<20 {
            let created = try nodes[i % 3].client.json("POST", "/jobs", mnistSpec(name: "small-\(i)", epochs: 2))
            XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
            ids.append(try XCTUnwrap(created.json?["id"]?.stringValue))
        }
        for id in ids {
            let done = try finished(id)
            XCTAssertEqual(done["status"], "succeeded", done.serialized())
            XCTAssertTrue(["worker-a", "worker-b"].contains(done["node"]?.stringValue ?? ""), done.serialized())
            XCTAssertEqual(try epochs(id).compactMap { $0["epoch"]?.intValue }, [1, 2])
        }
        let rows = try admin.query("""
            SELECT count(*) AS jobs, count(*) FILTER (WHERE attempts = 1) AS once,
                   (SELECT count(*) FROM kiln_job_epochs) AS epochs FROM kiln_jobs
            """)[0]
        XCTAssertEqual(try rows.int("jobs"), 20)
        XCTAssertEqual(try rows.int("once"), 20, "every job was claimed once")
        XCTAssertEqual(try rows.int("epochs"), 40, "every epoch was recorded once")
        let byNode = Set(try ids.map { try job($0)["node"]?.stringValue ?? "" })
        XCTAssertEqual(byNode, ["worker-a", "worker-b"], "both workers took jobs")

        // Every node serves every model, with the same answer.
        let image = JSON.array((0..<28).map { r in .array((0..<28).map { c in [JSON(Double((r * 28 + c) % 17) / 16)] }) })
        for id in ids {
            var answers: [JSON] = []
            for node in nodes {
                let r = try node.client.json("POST", "/predict", ["model": .string(id), "instances": [image]])
                XCTAssertEqual(r.status, 200, "\(node.name) \(id): \(String(decoding: r.body, as: UTF8.self))")
                answers.append(r.json?["predictions"] ?? .null)
            }
            XCTAssertEqual(Set(answers.map { $0.serialized() }).count, 1, "\(id): \(answers)")
        }

        // A cancellation posted to the api node stops the job on the worker running it.
        let long = try XCTUnwrap(api.client.json("POST", "/jobs", spec(name: "long", epochs: 200, units: 64, rows: 256)).json?["id"]?.stringValue)
        waitFor("the long job to run", timeout: 20) { try job(long)["status"] == "running" && (try epochs(long).count) >= 1 }
        let runner = try XCTUnwrap(job(long)["node"]?.stringValue)
        let cancelled = try api.client.json("DELETE", "/jobs/\(long)")
        XCTAssertEqual(cancelled.status, 202, String(decoding: cancelled.body, as: UTF8.self))
        XCTAssertEqual(try job(long)["status"], "cancelled")
        let runnerNode = try XCTUnwrap(nodes.first { $0.name == runner })
        // The worker stops within a step (told on kiln_cancel, or by its next heartbeat).
        waitFor("the worker to stop the cancelled job", timeout: 5) {
            String(decoding: try runnerNode.client.request("GET", "/metrics").body, as: UTF8.self).contains("kiln_running_jobs 0")
        }
        let recorded = try epochs(long).count
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try epochs(long).count, recorded, "no epoch is recorded after the cancellation")
        XCTAssertEqual(try job(long, on: runnerNode)["status"], "cancelled")

        // SIGKILL of the worker running a job: the other resumes it from its checkpoint
        // and ends with the metrics of an uninterrupted run of the same seed.
        let reference = try XCTUnwrap(workerA.client.json("POST", "/jobs", spec(name: "reference", epochs: 12, units: 256, rows: 2048)).json?["id"]?.stringValue)
        // A stream on the api node follows the epochs of a job a worker trains.
        let followed = Locked<String?>(nil)
        let streamed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { [api] in
            let body = (try? api.client.request("GET", "/jobs/\(reference)/metrics?follow=1")).map { String(decoding: $0.body, as: UTF8.self) }
            followed.set(body)
            streamed.signal()
        }
        XCTAssertEqual(try finished(reference)["status"], "succeeded")
        XCTAssertEqual(streamed.wait(timeout: .now() + 10), .success)
        let events = followed.get() ?? ""
        XCTAssertEqual(events.components(separatedBy: "event: epoch\n").count - 1, 12, events)
        XCTAssertTrue(events.contains("event: end\ndata: {\"id\":\"\(reference)\""), events)
        let victim = try XCTUnwrap(workerB.client.json("POST", "/jobs", spec(name: "killed", epochs: 12, units: 256, rows: 2048)).json?["id"]?.stringValue)
        waitFor("an epoch of the job to be killed", timeout: 20) { (try epochs(victim).count) >= 1 }
        // The api node loads the job's first checkpoint now; later epochs must replace it.
        let instance: JSON = ["model": .string(victim), "instances": [[0.5, 0.25]]]
        XCTAssertEqual(try api.client.json("POST", "/predict", instance).status, 200)
        let doomedName = try XCTUnwrap(job(victim)["node"]?.stringValue)
        let doomed = try XCTUnwrap(nodes.first { $0.name == doomedName })
        kill(doomed.process.processIdentifier, SIGKILL)
        doomed.process.waitUntilExit()
        let atKill = try epochs(victim).count
        XCTAssertLessThan(atKill, 12, "the kill landed mid-job")
        let survivor = try XCTUnwrap(nodes.first { $0.name != doomedName && $0.name != "api-1" })
        let done = try finished(victim)
        XCTAssertEqual(done["status"], "succeeded", done.serialized())
        XCTAssertEqual(done["node"]?.stringValue, survivor.name)
        let resumed = try epochs(victim), uninterrupted = try epochs(reference)
        XCTAssertEqual(resumed.compactMap { $0["epoch"]?.intValue }, Array(1...12), "each epoch recorded once")
        let attempts = try admin.query("SELECT attempts FROM kiln_jobs WHERE id = $1", [.text(victim)])[0].int("attempts")
        XCTAssertEqual(attempts, 2, "claimed again once, after the lease expired")
        let a = try XCTUnwrap(resumed.last?["loss"]?.doubleValue), b = try XCTUnwrap(uninterrupted.last?["loss"]?.doubleValue)
        XCTAssertEqual(a, b, accuracy: abs(b) * 1e-5 + 1e-9, "the resumed run ends where an uninterrupted one does")
        for node in nodes where node.process.isRunning {
            XCTAssertEqual(try node.client.json("POST", "/predict", ["model": "killed", "instances": [[0.5, 0.25]]]).status, 200, node.name)
        }
        // The api node dropped its cached model when the epochs landed (kiln_epochs, kiln_models).
        let fromTrainer = try survivor.client.json("POST", "/predict", instance).json?["predictions"]
        XCTAssertNotNil(fromTrainer)
        XCTAssertEqual(try api.client.json("POST", "/predict", instance).json?["predictions"], fromTrainer)

        // PostgreSQL stops while jobs train: nodes answer 503 with the reason, and once
        // it is back every acknowledged job finishes, each epoch recorded once.
        var acknowledged: [String] = []
        for i in 0..<4 {
            let created = try (i % 2 == 0 ? api : survivor).client.json("POST", "/jobs", spec(name: "outage-\(i)", epochs: 4, units: 32, rows: 256))
            XCTAssertEqual(created.status, 201)
            acknowledged.append(try XCTUnwrap(created.json?["id"]?.stringValue))
        }
        waitFor("an outage job to record an epoch", timeout: 20) { (try epochs(acknowledged[0]).count) >= 1 }
        let server = try ClusterDatabase.shared()
        try server.stop()
        let health = try api.client.json("GET", "/healthz")
        XCTAssertEqual(health.status, 503)
        XCTAssertEqual(health.json?["database"]?["status"], "unavailable")
        XCTAssertNotNil(health.json?["database"]?["error"]?.stringValue)
        let unreachable = try api.client.json("GET", "/jobs/\(acknowledged[0])")
        XCTAssertEqual(unreachable.status, 503)
        XCTAssertEqual(unreachable.json?["error"]?["code"], "database_unavailable")
        XCTAssertEqual(try survivor.client.json("GET", "/healthz").status, 503)
        Thread.sleep(forTimeInterval: 1)
        try server.start()
        waitFor("the api node to see the database again", timeout: 10) { try api.client.json("GET", "/healthz").status == 200 }
        for id in acknowledged {
            let done = try finished(id)
            XCTAssertEqual(done["status"], "succeeded", done.serialized())
            XCTAssertEqual(try epochs(id).compactMap { $0["epoch"]?.intValue }, [1, 2, 3, 4], "each epoch recorded once")
        }
    }
}

/// A value shared with a background thread.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ new: Value) { lock.lock(); value = new; lock.unlock() }
}
