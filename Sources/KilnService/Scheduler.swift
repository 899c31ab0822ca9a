import Foundation
import KilnData
import KilnGraph
import KilnJSON
import KilnTensor
import KilnTrain

/// Runs queued jobs in order on a Dispatch queue, at most `maxConcurrentJobs` at once.
/// Each epoch's metrics and checkpoint go to the job store as they finish, so a job
/// interrupted by a crash resumes from its last checkpoint.
public final class Scheduler: @unchecked Sendable {
    let store: JobStore
    let catalog: DatasetCatalog
    let maxConcurrent: Int
    let maxQueued: Int
    let limits: ModelLimits
    private let queue = DispatchQueue(label: "kiln.training", attributes: .concurrent)
    private let lock = NSLock()
    private var pending: [String] = []
    private var running = Set<String>()
    private var cancelled = Set<String>()
    /// Set by `shutdown`: no new job starts, running ones stop at their next step and
    /// stay queued, to resume from their checkpoint at the next start.
    private var stopping = false
    /// Called when a job finishes (to drop cached models, wake streams).
    var onChange: (String) -> Void = { _ in }
    /// Looks up datasets uploaded with `POST /datasets`.
    var uploaded: (String) -> DatasetSplits? = { _ in nil }
    var uploadedSchema: (String) -> DataSchema? = { _ in nil }
    /// Told (samples, seconds) after each epoch, for the service's throughput metric.
    var onEpoch: (Int, Double) -> Void = { _, _ in }

    init(store: JobStore, catalog: DatasetCatalog, maxConcurrent: Int, maxQueued: Int, limits: ModelLimits) {
        self.store = store
        self.catalog = catalog
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
        self.limits = limits
    }

    public var queueDepth: Int { lock.lock(); defer { lock.unlock() }; return pending.count }
    public var runningCount: Int { lock.lock(); defer { lock.unlock() }; return running.count }

    /// Requeues jobs a previous process left queued or running, oldest first.
    func recover() {
        for job in store.all() where job.status == .queued || job.status == .running {
            if job.status == .running {
                _ = try? store.update(job.id) { $0.status = .queued }
                Log.info("job_requeued", [("id", .string(job.id)), ("epoch", JSON(job.epoch))])
            }
            lock.lock()
            pending.append(job.id)
            lock.unlock()
        }
        pump()
    }

    /// Queues a job; false when the queue is full.
    func enqueue(_ id: String) -> Bool {
        lock.lock()
        guard pending.count < maxQueued else { lock.unlock(); return false }
        pending.append(id)
        lock.unlock()
        pump()
        return true
    }

    /// Whether the queue can take another job.
    var hasRoom: Bool { lock.lock(); defer { lock.unlock() }; return pending.count < maxQueued }

    /// Cancels a queued job at once, a running one at its next step.
    func cancel(_ id: String) -> Bool {
        lock.lock()
        if let i = pending.firstIndex(of: id) {
            pending.remove(at: i)
            lock.unlock()
            _ = try? store.update(id) { $0.status = .cancelled; $0.finishedAt = Date() }
            onChange(id)
            return true
        }
        let isRunning = running.contains(id)
        if isRunning { cancelled.insert(id) }
        lock.unlock()
        return isRunning
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

    private func pump() {
        lock.lock()
        guard !stopping else { lock.unlock(); return }
        var toStart: [String] = []
        while running.count < maxConcurrent, !pending.isEmpty {
            let id = pending.removeFirst()
            running.insert(id)
            toStart.append(id)
        }
        lock.unlock()
        for id in toStart {
            queue.async { [self] in
                run(id)
                lock.lock()
                running.remove(id)
                cancelled.remove(id)
                let idle = running.isEmpty
                lock.unlock()
                // The buffers kept for the job's next step are of no use to the next job.
                if idle { BufferPool.drain() }
                onChange(id)
                pump()
            }
        }
    }

    private func isCancelled(_ id: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled.contains(id) || stopping
    }

    private func wasCancelled(_ id: String) -> Bool { lock.lock(); defer { lock.unlock() }; return cancelled.contains(id) }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func run(_ id: String) {
        do {
            try store.update(id) { $0.status = .running; $0.startedAt = $0.startedAt ?? Date(); $0.error = nil }
            Log.info("job_started", [("id", .string(id))])
            guard let specJSON = store.spec(id) else { throw TrainError.model("the stored spec is missing") }
            let spec = try JobSpec(json: specJSON, limits: limits, schema: specJSON["data"]?["dataset"]?.stringValue.flatMap(uploadedSchema))
            let data = try TrainingData.resolve(spec, catalog: catalog, uploaded: uploaded)
            let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
            var startEpoch = 0
            var initWarnings: [String] = []
            if let from = spec.initFrom, AtomicFile.read(store.checkpointPath(id)) == nil {
                initWarnings.append(try warmStart(model, from: from))
            }
            if let bytes = AtomicFile.read(store.checkpointPath(id)) {
                let (tensors, metadata) = try Safetensors.decode(bytes)
                for (name, t) in tensors { _ = model.load(name, t) }
                startEpoch = Int(metadata["epoch"] ?? "0") ?? 0
                Log.info("job_resumed", [("id", .string(id)), ("epoch", JSON(startEpoch))])
            }
            let trainer = Trainer(spec: spec, model: model, data: data)
            // The optimizer state belongs to the checkpoint only if both name the same epoch.
            if startEpoch > 0, let bytes = AtomicFile.read(store.optimizerPath(id)),
               let (tensors, metadata) = try? Safetensors.decode(bytes), metadata["epoch"] == String(startEpoch) {
                trainer.optimizer.restore(tensors, iterations: Int(metadata["iterations"] ?? "0") ?? 0,
                                          weights: model.weights.mapValues(\.value.shape))
            }
            try store.update(id) { $0.dataHash = data.hash; $0.steps = trainer.stepsPerEpoch; $0.epoch = startEpoch }
            trainer.shouldStop = { [unowned self] in isCancelled(id) }
            trainer.onStep = { [store] epoch, step, steps in
                store.updateProgress(id) { $0.epoch = epoch; $0.step = step; $0.steps = steps }
            }
            // Metrics past the checkpoint belong to an epoch that will run again.
            try store.truncateMetrics(id, toEpochs: startEpoch)
            try trainer.fit(startEpoch: startEpoch) { metrics in
                // Metrics first, then the checkpoint: a crash between the two re-runs the
                // epoch, and the truncation above keeps each epoch recorded once.
                try store.appendMetrics(id, metrics.json)
                let weights = model.weightNames.map { ($0, model.weights[$0]!.value) }
                try store.writeCheckpoint(id, Safetensors.encode(weights, metadata: ["epoch": String(metrics.epoch), "job": id]))
                let state = trainer.optimizer.state
                try AtomicFile.write(Safetensors.encode(state.tensors, metadata: ["epoch": String(metrics.epoch), "iterations": String(state.iterations)]),
                                     to: store.optimizerPath(id))
                onEpoch(Int(metrics.samplesPerSecond * metrics.seconds), metrics.seconds)
                try store.setWarnings(id, initWarnings + trainer.warnings)
                try store.update(id) { $0.epoch = metrics.epoch }
            }
            try store.setWarnings(id, initWarnings + trainer.warnings)
            try store.update(id) { $0.status = .succeeded; $0.finishedAt = Date() }
            Log.info("job_succeeded", [("id", .string(id))])
        } catch TrainError.cancelled where isStopping && !wasCancelled(id) {
            _ = try? store.update(id) { $0.status = .queued }
            Log.info("job_interrupted", [("id", .string(id)), ("reason", "shutdown")])
        } catch TrainError.cancelled {
            _ = try? store.update(id) { $0.status = .cancelled; $0.finishedAt = Date() }
            Log.info("job_cancelled", [("id", .string(id))])
        } catch {
            let message = "\(error)"
            _ = try? store.update(id) { $0.status = .failed; $0.finishedAt = Date(); $0.error = message }
            Log.error("job_failed", [("id", .string(id)), ("error", .string(message))])
        }
    }

    /// `init_from`: restores weights whose name and shape match another job's
    /// checkpoint, and says which were initialised anew.
    func warmStart(_ model: CompiledModel, from: String) throws -> String {
        guard JobStore.isValidID(from), let source = store.resolveModel(from), let bytes = AtomicFile.read(store.checkpointPath(source.id)) else {
            throw TrainError.model("init_from: no checkpoint for job or model '\(from.prefix(64))'")
        }
        let (tensors, _) = try Safetensors.decode(bytes)
        var restored = Set<String>()
        for (name, t) in tensors where model.load(name, t) { restored.insert(name) }
        let fresh = model.weightNames.filter { !restored.contains($0) }
        return fresh.isEmpty
            ? "init_from \(source.id): every weight was restored"
            : "init_from \(source.id): initialised anew (no matching name and shape): \(fresh.joined(separator: ", "))"
    }
}
