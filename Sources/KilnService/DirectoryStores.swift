import Foundation
import KilnData
import KilnGraph
import KilnTrain
import KilnJSON
import KilnSpec

/// The embedded job store: everything a job is, under `<data>/jobs/<id>/`: `spec.json`,
/// `job.json` (status and progress) and `metrics.json`, each written atomically. Ids
/// are generated here, so no user string becomes a path. One process owns the
/// directory, so a claim needs no lease.
public final class DirectoryJobStore: JobStore, @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    /// Held across each write of a job's files, so writes of one store never interleave.
    private let writing = NSLock()
    private var jobs: [String: Job] = [:]
    private var metrics: [String: [JSON]] = [:]
    private var warnings: [String: [String]] = [:]

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: "\(directory)/jobs", withIntermediateDirectories: true)
        try reload()
    }

    func jobDirectory(_ id: String) -> String { "\(directory)/jobs/\(id)" }
    func specPath(_ id: String) -> String { "\(jobDirectory(id))/spec.json" }

    /// Loads every stored job; leftover temp files are removed.
    func reload() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/jobs")) ?? []
        for id in names where StoredName.isValid(id) {
            AtomicFile.removeLeftovers(in: jobDirectory(id))
            guard let bytes = AtomicFile.read("\(jobDirectory(id))/job.json"), let json = try? JSON.parse(bytes), let job = Job(json: json) else {
                continue
            }
            jobs[id] = job
            if let m = AtomicFile.read("\(jobDirectory(id))/metrics.json").flatMap({ try? JSON.parse($0) }) {
                metrics[id] = m["epochs"]?.arrayValue ?? []
                warnings[id] = m["warnings"]?.arrayValue?.compactMap(\.stringValue) ?? []
            }
        }
    }

    public func newID() -> String { StoredName.newID("job") }

    public func create(_ job: Job, spec: JobSpec) throws {
        try FileManager.default.createDirectory(atPath: jobDirectory(job.id), withIntermediateDirectories: true)
        try AtomicFile.write(spec.json.serialized(pretty: true), to: specPath(job.id))
        try save(job)
    }

    private func save(_ job: Job) throws {
        writing.lock()
        defer { writing.unlock() }
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(job.id))/job.json")
        lock.lock()
        jobs[job.id] = job
        lock.unlock()
    }

    @discardableResult
    public func update(_ id: String, _ change: (inout Job) -> Void) throws -> Job? {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        guard var job = jobs[id] else { lock.unlock(); return nil }
        lock.unlock()
        change(&job)
        // Durable first, then visible: a status a client has seen is on disk.
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(id))/job.json")
        lock.lock()
        jobs[id] = job
        lock.unlock()
        return job
    }

    public func updateProgress(_ id: String, _ change: (inout Job) -> Void) {
        lock.lock()
        if var job = jobs[id] { change(&job); jobs[id] = job }
        lock.unlock()
    }

    public func job(_ id: String) -> Job? {
        lock.lock()
        defer { lock.unlock() }
        return jobs[id]
    }

    public func all() -> [Job] {
        lock.lock()
        defer { lock.unlock() }
        return jobs.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public func spec(_ id: String) -> JSON? {
        guard StoredName.isValid(id) else { return nil }
        return AtomicFile.read(specPath(id)).flatMap { try? JSON.parse($0) }
    }

    public var queuedCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return jobs.values.filter { $0.status == .queued }.count
    }

    public func claim(node: String) throws -> Job? {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        let next = jobs.values.filter { $0.status == .queued }.min { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        lock.unlock()
        guard var job = next else { return nil }
        job.status = .running
        job.node = node
        job.startedAt = job.startedAt ?? Date()
        job.error = nil
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(job.id))/job.json")
        lock.lock()
        jobs[job.id] = job
        lock.unlock()
        return job
    }

    public func heartbeat(_ id: String, node: String) throws -> Bool {
        guard let job = job(id) else { return false }
        return job.status == .running && job.node == node
    }

    public func recordEpoch(_ id: String, _ epoch: JSON, warnings list: [String]) throws {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        var epochs = metrics[id] ?? []
        let number = epoch["epoch"]?.intValue ?? epochs.count + 1
        // An epoch is recorded once: a re-run of it replaces what came after the one before.
        epochs = Array(epochs.prefix(max(number - 1, 0)))
        epochs.append(epoch)
        var record = jobs[id]
        record?.epoch = number
        lock.unlock()
        let doc = JSON.object([("epochs", .array(epochs)), ("warnings", JSON(list))])
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
        if let record { try AtomicFile.write(record.json.serialized(pretty: true), to: "\(jobDirectory(id))/job.json") }
        lock.lock()
        metrics[id] = epochs
        warnings[id] = list
        if let record { jobs[id] = record }
        lock.unlock()
    }

    public func metrics(_ id: String) -> JSON {
        lock.lock()
        defer { lock.unlock() }
        return metricsJSONLocked(id)
    }

    private func metricsJSONLocked(_ id: String) -> JSON {
        .object([("epochs", .array(metrics[id] ?? [])), ("warnings", JSON(warnings[id] ?? []))])
    }

    public func truncateMetrics(_ id: String, toEpochs count: Int) throws {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        let current = metrics[id] ?? []
        let kept = Array(current.prefix(count))
        let doc = JSON.object([("epochs", .array(kept)), ("warnings", JSON(warnings[id] ?? []))])
        lock.unlock()
        guard current.count > count else { return }
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
        lock.lock()
        metrics[id] = kept
        lock.unlock()
    }

    private func setWarnings(_ id: String, _ list: [String]) throws {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        let doc = JSON.object([("epochs", .array(metrics[id] ?? [])), ("warnings", JSON(list))])
        lock.unlock()
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
        lock.lock()
        warnings[id] = list
        lock.unlock()
    }

    public func complete(_ id: String, warnings list: [String]) throws {
        try setWarnings(id, list)
        try update(id) { $0.status = .succeeded; $0.finishedAt = Date() }
    }

    public func fail(_ id: String, error: String) throws {
        try update(id) { $0.status = .failed; $0.finishedAt = Date(); $0.error = error }
    }

    public func cancelQueued(_ id: String) throws -> Bool {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        guard var job = jobs[id], job.status == .queued else { lock.unlock(); return false }
        lock.unlock()
        job.status = .cancelled
        job.finishedAt = Date()
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(id))/job.json")
        lock.lock()
        jobs[id] = job
        lock.unlock()
        return true
    }

    public func markCancelled(_ id: String) throws {
        try update(id) { $0.status = .cancelled; $0.finishedAt = Date() }
    }

    public func requeue(_ id: String) throws {
        try update(id) { $0.status = .queued }
    }

    public func requeueAbandoned() throws -> [String] {
        let abandoned = all().filter { $0.status == .running }.map(\.id)
        for id in abandoned { try requeue(id) }
        return abandoned
    }

    public func remove(_ id: String) throws {
        guard StoredName.isValid(id) else { return }
        writing.lock()
        defer { writing.unlock() }
        try removeTree(jobDirectory(id))
        lock.lock()
        jobs[id] = nil
        metrics[id] = nil
        warnings[id] = nil
        lock.unlock()
    }

    public func resolveModel(_ nameOrID: String) -> Job? {
        lock.lock()
        defer { lock.unlock() }
        if let job = jobs[nameOrID] { return job }
        return jobs.values.filter { $0.name == nameOrID && $0.status == .succeeded }.max { ($0.finishedAt ?? $0.createdAt) < ($1.finishedAt ?? $1.createdAt) }
    }
}

/// The embedded artifact store: beside each job's record, `model.json` (the graph,
/// written once), `checkpoint.safetensors` (the weights of the last finished epoch,
/// with the job, epoch and the graph's SHA-256 in its metadata) and
/// `optimizer.safetensors`, each written atomically.
public final class DirectoryArtifactStore: ArtifactStore, @unchecked Sendable {
    public let directory: String

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: "\(directory)/jobs", withIntermediateDirectories: true)
    }

    func jobDirectory(_ id: String) -> String { "\(directory)/jobs/\(id)" }
    public func checkpointPath(_ id: String) -> String { "\(jobDirectory(id))/checkpoint.safetensors" }
    func optimizerPath(_ id: String) -> String { "\(jobDirectory(id))/optimizer.safetensors" }
    func graphPath(_ id: String) -> String { "\(jobDirectory(id))/model.json" }

    public func writeGraph(_ jobID: String, _ graph: JSON) throws {
        try FileManager.default.createDirectory(atPath: jobDirectory(jobID), withIntermediateDirectories: true)
        try AtomicFile.write(graph.serialized(pretty: true), to: graphPath(jobID))
    }

    public func writeCheckpoint(_ jobID: String, weights: [UInt8], optimizer: [UInt8]) throws {
        try AtomicFile.write(weights, to: checkpointPath(jobID))
        try AtomicFile.write(optimizer, to: optimizerPath(jobID))
    }

    public func hasCheckpoint(_ jobID: String) -> Bool {
        StoredName.isValid(jobID) && FileManager.default.fileExists(atPath: checkpointPath(jobID))
    }

    public func latest(_ jobID: String) throws -> ModelArtifact? {
        guard StoredName.isValid(jobID), let weights = AtomicFile.read(checkpointPath(jobID)) else { return nil }
        guard let graphBytes = AtomicFile.read(graphPath(jobID)) else {
            throw ServiceError(.internalError, code: "artifact_incomplete", "job \(jobID) has a checkpoint but no model.json")
        }
        let graph: JSON
        do { graph = try JSON.parse(graphBytes) } catch {
            throw ServiceError(.internalError, code: "artifact_corrupt", "model.json of job \(jobID) is not JSON: \(error)")
        }
        let metadata = try Checkpoint.metadata(weights)
        return ModelArtifact(jobID: jobID, epoch: Int(metadata["epoch"] ?? "0") ?? 0, graph: graph, weights: weights, metadata: metadata)
    }

    public func optimizerState(_ jobID: String) -> [UInt8]? {
        AtomicFile.read(optimizerPath(jobID))
    }

    public func remove(_ jobID: String) throws {
        guard StoredName.isValid(jobID) else { return }
        for path in [checkpointPath(jobID), optimizerPath(jobID), graphPath(jobID)] where FileManager.default.fileExists(atPath: path) {
            try FileManager.default.removeItem(atPath: path)
        }
    }

    /// Jobs checkpointed before artifacts had a graph get one, from the model section of
    /// their stored spec (decoded once, here, at start).
    func addMissingGraphs(jobs: JobStore, decode: (JSON) throws -> JSON) {
        for job in jobs.all() where hasCheckpoint(job.id) && !FileManager.default.fileExists(atPath: graphPath(job.id)) {
            do {
                guard let spec = jobs.spec(job.id) else { continue }
                try writeGraph(job.id, try decode(spec))
                Log.info("artifact_graph_added", [("id", .string(job.id))])
            } catch {
                Log.error("artifact_graph_failed", [("id", .string(job.id)), ("error", .string("\(error)"))])
            }
        }
    }
}

/// Datasets uploaded with `POST /datasets`, kept under `<data>/uploads/<id>/` as one
/// `.npy` file per field (and `test.<field>.npy` for a test split) plus `dataset.json`.
public final class DirectoryDatasetStore: DatasetStore, @unchecked Sendable {
    let directory: String
    private let lock = NSLock()
    private let writing = NSLock()
    private var records: [String: JSON] = [:]

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for id in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where StoredName.isValid(id) {
            AtomicFile.removeLeftovers(in: "\(directory)/\(id)")
            if let json = AtomicFile.read("\(directory)/\(id)/dataset.json").flatMap({ try? JSON.parse($0) }) {
                records[id] = json
            } else {
                // Without its record the folder is an upload or a removal a crash cut short.
                try? removeTree("\(directory)/\(id)")
            }
        }
    }

    public var all: [JSON] {
        lock.lock()
        defer { lock.unlock() }
        return records.values.sorted { ($0["created_at"]?.stringValue ?? "") > ($1["created_at"]?.stringValue ?? "") }
    }

    public func store(name: String?, train: [String: StagedArray], test: [String: StagedArray]) throws -> JSON {
        let id = StoredName.newID("ds")
        let folder = "\(directory)/\(id)"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (k, v) in train { try AtomicFile.move(v.path, to: "\(folder)/\(k).npy") }
            for (k, v) in test { try AtomicFile.move(v.path, to: "\(folder)/test.\(k).npy") }
            // The record goes last (and its write syncs the folder): a folder without one
            // is removed at the next start.
            let json = DatasetRecord.make(id: id, name: name, train: train, test: test)
            try AtomicFile.write(json.serialized(pretty: true), to: "\(folder)/dataset.json")
            lock.lock()
            records[id] = json
            lock.unlock()
            return json
        } catch {
            // Nothing half-written stays behind.
            try? FileManager.default.removeItem(atPath: folder)
            throw ServiceError(.insufficientStorage, code: "storage_error", "could not store the dataset: \(error)")
        }
    }

    public func remove(id: String) throws {
        guard StoredName.isValid(id) else { return }
        // The record goes first, so a crash midway leaves a folder that is not listed.
        let folder = "\(directory)/\(id)"
        if FileManager.default.fileExists(atPath: "\(folder)/dataset.json") { try FileManager.default.removeItem(atPath: "\(folder)/dataset.json") }
        lock.lock()
        records[id] = nil
        lock.unlock()
        try removeTree(folder)
    }

    public func addField(id: String, field: String, train: StagedArray, test: StagedArray?) throws -> JSON {
        guard StoredName.isValid(id), StoredName.isValid(field) else {
            throw ServiceError(.invalid, code: "invalid_name", "names must match [A-Za-z0-9_.-]{1,64}")
        }
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        let current = records[id]
        lock.unlock()
        guard let current else { throw ServiceError(.notFound, code: "dataset_not_found", "no dataset with id '\(id)'") }
        let folder = "\(directory)/\(id)"
        let json = try DatasetRecord.adding(field, train: train, test: test, record: current)
        do {
            try AtomicFile.move(train.path, to: "\(folder)/\(field).npy")
            if current["test"] != nil, let test { try AtomicFile.move(test.path, to: "\(folder)/test.\(field).npy") }
            try AtomicFile.write(json.serialized(pretty: true), to: "\(folder)/dataset.json")
        } catch {
            throw ServiceError(.insufficientStorage, code: "storage_error", "could not store the field: \(error)")
        }
        lock.lock()
        records[id] = json
        lock.unlock()
        return json
    }

    public func record(_ idOrName: String) -> JSON? {
        lock.lock()
        defer { lock.unlock() }
        return records[idOrName] ?? records.values.filter { $0["name"]?.stringValue == idOrName }
            .max { ($0["created_at"]?.stringValue ?? "") < ($1["created_at"]?.stringValue ?? "") }
    }

    public func schema(_ idOrName: String) -> DataSchema? {
        record(idOrName).flatMap(DatasetRecord.schema)
    }

    public func load(_ idOrName: String) -> DatasetSplits? {
        guard let record = record(idOrName), let id = record["id"]?.stringValue else { return nil }
        func read(_ members: JSON?, prefix: String) -> Dataset? {
            guard let names = members?.objectMembers?.map(\.0) else { return nil }
            var fields: [String: DataArray] = [:]
            for n in names {
                guard let bytes = AtomicFile.read("\(directory)/\(id)/\(prefix)\(n).npy"), let a = try? NPY.parse(bytes, name: n) else { return nil }
                fields[n] = a
            }
            return try? Dataset(fields: fields)
        }
        guard let train = read(record["fields"], prefix: "") else { return nil }
        return DatasetSplits(train: train, test: read(record["test"], prefix: "test."))
    }
}

/// Removes a directory tree if it exists.
func removeTree(_ path: String) throws {
    if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
}

/// The record of an uploaded dataset (`GET /datasets`), the one place its schema is
/// read from.
enum DatasetRecord {
    static func make<A: ShapedArray>(id: String, name: String?, train: [String: A], test: [String: A]) -> JSON {
        var record: [(String, JSON)] = [("id", .string(id)), ("name", name.map(JSON.string) ?? .null),
                                        ("rows", JSON(train.values.first?.shape.first ?? 0)),
                                        ("fields", describe(train)), ("created_at", .string(Job.dates.string(from: Date())))]
        if !test.isEmpty { record.append(("test", describe(test))) }
        return .object(record)
    }

    /// Each field's shape and dtype, by name.
    private static func describe<A: ShapedArray>(_ fields: [String: A]) -> JSON {
        .object(fields.keys.sorted().map { k in (k, describe(fields[k]!)) })
    }

    private static func describe(_ array: some ShapedArray) -> JSON {
        .object([("shape", JSON(array.shape)), ("dtype", .string(array.dtype.rawValue))])
    }

    /// The record with one more field, checked against the record alone (no array is
    /// read): a new name, the dataset's row count, and rows for the test split when it
    /// has one.
    static func adding(_ field: String, train: some ShapedArray, test: (some ShapedArray)?, record current: JSON) throws -> JSON {
        let id = current["id"]?.stringValue ?? ""
        let fields = current["fields"]?.objectMembers ?? []
        guard !fields.contains(where: { $0.0 == field }) else {
            throw ServiceError(.conflict, code: "field_exists", "dataset \(id) has a field '\(field)' already", path: "field")
        }
        let rows = current["rows"]?.intValue ?? 0
        guard train.rowCount == rows else {
            throw ServiceError(.invalid, code: "invalid_dataset", "field '\(field)' has \(train.rowCount) rows but the dataset has \(rows)", path: "field")
        }
        func adding(_ array: some ShapedArray, to members: [(String, JSON)]) -> JSON {
            .object((members + [(field, describe(array))]).sorted { $0.0 < $1.0 })
        }
        var record = current.setting("fields", to: adding(train, to: fields))
        if let testFields = current["test"]?.objectMembers {
            let testRows = testFields.first?.1["shape"]?.arrayValue?.first?.intValue ?? 0
            guard let test, test.rowCount == testRows else {
                throw ServiceError(.invalid, code: "invalid_dataset", "the dataset has a test split of \(testRows) rows: send them as the .npz member 'test.\(field)' or JSON 'test'", path: "test")
            }
            record = record.setting("test", to: adding(test, to: testFields))
        }
        return record
    }

    /// Field row shapes (the shape without its first axis).
    static func schema(_ record: JSON) -> DataSchema? {
        guard let members = record["fields"]?.objectMembers else { return nil }
        var fields: [String: [Int]] = [:]
        for (name, info) in members { fields[name] = Array((info["shape"]?.arrayValue ?? []).compactMap(\.intValue).dropFirst()) }
        return DataSchema(fields: fields, known: true)
    }
}
