import Foundation
import KilnGraph
import KilnJSON
import KilnTensor

/// The Open Inference Protocol (KServe v2) over the same models: tensors travel as
/// `{name, shape, datatype, data}` with data flat (row-major) or nested, or as raw
/// little-endian bytes after the JSON header (the binary tensor data extension). A
/// model's versions are the ids of its jobs.
extension Predictor {
    /// Bytes per element of each datatype the binary extension carries.
    static let elementSizes: [String: Int] = [
        "BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2,
        "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8,
    ]
    static var numericTypes: Set<String> { Set(elementSizes.keys) }

    /// The answer to an inference call: the JSON part and, when outputs were asked for
    /// in binary, the bytes that follow it.
    struct InferenceResult {
        var job: Job
        var header: JSON
        var binary: [UInt8]
        var batch: Int
    }

    /// A model by name, or one version of it (a job id whose job bears that name).
    func model(_ name: String, version: String?) throws -> (Job, CompiledModel) {
        guard let version else { return try model(name, path: "name") }
        guard StoredName.isValid(version), let job = jobs.job(version), job.name == name || job.id == name else {
            throw ServiceError(.notFound, code: "version_not_found", "model '\(name.prefix(64))' has no version '\(version.prefix(64))'", path: "version")
        }
        return try model(job.id, path: "version")
    }

    /// The succeeded jobs of a name, oldest first: the model's versions.
    func versions(_ name: String) -> [Job] {
        jobs.all().filter { $0.name == name && $0.status == .succeeded }
    }

    /// `GET /v2/models/{name}[/versions/{v}]`: name, versions, inputs and outputs with
    /// shapes (−1 for the batch).
    func metadata(_ name: String, version: String? = nil) throws -> JSON {
        let (job, model) = try self.model(name, version: version)
        let graph = model.graph
        func tensor(_ n: String) -> JSON {
            let s = graph.node(n)!.shape
            return .object([("name", .string(n)), ("datatype", "FP32"), ("shape", JSON((s.batched ? [-1] : []) + s.dims))])
        }
        let all = version == nil ? versions(job.name).map(\.id) : [job.id]
        return .object([
            ("name", .string(job.name)), ("versions", JSON(all.isEmpty ? [job.id] : all)), ("platform", "kiln"),
            ("inputs", .array(graph.inputNames.map(tensor))), ("outputs", .array(graph.outputs.map(tensor))),
        ])
    }

    /// `GET /v2/models/{name}/config`: the model configuration as Triton describes it
    /// (dims without the batch dimension, which `max_batch_size` bounds).
    func config(_ name: String, version: String? = nil) throws -> JSON {
        let (job, model) = try self.model(name, version: version)
        let graph = model.graph
        func tensor(_ n: String) -> JSON {
            .object([("name", .string(n)), ("data_type", "TYPE_FP32"), ("dims", JSON(graph.node(n)!.shape.dims))])
        }
        return .object([
            ("name", .string(job.name)), ("platform", "kiln"), ("backend", "kiln"), ("max_batch_size", JSON(maxBatch)),
            ("input", .array(graph.inputNames.map(tensor))), ("output", .array(graph.outputs.map(tensor))),
            ("version_policy", .object([("latest", .object([("num_versions", 1)]))])),
        ])
    }

    /// `POST /v2/repository/index`: each model name with its latest version and state.
    func repositoryIndex(readyOnly: Bool) -> JSON {
        var names: [String] = []
        for job in jobs.all() where !names.contains(job.name) { names.append(job.name) }
        var entries: [JSON] = []
        for name in names {
            if let latest = jobs.resolveModel(name), latest.name == name, latest.status == .succeeded {
                entries.append(.object([("name", .string(name)), ("version", .string(latest.id)), ("state", "READY"), ("reason", "")]))
            } else if !readyOnly, let last = jobs.all().last(where: { $0.name == name }) {
                entries.append(.object([("name", .string(name)), ("version", .string(last.id)), ("state", "UNAVAILABLE"),
                                        ("reason", .string("job \(last.id) is \(last.status.rawValue)"))]))
            }
        }
        return .array(entries)
    }

    /// `POST /v2/models/{name}[/versions/{v}]/infer`. `binary` holds the bytes after the
    /// JSON header (the inputs whose `parameters.binary_data_size` says so, in order).
    func infer(_ name: String, version: String? = nil, _ body: JSON, binary: [UInt8] = []) throws -> InferenceResult {
        let (job, model) = try self.model(name, version: version)
        let graph = model.graph
        guard body.objectMembers != nil else { throw ServiceError(.invalid, code: "invalid_request", "expected a JSON object") }
        let binaryByDefault = try flag(body["parameters"]?["binary_data_output"], path: "parameters.binary_data_output") ?? false
        var requested: [(name: String, binary: Bool, classes: Int?)] = graph.outputs.map { ($0, binaryByDefault, nil) }
        if let outs = body["outputs"] {
            guard let list = outs.arrayValue else { throw ServiceError(.invalid, code: "invalid_field", "outputs must be a list of tensors", path: "outputs") }
            requested = []
            for (i, o) in list.enumerated() {
                guard let n = o["name"]?.stringValue else { throw ServiceError(.invalid, code: "invalid_field", "each output needs a name", path: "outputs[\(i)].name") }
                guard graph.node(n) != nil else {
                    throw ServiceError(.invalid, code: "unknown_node", "model '\(job.name)' has no node '\(n)'", path: "outputs[\(i)].name")
                }
                let binary = try flag(o["parameters"]?["binary_data"], path: "outputs[\(i)].parameters.binary_data") ?? binaryByDefault
                var classes: Int?
                if let c = o["parameters"]?["classification"] {
                    guard let k = c.intValue, k >= 1 else {
                        throw ServiceError(.invalid, code: "invalid_field", "classification must be a positive integer", path: "outputs[\(i)].parameters.classification")
                    }
                    classes = k
                }
                requested.append((n, binary, classes))
            }
        }
        let targets = requested.map(\.name)
        // A model without inputs (made of weights and constants) needs none in the request.
        let inputs: [JSON]
        if let given = body["inputs"]?.arrayValue {
            inputs = given
        } else if body["inputs"] == nil && neededInputs(graph, targets).isEmpty {
            inputs = []
        } else {
            throw ServiceError(.invalid, code: "missing_field", "'inputs' (a list of tensors) is required", path: "inputs")
        }
        var feeds: [String: Tensor] = [:]
        var offset = 0
        for (i, input) in inputs.enumerated() {
            let path = "inputs[\(i)]"
            guard let n = input["name"]?.stringValue else { throw ServiceError(.invalid, code: "missing_field", "a tensor needs a name", path: "\(path).name") }
            guard let node = graph.node(n), node.layer == nil else {
                throw ServiceError(.invalid, code: "unknown_input", "model '\(job.name)' has no input '\(n)'; its inputs are \(graph.inputNames.joined(separator: ", "))", path: "\(path).name")
            }
            guard let datatype = input["datatype"]?.stringValue, let size = Predictor.elementSizes[datatype] else {
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
            let count = shape.reduce(1, *)
            var values: [Float] = []
            if let sizeField = input["parameters"]?["binary_data_size"] {
                guard let byteCount = sizeField.intValue, byteCount >= 0 else {
                    throw ServiceError(.invalid, code: "invalid_field", "binary_data_size must be a non-negative integer", path: "\(path).parameters.binary_data_size")
                }
                guard input["data"] == nil else {
                    throw ServiceError(.invalid, code: "invalid_field", "a tensor sent in binary has no 'data'", path: "\(path).data")
                }
                guard byteCount == count * size else {
                    throw ServiceError(.invalid, code: "shape_mismatch", "shape \(shape) of \(datatype) needs \(count * size) bytes, binary_data_size is \(byteCount)", path: "\(path).parameters.binary_data_size")
                }
                guard offset + byteCount <= binary.count else {
                    throw ServiceError(.invalid, code: "invalid_data", "the binary data ends \(offset + byteCount - binary.count) bytes short of this tensor", path: "\(path).parameters.binary_data_size")
                }
                values = Predictor.decode(binary, from: offset, count: count, datatype: datatype)
                offset += byteCount
                if let bad = values.firstIndex(where: { !$0.isFinite }), datatype == "FP64" || datatype == "FP32" || datatype == "FP16" {
                    throw ServiceError(.invalid, code: "invalid_data", "value \(bad) is not a finite number that fits in FP32", path: "\(path).data")
                }
            } else {
                values.reserveCapacity(count)
                func flatten(_ j: JSON, _ depth: Int) throws {
                    guard depth < 64 else { throw ServiceError(.invalid, code: "invalid_data", "data nested too deeply", path: "\(path).data") }
                    if let a = j.arrayValue { for x in a { try flatten(x, depth + 1) }; return }
                    if let d = j.doubleValue, abs(d) <= Double(Float.greatestFiniteMagnitude) { values.append(Float(d)); return }
                    if let b = j.boolValue { values.append(b ? 1 : 0); return }
                    throw ServiceError(.invalid, code: "invalid_data", "data must hold numbers that fit in FP32, got \(j.serialized().prefix(40))", path: "\(path).data")
                }
                guard let data = input["data"] else { throw ServiceError(.invalid, code: "missing_field", "data is required (or parameters.binary_data_size)", path: "\(path).data") }
                try flatten(data, 0)
                guard values.count == count else {
                    throw ServiceError(.invalid, code: "shape_mismatch", "shape \(shape) needs \(count) values, got \(values.count)", path: "\(path).data")
                }
            }
            feeds[n] = Tensor(shape: shape, values: values)
        }
        guard offset == binary.count else {
            throw ServiceError(.invalid, code: "invalid_data", "\(binary.count - offset) bytes of binary data belong to no input", path: "inputs")
        }
        try checkBatch(feeds)
        for n in neededInputs(graph, targets) where feeds[n] == nil {
            throw ServiceError(.invalid, code: "missing_input", "input '\(n)' is required for the requested outputs", path: "inputs")
        }
        let values: [String: Variable]
        do { values = try model.run(feeds, targets: targets, training: false) } catch {
            throw ServiceError(.invalid, code: "invalid_input", error.description)
        }
        var out: [(String, JSON)] = [("model_name", .string(job.name)), ("model_version", .string(job.id))]
        if let id = body["id"]?.stringValue { out.append(("id", .string(id))) }
        var tail: [UInt8] = []
        var tensors: [JSON] = []
        for r in requested {
            let t = values[r.name]!.value
            var shape = t.shape
            var datatype = "FP32"
            var json: [JSON] = []
            var bytes: [UInt8] = []
            if let k = r.classes {
                let labels = Predictor.classify(t, top: k)
                shape = [t.shape.count > 1 ? t.shape[0] : 1, min(k, t.shape.count > 1 ? t.shape.dropFirst().reduce(1, *) : t.shape.reduce(1, *))]
                datatype = "BYTES"
                if r.binary {
                    for s in labels { let u = Array(s.utf8); bytes += Predictor.littleEndian(UInt32(u.count)) + u }
                } else { json = labels.map { .string($0) } }
            } else if r.binary {
                bytes.reserveCapacity(t.count * 4)
                t.withUnsafeBufferPointer { p in for x in p { bytes += Predictor.littleEndian(x.bitPattern) } }
            } else {
                json = t.scalars.map { JSON($0) }
            }
            var members: [(String, JSON)] = [("name", .string(r.name)), ("datatype", .string(datatype)), ("shape", JSON(shape))]
            if r.binary {
                members.append(("parameters", .object([("binary_data_size", JSON(bytes.count))])))
                tail += bytes
            } else {
                members.append(("data", .array(json)))
            }
            tensors.append(.object(members))
        }
        out.append(("outputs", .array(tensors)))
        return InferenceResult(job: job, header: .object(out), binary: tail, batch: feeds.values.first?.shape.first ?? 1)
    }

    private func flag(_ value: JSON?, path: String) throws -> Bool? {
        guard let value else { return nil }
        guard let b = value.boolValue else { throw ServiceError(.invalid, code: "invalid_field", "expected true or false", path: path) }
        return b
    }

    /// `count` little-endian elements of `datatype` from `bytes` at `offset`, as Float.
    static func decode(_ bytes: [UInt8], from offset: Int, count: Int, datatype: String) -> [Float] {
        let size = elementSizes[datatype]!
        func word(_ i: Int) -> UInt64 {
            var v: UInt64 = 0
            for b in 0..<size { v |= UInt64(bytes[offset + i * size + b]) << (8 * b) }
            return v
        }
        return (0..<count).map { i in
            let w = word(i)
            switch datatype {
            case "BOOL": return w != 0 ? 1 : 0
            case "UINT8", "UINT16", "UINT32", "UINT64": return Float(w)
            case "INT8": return Float(Int8(truncatingIfNeeded: w))
            case "INT16": return Float(Int16(truncatingIfNeeded: w))
            case "INT32": return Float(Int32(truncatingIfNeeded: w))
            case "INT64": return Float(Int64(bitPattern: w))
            case "FP16": return halfToFloat(UInt16(truncatingIfNeeded: w))
            case "FP32": return Float(bitPattern: UInt32(truncatingIfNeeded: w))
            default: return Float(Double(bitPattern: w))   // FP64
            }
        }
    }

    /// IEEE 754 binary16 → binary32.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h & 0x8000 != 0 ? -1 : 1
        let exponent = Int((h >> 10) & 0x1f), fraction = Float(h & 0x3ff)
        if exponent == 0 { return sign * fraction * Float(pow(2.0, -24.0)) }
        if exponent == 31 { return fraction == 0 ? sign * .infinity : .nan }
        return sign * (1 + fraction / 1024) * Float(pow(2.0, Double(exponent - 15)))
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }

    /// The classification extension: per row, the `top` highest scores as
    /// `"<score>:<index>"`, best first.
    static func classify(_ t: Tensor, top: Int) -> [String] {
        let rows = t.shape.count > 1 ? t.shape[0] : 1
        let width = t.count / max(rows, 1)
        let scalars = t.scalars
        var labels: [String] = []
        for r in 0..<rows {
            let row = scalars[(r * width)..<((r + 1) * width)]
            let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(top)
            labels += order.map { "\(row[$0]):\($0 - r * width)" }
        }
        return labels
    }
}
