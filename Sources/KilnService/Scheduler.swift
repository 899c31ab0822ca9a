import Foundation
import KilnData
import KilnGraph
import KilnJSON
import KilnSpec
import KilnTensor
import KilnTrain

/// Runs queued jobs on threads of their own, at most `maxConcurrent` at once, taking each
/// from the job store with `claim` (the oldest queued job first). Each epoch's
/// checkpoint, then its metrics, go to the stores as it finishes, so a job interrupted
/// by a crash resumes from its last checkpoint with each epoch recorded once.
public final class Scheduler: @unchecked Sendable {
    let jobs: JobStore
    let artifacts: ArtifactStore
    let catalog: DatasetCatalog
    let node: String
    let maxConcurrent: Int
    let maxQueued: Int
    /// False on an `api` node: it queues jobs but never trains.
    let trains: Bool
    /// How long a claim lasts without a heartbeat: past it, another node may take the
    /// job over, so a node that cannot renew its claim for that long stops the run.
    let lease: Double
    let limits: ModelLimits
    /// The nice value of the threads that train (0: unchanged).
    let trainingNice: Int
    private let lock = NSLock()
    /// Specs decoded when their job was posted, until the job starts: a job started in
    /// this process is never decoded again.
    private var decoded: [String: JobSpec] = [:]
    private var running = Set<String>()
    private var cancelled = Set<String>()
    /// Set by `shutdown`: no new job starts, running ones stop at their next step and
    /// stay queued, to resume from their checkpoint at the next start.
    private var stopping = false
    /// Called when a job finishes or lands a checkpoint (to drop cached models).
    var onChange: (String) -> Void = { _ in }
    /// Looks up datasets uploaded with `POST /datasets`.
    let datasets: DatasetStore
    /// Told (samples, seconds) after each epoch, for the service's throughput metric.
    var onEpoch: (Int, Double) -> Void = { _, _ in }

    let decoder: SpecDecoder

    init(jobs: JobStore, artifacts: ArtifactStore, datasets: DatasetStore, decoder: SpecDecoder, catalog: DatasetCatalog, node: String,
         maxConcurrent: Int, maxQueued: Int, limits: ModelLimits, trains: Bool = true, lease: Double = .infinity, trainingNice: Int = 0) {
        self.trainingNice = trainingNice
        self.trains = trains
        self.lease = lease
        self.jobs = jobs
        self.decoder = decoder
        self.artifacts = artifacts
        self.datasets = datasets
        self.catalog = catalog
        self.node = node
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
        self.limits = limits
    }

    public var queueDepth: Int { jobs.queuedCount }
    public var runningCount: Int { lock.lock(); defer { lock.unlock() }; return running.count }

    /// Whether the queue can take another job.
    var hasRoom: Bool { jobs.queuedCount < maxQueued }

    /// Requeues jobs a previous process left running, then starts what is queued.
    func recover() {
        guard trains else { return }
        do {
            for id in try jobs.requeueAbandoned() {
                Log.info("job_requeued", [("id", .string(id)), ("epoch", JSON(jobs.job(id)?.epoch ?? 0))])
            }
        } catch {
            Log.error("job_requeue_failed", [("error", .string("\(error)"))])
        }
        pump()
    }

    /// Stores and queues a job with its decoded spec.
    func submit(_ job: Job, spec: JobSpec) throws {
        guard hasRoom else {
            throw ServiceError(.unavailable, code: "queue_full", "the job queue is full; try again later", retryAfter: 30)
        }
        lock.lock()
        // Kept for this node's run; on a node that does not train, a worker decodes it.
        if trains { decoded[job.id] = spec }
        lock.unlock()
        do {
            try jobs.create(job, spec: spec)
        } catch let error as ServiceError {
            lock.lock()
            decoded[job.id] = nil
            lock.unlock()
            throw error
        } catch {
            lock.lock()
            decoded[job.id] = nil
            lock.unlock()
            throw ServiceError(.insufficientStorage, code: "storage_error", "could not store the job: \(error)")
        }
        pump()
    }

    /// Cancels a queued job at once, a running one at its next step. False when the
    /// job is neither.
    func cancel(_ id: String) throws -> Bool {
        if try jobs.cancelQueued(id) {
            lock.lock()
            decoded[id] = nil
            lock.unlock()
            onChange(id)
            return true
        }
        lock.lock()
        if running.contains(id) {
            cancelled.insert(id)
            lock.unlock()
            return true
        }
        lock.unlock()
        // Running on another node: it hears of it (`kiln_cancel`, or its next heartbeat).
        return try jobs.cancelRunning(id)
    }

    /// Stops a job this node runs at its next step (cancelled on another node).
    func stopLocal(_ id: String) {
        lock.lock()
        if running.contains(id) { cancelled.insert(id) }
        lock.unlock()
    }

    /// Stops starting jobs and interrupts running ones; waits up to `timeout` seconds
    /// for them to reach a step boundary.
    func shutdown(timeout: Double = 10) {
        lock.lock()
        stopping = true
        lock.unlock()
        let deadline = Date().addingTimeInterval(timeout)
        while runningCount > 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Starts queued jobs while there is room (after a job was put back in the queue).
    func wake() { pump() }

    private func pump() {
        while true {
            lock.lock()
            guard trains, !stopping, running.count < maxConcurrent else { lock.unlock(); return }
            let claimed: Job?
            do {
                claimed = try jobs.claim(node: node)
            } catch {
                lock.unlock()
                Log.error("job_claim_failed", [("error", .string("\(error)"))])
                return
            }
            guard let job = claimed else { lock.unlock(); return }
            running.insert(job.id)
            let spec = decoded.removeValue(forKey: job.id)
            lock.unlock()
            let slot = Thread { [self] in
                prepareTrainingThread()
                // A job's completion may claim the next one in the same commit; this
                // slot runs it.
                var current: (job: Job, spec: JobSpec?)? = (job, spec)
                while let (job, spec) = current {
                    let next = run(job.id, spec: spec)
                    lock.lock()
                    running.remove(job.id)
                    cancelled.remove(job.id)
                    var nextSpec: JobSpec?
                    if let next {
                        running.insert(next.id)
                        nextSpec = decoded.removeValue(forKey: next.id)
                    }
                    let idle = running.isEmpty
                    lock.unlock()
                    // The buffers kept for the job's next step are of no use to the next job.
                    if idle { BufferPool.drain() }
                    onChange(job.id)
                    current = next.map { ($0, nextSpec) }
                }
                pump()
            }
            // The default stack of a Dispatch worker; a long recurrent graph recurses deeply.
            slot.stackSize = 8 << 20
            slot.start()
        }
    }

    /// Names the calling thread `kiln-training` (as `top -H` and /proc show it) and gives
    /// it `trainingNice` (nice values are per thread on Linux), so that predictions and the
    /// HTTP core get the cores first when both want them.
    private func prepareTrainingThread() {
        Thread.current.name = "kiln-training"
        #if os(Linux)
        guard trainingNice > 0 else { return }
        if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Int32(trainingNice)) != 0 {
            Log.warning("training_priority_unchanged", [("nice", JSON(trainingNice)), ("error", .string(String(cString: strerror(errno))))])
        }
        #endif
    }

    private func isCancelled(_ id: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled.contains(id) || stopping
    }

    private func wasCancelled(_ id: String) -> Bool { lock.lock(); defer { lock.unlock() }; return cancelled.contains(id) }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// The spec of a job started after a restart: decoded once, here.
    private func decodeStored(_ id: String) throws -> JobSpec {
        guard let json = jobs.spec(id) else { throw TrainError.model("the stored spec is missing") }
        return try decoder.decode(json)
    }

    /// Runs a claimed job; returns the next job claimed in the same commit as this
    /// one's completion, for this slot to run.
    private func run(_ id: String, spec given: JobSpec?) -> Job? {
        // Renews the claim every 2 s from the start (data downloads and checkpoint
        // writes included), not only between steps.
        let heartbeat = Heartbeat(jobs: jobs, id: id, node: node, lease: lease)
        defer { heartbeat.stop() }
        do {
            Log.info("job_started", [("id", .string(id)), ("node", .string(node))])
            let spec = try given ?? decodeStored(id)
            let data = try TrainingData.resolve(spec, catalog: catalog, uploaded: datasets.load)
            let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
            var startEpoch = 0
            var initWarnings: [String] = []
            let resumeFrom = try artifacts.latest(id)
            if resumeFrom == nil {
                if let from = spec.initFrom { initWarnings.append(try warmStart(model, from: from)) }
                try artifacts.writeGraph(id, ModelArtifactGraph.json(spec))
            }
            var pendingMetrics: JSON?
            if let artifact = resumeFrom {
                let (_, metadata) = try Checkpoint.load(artifact.weights, into: model)
                startEpoch = artifact.epoch
                pendingMetrics = metadata["metrics"].flatMap { try? JSON.parse(Array($0.utf8)) }
                Log.info("job_resumed", [("id", .string(id)), ("epoch", JSON(startEpoch))])
            }
            let trainer = Trainer(spec: spec, model: model, data: data)
            if startEpoch > 0, let bytes = artifacts.optimizerState(id) {
                // The optimizer state belongs to the checkpoint only if both name the same epoch.
                _ = Checkpoint.restoreOptimizer(bytes, into: trainer.optimizer, epoch: startEpoch, model: model)
            }
            try jobs.update(id) { $0.dataHash = data.hash; $0.steps = trainer.stepsPerEpoch; $0.epoch = startEpoch }
            // Metrics past the checkpoint belong to an epoch that will run again; the
            // checkpoint's own epoch is recorded from the checkpoint if a crash came
            // between the two writes.
            try jobs.truncateMetrics(id, toEpochs: startEpoch)
            let recorded = jobs.metrics(id)["epochs"]?.arrayValue?.count ?? 0
            if recorded < startEpoch, let pendingMetrics {
                try jobs.recordEpoch(id, pendingMetrics, warnings: initWarnings)
            }
            trainer.shouldStop = { [unowned self] in
                // A claim that is no longer ours (cancelled elsewhere, taken over) stops the run.
                isCancelled(id) || heartbeat.lost
            }
            trainer.onStep = { [jobs] epoch, step, steps in
                jobs.updateProgress(id) { $0.epoch = epoch; $0.step = step; $0.steps = steps }
            }
            let graphHash = SHA256.hex(Array(ModelArtifactGraph.json(spec).serialized(sortedKeys: true).utf8))
            try trainer.fit(startEpoch: startEpoch) { metrics in
                // The checkpoint first, carrying its epoch's metrics: the metrics never
                // name an epoch whose weights were not kept.
                let line = metrics.json
                let weights = Checkpoint.encode(model, metadata: [
                    "job": id, "epoch": String(metrics.epoch), "graph_sha256": graphHash, "metrics": line.serialized(),
                ])
                try jobs.commitEpoch(id, metrics: line, warnings: initWarnings + trainer.warnings, weights: weights,
                                     optimizer: Checkpoint.encodeOptimizer(trainer.optimizer, epoch: metrics.epoch), artifacts: artifacts)
                onChange(id)
                onEpoch(Int(metrics.samplesPerSecond * metrics.seconds), metrics.seconds)
            }
            let next = try jobs.complete(id, warnings: initWarnings + trainer.warnings, claimingNextFor: isStopping ? nil : node)
            Log.info("job_succeeded", [("id", .string(id))])
            return next
        } catch TrainError.cancelled where isStopping && !wasCancelled(id) {
            record(id, "job_interrupted") { try jobs.requeue(id) }
        } catch TrainError.cancelled where wasCancelled(id) {
            record(id, "job_cancelled") { try jobs.markCancelled(id) }
        } catch let error as ServiceError where error.code == "database_unavailable" {
            // The job is not at fault: it stays claimed, and when its lease runs out a
            // worker (this one, once the database is back) resumes it from its checkpoint.
            Log.error("job_interrupted", [("id", .string(id)), ("error", .string(error.message))])
        } catch let error as ClaimLost {
            Log.info("job_lost", [("id", .string(id)), ("reason", .string(error.description))])
        } catch TrainError.cancelled {
            Log.info("job_lost", [("id", .string(id)), ("reason", "its claim was taken over or cancelled elsewhere")])
        } catch {
            let message = Redact.text("\(error)")
            Log.error("job_failed", [("id", .string(id)), ("error", .string(message))])
            record(id, nil) { try jobs.fail(id, error: message) }
        }
        return nil
    }

    /// Writes a status change; a failure to write it is logged, never dropped.
    private func record(_ id: String, _ event: String?, _ write: () throws -> Void) {
        do {
            try write()
            if let event { Log.info(event, [("id", .string(id))]) }
        } catch {
            Log.error("job_status_write_failed", [("id", .string(id)), ("error", .string("\(error)"))])
        }
    }

    /// `init_from`: restores weights whose name and shape match another job's
    /// checkpoint, and says which were initialised anew.
    func warmStart(_ model: CompiledModel, from: String) throws -> String {
        guard StoredName.isValid(from), let source = jobs.resolveModel(from), let artifact = try artifacts.latest(source.id) else {
            throw TrainError.model("init_from: no checkpoint for job or model '\(from.prefix(64))'")
        }
        let (restored, _) = try Checkpoint.load(artifact.weights, into: model)
        let fresh = model.weightNames.filter { !restored.contains($0) }
        return fresh.isEmpty
            ? "init_from \(source.id): every weight was restored"
            : "init_from \(source.id): initialised anew (no matching name and shape): \(fresh.joined(separator: ", "))"
    }
}

/// Decodes specs with the service's limits and the schema of the uploaded dataset a
/// spec reads, for requests, job starts and start-up alike.
struct SpecDecoder: Sendable {
    let limits: ModelLimits
    let datasets: DatasetStore

    func decode(_ json: JSON, for purpose: JobSpec.Purpose = .training) throws(SpecError) -> JobSpec {
        let schema = json["data"]?["dataset"]?.stringValue.flatMap(datasets.schema)
        return try JobSpec(json: json, limits: limits, schema: schema, purpose: purpose)
    }
}

/// Renews a running job's claim on a timer; `lost` once the store says the job is no
/// longer this node's (cancelled elsewhere, or taken over after its lease ran out).
/// A heartbeat that fails (database away) is tried again at the next tick.
final class Heartbeat: @unchecked Sendable {
    static let interval = 2.0
    private let lock = NSLock()
    private var isLost = false
    private var lastRenewed = Date()
    private let timer: DispatchSourceTimer

    /// - Parameter lease: a claim not renewed for this long may already be another
    ///   node's (the database was away): the run counts as lost.
    init(jobs: JobStore, id: String, node: String, lease: Double = .infinity) {
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + Heartbeat.interval, repeating: Heartbeat.interval)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            do {
                if try jobs.heartbeat(id, node: node) { renewed() } else { markLost() }
            } catch {
                if expired(lease) { markLost() }
            }
        }
        timer.resume()
    }

    var lost: Bool { lock.lock(); defer { lock.unlock() }; return isLost }
    private func markLost() { lock.lock(); isLost = true; lock.unlock() }
    private func renewed() { lock.lock(); lastRenewed = Date(); lock.unlock() }
    private func expired(_ lease: Double) -> Bool { lock.lock(); defer { lock.unlock() }; return Date().timeIntervalSince(lastRenewed) > lease }
    func stop() { timer.cancel() }
}

/// The graph a model artifact holds for a spec.
enum ModelArtifactGraph {
    static func json(_ spec: JobSpec) -> JSON {
        spec.model.json
    }
}
