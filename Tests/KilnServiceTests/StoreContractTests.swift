import Foundation
import KilnData
import KilnGraph
import KilnJSON
import KilnPostgres
import KilnSpec
import KilnTestSupport
import KilnTrain
@testable import KilnService
import XCTest

/// The stores, as the scheduler, controllers and predictor use them. Every test runs
/// against each implementation: on the data directory here, on PostgreSQL in the
/// subclass, which says how to make its stores.
class StoreContractTests: XCTestCase {
    struct Stores {
        var jobs: JobStore
        var artifacts: ArtifactStore
        var datasets: DatasetStore
    }

    var directories: [String] = []

    /// The stores under test, fresh and empty: the data-directory implementation.
    func makeStores() throws -> Stores {
        let dir = NSTemporaryDirectory() + "kiln-stores-\(UUID().uuidString)"
        directories.append(dir)
        return Stores(jobs: try DirectoryJobStore(directory: dir), artifacts: try DirectoryArtifactStore(directory: dir),
                      datasets: try DirectoryDatasetStore(directory: dir + "/uploads"))
    }

    override func tearDown() {
        for dir in directories { try? FileManager.default.removeItem(atPath: dir) }
    }

    private func stores() throws -> Stores { try makeStores() }

    static let specJSON: JSON = [
        "name": "contract",
        "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 3, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"]]],
        "data": ["fields": ["x": [[0, 1], [1, 0]], "y": [[1], [1]]]],
        "train": ["epochs": 3, "batch_size": 2, "optimizer": ["type": "adam", "learning_rate": 0.01],
                  "losses": [["node": "y", "type": "mse", "target": "y"]]],
    ]

    func newJob(_ store: JobStore, name: String = "contract") throws -> Job {
        let spec = try JobSpec(json: Self.specJSON.setting("name", to: .string(name)))
        let job = Job(id: store.newID(), name: name, epochs: 3, specHash: "hash-\(name)", seed: 7)
        try store.create(job, spec: spec)
        // Creation times order the queue; keep them apart.
        usleep(2_000)
        return job
    }

    /// A real checkpoint of the spec's model, with its epoch in the metadata.
    func checkpoint(_ id: String, epoch: Int) throws -> (weights: [UInt8], optimizer: [UInt8], metrics: JSON) {
        let spec = try JobSpec(json: Self.specJSON)
        let model = CompiledModel(graph: spec.model, seed: UInt64(epoch))
        let metrics: JSON = ["epoch": JSON(epoch), "loss": .number(1.0 / Double(epoch))]
        let weights = Checkpoint.encode(model, metadata: ["job": id, "epoch": String(epoch), "metrics": metrics.serialized()])
        return (weights, Array("optimizer state \(epoch)".utf8), metrics)
    }

    func testCreatedJobIsQueuedAndReadable() throws {
        let s = try stores()
        let a = try newJob(s.jobs, name: "first"), b = try newJob(s.jobs, name: "second")
        XCTAssertEqual(s.jobs.job(a.id)?.status, .queued)
        XCTAssertEqual(s.jobs.job(a.id)?.specHash, "hash-first")
        XCTAssertEqual(s.jobs.all().map(\.id), [a.id, b.id])
        XCTAssertEqual(s.jobs.queuedCount, 2)
        XCTAssertEqual(s.jobs.spec(b.id)?["name"], "second")
        XCTAssertNil(s.jobs.job("job-missing"))
        XCTAssertNil(s.jobs.spec("job-missing"))
        XCTAssertEqual(s.jobs.resolveModel(a.id)?.id, a.id)
        XCTAssertNil(s.jobs.resolveModel("first"), "a name resolves only to a succeeded job")
    }

    func testCompletingAJobClaimsTheNextForTheSameNode() throws {
        let s = try stores()
        let a = try newJob(s.jobs), b = try newJob(s.jobs), c = try newJob(s.jobs)
        XCTAssertEqual(try s.jobs.claim(node: "n")?.id, a.id)
        let next = try s.jobs.complete(a.id, warnings: ["w"], claimingNextFor: "n")
        XCTAssertEqual(next?.id, b.id, "the oldest queued job")
        XCTAssertEqual(s.jobs.job(a.id)?.status, .succeeded)
        XCTAssertEqual(s.jobs.job(b.id)?.status, .running)
        XCTAssertEqual(s.jobs.job(b.id)?.node, "n")
        XCTAssertEqual(s.jobs.metrics(a.id)["warnings"], ["w"])
        XCTAssertTrue(try s.jobs.heartbeat(b.id, node: "n"), "the claim is held")
        // Without a node, nothing more is claimed.
        XCTAssertNil(try s.jobs.complete(b.id, warnings: [], claimingNextFor: nil))
        XCTAssertEqual(s.jobs.job(c.id)?.status, .queued)
        XCTAssertEqual(s.jobs.queuedCount, 1)
    }

    func testClaimTakesTheOldestQueuedJobOnce() throws {
        let s = try stores()
        let a = try newJob(s.jobs), b = try newJob(s.jobs)
        let first = try XCTUnwrap(s.jobs.claim(node: "node-a"))
        XCTAssertEqual(first.id, a.id)
        XCTAssertEqual(first.status, .running)
        XCTAssertEqual(s.jobs.job(a.id)?.node, "node-a")
        XCTAssertNotNil(s.jobs.job(a.id)?.startedAt)
        XCTAssertTrue(try s.jobs.heartbeat(a.id, node: "node-a"))
        XCTAssertFalse(try s.jobs.heartbeat(a.id, node: "node-b"))
        XCTAssertEqual(try s.jobs.claim(node: "node-a")?.id, b.id)
        XCTAssertNil(try s.jobs.claim(node: "node-a"))
        XCTAssertEqual(s.jobs.queuedCount, 0)
    }

    func testEpochCommitsCheckpointAndMetricsOnce() throws {
        let s = try stores()
        let job = try newJob(s.jobs)
        _ = try s.jobs.claim(node: "n")
        try s.artifacts.writeGraph(job.id, try JobSpec(json: Self.specJSON).model.json)
        XCTAssertFalse(s.artifacts.hasCheckpoint(job.id))
        XCTAssertNil(try s.artifacts.latest(job.id))
        for epoch in 1...2 {
            let c = try checkpoint(job.id, epoch: epoch)
            try s.jobs.commitEpoch(job.id, metrics: c.metrics, warnings: ["w\(epoch)"], weights: c.weights, optimizer: c.optimizer, artifacts: s.artifacts)
        }
        XCTAssertTrue(s.artifacts.hasCheckpoint(job.id))
        let latest = try XCTUnwrap(s.artifacts.latest(job.id))
        XCTAssertEqual(latest.epoch, 2)
        XCTAssertEqual(latest.weights, try checkpoint(job.id, epoch: 2).weights)
        XCTAssertNotNil(latest.graph["layers"])
        XCTAssertEqual(s.artifacts.optimizerState(job.id), Array("optimizer state 2".utf8))
        XCTAssertEqual(s.jobs.metrics(job.id)["epochs"]?.arrayValue?.compactMap { $0["epoch"]?.intValue }, [1, 2])
        XCTAssertEqual(s.jobs.metrics(job.id)["warnings"], ["w2"])
        XCTAssertEqual(s.jobs.job(job.id)?.epoch, 2)

        // An epoch run again (after a resume) replaces itself and what came after it.
        try s.jobs.recordEpoch(job.id, ["epoch": 2, "loss": 0.25], warnings: [])
        try s.jobs.recordEpoch(job.id, ["epoch": 3, "loss": 0.125], warnings: [])
        try s.jobs.recordEpoch(job.id, ["epoch": 2, "loss": 0.2], warnings: [])
        let epochs = s.jobs.metrics(job.id)["epochs"]?.arrayValue ?? []
        XCTAssertEqual(epochs.compactMap { $0["epoch"]?.intValue }, [1, 2])
        XCTAssertEqual(epochs.last?["loss"]?.doubleValue, 0.2)
        try s.jobs.truncateMetrics(job.id, toEpochs: 1)
        XCTAssertEqual(s.jobs.metrics(job.id)["epochs"]?.arrayValue?.count, 1)

        try s.artifacts.remove(job.id)
        XCTAssertNil(try s.artifacts.latest(job.id))
        XCTAssertFalse(s.artifacts.hasCheckpoint(job.id))
    }

    func testCompletionFailureAndModelNames() throws {
        let s = try stores()
        let old = try newJob(s.jobs, name: "model"), new = try newJob(s.jobs, name: "model"), bad = try newJob(s.jobs, name: "bad")
        for _ in 0..<3 { _ = try s.jobs.claim(node: "n") }
        try s.jobs.complete(old.id, warnings: ["careful"])
        usleep(5_000)
        try s.jobs.complete(new.id, warnings: [])
        try s.jobs.fail(bad.id, error: "it broke")
        XCTAssertEqual(s.jobs.job(old.id)?.status, .succeeded)
        XCTAssertNotNil(s.jobs.job(old.id)?.finishedAt)
        XCTAssertEqual(s.jobs.metrics(old.id)["warnings"], ["careful"])
        XCTAssertEqual(s.jobs.resolveModel("model")?.id, new.id)
        XCTAssertEqual(s.jobs.job(bad.id)?.status, .failed)
        XCTAssertEqual(s.jobs.job(bad.id)?.error, "it broke")
        XCTAssertNil(s.jobs.resolveModel("bad"))
        XCTAssertFalse(try s.jobs.heartbeat(old.id, node: "n"), "a finished job is no one's to run")

        // A failed job resumed by request is queued again.
        try s.jobs.update(bad.id) { $0.status = .queued; $0.error = nil; $0.finishedAt = nil }
        XCTAssertEqual(s.jobs.job(bad.id)?.status, .queued)
        XCTAssertNil(s.jobs.job(bad.id)?.error)
        XCTAssertEqual(try s.jobs.claim(node: "n")?.id, bad.id)

        try s.jobs.remove(old.id)
        XCTAssertNil(s.jobs.job(old.id))
        XCTAssertEqual(s.jobs.all().count, 2)
    }

    func testCancelRequeueAndUpdate() throws {
        let s = try stores()
        let queued = try newJob(s.jobs), running = try newJob(s.jobs), interrupted = try newJob(s.jobs)
        XCTAssertTrue(try s.jobs.cancelQueued(queued.id))
        XCTAssertFalse(try s.jobs.cancelQueued(queued.id))
        XCTAssertEqual(s.jobs.job(queued.id)?.status, .cancelled)
        XCTAssertEqual(try s.jobs.claim(node: "n")?.id, running.id)
        XCTAssertFalse(try s.jobs.cancelQueued(running.id), "a running job is not cancelled as a queued one")
        try s.jobs.update(running.id) { $0.dataHash = "data"; $0.steps = 4 }
        XCTAssertEqual(s.jobs.job(running.id)?.dataHash, "data")
        XCTAssertEqual(s.jobs.job(running.id)?.steps, 4)
        s.jobs.updateProgress(running.id) { $0.step = 3 }
        XCTAssertEqual(s.jobs.job(running.id)?.step, 3)
        try s.jobs.markCancelled(running.id)
        XCTAssertEqual(s.jobs.job(running.id)?.status, .cancelled)
        XCTAssertFalse(try s.jobs.heartbeat(running.id, node: "n"))

        XCTAssertEqual(try s.jobs.claim(node: "n")?.id, interrupted.id)
        try s.jobs.requeue(interrupted.id)
        XCTAssertEqual(s.jobs.job(interrupted.id)?.status, .queued)
        XCTAssertEqual(try s.jobs.claim(node: "n")?.id, interrupted.id, "a requeued job is claimed again")
    }

    func testDatasetsRoundTrip() throws {
        let s = try stores()
        let x = DataArray(shape: [3, 2], dtype: .float32, values: [0, 1, 2, 3, 4, 5])
        let y = DataArray(shape: [3, 1], dtype: .float32, values: [1, 2, 3])
        let stager = try ArrayStager(directory: NSTemporaryDirectory() + "kiln-stage-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: stager.directory) }
        let first = try s.datasets.store(name: "points", train: ["x": stager.stage(x), "y": stager.stage(y)], test: ["x": stager.stage(x)])
        usleep(5_000)
        let second = try s.datasets.store(name: "points", train: ["x": stager.stage(x), "y": stager.stage(y)], test: [:])
        let firstID = try XCTUnwrap(first["id"]?.stringValue), secondID = try XCTUnwrap(second["id"]?.stringValue)
        XCTAssertEqual(s.datasets.all.count, 2)
        XCTAssertEqual(s.datasets.record("points")?["id"]?.stringValue, secondID, "a name is the newest dataset")
        XCTAssertEqual(s.datasets.schema(firstID)?.fields["x"], [2])
        let loaded = try XCTUnwrap(s.datasets.load(firstID))
        XCTAssertEqual(loaded.train.rowCount, 3)
        XCTAssertEqual(loaded.test?.rowCount, 3)
        XCTAssertEqual(loaded.train["x"]?.values, x.values)
        XCTAssertEqual(loaded.test?["x"]?.values, x.values)
        let z = DataArray(shape: [3], dtype: .int32, values: [7, 8, 9])
        let widened = try s.datasets.addField(id: firstID, field: "z", train: stager.stage(z), test: stager.stage(z))
        XCTAssertEqual(widened["fields"]?["z"]?["dtype"]?.stringValue, "int32")
        XCTAssertEqual(s.datasets.load(firstID)?.test?["z"]?.values, z.values)
        XCTAssertThrowsError(try s.datasets.addField(id: firstID, field: "w", train: stager.stage(DataArray(shape: [2], dtype: .int32, values: [1, 2])), test: nil),
                             "a field with other rows is refused")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: stager.directory))?.count, 0,
                       "stored arrays are moved or copied and their staged files removed")
        XCTAssertNil(s.datasets.load(secondID)?.test)
        XCTAssertNil(s.datasets.load("ds-missing"))
        try s.datasets.remove(id: secondID)
        XCTAssertEqual(s.datasets.record("points")?["id"]?.stringValue, firstID)
        XCTAssertNil(s.datasets.load(secondID))
        XCTAssertEqual(s.datasets.all.count, 1)
    }
}

/// The contract on the data directory.
/// What the data directory adds to the contract.
final class DirectoryStoreTests: XCTestCase {
    let contract = StoreContractTests(name: "reopen", testClosure: { _ in })

    override func tearDown() { contract.tearDown() }

    /// What the directory adds: a reopened store reads what the last one wrote, and
    /// `commitEpoch` wrote the checkpoint file before the metrics.
    func testReopenedDirectoryHoldsTheCommittedEpoch() throws {
        let s = try contract.makeStores()
        let job = try contract.newJob(s.jobs)
        _ = try s.jobs.claim(node: "n")
        try s.artifacts.writeGraph(job.id, try JobSpec(json: StoreContractTests.specJSON).model.json)
        let c = try contract.checkpoint(job.id, epoch: 1)
        try s.jobs.commitEpoch(job.id, metrics: c.metrics, warnings: [], weights: c.weights, optimizer: c.optimizer, artifacts: s.artifacts)
        let dir = try XCTUnwrap(contract.directories.last)
        let reopened = try DirectoryJobStore(directory: dir)
        XCTAssertEqual(reopened.metrics(job.id)["epochs"]?.arrayValue?.count, 1)
        XCTAssertEqual(try DirectoryArtifactStore(directory: dir).latest(job.id)?.epoch, 1)
        XCTAssertEqual(try reopened.requeueAbandoned(), [job.id], "a job left running by a process that is gone is queued again")
    }
}

/// The contract on PostgreSQL: a throwaway server for the process, a database per test.
final class PostgresStoreContractTests: StoreContractTests {
    var databases: [PostgresDatabase] = []

    override func makeStores() throws -> Stores {
        let database = try PostgresDatabase(url: try ClusterDatabase.freshURL())
        databases.append(database)
        return Stores(jobs: PostgresJobStore(database: database, node: "n", lease: 30), artifacts: PostgresArtifactStore(database: database),
                      datasets: PostgresDatasetStore(database: database))
    }

    override func tearDown() {
        for database in databases { database.shutdown() }
    }

    /// What the database adds to the contract: a write for a claim another node took
    /// over is refused, and the epoch commit is one transaction.
    func testClaimTakenOverAfterItsLeaseIsFenced() throws {
        let database = try PostgresDatabase(url: try ClusterDatabase.freshURL())
        databases.append(database)
        let slow = PostgresJobStore(database: database, node: "slow", lease: 0.5)
        let fast = PostgresJobStore(database: database, node: "fast", lease: 30)
        let artifacts = PostgresArtifactStore(database: database)
        let job = try newJob(slow)
        XCTAssertEqual(try slow.claim(node: "slow")?.id, job.id)
        try artifacts.writeGraph(job.id, try JobSpec(json: Self.specJSON).model.json)
        let one = try checkpoint(job.id, epoch: 1)
        try slow.commitEpoch(job.id, metrics: one.metrics, warnings: [], weights: one.weights, optimizer: one.optimizer, artifacts: artifacts)
        usleep(700_000)
        // The lease ran out: another node takes the job over and resumes it.
        let taken = try XCTUnwrap(fast.claim(node: "fast"))
        XCTAssertEqual(taken.id, job.id)
        XCTAssertEqual(taken.node, "fast")
        XCTAssertEqual(try artifacts.latest(job.id)?.epoch, 1)
        XCTAssertFalse(try slow.heartbeat(job.id, node: "slow"))
        let two = try checkpoint(job.id, epoch: 2)
        XCTAssertThrowsError(try slow.commitEpoch(job.id, metrics: two.metrics, warnings: [], weights: two.weights, optimizer: two.optimizer, artifacts: artifacts)) {
            XCTAssertTrue($0 is ClaimLost, "\($0)")
        }
        XCTAssertThrowsError(try slow.complete(job.id, warnings: [])) { XCTAssertTrue($0 is ClaimLost, "\($0)") }
        XCTAssertEqual(try artifacts.latest(job.id)?.epoch, 1, "nothing of the stale write landed")
        XCTAssertEqual(fast.metrics(job.id)["epochs"]?.arrayValue?.count, 1)
        try fast.commitEpoch(job.id, metrics: two.metrics, warnings: [], weights: two.weights, optimizer: two.optimizer, artifacts: artifacts)
        try fast.complete(job.id, warnings: [])
        XCTAssertEqual(fast.job(job.id)?.status, .succeeded)
        XCTAssertEqual(try artifacts.latest(job.id)?.epoch, 2)
        // Old checkpoints leave no blobs behind.
        XCTAssertEqual(try database.pool.query("SELECT count(*) AS n FROM kiln_blobs")[0].int("n"), 2)
    }

    func testANulCharacterIsTheSendersError() throws {
        let database = try PostgresDatabase(url: try ClusterDatabase.freshURL())
        databases.append(database)
        let jobs = PostgresJobStore(database: database, node: "n", lease: 30)
        let spec = try JobSpec(json: Self.specJSON)
        let job = Job(id: jobs.newID(), name: "nul\u{0}name", epochs: 1, specHash: "x", seed: 0)
        XCTAssertThrowsError(try jobs.create(job, spec: spec)) { error in
            XCTAssertEqual((error as? ServiceError)?.kind, .invalid, "\(error)")
        }
        XCTAssertTrue(jobs.all().isEmpty)
        XCTAssertNil(database.unavailableReason)
    }

    func testCancellingOnAnotherNodeStopsTheHeartbeat() throws {
        let database = try PostgresDatabase(url: try ClusterDatabase.freshURL())
        databases.append(database)
        let api = PostgresJobStore(database: database, node: "api", lease: 30)
        let worker = PostgresJobStore(database: database, node: "worker", lease: 30)
        let job = try newJob(api)
        XCTAssertEqual(try worker.claim(node: "worker")?.id, job.id)
        XCTAssertTrue(try worker.heartbeat(job.id, node: "worker"))
        XCTAssertFalse(try api.cancelQueued(job.id))
        XCTAssertTrue(try api.cancelRunning(job.id))
        XCTAssertEqual(api.job(job.id)?.status, .cancelled)
        XCTAssertFalse(try worker.heartbeat(job.id, node: "worker"))
        XCTAssertFalse(try api.cancelRunning(job.id), "a finished job is not cancelled again")
    }

    func testUnreachableDatabaseIsUnavailableNotMissing() throws {
        let server = try PostgresServer()
        defer { server.destroy() }
        let database = try PostgresDatabase(url: server.url())
        defer { database.shutdown() }
        let jobs = PostgresJobStore(database: database, node: "n", lease: 30)
        let job = try newJob(jobs)
        let running = try newJob(jobs, name: "running")
        XCTAssertEqual(try jobs.claim(node: "n")?.id, job.id)
        // A claim that cannot be renewed for its lease may be another node's by now: the run stops.
        let heartbeat = Heartbeat(jobs: jobs, id: job.id, node: "n", lease: 3)
        defer { heartbeat.stop() }
        try server.stop()
        XCTAssertFalse(database.probe())
        let deadline = Date().addingTimeInterval(15)
        while !heartbeat.lost && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        XCTAssertTrue(heartbeat.lost, "no renewal for longer than the lease")
        XCTAssertNotNil(database.unavailableReason)
        XCTAssertThrowsError(try jobs.claim(node: "n")) { error in
            XCTAssertEqual((error as? ServiceError)?.kind, .unavailable, "\(error)")
        }
        XCTAssertNil(jobs.job(running.id))
        try server.start()
        XCTAssertTrue(database.probe(), "the pool reconnects on its own")
        XCTAssertNil(database.unavailableReason)
        XCTAssertEqual(jobs.job(running.id)?.status, .queued, "what was acknowledged is still there")
        XCTAssertEqual(jobs.job(job.id)?.status, .running)
    }
}

/// One throwaway PostgreSQL per test process, and a fresh database per caller.
enum ClusterDatabase {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var server: PostgresServer?
    nonisolated(unsafe) private static var counter = 0

    static func shared() throws -> PostgresServer {
        lock.lock()
        defer { lock.unlock() }
        if let server { return server }
        let started = try PostgresServer()
        server = started
        return started
    }

    static func freshURL() throws -> String {
        let server = try shared()
        lock.lock()
        counter += 1
        let name = "kiln_service_\(getpid())_\(counter)"
        lock.unlock()
        let admin = try PostgresConnection(url: server.url())
        defer { admin.close() }
        try admin.execute("CREATE DATABASE \(name)")
        return server.url(database: name)
    }
}
