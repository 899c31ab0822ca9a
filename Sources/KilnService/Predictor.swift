import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
import KilnTrain

/// Answers predictions from a cache of loaded models. It runs on the caller's
/// connection thread, never on the training queue, so predictions do not wait behind
/// training.
final class Predictor: @unchecked Sendable {
    let jobs: JobStore
    let artifacts: ArtifactStore
    let limits: ModelLimits
    let maxBatch: Int
    private let lock = NSLock()
    private var cache: [String: (model: CompiledModel, epoch: Int)] = [:]

    init(jobs: JobStore, artifacts: ArtifactStore, limits: ModelLimits, maxBatch: Int) {
        self.jobs = jobs
        self.artifacts = artifacts
        self.limits = limits
        self.maxBatch = maxBatch
    }

    func forget(_ id: String) {
        lock.lock()
        cache[id] = nil
        lock.unlock()
    }

    /// The job's model from its latest artifact (graph and weights), loaded once and
    /// cached until the job lands a newer checkpoint.
    func model(_ nameOrID: String, path: String = "model") throws -> (Job, CompiledModel) {
        guard StoredName.isValid(nameOrID), let job = jobs.resolveModel(nameOrID) else {
            throw ServiceError(.notFound, code: "model_not_found", "no trained model or job named '\(nameOrID.prefix(64))'", path: path)
        }
        lock.lock()
        if let hit = cache[job.id] { lock.unlock(); return (job, hit.model) }
        lock.unlock()
        guard let artifact = try artifacts.latest(job.id) else {
            throw ServiceError(.conflict, code: "model_not_ready", "job \(job.id) is \(job.status.rawValue) and has no checkpoint yet", path: path)
        }
        let model = try Predictor.load(artifact, limits: limits)
        lock.lock()
        cache[job.id] = (model, artifact.epoch)
        lock.unlock()
        return (job, model)
    }

    /// A model ready for inference from an artifact alone.
    static func load(_ artifact: ModelArtifact, limits: ModelLimits) throws -> CompiledModel {
        let graph: ModelGraph
        do {
            graph = try ModelGraph(json: artifact.graph, path: "model", limits: limits)
        } catch {
            // The graph was checked when the job was posted: failing now means the artifact is damaged.
            throw ServiceError(.internalError, code: "artifact_corrupt", "the graph of job \(artifact.jobID) does not load: \(error)")
        }
        let model = CompiledModel(graph: graph, seed: 0, inference: true)
        try Checkpoint.load(artifact.weights, into: model)
        return model
    }

    /// `{"model", "inputs", "outputs"}` → `{"outputs"}`, or TensorFlow-Serving
    /// `{"model", "instances"}` → `{"predictions"}`. The body comes from
    /// `JSON.parsePacked`, so inputs given as rectangular arrays of numbers become
    /// tensors without a tree of JSON values.
    func predict(_ body: PackedJSON) throws -> JSON {
        guard body.objectMembers != nil else { throw ServiceError(.invalid, code: "invalid_request", "expected a JSON object") }
        guard let name = body["model"]?.stringValue else {
            throw ServiceError(.invalid, code: "missing_field", "'model' (a model name or job id) is required", path: "model")
        }
        let (job, model) = try self.model(name)
        return try predict(body, model: model, id: job.id)
    }

    /// `/predict` on a loaded model; `id` names it in the answer.
    func predict(_ body: PackedJSON, model: CompiledModel, id: String) throws -> JSON {
        guard body.objectMembers != nil else { throw ServiceError(.invalid, code: "invalid_request", "expected a JSON object") }
        let graph = model.graph
        var requested = graph.outputs
        if let outs = body["outputs"]?.json {
            guard let list = outs.arrayValue?.compactMap(\.stringValue), list.count == outs.arrayValue?.count, !list.isEmpty else {
                throw ServiceError(.invalid, code: "invalid_field", "expected a list of node names", path: "outputs")
            }
            for (i, o) in list.enumerated() where graph.node(o) == nil {
                throw ServiceError(.invalid, code: "unknown_node", "model '\(id)' has no node '\(o)'; its nodes are \(graph.nodes.map(\.name).joined(separator: ", "))", path: "outputs[\(i)]")
            }
            requested = list
        }
        let feeds: [String: Tensor]
        let rowsForm: Bool
        if let instances = body["instances"] {
            feeds = try instanceFeeds(instances, graph: graph, needed: requested)
            rowsForm = true
        } else if let inputs = body["inputs"] {
            feeds = try namedFeeds(inputs, graph: graph, needed: requested)
            rowsForm = false
        } else if neededInputs(graph, requested).isEmpty {
            // A model without inputs (made of weights and constants) needs none in the request.
            feeds = [:]
            rowsForm = false
        } else {
            throw ServiceError(.invalid, code: "missing_field", "give 'inputs' (an object of input name → array) or 'instances' (a list of rows)", path: "inputs")
        }
        let values: [String: Variable]
        do {
            values = try model.run(feeds, targets: requested, training: false)
        } catch {
            throw ServiceError(.invalid, code: "invalid_input", error.description)
        }
        for o in requested where !values[o]!.value.isFinite {
            Log.error("prediction_not_finite", [("model", .string(id)), ("node", .string(o))])
        }
        if rowsForm {
            let batch = feeds.values.first?.shape.first ?? 1
            let rows: [JSON] = (0..<batch).map { r in
                if requested.count == 1 { return Predictor.row(values[requested[0]]!.value, r) }
                return .object(requested.map { ($0, Predictor.row(values[$0]!.value, r)) })
            }
            return .object([("model", .string(id)), ("predictions", .array(rows))])
        }
        return .object([("model", .string(id)), ("outputs", .object(requested.map { ($0, Predictor.nested(values[$0]!.value)) }))])
    }

    /// Inputs the requested nodes depend on.
    func neededInputs(_ graph: ModelGraph, _ targets: [String], given: Set<String> = []) -> [String] {
        let deps = Set(graph.dependencies(of: targets, given: given))
        // Inner nodes named in `inputs` are fed directly (a decoder given codes).
        let inner = graph.nodes.filter { $0.layer != nil && $0.shape.batched && given.contains($0.name) && deps.contains($0.name) }.map(\.name)
        return graph.inputNames.filter { deps.contains($0) } + inner
    }

    func namedFeeds(_ inputs: PackedJSON, graph: ModelGraph, needed targets: [String]) throws -> [String: Tensor] {
        guard inputs.objectMembers != nil else {
            throw ServiceError(.invalid, code: "invalid_field", "expected an object mapping input names to arrays", path: "inputs")
        }
        var feeds: [String: Tensor] = [:]
        let given = Set(inputs.objectMembers!.map(\.0).filter { graph.node($0) != nil })
        for name in neededInputs(graph, targets, given: given) {
            guard let value = inputs[name] else {
                throw ServiceError(.invalid, code: "missing_field", "input '\(name)' with per-sample shape \(graph.node(name)!.shape.dims) is required", path: "inputs.\(name)")
            }
            feeds[name] = try tensor(value, input: name, graph: graph, path: "inputs.\(name)")
        }
        try checkBatch(feeds)
        return feeds
    }

    func instanceFeeds(_ instances: PackedJSON, graph: ModelGraph, needed targets: [String]) throws -> [String: Tensor] {
        let names = neededInputs(graph, targets)
        if names.count == 1, case .numbers = instances {
            // The rows are the batch of the one input.
            let feeds = [names[0]: try tensor(instances, input: names[0], graph: graph, path: "instances")]
            try checkBatch(feeds)
            return feeds
        }
        let instances = instances.json
        guard let rows = instances.arrayValue, !rows.isEmpty else {
            throw ServiceError(.invalid, code: "invalid_field", "expected a non-empty list of rows", path: "instances")
        }
        var columns: [String: [JSON]] = [:]
        for (i, row) in rows.enumerated() {
            if names.count == 1, row.objectMembers == nil {
                columns[names[0], default: []].append(row)
                continue
            }
            for name in names {
                guard let v = row[name] else {
                    throw ServiceError(.invalid, code: "missing_field", "row \(i) lacks input '\(name)'", path: "instances[\(i)].\(name)")
                }
                columns[name, default: []].append(v)
            }
        }
        var feeds: [String: Tensor] = [:]
        for name in names { feeds[name] = try tensor(PackedJSON(.array(columns[name] ?? [])), input: name, graph: graph, path: "instances") }
        try checkBatch(feeds)
        return feeds
    }

    func checkBatch(_ feeds: [String: Tensor]) throws {
        let sizes = Set(feeds.values.map { $0.shape[0] })
        if sizes.count > 1 { throw ServiceError(.invalid, code: "shape_mismatch", "inputs have different batch sizes \(sizes.sorted())", path: "inputs") }
        if let b = sizes.first, b > maxBatch {
            throw ServiceError(.invalid, code: "batch_too_large", "batch of \(b) rows is over the maximum of \(maxBatch)", path: "inputs")
        }
    }

    /// A JSON array as a batch for `input`: [batch] + the input's shape, or exactly the
    /// input's shape for a single sample.
    func tensor(_ value: PackedJSON, input: String, graph: ModelGraph, path: String) throws -> Tensor {
        let array: NumberArray
        do {
            array = try NumberArray.decode(value, maxValues: JSONFields.maxValues, requireArray: true)
        } catch {
            throw ServiceError(.invalid, code: "invalid_input", "input '\(input)': \(error.message)", path: path + error.suffix)
        }
        let dims = graph.node(input)!.shape.dims
        var shape = array.shape
        if shape == dims { shape = [1] + dims }
        guard shape.count == dims.count + 1, Array(shape.dropFirst()) == dims else {
            throw ServiceError(.invalid, code: "shape_mismatch", "input '\(input)' expects shape (batch, \(dims.map(String.init).joined(separator: ", "))), got \(array.shape)", path: path)
        }
        return Tensor(shape: shape, values: array.values)
    }

    /// A tensor as nested JSON arrays.
    static func nested(_ t: Tensor) -> JSON {
        t.withUnsafeBufferPointer { p in nested(p, t.shape, 0) }
    }

    static func nested(_ p: UnsafeBufferPointer<Float>, _ shape: [Int], _ offset: Int) -> JSON {
        guard let first = shape.first else { return JSON(p[offset]) }
        let inner = Shapes.count(Array(shape.dropFirst()))
        if shape.count == 1 { return .array((0..<first).map { JSON(p[offset + $0]) }) }
        return .array((0..<first).map { nested(p, Array(shape.dropFirst()), offset + $0 * inner) })
    }

    /// Row r of a batched tensor as nested JSON.
    static func row(_ t: Tensor, _ r: Int) -> JSON {
        let rowShape = Array(t.shape.dropFirst())
        return t.withUnsafeBufferPointer { p in nested(p, rowShape, r * Shapes.count(rowShape)) }
    }
}
