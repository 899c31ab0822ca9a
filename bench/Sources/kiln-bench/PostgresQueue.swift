import Foundation
import KilnJSON
import KilnPostgres

/// `kiln-bench pg-queue URL [JOBS] [WORKERS] [SAMPLES]`: the PostgreSQL job queue on a
/// database of its own (bench/pg-queue.sh starts a throwaway one).
/// - claims per second: JOBS no-op jobs queued, then WORKERS threads claim and complete
///   them until none is left; first with every claim and every completion its own
///   committed transaction, then with `completeAndClaimNext` (one commit per job).
/// - enqueue-to-claim latency: one idle worker sleeps in `PostgresQueueWaiter` (safety
///   interval 5 s, so only the NOTIFY can wake it sooner); SAMPLES jobs are queued one at
///   a time, each once the worker is idle again, and the time from the start of
///   `enqueue` to the return of the worker's claim is recorded.
func postgresQueue(url: String, jobs: Int, workers: Int, samples: Int) throws {
    let pool = try PostgresPool(url: url, maxConnections: workers + 4)
    try KilnSchema.migrate(pool)
    try pool.query("TRUNCATE kiln_job_epochs, kiln_jobs")
    let queue = PostgresJobQueue(pool: pool)
    let spec: JSON = ["name": "noop", "data": ["source": "none"]]

    // Throughput: each no-op job claimed and completed in separate transactions, then
    // with the completion and the next claim in one.
    for fused in [false, true] {
        try pool.query("TRUNCATE kiln_job_epochs, kiln_jobs")
        try pool.transaction { c in
            for i in 0..<jobs { _ = try queue.enqueue(id: "noop-\(i)", name: "noop", spec: spec, on: c) }
        }
        let claimed = LockedCounter()
        let failure = LockedCounter()
        let start = now()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            do {
                var next = try queue.claim(node: "bench-\(w)", lease: 30)
                while let claim = next {
                    if fused {
                        let (completed, following) = try queue.completeAndClaimNext(claim, result: [:], lease: 30)
                        guard completed else { failure.add(1); break }
                        next = following
                    } else {
                        guard try queue.complete(claim, result: [:]) else { failure.add(1); break }
                        next = try queue.claim(node: "bench-\(w)", lease: 30)
                    }
                    claimed.add(1)
                }
            } catch {
                FileHandle.standardError.write(Data("worker \(w): \(error)\n".utf8))
                failure.add(1)
            }
        }
        let seconds = now() - start
        guard claimed.value == jobs, failure.value == 0 else {
            throw BenchError("claimed \(claimed.value) of \(jobs) jobs, \(failure.value) failures")
        }
        let wrong = try pool.query("SELECT count(*) AS n FROM kiln_jobs WHERE attempts <> 1 OR status <> 'succeeded'")[0].int("n")
        emit(fused ? "pg_claims_per_second_fused" : "pg_claims_per_second", Double(jobs) / seconds, "claims/s", [
            ("jobs", JSON(jobs)), ("workers", JSON(workers)), ("seconds", JSON(seconds)), ("jobs_not_exactly_once", JSON(wrong)),
            ("note", .string(fused ? "no-op jobs; completion and next claim in one committed transaction (one WAL flush per job), fsync on"
                                   : "no-op jobs; claim and completion each their own committed transaction (two WAL flushes per job), fsync on")),
        ])
    }
    try pool.query("TRUNCATE kiln_job_epochs, kiln_jobs")

    // Latency from enqueue to claim on an idle worker.
    let waiter = try PostgresQueueWaiter(queue: queue, safetyInterval: 5)
    defer { waiter.stop() }
    let posted = LockedTimes(), taken = LockedTimes()
    let idle = DispatchSemaphore(value: 0)
    let worker = Thread {
        for _ in 0..<samples {
            idle.signal()
            guard let claim = try? waiter.nextClaim(node: "bench-idle", lease: 30, until: Date().addingTimeInterval(30)) else { return }
            taken.set(claim.id, now())
            _ = try? queue.complete(claim, result: [:])
        }
        idle.signal()
    }
    worker.start()
    for i in 0..<samples {
        idle.wait()
        usleep(UInt32.random(in: 20_000...40_000))  // the worker is asleep in its wait by now
        let id = "latency-\(i)"
        posted.set(id, now())
        try queue.enqueue(id: id, name: "noop", spec: spec)
    }
    idle.wait()
    var latencies: [Double] = []
    for i in 0..<samples {
        let id = "latency-\(i)"
        guard let p = posted.get(id), let t = taken.get(id) else { throw BenchError("job \(id) was not claimed") }
        latencies.append((t - p) * 1000)
    }
    latencies.sort()
    func percentile(_ q: Double) -> Double { latencies[min(latencies.count - 1, Int(q * Double(latencies.count)))] }
    let extra: [(String, JSON)] = [("samples", JSON(samples)), ("note", "start of enqueue to the idle worker's claim, woken by NOTIFY (safety poll 5 s)")]
    emit("pg_enqueue_to_claim_p50", percentile(0.5), "ms", extra)
    emit("pg_enqueue_to_claim_p99", percentile(0.99), "ms", extra)
    emit("pg_enqueue_to_claim_max", latencies.last ?? 0, "ms", extra)
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ n: Int) { lock.lock(); count += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

final class LockedTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var times: [String: Double] = [:]
    func set(_ key: String, _ t: Double) { lock.lock(); times[key] = t; lock.unlock() }
    func get(_ key: String) -> Double? { lock.lock(); defer { lock.unlock() }; return times[key] }
}
