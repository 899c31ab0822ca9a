import Foundation
import KilnData
import KilnGraph
import KilnTrain
import KilnJSON
import KilnSpec

/// Where jobs live: their records, specs, metrics and warnings, and the queue. The
/// scheduler takes work through `claim` and reports through `heartbeat`, `recordEpoch`,
/// `complete` and `fail`, so the same scheduler runs on a local directory or on a
/// shared database.
public protocol JobStore: AnyObject, Sendable {
    func newID() -> String
    /// Stores a new queued job with its spec as decoded (its JSON form is kept).
    func create(_ job: Job, spec: JobSpec) throws
    func job(_ id: String) -> Job?
    /// Every job, oldest first.
    func all() -> [Job]
    /// The spec as sent, for `GET /jobs/{id}/spec` and for decoding at job start.
    func spec(_ id: String) -> JSON?
    /// The latest succeeded job with this name, or the job with this id.
    func resolveModel(_ nameOrID: String) -> Job?
    var queuedCount: Int { get }

    /// The oldest queued job, now running on `node`; nil when none is queued.
    func claim(node: String) throws -> Job?
    /// Renews the claim; false when the job is no longer this node's to run (cancelled
    /// or taken over).
    func heartbeat(_ id: String, node: String) throws -> Bool
    /// Applies a change to a job's record (start time, data hash, step counts).
    @discardableResult
    func update(_ id: String, _ change: (inout Job) -> Void) throws -> Job?
    /// Progress that need not survive a crash (the current step).
    func updateProgress(_ id: String, _ change: (inout Job) -> Void)
    /// Records a finished epoch's metrics once; a re-run epoch replaces nothing that
    /// was recorded before it.
    func recordEpoch(_ id: String, _ metrics: JSON, warnings: [String]) throws
    /// Drops metrics past `count` epochs (they belong to an epoch that runs again).
    func truncateMetrics(_ id: String, toEpochs count: Int) throws
    func complete(_ id: String, warnings: [String]) throws
    /// Completes a job and, with `node`, claims the next queued one for it, in one step
    /// where the store can (one commit per job on a database).
    func complete(_ id: String, warnings: [String], claimingNextFor node: String?) throws -> Job?
    func fail(_ id: String, error: String) throws
    /// Cancels a queued job at once; false if it was not queued.
    func cancelQueued(_ id: String) throws -> Bool
    /// Marks a running job cancelled once its worker has stopped it.
    func markCancelled(_ id: String) throws
    /// Puts a job a shutdown interrupted back in the queue.
    func requeue(_ id: String) throws
    /// Jobs left running by a process that is gone, back to queued.
    func requeueAbandoned() throws -> [String]

    func metrics(_ id: String) -> JSON
    /// Removes a finished job's record, spec and metrics.
    func remove(_ id: String) throws

    /// One finished epoch: its checkpoint (weights and optimizer state) and its
    /// metrics. A store that can write both in one transaction does; the default writes
    /// the checkpoint, then the metrics, so the metrics never name an epoch whose
    /// weights were not kept.
    /// - Throws: `ClaimLost` when the job is no longer this node's to write.
    func commitEpoch(_ id: String, metrics: JSON, warnings: [String], weights: [UInt8], optimizer: [UInt8], artifacts: ArtifactStore) throws
    /// Cancels a job running on another node (it stops at its next step or heartbeat);
    /// false when no other node runs it. A store of one process has no other node.
    func cancelRunning(_ id: String) throws -> Bool
}

extension JobStore {
    public func commitEpoch(_ id: String, metrics: JSON, warnings: [String], weights: [UInt8], optimizer: [UInt8], artifacts: ArtifactStore) throws {
        try artifacts.writeCheckpoint(id, weights: weights, optimizer: optimizer)
        try recordEpoch(id, metrics, warnings: warnings)
    }

    public func cancelRunning(_ id: String) throws -> Bool { false }

    public func complete(_ id: String, warnings: [String], claimingNextFor node: String?) throws -> Job? {
        try complete(id, warnings: warnings)
        return try node.flatMap { try claim(node: $0) }
    }
}

/// A write for a job this node no longer holds (its lease ran out and another node
/// claimed it, or it was cancelled elsewhere): nothing was written, and the run stops.
public struct ClaimLost: Error, CustomStringConvertible, Sendable {
    public var jobID: String
    public var description: String { "job \(jobID) is no longer held by this node" }
}

/// A trained model as prediction needs it: the graph (layer configs, input and output
/// names) and the weights of one checkpoint, with what they came from. Written beside
/// each checkpoint; read by the predictor, by `init_from` and by export, never needing
/// the job's spec.
public struct ModelArtifact: Sendable {
    public var jobID: String
    public var epoch: Int
    /// The `model` object that rebuilds the graph (`ModelGraph(json:)`).
    public var graph: JSON
    /// safetensors bytes: the weights, named by `CheckpointKey`.
    public var weights: [UInt8]
    public var metadata: [String: String]
}

/// Model artifacts and the optimizer state that goes with each job's last checkpoint.
public protocol ArtifactStore: AnyObject, Sendable {
    /// The graph of a job's model, written once before its first checkpoint.
    func writeGraph(_ jobID: String, _ graph: JSON) throws
    /// One epoch's weights and optimizer state, durable before this returns.
    func writeCheckpoint(_ jobID: String, weights: [UInt8], optimizer: [UInt8]) throws
    /// The latest checkpoint with its graph; nil when the job has none yet.
    func latest(_ jobID: String) throws -> ModelArtifact?
    func hasCheckpoint(_ jobID: String) -> Bool
    func optimizerState(_ jobID: String) -> [UInt8]?
    /// Removes a job's artifacts.
    func remove(_ jobID: String) throws
}

/// Datasets uploaded with `POST /datasets`.
public protocol DatasetStore: AnyObject, Sendable {
    /// Stores the staged arrays of an upload under an optional name (moving or copying
    /// their files); returns its record.
    func store(name: String?, train: [String: StagedArray], test: [String: StagedArray]) throws -> JSON
    var all: [JSON] { get }
    /// The dataset with this id, or the newest one with this name.
    func load(_ idOrName: String) -> DatasetSplits?
    /// Field row shapes, for checking specs before training.
    func schema(_ idOrName: String) -> DataSchema?
    /// The record of the dataset with this id, or the newest one with this name.
    func record(_ idOrName: String) -> JSON?
    /// Removes the dataset with this id (its files and record).
    func remove(id: String) throws
    /// Adds a field (and its test-split rows) to the dataset with this id.
    func addField(id: String, field: String, train: StagedArray, test: StagedArray?) throws -> JSON
}

/// A problem of the stores or the service that the client should hear about, with
/// the status it maps to at the edge (`Errors.swift`).
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case invalid, notFound, conflict, unavailable, insufficientStorage, tooLarge, unprocessable, internalError }
    public var kind: Kind
    public var code: String
    public var message: String
    public var path: String?
    public var retryAfter: Int?

    public init(_ kind: Kind, code: String, _ message: String, path: String? = nil, retryAfter: Int? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.path = path
        self.retryAfter = retryAfter
    }

    public var description: String { path.map { "\($0): \(message)" } ?? message }
}

/// Names are checked where they enter, so no user string becomes a path by accident.
enum StoredName {
    /// `[A-Za-z0-9_.-]{1,64}`, not `.` or `..`.
    static func isValid(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        } && id != "." && id != ".."
    }

    static func newID(_ prefix: String) -> String {
        let stamp = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
        let random = String(UInt64.random(in: 0...UInt64(1) << 40), radix: 36)
        return "\(prefix)-\(stamp)-\(random)"
    }
}
