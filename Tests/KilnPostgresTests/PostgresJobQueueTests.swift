import Foundation
import KilnJSON
import KilnPostgres
import KilnTestSupport
import XCTest

final class PostgresJobQueueTests: PostgresTestCase {
    private func spec(_ i: Int) -> JSON { ["name": .string("job-\(i)"), "train": ["epochs": 2, "seed": .number(Double(i))]] }

    func testClaimsInOrderAndRecordsNodeAndLease() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        for i in 0..<3 { try queue.enqueue(id: "j\(i)", name: "mlp", spec: spec(i)) }
        let first = try XCTUnwrap(try queue.claim(node: "node-a", lease: 30))
        XCTAssertEqual(first.id, "j0")
        XCTAssertEqual(first.attempt, 1)
        XCTAssertFalse(first.isResumed)
        XCTAssertEqual(first.job.spec, spec(0))
        XCTAssertEqual(first.job.status, .running)
        XCTAssertEqual(first.job.node, "node-a")
        let lease = try XCTUnwrap(first.job.leaseExpiresAt).timeIntervalSince(first.job.createdAt)
        XCTAssertEqual(lease, 30, accuracy: 5)
        XCTAssertEqual(try queue.claim(node: "node-b", lease: 30)?.id, "j1")
        XCTAssertEqual(try queue.depth().queued, 1)
        XCTAssertEqual(try queue.depth().running, 2)
        XCTAssertTrue(try queue.complete(first, result: ["accuracy": 0.9]))
        let done = try XCTUnwrap(try queue.job(id: "j0"))
        XCTAssertEqual(done.status, .succeeded)
        XCTAssertEqual(done.result, ["accuracy": 0.9])
        XCTAssertNil(done.leaseExpiresAt)
        XCTAssertNotNil(done.finishedAt)
        // Finished jobs are not claimed again, nor completed twice.
        XCTAssertFalse(try queue.complete(first, result: [:]))
        XCTAssertEqual(try queue.claim(node: "node-a", lease: 30)?.id, "j2")
        XCTAssertNil(try queue.claim(node: "node-a", lease: 30))
        XCTAssertThrowsError(try queue.enqueue(id: "j0", name: "mlp", spec: spec(0))) {
            XCTAssertEqual(($0 as? PostgresError)?.isUniqueViolation, true)
        }
    }

    func testConcurrentClaimersNeverClaimAJobTwice() throws {
        // A durable cluster of its own: with fsync on, every commit holds its row locks
        // for a real flush, which is when a claimer without row locks would take a job
        // another one is committing.
        let server = try PostgresServer(durable: true)
        defer { server.destroy() }
        let pool = try migratedPool(maxConnections: 8, on: server)
        let queue = PostgresJobQueue(pool: pool)
        let jobs = 200
        try pool.transaction { c in
            for i in 0..<jobs { _ = try queue.enqueue(id: String(format: "job-%04d", i), name: "noop", spec: ["i": .number(Double(i))], on: c) }
        }
        let claimed = Locked<[String: String]>([:])
        let duplicates = Locked<[String]>([])
        let errors = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { worker in
            let node = "node-\(worker)"
            do {
                while let claim = try queue.claim(node: node, lease: 60) {
                    claimed.with { seen in
                        if seen[claim.id] != nil { duplicates.with { $0.append(claim.id) } }
                        seen[claim.id] = node
                    }
                    guard try queue.complete(claim, result: ["by": .string(node)]) else {
                        errors.with { $0.append("\(claim.id): completion refused") }
                        continue
                    }
                }
            } catch {
                errors.with { $0.append("\(node): \(error)") }
            }
        }
        XCTAssertEqual(errors.snapshot, [])
        XCTAssertEqual(duplicates.snapshot, [])
        XCTAssertEqual(claimed.snapshot.count, jobs)
        XCTAssertGreaterThan(Set(claimed.snapshot.values).count, 1, "the work was shared")
        let row = try pool.query("""
            SELECT count(*) AS n, count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1) AS once,
                   count(*) FILTER (WHERE result->>'by' = node) AS consistent
            FROM kiln_jobs
            """)[0]
        XCTAssertEqual(try row.int("n"), jobs)
        XCTAssertEqual(try row.int("once"), jobs)
        XCTAssertEqual(try row.int("consistent"), jobs)
    }

    func testAnExpiredLeaseIsReclaimedAndTheOldOwnerLosesTheJob() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "long", name: "mlp", spec: spec(1))
        let stale = try XCTUnwrap(try queue.claim(node: "node-a", lease: 0.3))
        XCTAssertEqual(try queue.commitEpoch(stale, epoch: 1, metrics: ["loss": 1.0], lease: 0.3) { _ in 0 }, .recorded)
        // While the lease holds, nobody else gets the job.
        XCTAssertNil(try queue.claim(node: "node-b", lease: 30))
        guard case .owned = try queue.heartbeat(stale, lease: 0.3) else { return XCTFail("heartbeat within the lease") }
        usleep(500_000)  // node-a stops heartbeating (it died, or is partitioned away)

        let fresh = try XCTUnwrap(try queue.claim(node: "node-b", lease: 30))
        XCTAssertEqual(fresh.id, "long")
        XCTAssertEqual(fresh.attempt, 2)
        XCTAssertTrue(fresh.isResumed)
        XCTAssertEqual(fresh.job.lastEpoch, 1)
        XCTAssertEqual(fresh.job.checkpointBlob, "checkpoint/long/1")

        // The old owner finds out on its next heartbeat, and none of its writes land.
        XCTAssertEqual(try queue.heartbeat(stale, lease: 30), .lost)
        XCTAssertEqual(try queue.commitEpoch(stale, epoch: 2, metrics: ["loss": 0.5], lease: 30), .lostOwnership)
        XCTAssertFalse(try queue.complete(stale, result: ["by": "a"]))
        XCTAssertFalse(try queue.fail(stale, error: "late"))
        // The same node name claiming again is a new attempt too: the attempt fences, not the name.
        let sameName = PostgresJobQueue.Claim(job: fresh.job, node: "node-b", attempt: 1)
        XCTAssertEqual(try queue.heartbeat(sameName, lease: 30), .lost)

        XCTAssertEqual(try queue.commitEpoch(fresh, epoch: 2, metrics: ["loss": 0.4], lease: 30), .recorded)
        XCTAssertTrue(try queue.complete(fresh, result: ["by": "b"]))
        let job = try XCTUnwrap(try queue.job(id: "long"))
        XCTAssertEqual(job.status, .succeeded)
        XCTAssertEqual(job.node, "node-b")
        XCTAssertEqual(job.result, ["by": "b"])
        XCTAssertEqual(try queue.epochs(jobID: "long").map { "\($0.epoch)@\($0.node)#\($0.attempt)" }, ["1@node-a#1", "2@node-b#2"])
    }

    func testAJobWhoseLeaseKeepsExpiringIsFailedAfterMaxAttempts() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "crashy", name: "mlp", spec: spec(1), maxAttempts: 2)
        _ = try XCTUnwrap(try queue.claim(node: "a", lease: 0.1))
        usleep(200_000)
        XCTAssertEqual(try queue.claim(node: "b", lease: 0.1)?.attempt, 2)
        usleep(200_000)
        XCTAssertNil(try queue.claim(node: "c", lease: 0.1))
        let job = try XCTUnwrap(try queue.job(id: "crashy"))
        XCTAssertEqual(job.status, .failed)
        XCTAssertTrue(job.error?.contains("expired 2 times") ?? false, job.error ?? "")
    }

    func testEpochCommitIsAtomicAndRecordedOnce() throws {
        let pool = try migratedPool()
        let queue = PostgresJobQueue(pool: pool)
        try queue.enqueue(id: "e", name: "mlp", spec: spec(1))
        let claim = try XCTUnwrap(try queue.claim(node: "a", lease: 30))
        let checkpoint1 = [UInt8](repeating: 1, count: 2_500_000)
        XCTAssertEqual(try queue.commitEpoch(claim, epoch: 1, metrics: ["loss": 2.0], lease: 30, checkpoint: reader(checkpoint1)), .recorded)

        // The worker dies in the middle of writing epoch 2's checkpoint: nothing of
        // epoch 2 is visible, epoch 1 and its checkpoint stand.
        struct Killed: Error {}
        var written = 0
        XCTAssertThrowsError(try queue.commitEpoch(claim, epoch: 2, metrics: ["loss": 1.0], lease: 30) { buffer in
            if written > 1_500_000 { throw Killed() }
            memset(buffer.baseAddress!, 2, buffer.count)
            written += buffer.count
            return buffer.count
        }) { XCTAssertTrue($0 is Killed) }
        var job = try XCTUnwrap(try queue.job(id: "e"))
        XCTAssertEqual(job.lastEpoch, 1)
        XCTAssertEqual(job.checkpointBlob, "checkpoint/e/1")
        XCTAssertEqual(try queue.epochs(jobID: "e").map(\.epoch), [1])
        XCTAssertEqual(try pool.query("SELECT array_agg(id)::text AS ids FROM kiln_blobs")[0].string("ids"), "{checkpoint/e/1}")
        var restored: [UInt8] = []
        XCTAssertEqual(try queue.readCheckpoint(jobID: "e") { restored.append(contentsOf: $0) }, 1)
        XCTAssertTrue(restored == checkpoint1)

        // The connection dies in the middle of the commit (as when the worker process is
        // killed): the server aborts the open transaction, nothing of epoch 2 lands.
        let admin = try PostgresConnection(url: pool.url)
        written = 0
        XCTAssertThrowsError(try queue.commitEpoch(claim, epoch: 2, metrics: ["loss": 1.0], lease: 30) { buffer in
            if written > 1_500_000 {
                // Ends every other connection on this database, the committing one included.
                _ = try? admin.query("""
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                    """)
            }
            memset(buffer.baseAddress!, 2, buffer.count)
            written += buffer.count
            return buffer.count
        }) { XCTAssertTrue(($0 as? PostgresError)?.isConnectionFailure ?? false, "\($0)") }
        XCTAssertEqual(try queue.job(id: "e")?.lastEpoch, 1)
        XCTAssertEqual(try queue.epochs(jobID: "e").map(\.epoch), [1])
        XCTAssertEqual(try pool.query("SELECT count(*) AS n FROM kiln_blob_chunks WHERE blob_id <> $1", [.text("checkpoint/e/1")])[0].int("n"), 0)

        // Epoch 2 for real; the old checkpoint goes in the same transaction.
        let checkpoint2 = [UInt8](repeating: 2, count: 1_000_000)
        XCTAssertEqual(try queue.commitEpoch(claim, epoch: 2, metrics: ["loss": 1.0], lease: 30, checkpoint: reader(checkpoint2)), .recorded)
        // A retry of the same epoch (the commit's answer was lost) changes nothing.
        XCTAssertEqual(try queue.commitEpoch(claim, epoch: 2, metrics: ["loss": 99.0], lease: 30, checkpoint: reader([9])), .alreadyRecorded)
        job = try XCTUnwrap(try queue.job(id: "e"))
        XCTAssertEqual(job.lastEpoch, 2)
        XCTAssertEqual(try queue.epochs(jobID: "e").map(\.metrics), [["loss": 2.0], ["loss": 1.0]])
        XCTAssertEqual(try pool.query("SELECT array_agg(id)::text AS ids FROM kiln_blobs")[0].string("ids"), "{checkpoint/e/2}")
        restored = []
        XCTAssertEqual(try queue.readCheckpoint(jobID: "e") { restored.append(contentsOf: $0) }, 2)
        XCTAssertTrue(restored == checkpoint2)
        // Metrics only: the checkpoint stays.
        XCTAssertEqual(try queue.commitEpoch(claim, epoch: 3, metrics: ["loss": 0.5], lease: 30), .recorded)
        XCTAssertEqual(try queue.job(id: "e")?.checkpointBlob, "checkpoint/e/2")
        XCTAssertThrowsError(try queue.commitEpoch(claim, epoch: 0, metrics: [:], lease: 30))
    }

    func testCancellingQueuedAndRunningJobs() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "q", name: "mlp", spec: spec(1))
        try queue.enqueue(id: "r", name: "mlp", spec: spec(2))
        XCTAssertEqual(try queue.cancel(id: "q"), .cancelled(wasRunning: false))
        let running = try XCTUnwrap(try queue.claim(node: "a", lease: 30))
        XCTAssertEqual(running.id, "r", "a cancelled job is never claimed")
        XCTAssertEqual(try queue.cancel(id: "r"), .cancelled(wasRunning: true))
        XCTAssertEqual(try queue.heartbeat(running, lease: 30), .cancelled)
        XCTAssertEqual(try queue.commitEpoch(running, epoch: 1, metrics: [:], lease: 30), .lostOwnership)
        XCTAssertFalse(try queue.complete(running, result: [:]))
        XCTAssertEqual(try queue.job(id: "r")?.status, .cancelled)
        XCTAssertEqual(try queue.cancel(id: "r"), .alreadyFinished(.cancelled))
        XCTAssertEqual(try queue.cancel(id: "missing"), .notFound)
        XCTAssertNil(try queue.claim(node: "a", lease: 30))
    }

    func testCompleteAndClaimNextIsOneTransaction() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        for i in 0..<2 { try queue.enqueue(id: "c\(i)", name: "mlp", spec: spec(i)) }
        let first = try XCTUnwrap(try queue.claim(node: "a", lease: 30))
        let (completed, next) = try queue.completeAndClaimNext(first, result: ["ok": true], lease: 30)
        XCTAssertTrue(completed)
        XCTAssertEqual(next?.id, "c1")
        XCTAssertEqual(next?.node, "a")
        XCTAssertEqual(try queue.job(id: "c0")?.status, .succeeded)
        // A completion that is refused claims nothing.
        try queue.enqueue(id: "c2", name: "mlp", spec: spec(2))
        let refused = try queue.completeAndClaimNext(first, result: [:], lease: 30)
        XCTAssertFalse(refused.completed)
        XCTAssertNil(refused.next)
        XCTAssertEqual(try queue.job(id: "c2")?.status, .queued)
        let last = try queue.completeAndClaimNext(try XCTUnwrap(next), result: [:], lease: 30)
        XCTAssertEqual(last.next?.id, "c2")
        XCTAssertEqual(try queue.completeAndClaimNext(try XCTUnwrap(last.next), result: [:], lease: 30).next?.id, nil)
    }

    func testTheLeaseKeeperHoldsTheJobAndReportsCancellation() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "kept", name: "mlp", spec: spec(1))
        let claim = try XCTUnwrap(try queue.claim(node: "a", lease: 0.6))
        let ended = Locked<[PostgresJobQueue.Ownership]>([])
        let keeper = PostgresLeaseKeeper(queue: queue, claim: claim, lease: 0.6) { ownership in ended.with { $0.append(ownership) } }
        defer { keeper.stop() }
        // Three leases long: without renewals the job would be free after the first.
        usleep(1_800_000)
        XCTAssertNil(try queue.claim(node: "b", lease: 30))
        XCTAssertFalse(keeper.shouldStop)
        XCTAssertEqual(try queue.cancel(id: "kept"), .cancelled(wasRunning: true))
        eventually("the keeper to see the cancellation") { keeper.shouldStop }
        XCTAssertEqual(keeper.ownership, .cancelled)
        eventually("onEnd") { ended.snapshot == [.cancelled] }
    }

    func testTheLeaseKeeperReportsAJobTakenOver() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "taken", name: "mlp", spec: spec(1))
        let claim = try XCTUnwrap(try queue.claim(node: "a", lease: 0.2))
        usleep(300_000)  // the lease runs out before the keeper starts (a stalled worker)
        XCTAssertNotNil(try queue.claim(node: "b", lease: 30))
        let keeper = PostgresLeaseKeeper(queue: queue, claim: claim, lease: 0.3, interval: 0.1)
        defer { keeper.stop() }
        eventually("the keeper to see the loss") { keeper.ownership == .lost }
    }

    func testTheLeaseKeeperGivesUpWhenTheDatabaseStaysAwayLongerThanTheLease() throws {
        let server = try PostgresServer()
        defer { server.destroy() }
        let queue = PostgresJobQueue(pool: try migratedPool(on: server))
        try queue.enqueue(id: "far", name: "mlp", spec: spec(1))
        let claim = try XCTUnwrap(try queue.claim(node: "a", lease: 1))
        let keeper = PostgresLeaseKeeper(queue: queue, claim: claim, lease: 1, interval: 0.2)
        defer { keeper.stop() }
        usleep(500_000)
        XCTAssertFalse(keeper.shouldStop)
        try server.stop()
        // Failed heartbeats alone do not end the job; the lease running out does.
        usleep(300_000)
        XCTAssertFalse(keeper.shouldStop)
        eventually("the keeper to give up") { keeper.ownership == .lost }
        try server.start()
    }

    func testReleasedJobsAreClaimedAgainAtOnce() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        try queue.enqueue(id: "x", name: "mlp", spec: spec(1))
        let first = try XCTUnwrap(try queue.claim(node: "a", lease: 30))
        XCTAssertTrue(try queue.release(first))
        XCTAssertEqual(try queue.heartbeat(first, lease: 30), .lost)
        let second = try XCTUnwrap(try queue.claim(node: "b", lease: 30))
        XCTAssertEqual(second.attempt, 2)
    }

    func testEveryStepIsAnnouncedOnItsChannel() throws {
        let pool = try migratedPool()
        let queue = PostgresJobQueue(pool: pool)
        let heard = Locked<[(String, JSON?)]>([])
        let listener = try PostgresListener(url: pool.url, channels: PostgresJobQueue.Channel.all) { channel, payload in
            heard.with { $0.append((channel, try? JSON.parse(payload))) }
        }
        defer { listener.stop() }
        try queue.enqueue(id: "n1", name: "digits", spec: spec(1))
        let claim = try XCTUnwrap(try queue.claim(node: "a", lease: 30))
        _ = try queue.commitEpoch(claim, epoch: 1, metrics: ["loss": 1.0], lease: 30)
        try queue.complete(claim, result: [:])
        try queue.enqueue(id: "n2", name: "digits", spec: spec(2))
        let second = try XCTUnwrap(try queue.claim(node: "b", lease: 30))
        _ = try queue.cancel(id: "n2")
        XCTAssertFalse(try queue.release(second))
        try queue.enqueue(id: "n3", name: "digits", spec: spec(3))
        let third = try XCTUnwrap(try queue.claim(node: "c", lease: 30))
        XCTAssertTrue(try queue.release(third))
        let expected: [(String, JSON)] = [
            ("kiln_jobs", ["id": "n1", "status": "queued"]),
            ("kiln_jobs", ["id": "n1", "status": "running", "node": "a"]),
            ("kiln_epochs", ["id": "n1", "epoch": 1]),
            ("kiln_jobs", ["id": "n1", "status": "succeeded"]),
            ("kiln_models", ["id": "n1", "name": "digits"]),
            ("kiln_jobs", ["id": "n2", "status": "queued"]),
            ("kiln_jobs", ["id": "n2", "status": "running", "node": "b"]),
            ("kiln_jobs", ["id": "n2", "status": "cancelled"]),
            ("kiln_cancel", ["id": "n2", "node": "b"]),
            ("kiln_jobs", ["id": "n3", "status": "queued"]),
            ("kiln_jobs", ["id": "n3", "status": "running", "node": "c"]),
            ("kiln_jobs", ["id": "n3", "status": "queued"]),
        ]
        eventually("every notification") { heard.snapshot.count >= expected.count }
        usleep(100_000)
        let got = heard.snapshot
        XCTAssertEqual(got.count, expected.count)
        for (i, (channel, payload)) in got.enumerated() where i < expected.count {
            XCTAssertEqual(channel, expected[i].0, "notification \(i)")
            XCTAssertEqual(payload, expected[i].1, "notification \(i)")
        }
    }

    func testAnIdleWorkerWakesOnANewJob() throws {
        let queue = PostgresJobQueue(pool: try migratedPool())
        // A long safety interval: only the notification can wake the worker in time.
        let waiter = try PostgresQueueWaiter(queue: queue, safetyInterval: 60)
        defer { waiter.stop() }
        let result = Locked<(String, Double)?>(nil)
        let started = Date()
        let worker = Thread {
            let claim = try? waiter.nextClaim(node: "w", lease: 30, until: Date().addingTimeInterval(30))
            result.with { $0 = claim.map { ($0.id, Date().timeIntervalSince(started)) } }
        }
        worker.start()
        usleep(300_000)  // the worker found nothing and sleeps
        XCTAssertNil(result.snapshot)
        let posted = Date()
        try queue.enqueue(id: "wake", name: "mlp", spec: spec(1))
        eventually("the claim") { result.snapshot != nil }
        XCTAssertEqual(result.snapshot?.0, "wake")
        XCTAssertLessThan(Date().timeIntervalSince(posted), 5)
        // With nothing queued it returns at its deadline.
        XCTAssertNil(try waiter.nextClaim(node: "w", lease: 30, until: Date().addingTimeInterval(0.2)))
    }

    private func reader(_ bytes: [UInt8]) -> (UnsafeMutableRawBufferPointer) throws -> Int {
        var offset = 0
        return { buffer in
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { if n > 0 { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) } }
            offset += n
            return n
        }
    }
}
