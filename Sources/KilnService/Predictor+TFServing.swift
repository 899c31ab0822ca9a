import Foundation
import KilnGraph
import KilnJSON
import KilnTensor

/// TensorFlow Serving's REST API over the same models. A model's versions are its
/// succeeded jobs, numbered from 1 in the order they were created; the label `stable`
/// is the latest of them. Every model has one signature, `serving_default`, whose
/// inputs and outputs are the graph's.
extension Predictor {
    static let tfSignature = "serving_default"

    /// Which version a `/v1/models/{name}[/versions/{n}|/labels/{label}]` call means:
    /// the job and its version number.
    func tfVersion(_ name: String, version: String? = nil, label: String? = nil) throws -> (job: Job, number: Int) {
        let all = versions(name)
        guard !all.isEmpty else {
            throw ServiceError(.notFound, code: "model_not_found", "Servable not found for request: Latest(\(name.prefix(64)))", path: "name")
        }
        if let version {
            guard let n = Int(version), n >= 1, n <= all.count else {
                throw ServiceError(.notFound, code: "version_not_found",
                                   "Servable not found for request: Specific(\(name.prefix(64)), \(version.prefix(20))); versions are 1 to \(all.count)", path: "version")
            }
            return (all[n - 1], n)
        }
        if let label, label != "stable" {
            throw ServiceError(.notFound, code: "label_not_found", "Unrecognized servable version label: \(label.prefix(64)); the label is 'stable'", path: "label")
        }
        return (all[all.count - 1], all.count)
    }

    /// `GET /v1/models/{name}`: every version's state, newest first; or one version's.
    func tfStatus(_ name: String, version: String? = nil, label: String? = nil) throws -> JSON {
        let listed: [(Job, Int)]
        if version == nil && label == nil {
            listed = versions(name).enumerated().map { ($1, $0 + 1) }.reversed()
            if listed.isEmpty { _ = try tfVersion(name) }
        } else {
            listed = [try tfVersion(name, version: version, label: label)]
        }
        return .object([("model_version_status", .array(listed.map { _, n in
            .object([("version", .string(String(n))), ("state", "AVAILABLE"),
                     ("status", .object([("error_code", "OK"), ("error_message", "")]))])
        }))])
    }

    /// `GET /v1/models/{name}/metadata`: the `signature_def` of the one signature.
    func tfMetadata(_ name: String, version: String? = nil, label: String? = nil) throws -> JSON {
        let (job, number) = try tfVersion(name, version: version, label: label)
        let (_, model) = try self.model(job.id, path: "name")
        let graph = model.graph
        func tensor(_ n: String) -> JSON {
            let s = graph.node(n)!.shape
            let dims = (s.batched ? [-1] : []) + s.dims
            return .object([
                ("dtype", "DT_FLOAT"),
                ("tensor_shape", .object([("dim", .array(dims.map { .object([("size", .string(String($0))), ("name", "")]) })), ("unknown_rank", false)])),
                ("name", .string("\(n):0")),
            ])
        }
        let signature: JSON = .object([
            ("inputs", .object(graph.inputNames.map { ($0, tensor($0)) })),
            ("outputs", .object(graph.outputs.map { ($0, tensor($0)) })),
            ("method_name", "tensorflow/serving/predict"),
        ])
        return .object([
            ("model_spec", .object([("name", .string(name)), ("signature_name", ""), ("version", .string(String(number)))])),
            ("metadata", .object([("signature_def", .object([("signature_def", .object([(Predictor.tfSignature, signature)]))]))])),
        ])
    }

    /// `POST /v1/models/{name}:predict`: the row form (`instances` → `predictions`) or
    /// the columnar form (`inputs` → `outputs`), a bare value standing for the one input
    /// or output.
    func tfPredict(_ name: String, version: String? = nil, label: String? = nil, _ body: PackedJSON) throws -> (JSON, Job, Int) {
        let (job, _) = try tfVersion(name, version: version, label: label)
        let (_, model) = try self.model(job.id, path: "name")
        let graph = model.graph
        guard let members = body.objectMembers else { throw ServiceError(.invalid, code: "invalid_request", "JSON Value: expected an object") }
        for (key, _) in members where !["signature_name", "instances", "inputs"].contains(key) {
            throw ServiceError(.invalid, code: "invalid_field", "unknown member '\(key.prefix(40))'; a predict request has signature_name and instances or inputs", path: key)
        }
        if let signature = body["signature_name"] {
            guard let s = signature.stringValue else { throw ServiceError(.invalid, code: "invalid_field", "signature_name must be a string", path: "signature_name") }
            guard s == Predictor.tfSignature || s.isEmpty else {
                throw ServiceError(.invalid, code: "signature_not_found", "Serving signature name: \"\(s.prefix(64))\" not found in signature def; the signature is \"\(Predictor.tfSignature)\"", path: "signature_name")
            }
        }
        let targets = graph.outputs
        let feeds: [String: Tensor]
        let rows: Bool
        switch (body["instances"], body["inputs"]) {
        case (.some, .some):
            throw ServiceError(.invalid, code: "invalid_request", "give either 'instances' (row form) or 'inputs' (columnar form), not both", path: "inputs")
        case let (.some(instances), nil):
            feeds = try instanceFeeds(instances, graph: graph, needed: targets)
            rows = true
        case let (nil, .some(inputs)):
            let needed = neededInputs(graph, targets)
            if inputs.objectMembers == nil {
                guard needed.count == 1 else {
                    throw ServiceError(.invalid, code: "invalid_field", "the model has inputs \(needed.joined(separator: ", ")): give 'inputs' as an object of name → value", path: "inputs")
                }
                feeds = [needed[0]: try tensor(inputs, input: needed[0], graph: graph, path: "inputs")]
                try checkBatch(feeds)
            } else {
                feeds = try namedFeeds(inputs, graph: graph, needed: targets)
            }
            rows = false
        case (nil, nil):
            guard neededInputs(graph, targets).isEmpty else {
                throw ServiceError(.invalid, code: "missing_field", "give 'instances' (a list of rows) or 'inputs' (columns)", path: "instances")
            }
            feeds = [:]
            rows = false
        }
        let values: [String: Variable]
        do { values = try model.run(feeds, targets: targets, training: false) } catch {
            throw ServiceError(.invalid, code: "invalid_input", error.description)
        }
        let batch = feeds.values.first?.shape.first ?? 1
        if rows {
            let predictions: [JSON] = (0..<batch).map { r in
                targets.count == 1 ? Predictor.row(values[targets[0]]!.value, r)
                    : .object(targets.map { ($0, Predictor.row(values[$0]!.value, r)) })
            }
            return (.object([("predictions", .array(predictions))]), job, batch)
        }
        let outputs: JSON = targets.count == 1 ? Predictor.nested(values[targets[0]]!.value)
            : .object(targets.map { ($0, Predictor.nested(values[$0]!.value)) })
        return (.object([("outputs", outputs)]), job, batch)
    }
}
