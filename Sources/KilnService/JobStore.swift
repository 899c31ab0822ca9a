import Foundation
import KilnData
import KilnJSON
import KilnTrain

/// Everything a job is, on disk under `<data>/jobs/<id>/`: `spec.json`, `job.json`
/// (status and progress), `metrics.json` and `checkpoint.safetensors`, each written
/// atomically. Ids are generated here, so no user string becomes a path.
public final class JobStore: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private var jobs: [String: Job] = [:]
    private var metrics: [String: [JSON]] = [:]
    private var warnings: [String: [String]] = [:]

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: "\(directory)/jobs", withIntermediateDirectories: true)
        try reload()
    }

    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        } && id != "." && id != ".."
    }

    func jobDirectory(_ id: String) -> String { "\(directory)/jobs/\(id)" }
    public func checkpointPath(_ id: String) -> String { "\(jobDirectory(id))/checkpoint.safetensors" }
    /// The optimizer's moments at the checkpoint's epoch, for resuming.
    public func optimizerPath(_ id: String) -> String { "\(jobDirectory(id))/optimizer.safetensors" }
    public func specPath(_ id: String) -> String { "\(jobDirectory(id))/spec.json" }

    /// Loads every stored job; leftover temp files are removed.
    func reload() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/jobs")) ?? []
        for id in names where JobStore.isValidID(id) {
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

    public func newID() -> String {
        let stamp = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
        let random = String(UInt64.random(in: 0...UInt64(1) << 40), radix: 36)
        return "job-\(stamp)-\(random)"
    }

    /// Stores a new job and its spec.
    public func create(_ job: Job, spec: JSON) throws {
        try FileManager.default.createDirectory(atPath: jobDirectory(job.id), withIntermediateDirectories: true)
        try AtomicFile.write(spec.serialized(pretty: true), to: specPath(job.id))
        try save(job)
    }

    public func save(_ job: Job) throws {
        lock.lock()
        jobs[job.id] = job
        lock.unlock()
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(job.id))/job.json")
    }

    /// Updates a job in memory and on disk.
    @discardableResult
    public func update(_ id: String, _ change: (inout Job) -> Void) throws -> Job? {
        lock.lock()
        guard var job = jobs[id] else { lock.unlock(); return nil }
        change(&job)
        jobs[id] = job
        lock.unlock()
        try AtomicFile.write(job.json.serialized(pretty: true), to: "\(jobDirectory(id))/job.json")
        return job
    }

    /// Progress that need not survive a crash: memory only.
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
        return jobs.values.sorted { $0.createdAt < $1.createdAt }
    }

    public func spec(_ id: String) -> JSON? {
        AtomicFile.read(specPath(id)).flatMap { try? JSON.parse($0) }
    }

    public func appendMetrics(_ id: String, _ epoch: JSON) throws {
        lock.lock()
        metrics[id, default: []].append(epoch)
        let doc = metricsJSONLocked(id)
        lock.unlock()
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
    }

    public func metricsJSON(_ id: String) -> JSON {
        lock.lock()
        defer { lock.unlock() }
        return metricsJSONLocked(id)
    }

    private func metricsJSONLocked(_ id: String) -> JSON {
        .object([("epochs", .array(metrics[id] ?? [])), ("warnings", JSON(warnings[id] ?? []))])
    }

    /// Drops metrics of epochs after `count` (they will be recorded again on resume).
    public func truncateMetrics(_ id: String, toEpochs count: Int) throws {
        lock.lock()
        let current = metrics[id] ?? []
        guard current.count > count else { lock.unlock(); return }
        metrics[id] = Array(current.prefix(count))
        let doc = metricsJSONLocked(id)
        lock.unlock()
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
    }

    public func setWarnings(_ id: String, _ list: [String]) throws {
        lock.lock()
        warnings[id] = list
        let doc = metricsJSONLocked(id)
        lock.unlock()
        try AtomicFile.write(doc.serialized(pretty: true), to: "\(jobDirectory(id))/metrics.json")
    }

    public func writeCheckpoint(_ id: String, _ bytes: [UInt8]) throws {
        try AtomicFile.write(bytes, to: checkpointPath(id))
    }

    /// The latest succeeded job with this name, or the job with this id.
    public func resolveModel(_ nameOrID: String) -> Job? {
        lock.lock()
        defer { lock.unlock() }
        if let job = jobs[nameOrID] { return job }
        return jobs.values.filter { $0.name == nameOrID && $0.status == .succeeded }.max { ($0.finishedAt ?? $0.createdAt) < ($1.finishedAt ?? $1.createdAt) }
    }
}
