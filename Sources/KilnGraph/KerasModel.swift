import Foundation
import KilnJSON

/// Translates the JSON of Keras 3's `model.to_json()` (Sequential and Functional
/// models) into Kiln's own `model` object, so `"model": {"keras": ...}` runs the
/// model as Keras defined it.
///
/// Each Keras layer becomes the Kiln node of the same name, so checkpoints keep Keras's
/// weight names (`dense.kernel`). A Keras option is either mapped exactly or refused
/// with a 422 (`unsupported_layer`) that names the layer and what to write in Kiln's
/// spec instead; nothing is silently dropped that would change what the model computes.
/// Options that change nothing Kiln computes (dtype policies, seeds, `unroll`) are
/// ignored. See docs/keras.md.
public enum KerasModel {
    /// - Parameters:
    ///   - json: the parsed `to_json()` (or its text as a JSON string).
    ///   - path: the JSON path of `json` in the request, for errors.
    /// - Returns: a Kiln `model` object (`inputs`, `layers`, `outputs`).
    /// - Throws: `SpecError` — 400 for malformed JSON, 422 (`unsupported_layer`) for a
    ///   layer or option Kiln cannot run.
    public static func translate(_ json: JSON, path: String) throws(SpecError) -> JSON {
        var document = json
        if let text = json.stringValue {
            do { document = try JSON.parse(text) } catch {
                throw SpecError(.invalidField, "the Keras model text is not JSON: \(error.description)", path: path)
            }
        }
        guard document.objectMembers != nil else {
            throw SpecError(.invalidField, "expected the JSON of model.to_json() (an object with class_name and config), got \(document.kindName)", path: path)
        }
        var configPath = "\(path).config"
        var config = document["config"] ?? .null
        var className = document["class_name"]?.stringValue
        if className == nil, document["layers"] != nil {
            // model.get_config() without its class wrapper.
            config = document
            configPath = path
            className = document["input_layers"] != nil ? "Functional" : "Sequential"
        }
        guard let className else { throw SpecError(.missingField, "is required (the JSON of model.to_json())", path: "\(path).class_name") }
        guard config.objectMembers != nil else { throw SpecError(.missingField, "is required (an object with the model's layers)", path: configPath) }
        var translator = Translator(configPath: configPath)
        switch className {
        case "Sequential": try translator.sequential(config)
        case "Functional", "Model": try translator.functional(config)
        default:
            throw SpecError(.unsupportedLayer, "Kiln translates Keras Sequential and Functional models, not '\(className)' (a subclassed model runs Python code); write the model as a Kiln spec with inputs and layers", path: "\(path).class_name")
        }
        return translator.model
    }

    /// The Keras layer classes translated, with the Kiln type each becomes.
    public static let layerTypes: [String: String] = [
        "Dense": "dense", "Conv2D": "conv2d", "Conv2DTranspose": "conv2d_transpose",
        "MaxPooling2D": "max_pool2d", "MaxPool2D": "max_pool2d", "AveragePooling2D": "avg_pool2d", "AvgPool2D": "avg_pool2d",
        "GlobalAveragePooling2D": "global_avg_pool2d", "GlobalAvgPool2D": "global_avg_pool2d",
        "Flatten": "flatten", "Reshape": "reshape", "Permute": "permute", "Dropout": "dropout", "GaussianNoise": "gaussian_noise",
        "BatchNormalization": "batch_norm", "LayerNormalization": "layer_norm", "Activation": "activation", "Softmax": "softmax",
        "ReLU": "activation", "LeakyReLU": "activation",
        "Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Average": "average", "Concatenate": "concatenate",
        "Embedding": "embedding", "LSTM": "lstm", "GRU": "gru", "UpSampling2D": "upsampling2d",
    ]
}

// MARK: - Model structure

/// One translation: the Kiln model being built and the names Keras references map to.
private struct Translator {
    let configPath: String
    var inputs: [(String, JSON)] = []
    var layers: [JSON] = []
    var outputs: [String] = []
    /// Keras layer name → the Kiln node that holds its output (the same name unless an
    /// activation needed a node of its own).
    var outputNode: [String: String] = [:]
    var kiln: Set<String> = []

    init(configPath: String) { self.configPath = configPath }

    var model: JSON { .object([("inputs", .object(inputs)), ("layers", .array(layers)), ("outputs", JSON(outputs))]) }

    func layerList(_ config: JSON) throws(SpecError) -> [JSON] {
        guard let items = config["layers"]?.arrayValue else {
            throw SpecError(.missingField, "is required (the model's list of layers)", path: "\(configPath).layers")
        }
        return items
    }

    mutating func sequential(_ config: JSON) throws(SpecError) {
        let items = try layerList(config)
        var previous: String?
        for (i, item) in items.enumerated() {
            let layer = try KerasLayer(item, path: "\(configPath).layers[\(i)]")
            if layer.className == "InputLayer" {
                guard previous == nil else { throw layer.unsupported("an InputLayer after other layers; a Sequential model has one input") }
                previous = try addInput(layer)
                continue
            }
            if previous == nil {
                // Built without keras.Input: the shape Keras recorded when it built the model.
                let shape = config["build_input_shape"] ?? item["build_config"]?["input_shape"]
                guard let shape else {
                    throw SpecError(.missingField, "the Sequential model has no InputLayer and no build_input_shape; build it with keras.Input(shape=...) first", path: "\(configPath).layers")
                }
                let name = "input"
                inputs.append((name, try inputShape(shape, path: "\(configPath).build_input_shape", layer: name)))
                outputNode[name] = name
                kiln.insert(name)
                previous = name
            }
            previous = try add(layer, inputs: [previous!])
        }
        guard let last = previous else { throw SpecError(.missingField, "the model has no layers", path: "\(configPath).layers") }
        outputs = [last]
    }

    mutating func functional(_ config: JSON) throws(SpecError) {
        let items = try layerList(config)
        var parsed: [(KerasLayer, [String])] = []
        for (i, item) in items.enumerated() {
            let layer = try KerasLayer(item, path: "\(configPath).layers[\(i)]")
            parsed.append((layer, layer.className == "InputLayer" ? [] : try layer.inboundLayers()))
        }
        // Keras lists layers by depth; order them so each follows its inputs anyway.
        let byName = Dictionary(parsed.enumerated().map { ($0.element.0.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var state = [Int](repeating: 0, count: parsed.count)  // 0 new, 1 visiting, 2 done
        var order: [Int] = []
        func visit(_ i: Int) throws(SpecError) {
            if state[i] == 2 { return }
            let (layer, refs) = parsed[i]
            guard state[i] == 0 else { throw SpecError(.cycle, "layer '\(layer.name)' depends on itself", path: layer.path, node: layer.name) }
            state[i] = 1
            for ref in refs {
                guard let j = byName[ref] else {
                    throw SpecError(.unknownNode, "reads layer '\(ref)', which the model does not list", path: "\(layer.path).inbound_nodes", node: layer.name)
                }
                try visit(j)
            }
            state[i] = 2
            order.append(i)
        }
        for i in parsed.indices { try visit(i) }
        for i in order {
            let (layer, refs) = parsed[i]
            if layer.className == "InputLayer" { _ = try addInput(layer); continue }
            _ = try add(layer, inputs: refs.map { outputNode[$0]! })
        }
        outputs = try endpoints(config["output_layers"], key: "output_layers")
        let declared = try endpoints(config["input_layers"], key: "input_layers")
        let names = Set(inputs.map(\.0))
        for (j, name) in declared.enumerated() where !names.contains(name) {
            throw SpecError(.unknownNode, "'\(name)' is not an InputLayer of the model", path: "\(configPath).input_layers[\(j)]")
        }
        // The model's inputs in Keras's order (predict's row form lists them so).
        inputs.sort { a, b in (declared.firstIndex(of: a.0) ?? declared.count) < (declared.firstIndex(of: b.0) ?? declared.count) }
    }

    /// `[["name", 0, 0], ...]` or a single `["name", 0, 0]`, or a dict of them.
    func endpoints(_ json: JSON?, key: String) throws(SpecError) -> [String] {
        guard let json else { throw SpecError(.missingField, "is required", path: "\(configPath).\(key)") }
        var entries: [JSON] = []
        if let members = json.objectMembers { entries = members.map(\.1) } else if let items = json.arrayValue {
            entries = items.first?.stringValue != nil ? [json] : items
        }
        guard !entries.isEmpty else { throw SpecError(.invalidField, "expected [[layer name, 0, 0], ...]", path: "\(configPath).\(key)") }
        var out: [String] = []
        for (j, entry) in entries.enumerated() {
            guard let name = entry[0]?.stringValue, let node = outputNode[name] else {
                throw SpecError(.unknownNode, "expected [layer name, 0, 0] naming a layer of the model, got \(entry.serialized().prefix(60))", path: "\(configPath).\(key)[\(j)]")
            }
            if (entry[1]?.intValue ?? 0) != 0 || (entry[2]?.intValue ?? 0) != 0 {
                throw SpecError(.unsupportedLayer, "refers to call \(entry[1]?.intValue ?? 0), output \(entry[2]?.intValue ?? 0) of '\(name)'; Kiln nodes have one call and one output", path: "\(configPath).\(key)[\(j)]", node: name)
            }
            out.append(node)
        }
        return out
    }

    mutating func addInput(_ layer: KerasLayer) throws(SpecError) -> String {
        let c = layer.reader
        let shape = c.raw("batch_shape") ?? c.raw("batch_input_shape")
        guard let shape else { throw SpecError(.missingField, "an InputLayer needs batch_shape", path: "\(layer.path).config.batch_shape", node: layer.name) }
        if c.raw("sparse")?.boolValue == true { throw layer.unsupported("a sparse input; Kiln's inputs are dense arrays") }
        if c.raw("ragged")?.boolValue == true { throw layer.unsupported("a ragged input; give every sample one fixed shape") }
        inputs.append((layer.name, try inputShape(shape, path: "\(layer.path).config.batch_shape", layer: layer.name)))
        try claim(layer.name, layer)
        outputNode[layer.name] = layer.name
        return layer.name
    }

    func inputShape(_ json: JSON, path: String, layer: String) throws(SpecError) -> JSON {
        guard let items = json.arrayValue, items.count >= 2 else {
            throw SpecError(.invalidField, "expected [null, d1, d2, ...] (batch axis first), got \(json.serialized().prefix(60))", path: path, node: layer)
        }
        var dims: [Int] = []
        for (j, d) in items.dropFirst().enumerated() {
            guard let n = d.intValue, n > 0 else {
                throw SpecError(.unsupportedLayer, "axis \(j + 1) of input '\(layer)' has no fixed size (\(d.serialized())); Kiln needs one shape per sample, e.g. keras.Input(shape=(100, 8))", path: "\(path)[\(j + 1)]", node: layer)
            }
            dims.append(n)
        }
        return JSON(dims)
    }

    mutating func claim(_ name: String, _ layer: KerasLayer) throws(SpecError) {
        guard kiln.insert(name).inserted else {
            throw SpecError(.duplicateName, "the name '\(name)' is used twice", path: "\(layer.path).config.name", node: layer.name)
        }
    }

    /// Adds the Kiln node(s) of one Keras layer reading `inputs`; returns the node that
    /// holds its output.
    mutating func add(_ layer: KerasLayer, inputs refs: [String]) throws(SpecError) -> String {
        let c = layer.reader
        var node = try translateLayer(layer, c)
        let extra = node.followUp
        node.fields.insert(("name", .string(layer.name)), at: 1)
        if node.fields.contains(where: { $0.0 == "expr" }) {
            node.fields.insert(("inputs", .object([("x", .string(refs[0]))])), at: 2)
        } else {
            node.fields.insert(node.readsList ? ("inputs", JSON(refs)) : ("input", .string(refs[0])), at: 2)
        }
        if let activity = c.raw("activity_regularizer"), !activity.isNull {
            node.fields.append(("activity_regularizer", try layer.regularizer(activity, key: "activity_regularizer")))
        }
        try claim(layer.name, layer)
        layers.append(.object(node.fields))
        var last = layer.name
        if let (suffix, fields) = extra {
            let name = "\(layer.name)_\(suffix)"
            try claim(name, layer)
            var f = fields
            if f.contains(where: { $0.0 == "expr" }) {
                f.insert(("inputs", .object([("x", .string(last))])), at: 1)
            } else {
                f.insert(("input", .string(last)), at: 1)
            }
            f.insert(("name", .string(name)), at: 1)
            layers.append(.object(f))
            last = name
        }
        outputNode[layer.name] = last
        return last
    }
}

// MARK: - One Keras layer

/// A Kiln node under construction: its fields, whether it reads a list of inputs (the
/// merge layers), and an optional node after it (an activation Kiln's layer lacks, as
/// an `expression`; a reshape for `keepdims`).
private struct KilnNode {
    var fields: [(String, JSON)]
    var readsList = false
    var followUp: (String, [(String, JSON)])? = nil
}

private struct KerasLayer {
    let className: String
    let name: String
    let path: String
    let json: JSON
    let config: JSON

    init(_ json: JSON, path: String) throws(SpecError) {
        guard json.objectMembers != nil else { throw SpecError(.invalidField, "expected a Keras layer object, got \(json.kindName)", path: path) }
        guard let className = json["class_name"]?.stringValue else { throw SpecError(.missingField, "is required", path: "\(path).class_name") }
        let config = json["config"] ?? .null
        guard let name = config["name"]?.stringValue ?? json["name"]?.stringValue else {
            throw SpecError(.missingField, "is required (every Keras layer has a name)", path: "\(path).config.name")
        }
        self.className = className
        self.name = name
        self.path = path
        self.json = json
        self.config = config
        // A custom class: registered under a package of the user's ("MyPackage>Scale"),
        // or from a module outside Keras.
        let registered = json["registered_name"]?.stringValue
        let package = registered.flatMap { r in r.firstIndex(of: ">").map { String(r[..<$0]) } }
        let module = json["module"]?.stringValue ?? "keras.layers"
        let kerasModule = module == "keras" || ["keras.layers", "keras.src.layers", "keras.models", "keras.src.models"].contains { module.hasPrefix($0) }
        if (package != nil && !package!.hasPrefix("keras")) || (registered != nil && package == nil && registered != className) || !kerasModule {
            throw SpecError(.unsupportedLayer, "layer '\(name)' is the custom class '\(registered ?? "\(module).\(className)")', whose Python code Kiln cannot run. Write what it computes with Kiln's own layers in a Kiln model spec instead: an `expression` for an element-wise formula, `weight` + `matmul` for free weights, `taylor`, `elementwise_weights` and `bias` for the usual custom heads (docs/spec-language.md)", path: path, node: name)
        }
    }

    var reader: KerasConfig { KerasConfig(config, path: "\(path).config", layer: name) }

    func unsupported(_ what: String, field: String? = nil) -> SpecError {
        SpecError(.unsupportedLayer, "Keras layer '\(name)' (\(className)): \(what)", path: field.map { "\(path).config.\($0)" } ?? path, node: name)
    }

    /// The names of the layers this layer reads (Keras 3 `inbound_nodes` holding
    /// `__keras_tensor__` references; Keras 2's `[[name, 0, 0, {}], ...]` lists too).
    func inboundLayers() throws(SpecError) -> [String] {
        guard let calls = json["inbound_nodes"]?.arrayValue, !calls.isEmpty else {
            throw SpecError(.missingField, "layer '\(name)' has no inbound_nodes; a Functional model's layers name what they read", path: "\(path).inbound_nodes", node: name)
        }
        guard calls.count == 1 else {
            throw unsupported("it is called \(calls.count) times, sharing its weights between the calls; Kiln nodes own their weights — make one layer per call, or write the shared computation with `weight` nodes and `matmul`")
        }
        var refs: [String] = []
        var failure: SpecError?
        func walk(_ j: JSON, _ p: String) {
            guard failure == nil else { return }
            if j["class_name"]?.stringValue == "__keras_tensor__" {
                guard let history = j["config"]?["keras_history"], let source = history[0]?.stringValue else {
                    failure = SpecError(.invalidField, "a tensor reference without keras_history", path: p, node: name)
                    return
                }
                if (history[1]?.intValue ?? 0) != 0 || (history[2]?.intValue ?? 0) != 0 {
                    failure = unsupported("reads output \(history[2]?.intValue ?? 0) of call \(history[1]?.intValue ?? 0) of '\(source)'; Kiln nodes have one call and one output")
                    return
                }
                refs.append(source)
            } else if let items = j.arrayValue {
                if items.count >= 3, let source = items[0].stringValue, items[1].intValue != nil, items[2].intValue != nil {
                    refs.append(source)  // Keras 2
                    return
                }
                for (k, item) in items.enumerated() { walk(item, "\(p)[\(k)]") }
            } else if let members = j.objectMembers {
                for (k, v) in members { walk(v, "\(p).\(k)") }
            }
        }
        let call = calls[0]
        if let args = call["args"] {
            walk(args, "\(path).inbound_nodes[0].args")
            if let kwargs = call["kwargs"] {
                let before = refs.count
                walk(kwargs, "\(path).inbound_nodes[0].kwargs")
                if failure == nil, refs.count > before {
                    throw unsupported("takes tensors as keyword arguments (a mask or an initial state); Kiln layers read only their inputs")
                }
            }
        } else {
            walk(call, "\(path).inbound_nodes[0]")
        }
        if let failure { throw failure }
        guard !refs.isEmpty else { throw SpecError(.invalidField, "layer '\(name)' reads no tensor", path: "\(path).inbound_nodes", node: name) }
        return refs
    }

    // MARK: Options

    /// A Keras initializer: a name, or `{"class_name": ..., "config": {...}}`.
    func initializer(_ json: JSON, key: String) throws(SpecError) -> JSON {
        let p = "\(path).config.\(key)"
        let cls = json.stringValue ?? json["class_name"]?.stringValue ?? ""
        let c = json["config"] ?? .object([])
        func number(_ k: String, _ d: Double) -> Double { c[k]?.doubleValue ?? d }
        switch cls.lowercased().replacingOccurrences(of: "_", with: "") {
        case "glorotuniform": return "glorot_uniform"
        case "glorotnormal": return "glorot_normal"
        case "henormal": return "he_normal"
        case "heuniform": return "he_uniform"
        case "lecunnormal": return "lecun_normal"
        case "lecununiform": return "lecun_uniform"
        case "zeros", "zero": return "zeros"
        case "ones", "one": return "ones"
        case "orthogonal":
            guard number("gain", 1) == 1 else { throw SpecError(.unsupportedLayer, "Orthogonal with gain \(number("gain", 1)); Kiln's orthogonal has gain 1", path: p, node: name) }
            return "orthogonal"
        case "constant": return JSON(number("value", 0))
        case "randomuniform": return .object([("type", "uniform"), ("min", JSON(number("minval", -0.05))), ("max", JSON(number("maxval", 0.05)))])
        case "randomnormal": return .object([("type", "normal"), ("mean", JSON(number("mean", 0))), ("stddev", JSON(number("stddev", 0.05)))])
        case "variancescaling":
            let scale = number("scale", 1), mode = c["mode"]?.stringValue ?? "fan_in", dist = c["distribution"]?.stringValue ?? "truncated_normal"
            switch (scale, mode, dist) {
            case (1, "fan_avg", "uniform"): return "glorot_uniform"
            case (1, "fan_avg", "truncated_normal"): return "glorot_normal"
            case (2, "fan_in", "truncated_normal"): return "he_normal"
            case (2, "fan_in", "uniform"): return "he_uniform"
            case (1, "fan_in", "truncated_normal"): return "lecun_normal"
            case (1, "fan_in", "uniform"): return "lecun_uniform"
            default: break
            }
        default: break
        }
        throw SpecError(.unsupportedLayer, "Keras layer '\(name)': initializer \(cls.isEmpty ? json.serialized().prefix(60) : Substring(cls)) has no Kiln equivalent; use one of \(Initializer.names.joined(separator: ", ")), a number, or exact values {\"value\": [...]}", path: p, node: name)
    }

    /// A Keras regularizer (`L1`, `L2`, `L1L2`, or the names `l1`, `l2`, `l1_l2`).
    func regularizer(_ json: JSON, key: String) throws(SpecError) -> JSON {
        let p = "\(path).config.\(key)"
        let cls = (json.stringValue ?? json["class_name"]?.stringValue ?? "").lowercased()
        let c = json["config"] ?? .object([])
        let defaults: (Double, Double)
        switch cls {
        case "l1": defaults = (0.01, 0)
        case "l2": defaults = (0, 0.01)
        case "l1l2", "l1_l2": defaults = json.stringValue != nil ? (0.01, 0.01) : (0, 0)
        default:
            throw SpecError(.unsupportedLayer, "Keras layer '\(name)': regularizer '\(cls.isEmpty ? String(json.serialized().prefix(40)) : cls)' has no Kiln equivalent; Kiln takes {\"l1\": a, \"l2\": b}", path: p, node: name)
        }
        let l1 = c["l1"]?.doubleValue ?? defaults.0, l2 = c["l2"]?.doubleValue ?? defaults.1
        var out: [(String, JSON)] = []
        if l1 != 0 { out.append(("l1", JSON(l1))) }
        if l2 != 0 { out.append(("l2", JSON(l2))) }
        return .object(out)
    }
}

/// Reads a Keras layer's `config`, refusing options Kiln cannot honour.
private struct KerasConfig {
    let config: JSON
    let path: String
    let layer: String

    init(_ config: JSON, path: String, layer: String) {
        self.config = config
        self.path = path
        self.layer = layer
    }

    func raw(_ key: String) -> JSON? { config[key] }

    func error(_ key: String, _ message: String, _ code: SpecError.Code = .unsupportedLayer) -> SpecError {
        SpecError(code, message, path: "\(path).\(key)", node: layer)
    }

    func int(_ key: String) throws(SpecError) -> Int? {
        guard let v = config[key], !v.isNull else { return nil }
        guard let n = v.intValue else { throw error(key, "expected an integer, got \(v.serialized().prefix(40))", .invalidField) }
        return n
    }

    /// The option must be absent or hold one of `allowed`; else `why` explains.
    func expect(_ key: String, _ allowed: [JSON], _ why: String) throws(SpecError) {
        guard let v = config[key] else { return }
        guard allowed.contains(v) else { throw error(key, "\(key)=\(v.serialized().prefix(60)) is not supported: \(why)") }
    }

    func expectNull(_ keys: String..., why: String) throws(SpecError) {
        for key in keys { try expect(key, [.null], why) }
    }

    func channelsLast() throws(SpecError) {
        try expect("data_format", [.null, "channels_last"], "Kiln images are channels_last (NHWC); transpose the data and use data_format=\"channels_last\"")
    }
}

// MARK: - Layer table

private let kilnActivations = Set(Activation.allCases.map(\.rawValue))

/// Keras activations Kiln has no layer field for, as an element-wise formula of x.
private let activationFormulas: [String: String] = [
    "silu": "x * sigmoid(x)", "swish": "x * sigmoid(x)",
    "relu6": "min(max(x, 0), 6)",
    "hard_sigmoid": "min(max(x / 6 + 0.5, 0), 1)",
    "hard_silu": "x * min(max(x / 6 + 0.5, 0), 1)", "hard_swish": "x * min(max(x / 6 + 0.5, 0), 1)",
    "softsign": "x / (abs(x) + 1)",
    "mish": "x * tanh(softplus(x))",
]

extension Translator {
    /// The Kiln fields of one Keras layer.
    fileprivate func translateLayer(_ layer: KerasLayer, _ c: KerasConfig) throws(SpecError) -> KilnNode {
        guard let type = KerasModel.layerTypes[layer.className] else {
            if layer.className == "Lambda" {
                throw SpecError(.unsupportedLayer, "Keras layer '\(layer.name)' is a Lambda, whose Python function Kiln cannot run. Write it in Kiln's own spec instead: an element-wise formula as {\"type\": \"expression\", \"inputs\": {\"x\": \"<input node>\"}, \"expr\": \"...\"}, or the Kiln layer that does the same (sum, mean, slice, matmul, transpose, softmax, one_hot; docs/spec-language.md)", path: layer.path, node: layer.name)
            }
            if ["Sequential", "Functional", "Model"].contains(layer.className) {
                throw layer.unsupported("a model nested inside the model; build the outer model from the inner model's layers (or its outputs) so that every layer stands at the top level")
            }
            let supported = KerasModel.layerTypes.keys.sorted().joined(separator: ", ")
            throw SpecError(.unsupportedLayer, "Keras layer '\(layer.name)' is a \(layer.className), which Kiln does not translate (translated: InputLayer, \(supported)). Write it with Kiln's own layers in a Kiln model spec instead (docs/spec-language.md)", path: "\(layer.path).class_name", node: layer.name)
        }
        var fields: [(String, JSON)] = [("type", .string(type))]
        var node = KilnNode(fields: [])
        let trainable = c.raw("trainable")?.boolValue ?? true

        func weights(kernel: String = "kernel_initializer", bias: String? = "bias_initializer", regularizer: String = "kernel_regularizer") throws(SpecError) {
            if !trainable { fields.append(("trainable", false)) }
            if let k = c.raw(kernel), !k.isNull { fields.append(("kernel_initializer", try layer.initializer(k, key: kernel))) }
            if let bias, let b = c.raw(bias), !b.isNull { fields.append(("bias_initializer", try layer.initializer(b, key: bias))) }
            if let r = c.raw(regularizer), !r.isNull { fields.append(("kernel_regularizer", try layer.regularizer(r, key: regularizer))) }
            try c.expectNull("bias_regularizer", why: "Kiln regularizes kernels only; remove it or add the penalty as a node loss")
            try c.expectNull("kernel_constraint", "bias_constraint", "embeddings_constraint", "recurrent_constraint",
                             why: "Kiln has no weight constraints")
            try c.expectNull("lora_rank", why: "Kiln has no LoRA layers")
        }
        /// A fused activation, or a follow-up expression node for one Kiln lacks.
        func activation(_ key: String = "activation", field: Bool = true) throws(SpecError) {
            guard let raw = c.raw(key), !raw.isNull else { return }
            // Keras 3 writes built-in activations as their names.
            let name = raw.stringValue ?? ""
            if name == "linear" {
                if !field { fields.append(("activation", "linear")) }
                return
            }
            if kilnActivations.contains(name) {
                fields.append(("activation", .string(name)))
            } else if let formula = activationFormulas[name] {
                if !field { fields = [("type", "expression"), ("expr", .string(formula))] } else {
                    node.followUp = (name, [("type", "expression"), ("expr", .string(formula))])
                }
            } else {
                throw c.error(key, "activation \(raw.serialized().prefix(60)) has no Kiln equivalent; Kiln has \(Activation.allCases.map(\.rawValue).joined(separator: ", ")) and, as expressions, \(activationFormulas.keys.sorted().joined(separator: ", ")); write another as an `expression` node")
            }
        }
        func padding() throws(SpecError) {
            try c.expect("padding", ["valid", "same"], "Kiln pads \"valid\" or \"same\"")
            if let p = c.raw("padding") { fields.append(("padding", p)) }
        }
        func copy(_ keys: String...) {
            for key in keys { if let v = c.raw(key), !v.isNull { fields.append((key, v)) } }
        }
        /// The rank of the layer's input with the batch axis, when Keras recorded it.
        func inputRank() -> Int? {
            if let s = layer.json["build_config"]?["input_shape"]?.arrayValue { return s.count }
            if let s = layer.json["inbound_nodes"]?[0]?["args"]?[0]?["config"]?["shape"]?.arrayValue { return s.count }
            return nil
        }
        func lastAxis(_ key: String, what: String) throws(SpecError) {
            guard let raw = c.raw(key) else { return }
            let axes = raw.arrayValue ?? [raw]
            let rank = inputRank()
            let ok = axes.count == 1 && axes[0].intValue.map { $0 == -1 || (rank != nil && $0 == rank! - 1) } == true
            guard ok else { throw c.error(key, "\(key)=\(raw.serialized()) is not supported: Kiln's \(what) normalises the last axis only; permute that axis last first") }
        }
        func recurrent(_ kind: String) throws(SpecError) {
            copy("units", "return_sequences")
            try c.expect("activation", ["tanh"], "Kiln's \(kind) uses tanh")
            try c.expect("recurrent_activation", ["sigmoid"], "Kiln's \(kind) uses sigmoid gates (Keras 2's hard_sigmoid default is not Kiln's); set recurrent_activation=\"sigmoid\"")
            try c.expect("use_bias", [true], "Kiln's \(kind) always has a bias; use bias_initializer=\"zeros\" and freeze nothing, or write the cell by hand")
            try c.expect("dropout", [0, 0.0], "Kiln's \(kind) has no input dropout; put a Dropout layer before it")
            try c.expect("recurrent_dropout", [0, 0.0], "Kiln's \(kind) has no recurrent dropout")
            try c.expect("return_state", [false], "Kiln's \(kind) returns its outputs only")
            try c.expect("go_backwards", [false], "Kiln runs sequences forwards; reverse the data instead")
            try c.expect("stateful", [false], "Kiln starts every batch from a zero state")
            try c.expectNull("recurrent_regularizer", why: "Kiln regularizes kernels only")
            if let r = c.raw("recurrent_initializer"), !r.isNull { fields.append(("recurrent_initializer", try layer.initializer(r, key: "recurrent_initializer"))) }
        }

        switch layer.className {
        case "Dense":
            copy("units")
            try activation()
            if c.raw("use_bias")?.boolValue == false { fields.append(("use_bias", false)) }
            try weights()
        case "Conv2D", "Conv2DTranspose":
            copy("filters", "kernel_size", "strides", "dilation_rate")
            try padding()
            try c.channelsLast()
            try c.expect("groups", [1], "Kiln convolutions are not grouped; split the channels with slice nodes and concatenate")
            if layer.className == "Conv2DTranspose" { copy("output_padding") }
            try activation()
            if c.raw("use_bias")?.boolValue == false { fields.append(("use_bias", false)) }
            try weights()
        case "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D":
            copy("pool_size", "strides")
            try padding()
            try c.channelsLast()
        case "GlobalAveragePooling2D", "GlobalAvgPool2D":
            try c.channelsLast()
            if c.raw("keepdims")?.boolValue == true {
                node.followUp = ("keepdims", [("type", "reshape"), ("shape", [1, 1, -1])])
            }
        case "Flatten":
            try c.channelsLast()
        case "Reshape":
            guard let shape = c.raw("target_shape") else { throw c.error("target_shape", "is required", .missingField) }
            fields.append(("shape", shape))
        case "Permute":
            copy("dims")
        case "Dropout":
            copy("rate")
            try c.expectNull("noise_shape", why: "Kiln drops single values; SpatialDropout-style noise shapes are not supported")
        case "GaussianNoise":
            copy("stddev")
        case "BatchNormalization":
            try lastAxis("axis", what: "batch_norm")
            copy("momentum", "epsilon")
            try c.expect("center", [true], "Kiln's batch_norm always has beta")
            try c.expect("scale", [true], "Kiln's batch_norm always has gamma")
            try c.expect("renorm", [false], "Kiln has no batch renormalization")
            for (key, initial) in [("beta_initializer", "zeros"), ("gamma_initializer", "ones"), ("moving_mean_initializer", "zeros"), ("moving_variance_initializer", "ones")] {
                if let v = c.raw(key), !v.isNull, try layer.initializer(v, key: key) != .string(initial) {
                    throw c.error(key, "Kiln's batch_norm starts \(key.replacingOccurrences(of: "_initializer", with: "")) at \(initial)")
                }
            }
            try c.expectNull("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint", why: "Kiln's batch_norm has no regularizers or constraints")
            if !trainable { fields.append(("trainable", false)) }
        case "LayerNormalization":
            try lastAxis("axis", what: "layer_norm")
            copy("epsilon")
            try c.expect("center", [true], "Kiln's layer_norm always has beta")
            try c.expect("scale", [true], "Kiln's layer_norm always has gamma")
            try c.expect("rms_scaling", [false], "Kiln's layer_norm subtracts the mean")
            for (key, initial) in [("beta_initializer", "zeros"), ("gamma_initializer", "ones")] {
                if let v = c.raw(key), !v.isNull, try layer.initializer(v, key: key) != .string(initial) {
                    throw c.error(key, "Kiln's layer_norm starts \(key.replacingOccurrences(of: "_initializer", with: "")) at \(initial)")
                }
            }
            try c.expectNull("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint", why: "Kiln's layer_norm has no regularizers or constraints")
            if !trainable { fields.append(("trainable", false)) }
        case "Activation":
            try activation(field: false)
        case "Softmax":
            copy("axis")
        case "ReLU":
            try c.expect("max_value", [.null], "use the activation \"relu6\" or an expression")
            try c.expect("negative_slope", [0, 0.0], "use LeakyReLU")
            try c.expect("threshold", [0, 0.0], "write it as an expression")
            fields.append(("activation", "relu"))
        case "LeakyReLU":
            let slope = c.raw("negative_slope")?.doubleValue ?? c.raw("alpha")?.doubleValue ?? 0.3
            if slope == 0.2 {
                fields.append(("activation", "leaky_relu"))
            } else {
                fields = [("type", "expression"), ("expr", .string("max(x, \(slope) * x)"))]
            }
        case "Add", "Subtract", "Multiply", "Average":
            node.readsList = true
        case "Concatenate":
            node.readsList = true
            copy("axis")
        case "Embedding":
            copy("input_dim", "output_dim")
            try c.expect("mask_zero", [false], "Kiln has no masks; pad with a token the model learns to ignore")
            try weights(kernel: "embeddings_initializer", bias: nil, regularizer: "embeddings_regularizer")
        case "LSTM":
            try recurrent("lstm")
            let forget = c.raw("unit_forget_bias")?.boolValue ?? true
            var zeroBias = true
            if let b = c.raw("bias_initializer"), !b.isNull { zeroBias = try layer.initializer(b, key: "bias_initializer") == "zeros" }
            if forget && !zeroBias {
                throw c.error("bias_initializer", "with unit_forget_bias, Kiln's lstm starts the bias at zeros (the forget gate at 1); set unit_forget_bias=False to use another bias_initializer")
            }
            if !forget { fields.append(("unit_forget_bias", false)) }
            try weights()
            if forget { fields.removeAll { $0.0 == "bias_initializer" } }
        case "GRU":
            try c.expect("reset_after", [true], "Kiln's gru is Keras's reset_after=True form (the Keras 3 default; bias [2, 3·units])")
            try recurrent("gru")
            try weights()
        case "UpSampling2D":
            copy("size")
            try c.channelsLast()
            try c.expect("interpolation", ["nearest"], "Kiln upsamples by repeating pixels (nearest)")
        default:
            preconditionFailure("layerTypes and translateLayer disagree on \(layer.className)")
        }
        node.fields = fields
        return node
    }
}
