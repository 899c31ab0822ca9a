import Foundation
import KilnJSON
import KilnPostgres
import KilnTrain

/// Model artifacts in PostgreSQL: one `kiln_artifacts` row per job (the graph, and the
/// blobs of its last checkpoint and optimizer state, written in chunks). A new
/// checkpoint's blobs are written, the row points at them and the old blobs go, in one
/// transaction, so a reader sees one whole checkpoint or the one before.
public final class PostgresArtifactStore: ArtifactStore, @unchecked Sendable {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    private var pool: PostgresPool { database.pool }

    public func writeGraph(_ jobID: String, _ graph: JSON) throws {
        try database.run {
            try pool.query("""
                INSERT INTO kiln_artifacts (job_id, graph) VALUES ($1, $2)
                ON CONFLICT (job_id) DO UPDATE SET graph = excluded.graph, updated_at = now()
                """, [.text(jobID), .json(graph)])
        }
    }

    public func writeCheckpoint(_ jobID: String, weights: [UInt8], optimizer: [UInt8]) throws {
        let epoch = (try? Checkpoint.metadata(weights))?["epoch"].flatMap { Int($0) } ?? 0
        try database.run {
            try pool.transaction { c in try writeCheckpoint(jobID, epoch: epoch, weights: weights, optimizer: optimizer, on: c) }
        }
    }

    /// Writes the checkpoint inside the caller's transaction (`PostgresJobStore.commitEpoch`).
    func writeCheckpoint(_ jobID: String, epoch: Int, weights: [UInt8], optimizer: [UInt8], on c: PostgresConnection) throws {
        let old = try c.query("SELECT checkpoint_blob, optimizer_blob FROM kiln_artifacts WHERE job_id = $1 FOR UPDATE", [.text(jobID)]).first
        // Fresh ids: a re-run of an epoch never collides with the blobs it replaces.
        let suffix = "\(epoch)-\(UInt64.random(in: 0...UInt64.max))"
        let weightsID = "checkpoint/\(jobID)/\(suffix)", optimizerID = "optimizer/\(jobID)/\(suffix)"
        try database.blobs.write(id: weightsID, on: c, bytes: weights)
        try database.blobs.write(id: optimizerID, on: c, bytes: optimizer)
        try c.query("""
            INSERT INTO kiln_artifacts (job_id, epoch, checkpoint_blob, optimizer_blob) VALUES ($1, $2, $3, $4)
            ON CONFLICT (job_id) DO UPDATE SET epoch = excluded.epoch, checkpoint_blob = excluded.checkpoint_blob,
                optimizer_blob = excluded.optimizer_blob, updated_at = now()
            """, [.text(jobID), .int(epoch), .text(weightsID), .text(optimizerID)])
        for column in ["checkpoint_blob", "optimizer_blob"] {
            if let id = try old?.value(column).stringValue { try database.blobs.delete(id: id, on: c) }
        }
    }

    public func hasCheckpoint(_ jobID: String) -> Bool {
        database.read {
            try pool.query("SELECT 1 AS one FROM kiln_artifacts WHERE job_id = $1 AND checkpoint_blob IS NOT NULL", [.text(jobID)]).rowCount > 0
        } ?? false
    }

    public func latest(_ jobID: String) throws -> ModelArtifact? {
        // One snapshot: the row and the chunks of the blob it names.
        let found: (JSON?, [UInt8])? = try database.run {
            try pool.transaction(isolation: .repeatableRead) { c in
                guard let row = try c.query("SELECT graph, checkpoint_blob FROM kiln_artifacts WHERE job_id = $1", [.text(jobID)]).first,
                      let blob = try row.value("checkpoint_blob").stringValue else { return nil }
                var weights: [UInt8] = []
                if let size = try database.blobs.size(id: blob, on: c) { weights.reserveCapacity(size) }
                try database.blobs.read(id: blob, on: c) { weights.append(contentsOf: $0) }
                return (try row.value("graph").jsonValue, weights)
            }
        }
        guard let (graph, weights) = found else { return nil }
        guard let graph else {
            throw ServiceError(.internalError, code: "artifact_incomplete", "job \(jobID) has a checkpoint but no graph")
        }
        let metadata = try Checkpoint.metadata(weights)
        return ModelArtifact(jobID: jobID, epoch: Int(metadata["epoch"] ?? "0") ?? 0, graph: graph, weights: weights, metadata: metadata)
    }

    public func optimizerState(_ jobID: String) -> [UInt8]? {
        database.read {
            try pool.transaction(isolation: .repeatableRead) { c -> [UInt8]? in
                guard let blob = try c.query("SELECT optimizer_blob FROM kiln_artifacts WHERE job_id = $1", [.text(jobID)]).first?
                    .value("optimizer_blob").stringValue else { return nil }
                return try database.blobs.bytes(id: blob, on: c)
            }
        } ?? nil
    }

    public func remove(_ jobID: String) throws {
        try database.run {
            try pool.transaction { c in
                guard let row = try c.query("DELETE FROM kiln_artifacts WHERE job_id = $1 RETURNING checkpoint_blob, optimizer_blob",
                                            [.text(jobID)]).first else { return }
                for column in ["checkpoint_blob", "optimizer_blob"] {
                    if let id = try row.value(column).stringValue { try database.blobs.delete(id: id, on: c) }
                }
            }
        }
    }
}
