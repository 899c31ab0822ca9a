import Foundation
import KilnGraph
import KilnJSON
import KilnTensor

/// The Open Inference Protocol (KServe v2) over the same models: tensors travel as
/// `{name, shape, datatype, data}` with data flat (row-major) or nested.
extension Predictor {
    static let numericTypes: Set<String> = ["FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"]

    /// `GET /v2/models/{name}`: name, versions, inputs and outputs with shapes (−1 for the batch).
    func metadata(_ name: String) throws -> JSON {
        let (job, model) = try self.model(name, path: "name")
        let graph = model.graph
        func tensor(_ n: String) -> JSON {
            let s = graph.node(n)!.shape
            return .object([("name", .string(n)), ("datatype", "FP32"), ("shape", JSON((s.batched ? [-1] : []) + s.dims))])
        }
        return .object([
            ("name", .string(job.name)), ("versions", JSON([job.id])), ("platform", "kiln"),
            ("inputs", .array(graph.inputNames.map(tensor))), ("outputs", .array(graph.outputs.map(tensor))),
        ])
    }

    /// `POST /v2/models/{name}/infer`.
    func infer(_ name: String, _ body: JSON) throws -> JSON {
        let (job, model) = try self.model(name, path: "name")
        let graph = model.graph
        guard body.objectMembers != nil else { throw ServiceError(.invalid, code: "invalid_request", "expected a JSON object") }
        var requested = graph.outputs
        if let outs = body["outputs"]?.arrayValue {
            requested = []
            for (i, o) in outs.enumerated() {
                guard let n = o["name"]?.stringValue else { throw ServiceError(.invalid, code: "invalid_field", "each output needs a name", path: "outputs[\(i)].name") }
                guard graph.node(n) != nil else {
                    throw ServiceError(.invalid, code: "unknown_node", "model '\(job.name)' has no node '\(n)'", path: "outputs[\(i)].name")
                }
                requested.append(n)
            }
        }
        // A model without inputs (made of weights and constants) needs none in the request.
        let inputs: [JSON]
        if let given = body["inputs"]?.arrayValue {
            inputs = given
        } else if body["inputs"] == nil && neededInputs(graph, requested).isEmpty {
            inputs = []
        } else {
            throw ServiceError(.invalid, code: "missing_field", "'inputs' (a list of tensors) is required", path: "inputs")
        }
        var feeds: [String: Tensor] = [:]
        for (i, input) in inputs.enumerated() {
            let path = "inputs[\(i)]"
            guard let n = input["name"]?.stringValue else { throw ServiceError(.invalid, code: "missing_field", "a tensor needs a name", path: "\(path).name") }
            guard let node = graph.node(n), node.layer == nil else {
                throw ServiceError(.invalid, code: "unknown_input", "model '\(job.name)' has no input '\(n)'; its inputs are \(graph.inputNames.joined(separator: ", "))", path: "\(path).name")
            }
            guard let datatype = input["datatype"]?.stringValue, Predictor.numericTypes.contains(datatype) else {
                throw ServiceError(.invalid, code: "invalid_datatype", "datatype must be a numeric type such as FP32, got \(input["datatype"]?.serialized().prefix(20) ?? "nothing")", path: "\(path).datatype")
            }
            guard let shapeItems = input["shape"]?.arrayValue, let shape = Optional(shapeItems.compactMap(\.intValue)), shape.count == shapeItems.count,
                  shape.allSatisfy({ $0 >= 0 }), !shape.isEmpty else {
                throw ServiceError(.invalid, code: "invalid_shape", "shape must be a list of non-negative integers", path: "\(path).shape")
            }
            let expected = node.shape.dims
            guard Array(shape.dropFirst()) == expected else {
                throw ServiceError(.invalid, code: "shape_mismatch", "input '\(n)' expects shape [-1, \(expected.map(String.init).joined(separator: ", "))], got \(shape)", path: "\(path).shape")
            }
            guard shape[0] <= maxBatch else {
                throw ServiceError(.invalid, code: "batch_too_large", "batch of \(shape[0]) rows is over the maximum of \(maxBatch)", path: "\(path).shape")
            }
            var values: [Float] = []
            values.reserveCapacity(shape.reduce(1, *))
            func flatten(_ j: JSON, _ depth: Int) throws {
                guard depth < 64 else { throw ServiceError(.invalid, code: "invalid_data", "data nested too deeply", path: "\(path).data") }
                if let a = j.arrayValue { for x in a { try flatten(x, depth + 1) }; return }
                if let d = j.doubleValue, abs(d) <= Double(Float.greatestFiniteMagnitude) { values.append(Float(d)); return }
                if let b = j.boolValue { values.append(b ? 1 : 0); return }
                throw ServiceError(.invalid, code: "invalid_data", "data must hold numbers that fit in FP32, got \(j.serialized().prefix(40))", path: "\(path).data")
            }
            guard let data = input["data"] else { throw ServiceError(.invalid, code: "missing_field", "data is required", path: "\(path).data") }
            try flatten(data, 0)
            guard values.count == shape.reduce(1, *) else {
                throw ServiceError(.invalid, code: "shape_mismatch", "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)", path: "\(path).data")
            }
            feeds[n] = Tensor(shape: shape, values: values)
        }
        try checkBatch(feeds)
        for n in neededInputs(graph, requested) where feeds[n] == nil {
            throw ServiceError(.invalid, code: "missing_input", "input '\(n)' is required for the requested outputs", path: "inputs")
        }
        let values: [String: Variable]
        do { values = try model.run(feeds, targets: requested, training: false) } catch {
            throw ServiceError(.invalid, code: "invalid_input", error.description)
        }
        var out: [(String, JSON)] = [("model_name", .string(job.name)), ("model_version", .string(job.id))]
        if let id = body["id"]?.stringValue { out.append(("id", .string(id))) }
        out.append(("outputs", .array(requested.map { n in
            let t = values[n]!.value
            return .object([("name", .string(n)), ("datatype", "FP32"), ("shape", JSON(t.shape)), ("data", JSON(t.scalars))])
        })))
        return .object(out)
    }
}
