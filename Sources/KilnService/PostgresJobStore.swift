import Foundation
import KilnData
import KilnJSON
import KilnPostgres
import KilnSpec

/// The job store of a cluster: jobs, specs, metrics and warnings in PostgreSQL, the
/// queue being `PostgresJobQueue` (`SELECT … FOR UPDATE SKIP LOCKED`, leases renewed by
/// heartbeat). Every write a worker makes for a job it claimed is fenced by the claim's
/// node and attempt, in the same statement or transaction, so a worker whose lease ran
/// out can no longer change a job another worker took over.
public final class PostgresJobStore: JobStore, @unchecked Sendable {
    let database: PostgresDatabase
    let node: String
    let lease: Double
    private let lock = NSLock()
    /// The claims this node holds, by job id.
    private var claims: [String: PostgresJobQueue.Claim] = [:]
    /// Step progress of jobs running here (not kept in the database).
    private var progress: [String: (epoch: Int, step: Int, steps: Int)] = [:]

    public init(database: PostgresDatabase, node: String, lease: Double) {
        self.database = database
        self.node = node
        self.lease = lease
    }

    private var pool: PostgresPool { database.pool }

    private func claim(for id: String) -> PostgresJobQueue.Claim? { lock.lock(); defer { lock.unlock() }; return claims[id] }

    private func release(_ id: String) {
        lock.lock()
        claims[id] = nil
        progress[id] = nil
        lock.unlock()
    }

    /// A fence on the claim this node holds for the job, if any: `AND node = … AND
    /// attempts = …` with its parameters numbered from `next`.
    private func fence(_ id: String, next: Int) -> (sql: String, parameters: [PostgresValue]) {
        guard let claim = claim(for: id) else { return ("", []) }
        return (" AND node = $\(next) AND attempts = $\(next + 1)", [.text(claim.node), .int(claim.attempt)])
    }

    // MARK: - Rows

    static let columns = "id, name, status, node, attempts, last_epoch, error, created_at, started_at, finished_at, record"

    private func decode(_ row: PostgresRow) throws -> Job {
        let id = try row.string("id")
        let name = try row.string("name")
        var job = (try row.value("record").jsonValue).flatMap(Job.init(json:)) ?? Job(id: id, name: name, epochs: 0, specHash: "", seed: 0)
        job.status = Job.Status(rawValue: try row.string("status")) ?? .failed
        job.node = try row.value("node").stringValue
        job.error = try row.value("error").stringValue
        job.createdAt = try row.date("created_at")
        job.startedAt = try row.value("started_at").dateValue
        job.finishedAt = try row.value("finished_at").dateValue
        let lastEpoch = try row.int("last_epoch")
        if lastEpoch > 0 || job.status == .queued { job.epoch = lastEpoch }
        lock.lock()
        if let p = progress[id], job.status == .running { job.epoch = p.epoch; job.step = p.step; job.steps = p.steps }
        lock.unlock()
        return job
    }

    private func notify(_ channel: String, _ payload: JSON, on c: PostgresConnection) throws {
        try c.query("SELECT pg_notify($1, $2) AS notified", [.text(channel), .text(payload.serialized())])
    }

    // MARK: - JobStore

    public func newID() -> String { StoredName.newID("job") }

    public func create(_ job: Job, spec: JobSpec) throws {
        do {
            try database.run {
                try pool.query("""
                    WITH j AS (INSERT INTO kiln_jobs (id, name, spec, record, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id, status)
                    SELECT pg_notify('kiln_jobs', json_build_object('id', j.id, 'status', j.status)::text) AS notified FROM j
                    """, [.text(job.id), .text(job.name), .json(spec.json), .json(job.json), .timestamp(job.createdAt)])
            }
        } catch let error as PostgresError where error.sqlState == "22P05" || error.isInvalidArgument {
            // PostgreSQL text and jsonb cannot hold U+0000: the sender's problem, not the store's.
            throw ServiceError(.invalid, code: "invalid_spec", "the spec holds a NUL character (\\u0000), which cannot be stored")
        }
    }

    public func job(_ id: String) -> Job? {
        database.read {
            try pool.query("SELECT \(Self.columns) FROM kiln_jobs WHERE id = $1", [.text(id)]).first.map(decode)
        } ?? nil
    }

    public func all() -> [Job] {
        database.read { try pool.query("SELECT \(Self.columns) FROM kiln_jobs ORDER BY created_at, id").rows.map(decode) } ?? []
    }

    public func spec(_ id: String) -> JSON? {
        database.read { try pool.query("SELECT spec FROM kiln_jobs WHERE id = $1", [.text(id)]).first?.json("spec") } ?? nil
    }

    public func resolveModel(_ nameOrID: String) -> Job? {
        database.read {
            try pool.query("""
                SELECT \(Self.columns) FROM kiln_jobs WHERE id = $1
                UNION ALL
                (SELECT \(Self.columns) FROM kiln_jobs WHERE name = $1 AND status = 'succeeded'
                 ORDER BY coalesce(finished_at, created_at) DESC LIMIT 1)
                LIMIT 1
                """, [.text(nameOrID)]).first.map(decode)
        } ?? nil
    }

    public var queuedCount: Int {
        database.read { try pool.query("SELECT count(*) AS n FROM kiln_jobs WHERE status = 'queued'")[0].int("n") } ?? 0
    }

    public func claim(node: String) throws -> Job? {
        try database.run {
            guard let claim = try database.queue.claim(node: node, lease: lease) else { return nil }
            lock.lock()
            claims[claim.id] = claim
            progress[claim.id] = nil
            lock.unlock()
            return try pool.query("SELECT \(Self.columns) FROM kiln_jobs WHERE id = $1", [.text(claim.id)]).first.map(decode)
        }
    }

    public func heartbeat(_ id: String, node: String) throws -> Bool {
        guard let claim = claim(for: id), claim.node == node else { return false }
        return try database.run {
            if case .owned = try database.queue.heartbeat(claim, lease: lease) { return true }
            return false
        }
    }

    @discardableResult
    public func update(_ id: String, _ change: (inout Job) -> Void) throws -> Job? {
        try database.run {
            try pool.transaction { c -> Job? in
                guard let row = try c.query("SELECT \(Self.columns) FROM kiln_jobs WHERE id = $1 FOR UPDATE", [.text(id)]).first else { return nil }
                let before = try decode(row)
                var after = before
                change(&after)
                try c.query("UPDATE kiln_jobs SET record = $2, updated_at = now() WHERE id = $1", [.text(id), .json(after.json)])
                if after.status != before.status {
                    // A status change outside the queue's own transitions: resuming a
                    // failed or cancelled job puts it back in the queue.
                    try c.query("""
                        UPDATE kiln_jobs SET status = $2, error = $3, finished_at = $4, lease_expires_at = NULL WHERE id = $1
                        """, [.text(id), .text(after.status.rawValue), after.error.map { .text($0) } ?? .null,
                              after.finishedAt.map { .timestamp($0) } ?? .null])
                    try notify(PostgresJobQueue.Channel.jobs, ["id": .string(id), "status": .string(after.status.rawValue)], on: c)
                }
                return after
            }
        }
    }

    public func updateProgress(_ id: String, _ change: (inout Job) -> Void) {
        lock.lock()
        let known = progress[id]
        lock.unlock()
        var job: Job
        if let known {
            job = Job(id: id, name: "", epochs: 0, specHash: "", seed: 0)
            job.epoch = known.epoch; job.step = known.step; job.steps = known.steps
        } else {
            guard let stored = self.job(id) else { return }
            job = stored
        }
        change(&job)
        lock.lock()
        if claims[id] != nil { progress[id] = (job.epoch, job.step, job.steps) }
        lock.unlock()
    }

    public func recordEpoch(_ id: String, _ metrics: JSON, warnings: [String]) throws {
        try database.run {
            try pool.transaction { c in
                try writeEpoch(id, metrics, warnings: warnings, on: c)
                try notify(PostgresJobQueue.Channel.epochs, ["id": .string(id), "epoch": metrics["epoch"] ?? .null], on: c)
            }
        }
    }

    /// The epoch's metrics row (replacing it and any later one: they belong to a run
    /// that was interrupted), the job's last epoch, warnings and lease, fenced.
    private func writeEpoch(_ id: String, _ metrics: JSON, warnings: [String], on c: PostgresConnection) throws {
        let fence = fence(id, next: 2)
        guard let row = try c.query("SELECT node, attempts, last_epoch FROM kiln_jobs WHERE id = $1\(fence.sql) FOR UPDATE",
                                    [.text(id)] + fence.parameters).first else {
            if claim(for: id) != nil { throw ClaimLost(jobID: id) }
            throw ServiceError(.notFound, code: "job_not_found", "no job \(id)")
        }
        let lastEpoch = try row.int("last_epoch")
        let number = metrics["epoch"]?.intValue ?? lastEpoch + 1
        try c.query("DELETE FROM kiln_job_epochs WHERE job_id = $1 AND epoch >= $2", [.text(id), .int(number)])
        try c.query("INSERT INTO kiln_job_epochs (job_id, epoch, metrics, node, attempt) VALUES ($1, $2, $3, $4, $5)",
                    [.text(id), .int(number), .json(metrics), .text(try row.value("node").stringValue ?? node), .int(try row.int("attempts"))])
        let renew = claim(for: id) != nil
        try c.query("""
            UPDATE kiln_jobs SET last_epoch = $2, warnings = $3, updated_at = now(),
                lease_expires_at = CASE WHEN $4 THEN now() + $5::float8 * interval '1 second' ELSE lease_expires_at END
            WHERE id = $1
            """, [.text(id), .int(number), .json(JSON(warnings)), .bool(renew), .double(lease)])
    }

    /// The checkpoint blobs, the artifact row, the metrics and the job's progress in
    /// one transaction: a worker that dies at any instant leaves the previous epoch or
    /// this one, never half of one.
    public func commitEpoch(_ id: String, metrics: JSON, warnings: [String], weights: [UInt8], optimizer: [UInt8], artifacts: ArtifactStore) throws {
        guard let store = artifacts as? PostgresArtifactStore, store.database === database else {
            try artifacts.writeCheckpoint(id, weights: weights, optimizer: optimizer)
            try recordEpoch(id, metrics, warnings: warnings)
            return
        }
        try database.run {
            try pool.transaction { c in
                try writeEpoch(id, metrics, warnings: warnings, on: c)
                try store.writeCheckpoint(id, epoch: metrics["epoch"]?.intValue ?? 0, weights: weights, optimizer: optimizer, on: c)
                try notify(PostgresJobQueue.Channel.epochs, ["id": .string(id), "epoch": metrics["epoch"] ?? .null], on: c)
            }
        }
    }

    public func truncateMetrics(_ id: String, toEpochs count: Int) throws {
        try database.run {
            try pool.query("DELETE FROM kiln_job_epochs WHERE job_id = $1 AND epoch > $2", [.text(id), .int(count)])
        }
    }

    /// Sets a running job's final status, fenced by this node's claim; `kiln_models`
    /// announces a model that succeeded.
    private func finish(_ id: String, status: Job.Status, error: String?, warnings: [String]?) throws -> Bool {
        let done = try database.run { try pool.withConnection { try finish(id, status: status, error: error, warnings: warnings, on: $0) } }
        release(id)
        return done
    }

    /// The status change and its notifications, in one statement on `connection`.
    private func finish(_ id: String, status: Job.Status, error: String?, warnings: [String]?, on connection: PostgresConnection) throws -> Bool {
        let fence = fence(id, next: 5)
        return try connection.query("""
            WITH finished AS (
                UPDATE kiln_jobs SET status = $2, error = $3, warnings = coalesce($4::jsonb, warnings), lease_expires_at = NULL,
                    finished_at = now(), updated_at = now()
                WHERE id = $1 AND status = 'running'\(fence.sql)
                RETURNING id, name, status)
            SELECT pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS job_notified,
                   CASE WHEN status = 'succeeded'
                        THEN pg_notify('kiln_models', json_build_object('id', id, 'name', name)::text) END AS model_notified
            FROM finished
            """, [.text(id), .text(status.rawValue), error.map { .text($0) } ?? .null, warnings.map { .json(JSON($0)) } ?? .null] + fence.parameters)
            .rowCount == 1
    }

    /// One commit: the job succeeds and, with `node`, the next queued job is claimed.
    public func complete(_ id: String, warnings: [String], claimingNextFor node: String?) throws -> Job? {
        let held = claim(for: id) != nil
        let (done, next) = try database.run {
            try pool.transaction { c -> (Bool, PostgresJobQueue.Claim?) in
                guard try finish(id, status: .succeeded, error: nil, warnings: warnings, on: c) else { return (false, nil) }
                return (true, try node.flatMap { try database.queue.claim(node: $0, lease: lease, on: c) })
            }
        }
        release(id)
        if !done, held { throw ClaimLost(jobID: id) }
        guard let next else { return nil }
        lock.lock()
        claims[next.id] = next
        progress[next.id] = nil
        lock.unlock()
        return try database.run { try pool.query("SELECT \(Self.columns) FROM kiln_jobs WHERE id = $1", [.text(next.id)]).first.map(decode) }
    }

    public func complete(_ id: String, warnings: [String]) throws {
        let held = claim(for: id) != nil
        if try !finish(id, status: .succeeded, error: nil, warnings: warnings), held { throw ClaimLost(jobID: id) }
    }

    public func fail(_ id: String, error: String) throws {
        _ = try finish(id, status: .failed, error: error, warnings: nil)
    }

    public func cancelQueued(_ id: String) throws -> Bool {
        try database.run {
            try pool.query("""
                WITH cancelled AS (
                    UPDATE kiln_jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
                    WHERE id = $1 AND status = 'queued' RETURNING id, status)
                SELECT pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS notified FROM cancelled
                """, [.text(id)]).rowCount == 1
        }
    }

    public func cancelRunning(_ id: String) throws -> Bool {
        try database.run {
            if case .cancelled(wasRunning: true) = try database.queue.cancel(id: id) { return true }
            return false
        }
    }

    public func markCancelled(_ id: String) throws {
        _ = try finish(id, status: .cancelled, error: nil, warnings: nil)
    }

    public func requeue(_ id: String) throws {
        if let claim = claim(for: id) {
            try database.run { _ = try database.queue.release(claim) }
            release(id)
            return
        }
        try database.run {
            try pool.query("""
                WITH released AS (
                    UPDATE kiln_jobs SET status = 'queued', node = NULL, lease_expires_at = NULL, updated_at = now()
                    WHERE id = $1 AND status = 'running' RETURNING id, status)
                SELECT pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS notified FROM released
                """, [.text(id)])
        }
    }

    /// Jobs a previous process of this node (the same `node_name`) left running go
    /// back to the queue at once; those of other nodes wait for their lease to expire.
    public func requeueAbandoned() throws -> [String] {
        try database.run {
            try pool.query("""
                WITH released AS (
                    UPDATE kiln_jobs SET status = 'queued', node = NULL, lease_expires_at = NULL, updated_at = now()
                    WHERE status = 'running' AND node = $1 RETURNING id, status)
                SELECT id, pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS notified FROM released
                """, [.text(node)]).rows.map { try $0.string("id") }
        }
    }

    public func metrics(_ id: String) -> JSON {
        database.read {
            let epochs = try pool.query("SELECT metrics FROM kiln_job_epochs WHERE job_id = $1 ORDER BY epoch", [.text(id)]).rows.map { try $0.json("metrics") }
            let warnings = try pool.query("SELECT warnings FROM kiln_jobs WHERE id = $1", [.text(id)]).first?.json("warnings") ?? .array([])
            return JSON.object([("epochs", .array(epochs)), ("warnings", warnings)])
        } ?? .object([("epochs", .array([])), ("warnings", .array([]))])
    }

    public func remove(_ id: String) throws {
        try database.run { try pool.query("DELETE FROM kiln_jobs WHERE id = $1", [.text(id)]) }
        release(id)
    }
}
