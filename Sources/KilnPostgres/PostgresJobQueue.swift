import Foundation
import KilnJSON

/// The job queue that several nodes share (docs/cluster.md).
///
/// A worker `claim`s the oldest claimable job with `SELECT … FOR UPDATE SKIP LOCKED`
/// and holds it under a lease it renews with `heartbeat`. A claim is fenced by the
/// job's attempt number: every write a worker makes for a job (`commitEpoch`,
/// `complete`, `fail`) checks that the job is still running under the same node and
/// attempt, in the same transaction, so a worker whose lease expired and whose job was
/// claimed again can no longer change it. Times come from the database's clock, so the
/// nodes' clocks need not agree.
public final class PostgresJobQueue: @unchecked Sendable {
    /// NOTIFY channels. Payloads are small JSON objects.
    public enum Channel {
        /// `{"id": …, "status": …}` on every status change; workers wake on "queued".
        public static let jobs = "kiln_jobs"
        /// `{"id": …, "node": …}` when a running job is cancelled.
        public static let cancel = "kiln_cancel"
        /// `{"id": …, "epoch": n}` when an epoch is recorded.
        public static let epochs = "kiln_epochs"
        /// `{"id": …, "name": …}` when a job succeeds and its model can be served.
        public static let models = "kiln_models"
        public static let all = [jobs, cancel, epochs, models]
    }

    public enum Status: String, Sendable {
        case queued, running, succeeded, failed, cancelled
        public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    /// A job row.
    public struct Job: Sendable {
        public var id: String
        public var name: String
        public var status: Status
        public var spec: JSON
        /// The node that runs or last ran the job.
        public var node: String?
        public var leaseExpiresAt: Date?
        /// Claims so far (1 on the first run, 2 after one reclaim, …).
        public var attempts: Int
        public var maxAttempts: Int
        /// The last epoch recorded, 0 before the first.
        public var lastEpoch: Int
        /// The blob holding the checkpoint of `lastEpoch`, if one was saved.
        public var checkpointBlob: String?
        public var result: JSON?
        public var error: String?
        public var createdAt: Date
        public var startedAt: Date?
        public var finishedAt: Date?
    }

    /// A job a worker holds. `attempt` is the fencing token.
    public struct Claim: Sendable {
        public var job: Job
        public var node: String
        public var attempt: Int
        public var id: String { job.id }

        public init(job: Job, node: String, attempt: Int) {
            self.job = job
            self.node = node
            self.attempt = attempt
        }
        /// True when an earlier attempt ran the job: resume from `job.checkpointBlob`.
        public var isResumed: Bool { attempt > 1 }
    }

    /// What a heartbeat found.
    public enum Ownership: Equatable, Sendable {
        /// Still ours; the lease now runs until this time.
        case owned(leaseExpiresAt: Date)
        /// Cancelled by a user: stop and write nothing more.
        case cancelled
        /// Claimed again by another attempt, or finished: stop and write nothing more.
        case lost
    }

    public enum EpochOutcome: Equatable, Sendable {
        case recorded
        /// This epoch was recorded before (a retry after an unclear commit); nothing changed.
        case alreadyRecorded
        /// The claim no longer holds the job; nothing was written.
        case lostOwnership
    }

    public enum CancelOutcome: Equatable, Sendable {
        /// Cancelled; `wasRunning` says a node was running it (told on `kiln_cancel`).
        case cancelled(wasRunning: Bool)
        case alreadyFinished(Status)
        case notFound
    }

    public struct Epoch: Sendable {
        public var epoch: Int
        public var metrics: JSON
        public var node: String
        public var attempt: Int
    }

    public let pool: PostgresPool
    public let blobs: PostgresBlobStore

    public init(pool: PostgresPool, blobs: PostgresBlobStore? = nil) {
        self.pool = pool
        self.blobs = blobs ?? (try! PostgresBlobStore())
    }

    /// The queue's tables (migration 2 of `KilnSchema`; needs the blob tables).
    public static let schema = [
        """
        CREATE TABLE kiln_jobs (
            id text PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            name text NOT NULL,
            status text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            spec jsonb NOT NULL,
            node text,
            lease_expires_at timestamptz,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
            last_epoch integer NOT NULL DEFAULT 0,
            checkpoint_blob text REFERENCES kiln_blobs(id),
            result jsonb,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now())
        """,
        "CREATE INDEX kiln_jobs_queued ON kiln_jobs (seq) WHERE status = 'queued'",
        "CREATE INDEX kiln_jobs_leases ON kiln_jobs (lease_expires_at) WHERE status = 'running'",
        "CREATE INDEX kiln_jobs_name ON kiln_jobs (name, seq)",
        """
        CREATE TABLE kiln_job_epochs (
            job_id text NOT NULL REFERENCES kiln_jobs(id) ON DELETE CASCADE,
            epoch integer NOT NULL CHECK (epoch > 0),
            metrics jsonb NOT NULL,
            node text NOT NULL,
            attempt integer NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (job_id, epoch))
        """,
    ]

    // MARK: - Submitting

    /// Queues a job and wakes idle workers (`kiln_jobs`, at commit).
    /// - Throws: `.server` 23505 when the id exists.
    @discardableResult
    public func enqueue(id: String, name: String, spec: JSON, maxAttempts: Int = 3) throws -> Job {
        try pool.withConnection { try enqueue(id: id, name: name, spec: spec, maxAttempts: maxAttempts, on: $0) }
    }

    /// Queues a job inside the caller's transaction (e.g. with its dataset).
    public func enqueue(id: String, name: String, spec: JSON, maxAttempts: Int = 3, on connection: PostgresConnection) throws -> Job {
        guard maxAttempts > 0 else { throw PostgresError.invalidArgument("max_attempts must be at least 1, got \(maxAttempts)") }
        // One statement, so one transaction and one round trip with its notification.
        let row = try connection.query("""
            WITH j AS (INSERT INTO kiln_jobs (id, name, spec, max_attempts) VALUES ($1, $2, $3, $4) RETURNING *)
            SELECT j.*, pg_notify('kiln_jobs', json_build_object('id', j.id, 'status', j.status)::text) AS notified FROM j
            """, [.text(id), .text(name), .json(spec), .int(maxAttempts)])[0]
        return try Self.job(row)
    }

    /// Cancels a queued or running job. A running job's node learns it from
    /// `kiln_cancel` or from its next heartbeat.
    public func cancel(id: String) throws -> CancelOutcome {
        try pool.transaction { c in
            guard let row = try c.query("SELECT status, node FROM kiln_jobs WHERE id = $1 FOR UPDATE", [.text(id)]).first else {
                return .notFound
            }
            let status = try Self.status(row)
            if status.isFinished { return .alreadyFinished(status) }
            try c.query("""
                UPDATE kiln_jobs SET status = 'cancelled', lease_expires_at = NULL, finished_at = now(), updated_at = now()
                WHERE id = $1
                """, [.text(id)])
            try notify(Channel.jobs, ["id": .string(id), "status": "cancelled"], on: c)
            if status == .running {
                try notify(Channel.cancel, ["id": .string(id), "node": .string(try row.value("node").stringValue ?? "")], on: c)
            }
            return .cancelled(wasRunning: status == .running)
        }
    }

    // MARK: - Working

    /// Claims the next job for `node`: first a running job whose lease expired (its
    /// worker is presumed dead; it resumes from its checkpoint), else the oldest queued
    /// job. Expired jobs that used up `max_attempts` are failed instead of claimed.
    /// - Parameter lease: seconds until the claim expires without a heartbeat.
    /// - Returns: nil when there is nothing to claim.
    public func claim(node: String, lease: Double) throws -> Claim? {
        try pool.withConnection { try claim(node: node, lease: lease, on: $0) }
    }

    /// Completes `claim` and claims the next job for the same node in one transaction:
    /// one commit, so one WAL flush, per job instead of two, for a worker that runs
    /// short jobs back to back. Nothing is claimed when the completion is refused.
    public func completeAndClaimNext(_ claim: Claim, result: JSON, lease: Double) throws -> (completed: Bool, next: Claim?) {
        try pool.transaction { c in
            guard try finish(claim, status: .succeeded, result: result, error: nil, on: c) else { return (false, nil) }
            return (true, try self.claim(node: claim.node, lease: lease, on: c))
        }
    }

    /// `claim(node:lease:)` inside the caller's transaction (to finish one job and claim
    /// the next in one commit).
    public func claim(node: String, lease: Double, on connection: PostgresConnection) throws -> Claim? {
        // One statement, so one transaction and one round trip: lock an expired job if
        // there is one, else the oldest queued one, skipping rows other claimers hold;
        // take it (or fail it, when its attempts are used up) and announce the change.
        // A failed one is not a claim, so try again.
        while true {
            guard let row = try connection.query("""
                WITH expired AS (
                    SELECT id FROM kiln_jobs WHERE status = 'running' AND lease_expires_at < now()
                    ORDER BY lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED),
                queued AS (
                    SELECT id FROM kiln_jobs WHERE status = 'queued' AND NOT EXISTS (SELECT 1 FROM expired)
                    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED),
                next AS (SELECT id FROM expired UNION ALL SELECT id FROM queued),
                taken AS (
                    UPDATE kiln_jobs j SET
                        status = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts THEN 'failed' ELSE 'running' END,
                        error = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts
                            THEN 'the job''s lease expired ' || j.attempts || ' times (last on node ' || coalesce(j.node, '?') || '); giving up'
                            ELSE j.error END,
                        finished_at = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts THEN now() ELSE NULL END,
                        node = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts THEN j.node ELSE $1 END,
                        attempts = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts THEN j.attempts ELSE j.attempts + 1 END,
                        lease_expires_at = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts THEN NULL
                            ELSE now() + $2::float8 * interval '1 second' END,
                        started_at = coalesce(j.started_at, now()),
                        updated_at = now()
                    FROM next WHERE j.id = next.id
                    RETURNING j.*)
                SELECT taken.*, pg_notify('kiln_jobs', CASE WHEN taken.status = 'running'
                        THEN json_build_object('id', taken.id, 'status', taken.status, 'node', taken.node)
                        ELSE json_build_object('id', taken.id, 'status', taken.status) END::text) AS notified
                FROM taken
                """, [.text(node), .double(lease)]).first else { return nil }
            let claim = try Self.claim(row, node: node)
            if claim.job.status == .running { return claim }
        }
    }

    /// Renews the lease. Anything but `.owned` means stop: the job was cancelled, or
    /// its lease expired and another attempt claimed it.
    public func heartbeat(_ claim: Claim, lease: Double) throws -> Ownership {
        try pool.withConnection { c in
            let renewed = try c.query("""
                UPDATE kiln_jobs SET lease_expires_at = now() + $4::float8 * interval '1 second', updated_at = now()
                WHERE id = $1 AND node = $2 AND attempts = $3 AND status = 'running'
                RETURNING lease_expires_at
                """, [.text(claim.id), .text(claim.node), .int(claim.attempt), .double(lease)])
            if let row = renewed.first { return .owned(leaseExpiresAt: try row.date("lease_expires_at")) }
            let current = try c.query("SELECT status, node, attempts FROM kiln_jobs WHERE id = $1", [.text(claim.id)]).first
            if let current, try Self.status(current) == .cancelled, try current.int("attempts") == claim.attempt {
                return .cancelled
            }
            return .lost
        }
    }

    /// Records epoch `epoch` in one transaction: its metrics row, the checkpoint blob
    /// (written chunk by chunk from `checkpoint`, replacing the previous one), the job's
    /// progress and lease, and a `kiln_epochs` notification. A worker that dies at any
    /// point leaves the previous epoch's state or this one's, never a mix.
    /// - Parameters:
    ///   - checkpoint: fills the buffer it gets and returns the byte count, 0 at the end;
    ///     nil to record metrics only.
    ///   - lease: the lease renewal that comes with the commit.
    public func commitEpoch(_ claim: Claim, epoch: Int, metrics: JSON, lease: Double,
                            checkpoint: ((UnsafeMutableRawBufferPointer) throws -> Int)? = nil) throws -> EpochOutcome {
        guard epoch > 0 else { throw PostgresError.invalidArgument("epoch must be at least 1, got \(epoch)") }
        return try pool.transaction { c in
            guard let job = try c.query("""
                SELECT checkpoint_blob FROM kiln_jobs
                WHERE id = $1 AND node = $2 AND attempts = $3 AND status = 'running'
                FOR UPDATE
                """, [.text(claim.id), .text(claim.node), .int(claim.attempt)]).first else {
                return .lostOwnership
            }
            let recorded = try c.query("SELECT 1 AS one FROM kiln_job_epochs WHERE job_id = $1 AND epoch = $2", [.text(claim.id), .int(epoch)])
            if recorded.rowCount > 0 { return .alreadyRecorded }
            let previousBlob = try job.value("checkpoint_blob").stringValue
            var newBlob: String?
            if let checkpoint {
                let id = "checkpoint/\(claim.id)/\(epoch)"
                try blobs.write(id: id, on: c, from: checkpoint)
                newBlob = id
            }
            try c.query("""
                INSERT INTO kiln_job_epochs (job_id, epoch, metrics, node, attempt) VALUES ($1, $2, $3, $4, $5)
                """, [.text(claim.id), .int(epoch), .json(metrics), .text(claim.node), .int(claim.attempt)])
            try c.query("""
                UPDATE kiln_jobs SET last_epoch = greatest(last_epoch, $2), checkpoint_blob = coalesce($3, checkpoint_blob),
                    lease_expires_at = now() + $4::float8 * interval '1 second', updated_at = now()
                WHERE id = $1
                """, [.text(claim.id), .int(epoch), newBlob.map { .text($0) } ?? .null, .double(lease)])
            if let previousBlob, newBlob != nil, previousBlob != newBlob { try blobs.delete(id: previousBlob, on: c) }
            try notify(Channel.epochs, ["id": .string(claim.id), "epoch": .number(Double(epoch))], on: c)
            return .recorded
        }
    }

    /// Marks the job succeeded with `result` and announces the model (`kiln_models`).
    /// - Returns: false when the claim no longer holds the job (nothing written).
    @discardableResult
    public func complete(_ claim: Claim, result: JSON) throws -> Bool {
        try finish(claim, status: .succeeded, result: result, error: nil)
    }

    /// Marks the job failed with `error`.
    /// - Returns: false when the claim no longer holds the job (nothing written).
    @discardableResult
    public func fail(_ claim: Claim, error: String) throws -> Bool {
        try finish(claim, status: .failed, result: nil, error: error)
    }

    /// Gives a job back to the queue unfinished (a worker shutting down): it is claimed
    /// again at once and resumes from its checkpoint.
    @discardableResult
    public func release(_ claim: Claim) throws -> Bool {
        try pool.query("""
            WITH released AS (
                UPDATE kiln_jobs SET status = 'queued', node = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = $1 AND node = $2 AND attempts = $3 AND status = 'running'
                RETURNING id, status)
            SELECT pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS notified FROM released
            """, [.text(claim.id), .text(claim.node), .int(claim.attempt)]).rowCount == 1
    }

    private func finish(_ claim: Claim, status: Status, result: JSON?, error: String?) throws -> Bool {
        try pool.withConnection { try finish(claim, status: status, result: result, error: error, on: $0) }
    }

    private func finish(_ claim: Claim, status: Status, result: JSON?, error: String?, on connection: PostgresConnection) throws -> Bool {
        // One statement: the status change and its notifications commit together.
        try connection.query("""
            WITH finished AS (
                UPDATE kiln_jobs SET status = $4, result = $5, error = $6, lease_expires_at = NULL,
                    finished_at = now(), updated_at = now()
                WHERE id = $1 AND node = $2 AND attempts = $3 AND status = 'running'
                RETURNING id, name, status)
            SELECT pg_notify('kiln_jobs', json_build_object('id', id, 'status', status)::text) AS job_notified,
                   CASE WHEN status = 'succeeded'
                        THEN pg_notify('kiln_models', json_build_object('id', id, 'name', name)::text) END AS model_notified
            FROM finished
            """, [.text(claim.id), .text(claim.node), .int(claim.attempt), .text(status.rawValue),
                  result.map { .json($0) } ?? .null, error.map { .text($0) } ?? .null]).rowCount == 1
    }

    // MARK: - Reading

    public func job(id: String) throws -> Job? {
        try pool.query("SELECT * FROM kiln_jobs WHERE id = $1", [.text(id)]).first.map(Self.job)
    }

    /// The recorded epochs of a job, in order.
    public func epochs(jobID: String) throws -> [Epoch] {
        try pool.query("SELECT epoch, metrics, node, attempt FROM kiln_job_epochs WHERE job_id = $1 ORDER BY epoch",
                       [.text(jobID)]).rows.map {
            Epoch(epoch: try $0.int("epoch"), metrics: try $0.json("metrics"), node: try $0.string("node"), attempt: try $0.int("attempt"))
        }
    }

    /// Streams the job's latest checkpoint to `sink` from one snapshot.
    /// - Returns: the epoch the checkpoint belongs to, or nil when there is none.
    @discardableResult
    public func readCheckpoint(jobID: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int? {
        try pool.transaction(isolation: .repeatableRead) { c in
            guard let row = try c.query("SELECT checkpoint_blob, last_epoch FROM kiln_jobs WHERE id = $1", [.text(jobID)]).first else {
                throw PostgresError.missing("job '\(jobID)'")
            }
            guard let blob = try row.value("checkpoint_blob").stringValue else { return nil }
            try blobs.read(id: blob, on: c, to: sink)
            return try row.int("last_epoch")
        }
    }

    /// Jobs waiting and running: what an autoscaler reads.
    public func depth() throws -> (queued: Int, running: Int) {
        let row = try pool.query("""
            SELECT count(*) FILTER (WHERE status = 'queued') AS queued, count(*) FILTER (WHERE status = 'running') AS running
            FROM kiln_jobs WHERE status IN ('queued', 'running')
            """)[0]
        return (try row.int("queued"), try row.int("running"))
    }

    // MARK: - Rows

    private func notify(_ channel: String, _ payload: JSON, on connection: PostgresConnection) throws {
        try connection.query("SELECT pg_notify($1, $2)", [.text(channel), .text(payload.serialized())])
    }

    static func status(_ row: PostgresRow) throws -> Status {
        let text = try row.string("status")
        guard let status = Status(rawValue: text) else { throw PostgresError.decoding("unknown job status '\(text)'") }
        return status
    }

    static func job(_ row: PostgresRow) throws -> Job {
        Job(id: try row.string("id"), name: try row.string("name"), status: try status(row), spec: try row.json("spec"),
            node: try row.value("node").stringValue, leaseExpiresAt: try row.value("lease_expires_at").dateValue,
            attempts: try row.int("attempts"), maxAttempts: try row.int("max_attempts"), lastEpoch: try row.int("last_epoch"),
            checkpointBlob: try row.value("checkpoint_blob").stringValue, result: try row.value("result").jsonValue,
            error: try row.value("error").stringValue, createdAt: try row.date("created_at"),
            startedAt: try row.value("started_at").dateValue, finishedAt: try row.value("finished_at").dateValue)
    }

    static func claim(_ row: PostgresRow, node: String) throws -> Claim {
        let job = try job(row)
        return Claim(job: job, node: node, attempt: job.attempts)
    }
}
