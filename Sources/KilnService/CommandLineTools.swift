import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTrain

/// `kiln validate`, `kiln train` and `kiln predict`: the same checks, training and
/// predictions as the service, without a server.
public enum CommandLineTools {
    /// - Parameters:
    ///   - output: a directory to keep the model artifact in (`model.json`,
    ///     `checkpoint.safetensors`, `spec.json`), rewritten after each epoch.
    ///   - register: also store the trained model in the data directory as a succeeded
    ///     job under the spec's name, as a server job would have left it.
    public static func run(_ command: String, specPath: String, config: Config, output: String? = nil, register: Bool = false) -> Int32 {
        guard let bytes = FileManager.default.contents(atPath: specPath) else {
            print(JSON.object([("error", .object([("code", "not_found"), ("message", .string("cannot read \(specPath)"))]))]).serialized())
            return 2
        }
        let spec: JobSpec
        let json: JSON
        do {
            json = try JSON.parse([UInt8](bytes))
            spec = try JobSpec(json: json, limits: ModelLimits(maxParameters: config.maxParameters),
                               purpose: command == "validate" ? .validation : .training)
        } catch let e as SpecError {
            print(JSON.object([("error", .object([("code", .string(e.code.rawValue)), ("message", .string(e.description)), ("path", .string(e.path))]))]).serialized(pretty: true))
            return 1
        } catch {
            print(JSON.object([("error", .object([("code", "invalid_json"), ("message", .string("\(error)"))]))]).serialized(pretty: true))
            return 1
        }
        if command == "validate" {
            print(spec.validation.serialized(pretty: true))
            return 0
        }
        var registered: RegisteredModel?
        do {
            let catalog = DatasetCatalog(cacheDirectory: "\(config.dataDirectory)/datasets", mirror: config.datasetMirror, checksums: config.datasetChecksums)
            let data = try TrainingData.resolve(spec, catalog: catalog)
            let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
            let trainer = Trainer(spec: spec, model: model, data: data)
            let terminal = isatty(STDERR_FILENO) != 0
            let started = Date()
            trainer.onStep = { [unowned trainer] epoch, step, steps in
                guard terminal else { return }
                let width = 30, filled = width * step / max(steps, 1)
                let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
                let done = Double((epoch - 1) * steps + step) / Double(max(spec.train.epochs * steps, 1))
                let eta = done > 0 ? Date().timeIntervalSince(started) * (1 - done) / done : 0
                let loss = trainer.runningLoss.map { String(format: " loss %.4f", $0) } ?? ""
                FileHandle.standardError.write(Data("\repoch \(epoch)/\(spec.train.epochs) [\(bar)] \(step)/\(steps) ETA \(CommandLineTools.duration(eta))\(loss)".utf8))
            }
            let graphHash = SHA256.hex(Array(ModelArtifactGraph.json(spec).serialized(sortedKeys: true).utf8))
            let store = try output.map { try ArtifactDirectory(path: $0, spec: spec, json: json) }
            registered = try register ? RegisteredModel(config: config, spec: spec) : nil
            var epochs: [JSON] = []
            try trainer.fit { metrics in
                epochs.append(metrics.json)
                let weights = Checkpoint.encode(model, metadata: [
                    "job": registered?.id ?? spec.name, "epoch": String(metrics.epoch), "graph_sha256": graphHash, "metrics": metrics.json.serialized(),
                ])
                try store?.write(weights)
                try registered?.write(weights, epoch: metrics.json, optimizer: Checkpoint.encodeOptimizer(trainer.optimizer, epoch: metrics.epoch))
                let line = metrics.values.keys.sorted().map { "\($0)=\(String(format: "%.4f", metrics.values[$0]!))" }.joined(separator: " ")
                FileHandle.standardError.write(Data("\(terminal ? "\r" : "")epoch \(metrics.epoch)/\(spec.train.epochs) \(line) (\(String(format: "%.1f", metrics.seconds)) s)\n".utf8))
            }
            try registered?.complete()
            var result: [(String, JSON)] = [("epochs", .array(epochs)), ("final", epochs.last ?? .null)]
            if let output { result.append(("output", .string(output))) }
            if let registered { result.append(("job", .string(registered.id))) }
            print(JSON.object(result).serialized(pretty: true))
            return 0
        } catch {
            // A model stored as a job in the data directory is marked failed, not left running.
            try? registered?.fail("\(error)")
            print(JSON.object([("error", .object([("code", "training_failed"), ("message", .string("\(error)"))]))]).serialized(pretty: true))
            return 1
        }
    }

    /// `kiln predict --model DIR|NAME INPUT.json`: a `/predict` body run on an artifact
    /// directory, or on a model of the data directory; the answer on stdout.
    public static func predict(model: String, inputPath: String, config: Config) -> Int32 {
        func report(_ code: String, _ message: String, path: String? = nil) -> Int32 {
            var members: [(String, JSON)] = [("code", .string(code)), ("message", .string(message))]
            if let path { members.append(("path", .string(path))) }
            print(JSON.object([("error", .object(members))]).serialized(pretty: true))
            return 1
        }
        guard let bytes = FileManager.default.contents(atPath: inputPath) else { return report("not_found", "cannot read \(inputPath)") }
        do {
            let body = try JSON.parsePacked([UInt8](bytes))
            let limits = ModelLimits(maxParameters: config.maxParameters)
            let jobs = try DirectoryJobStore(directory: config.dataDirectory)
            let predictor = Predictor(jobs: jobs, artifacts: try DirectoryArtifactStore(directory: config.dataDirectory), limits: limits, maxBatch: config.maxPredictBatch)
            var isDirectory: ObjCBool = false
            let answer: JSON
            if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue {
                let artifact = try ArtifactDirectory.read(model)
                answer = try predictor.predict(body, model: try Predictor.load(artifact, limits: limits), id: artifact.jobID)
            } else {
                let (job, loaded) = try predictor.model(model)
                answer = try predictor.predict(body, model: loaded, id: job.id)
            }
            print(answer.serialized(pretty: true))
            return 0
        } catch let e as ServiceError {
            return report(e.code, e.message, path: e.path)
        } catch let e as JSONParseError {
            return report("invalid_json", "\(inputPath): \(e.description)")
        } catch {
            return report("predict_failed", "\(error)")
        }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// A model artifact in a directory of its own, as `kiln train --output` keeps it and
/// `kiln predict --model` reads it: the layout of a job's directory in the data
/// directory (`model.json`, `checkpoint.safetensors`), with the spec beside them.
struct ArtifactDirectory {
    let path: String

    init(path: String, spec: JobSpec, json: JSON) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let graph = ModelArtifactGraph.json(spec)
        try AtomicFile.write(graph.serialized(pretty: true), to: "\(path)/model.json")
        try AtomicFile.write(json.serialized(pretty: true), to: "\(path)/spec.json")
    }

    func write(_ weights: [UInt8]) throws {
        try AtomicFile.write(weights, to: "\(path)/checkpoint.safetensors")
    }

    static func read(_ path: String) throws -> ModelArtifact {
        guard let weights = AtomicFile.read("\(path)/checkpoint.safetensors") else {
            throw ServiceError(.notFound, code: "artifact_incomplete", "\(path) has no checkpoint.safetensors", path: "model")
        }
        guard let graphBytes = AtomicFile.read("\(path)/model.json"), let graph = try? JSON.parse(graphBytes) else {
            throw ServiceError(.notFound, code: "artifact_incomplete", "\(path) has no readable model.json", path: "model")
        }
        let metadata = try Checkpoint.metadata(weights)
        return ModelArtifact(jobID: metadata["job"] ?? path, epoch: Int(metadata["epoch"] ?? "0") ?? 0, graph: graph, weights: weights, metadata: metadata)
    }
}

/// A model trained on the command line, stored in the data directory as the
/// succeeded job a server would have left: record, spec, graph, checkpoints, metrics.
struct RegisteredModel {
    let id: String
    let jobs: DirectoryJobStore
    let artifacts: DirectoryArtifactStore

    init(config: Config, spec: JobSpec) throws {
        jobs = try DirectoryJobStore(directory: config.dataDirectory)
        artifacts = try DirectoryArtifactStore(directory: config.dataDirectory)
        id = jobs.newID()
        let job = Job(id: id, name: spec.name, epochs: spec.train.epochs,
                      specHash: SHA256.hex(Array(spec.json.serialized(sortedKeys: true).utf8)), seed: spec.train.seed)
        try jobs.create(job, spec: spec)
        let claimed = try jobs.update(id) { $0.status = .running; $0.startedAt = Date(); $0.node = "kiln-train" }
        precondition(claimed != nil, "a job just created is in its store")
        try artifacts.writeGraph(id, ModelArtifactGraph.json(spec))
    }

    func write(_ weights: [UInt8], epoch: JSON, optimizer: [UInt8]) throws {
        try artifacts.writeCheckpoint(id, weights: weights, optimizer: optimizer)
        try jobs.recordEpoch(id, epoch, warnings: [])
    }

    func complete() throws {
        try jobs.complete(id, warnings: [])
    }

    func fail(_ error: String) throws {
        try jobs.fail(id, error: Redact.text(error))
    }
}
