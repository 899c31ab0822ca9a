import Foundation
import KilnData
import KilnGraph
import KilnHTTP
import KilnJSON
import KilnTensor
import KilnTrain

/// Answers predictions from a cache of loaded models. It runs on the caller's
/// connection thread, never on the training queue, so predictions do not wait behind
/// training.
final class Predictor: @unchecked Sendable {
    let store: JobStore
    let limits: ModelLimits
    let maxBatch: Int
    /// Schemas of uploaded datasets, for specs that read their data.
    var schema: (String) -> DataSchema? = { _ in nil }
    private let lock = NSLock()
    private var cache: [String: (model: CompiledModel, loadedAt: Date)] = [:]

    init(store: JobStore, limits: ModelLimits, maxBatch: Int) {
        self.store = store
        self.limits = limits
        self.maxBatch = maxBatch
    }

    func forget(_ id: String) {
        lock.lock()
        cache[id] = nil
        lock.unlock()
    }

    /// The job's model with its last checkpoint, loaded once and cached.
    func model(_ nameOrID: String, path: String = "model") throws -> (Job, CompiledModel) {
        guard JobStore.isValidID(nameOrID), let job = store.resolveModel(nameOrID) else {
            throw HTTPError(404, code: "model_not_found", message: "no trained model or job named '\(nameOrID.prefix(64))'", path: path)
        }
        lock.lock()
        if let hit = cache[job.id] { lock.unlock(); return (job, hit.model) }
        lock.unlock()
        guard let bytes = AtomicFile.read(store.checkpointPath(job.id)) else {
            throw HTTPError(409, code: "model_not_ready", message: "job \(job.id) is \(job.status.rawValue) and has no checkpoint yet", path: path)
        }
        guard let specJSON = store.spec(job.id) else {
            throw HTTPError(500, code: "internal", message: "the stored spec of job \(job.id) is missing")
        }
        let spec = try JobSpec(json: specJSON, limits: limits, schema: specJSON["data"]?["dataset"]?.stringValue.flatMap(schema))
        let model = CompiledModel(graph: spec.model, seed: 0, inference: true)
        let (tensors, _) = try Safetensors.decode(bytes)
        for (name, t) in tensors { _ = model.load(name, t) }
        lock.lock()
        cache[job.id] = (model, Date())
        lock.unlock()
        return (job, model)
    }

    /// `{"model", "inputs", "outputs"}` → `{"outputs"}`, or TensorFlow-Serving
    /// `{"model", "instances"}` → `{"predictions"}`. The body comes from
    /// `JSON.parsePacked`, so inputs given as rectangular arrays of numbers become
    /// tensors without a tree of JSON values.
    func predict(_ body: PackedJSON) throws -> JSON {
        guard body.objectMembers != nil else { throw HTTPError(400, code: "invalid_request", message: "expected a JSON object") }
        guard let name = body["model"]?.stringValue else {
            throw HTTPError(400, code: "missing_field", message: "'model' (a model name or job id) is required", path: "model")
        }
        let (job, model) = try self.model(name)
        let graph = model.graph
        var requested = graph.outputs
        if let outs = body["outputs"]?.json {
            guard let list = outs.arrayValue?.compactMap(\.stringValue), list.count == outs.arrayValue?.count, !list.isEmpty else {
                throw HTTPError(400, code: "invalid_field", message: "expected a list of node names", path: "outputs")
            }
            for (i, o) in list.enumerated() where graph.node(o) == nil {
                throw HTTPError(400, code: "unknown_node", message: "model '\(job.name)' has no node '\(o)'; its nodes are \(graph.nodes.map(\.name).joined(separator: ", "))", path: "outputs[\(i)]")
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
        } else {
            throw HTTPError(400, code: "missing_field", message: "give 'inputs' (an object of input name → array) or 'instances' (a list of rows)", path: "inputs")
        }
        let values: [String: Variable]
        do {
            values = try model.run(feeds, targets: requested, training: false)
        } catch {
            throw HTTPError(400, code: "invalid_input", message: error.description)
        }
        for o in requested where !values[o]!.value.isFinite {
            Log.error("prediction_not_finite", [("model", .string(job.id)), ("node", .string(o))])
        }
        if rowsForm {
            let batch = feeds.values.first?.shape.first ?? 1
            let rows: [JSON] = (0..<batch).map { r in
                if requested.count == 1 { return Predictor.row(values[requested[0]]!.value, r) }
                return .object(requested.map { ($0, Predictor.row(values[$0]!.value, r)) })
            }
            return .object([("model", .string(job.id)), ("predictions", .array(rows))])
        }
        return .object([("model", .string(job.id)), ("outputs", .object(requested.map { ($0, Predictor.nested(values[$0]!.value)) }))])
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
            throw HTTPError(400, code: "invalid_field", message: "expected an object mapping input names to arrays", path: "inputs")
        }
        var feeds: [String: Tensor] = [:]
        let given = Set(inputs.objectMembers!.map(\.0).filter { graph.node($0) != nil })
        for name in neededInputs(graph, targets, given: given) {
            guard let value = inputs[name] else {
                throw HTTPError(400, code: "missing_field", message: "input '\(name)' with per-sample shape \(graph.node(name)!.shape.dims) is required", path: "inputs.\(name)")
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
            throw HTTPError(400, code: "invalid_field", message: "expected a non-empty list of rows", path: "instances")
        }
        var columns: [String: [JSON]] = [:]
        for (i, row) in rows.enumerated() {
            if names.count == 1, row.objectMembers == nil {
                columns[names[0], default: []].append(row)
                continue
            }
            for name in names {
                guard let v = row[name] else {
                    throw HTTPError(400, code: "missing_field", message: "row \(i) lacks input '\(name)'", path: "instances[\(i)].\(name)")
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
        if sizes.count > 1 { throw HTTPError(400, code: "shape_mismatch", message: "inputs have different batch sizes \(sizes.sorted())", path: "inputs") }
        if let b = sizes.first, b > maxBatch {
            throw HTTPError(400, code: "batch_too_large", message: "batch of \(b) rows is over the maximum of \(maxBatch)", path: "inputs")
        }
    }

    /// A JSON array as a batch for `input`: [batch] + the input's shape, or exactly the
    /// input's shape for a single sample.
    func tensor(_ value: PackedJSON, input: String, graph: ModelGraph, path: String) throws -> Tensor {
        var decoded: (shape: [Int], values: [Float])?
        if case let .numbers(shape, numbers) = value, numbers.count <= JSONFields.maxValues {
            // What JSONFields gives for the same nested arrays, unless a value is outside float32
            // (then JSONFields below names it).
            var floats = [Float](repeating: 0, count: numbers.count)
            var finite = true
            floats.withUnsafeMutableBufferPointer { out in
                for i in 0..<numbers.count {
                    out[i] = Float(numbers[i])
                    if !out[i].isFinite { finite = false }
                }
            }
            if finite { decoded = (shape, floats) }
        }
        if decoded == nil {
            do {
                guard let parsed = try JSONFields.parse(.object([(input, value.json)]), path: path)[input] else { throw HTTPError(400, code: "invalid_input", message: "no values", path: path) }
                decoded = (parsed.shape, parsed.values)
            } catch let e as DatasetError {
                throw HTTPError(400, code: "invalid_input", message: "input '\(input)': \(e.message)", path: path)
            }
        }
        let array = decoded!
        let dims = graph.node(input)!.shape.dims
        var shape = array.shape
        if shape == dims { shape = [1] + dims }
        guard shape.count == dims.count + 1, Array(shape.dropFirst()) == dims else {
            throw HTTPError(400, code: "shape_mismatch", message: "input '\(input)' expects shape (batch, \(dims.map(String.init).joined(separator: ", "))), got \(array.shape)", path: path)
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
