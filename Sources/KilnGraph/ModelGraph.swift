import KilnJSON
import KilnTensor

/// A checked model: nodes in an order where every node follows its inputs, each with
/// its inferred shape and weights. Built from the `model` object of a spec; every
/// problem is a `SpecError` with a path.
public struct ModelGraph: Sendable {
    public struct Node: Sendable {
        public var name: String
        public var type: String
        public var path: String
        public var inputs: [String]
        /// nil for model inputs.
        public var layer: (any Layer)?
        public var shape: NodeShape
        public var parameters: [ParameterSpec]
        /// `activity_regularizer` (any layer, as in Keras): a penalty on the node's
        /// output, divided by the batch size, added to the training objective.
        public var activityRegularizer: Regularizer? = nil
        /// The aliases of `inputs` given as an object (expression), in the order of `inputs`.
        public var inputAliases: [String]? = nil
    }

    public var nodes: [Node]
    public var inputNames: [String]
    public var outputs: [String]
    let index: [String: Int]

    public func node(_ name: String) -> Node? { index[name].map { nodes[$0] } }

    public var parameterCount: (trainable: Int, frozen: Int) {
        var t = 0, f = 0
        for n in nodes { for p in n.parameters { if p.trainable { t += Shapes.count(p.shape) } else { f += Shapes.count(p.shape) } } }
        return (t, f)
    }

    /// Names of the nodes that `targets` need, in graph order.
    /// Nodes in `given` are taken as known (fed from outside), so their own inputs
    /// are not needed on their account.
    public func dependencies(of targets: [String], given: Set<String> = []) -> [String] {
        var needed = Set<String>()
        var stack = targets
        while let name = stack.popLast() {
            guard needed.insert(name).inserted, let n = node(name) else { continue }
            if given.contains(name) { continue }
            stack.append(contentsOf: n.inputs)
        }
        return nodes.map(\.name).filter { needed.contains($0) }
    }

    // MARK: Decoding

    /// Decodes and checks `model` (at JSON path `path`).
    public init(json: JSON, path: String = "model", limits: ModelLimits = ModelLimits(), schema: DataSchema = DataSchema()) throws(SpecError) {
        // `{"keras": <model.to_json()>}`: a Keras model, translated to Kiln's own form.
        let json = try json["keras"].map { k throws(SpecError) in try KerasModel.translate(k, path: "\(path).keras") } ?? json
        var fields = try FieldReader(json, path: path)
        var nodes: [Node] = []
        var index: [String: Int] = [:]
        var parameterTotal = 0

        // Inputs: name → per-sample shape.
        // Inputs: name → per-sample shape. A model made only of weights has none.
        let inputsJSON = fields.raw("inputs") ?? .object([])
        guard let inputMembers = inputsJSON.objectMembers else {
            throw SpecError(.invalidField, "expected an object mapping input names to shapes, e.g. {\"image\": [28, 28, 1]}", path: "\(path).inputs")
        }
        for (name, shapeJSON) in inputMembers {
            let p = "\(path).inputs.\(name)"
            try ModelGraph.checkName(name, path: p)
            guard let items = shapeJSON.arrayValue, let dims = Optional(items.compactMap(\.intValue)), dims.count == items.count,
                  dims.allSatisfy({ $0 > 0 }) else {
                throw SpecError(.invalidField, "expected a shape (a list of positive integers without the batch axis), got \(shapeJSON.serialized().prefix(60))", path: p, node: name)
            }
            let node = Node(name: name, type: "input", path: p, inputs: [], layer: nil, shape: NodeShape(dims), parameters: [])
            try limits.check(node, parameterTotal: &parameterTotal)
            index[name] = nodes.count
            nodes.append(node)
        }
        let inputNames = inputMembers.map(\.0)

        // Layers, in order; a layer without `input`/`inputs` reads the previous node.
        let layersJSON = try fields.required("layers")
        guard let layerItems = layersJSON.arrayValue else {
            throw SpecError(.invalidField, "expected a list of layers, got \(layersJSON.kindName)", path: "\(path).layers")
        }
        var counters: [String: Int] = [:]
        var previous: String? = inputNames.count == 1 ? inputNames[0] : nil
        for (i, item) in layerItems.enumerated() {
            let p = "\(path).layers[\(i)]"
            var lf = try FieldReader(item, path: p)
            guard let type = try lf.string("type") else {
                throw SpecError(.missingField, "is required", path: "\(p).type")
            }
            guard let layerType = LayerRegistry.layerType(type) else {
                throw SpecError(.unknownType, "unknown layer type '\(type)'\(Suggest.hint(type, LayerRegistry.names))", path: "\(p).type")
            }
            let name: String
            if let given = try lf.string("name") {
                try ModelGraph.checkName(given, path: "\(p).name")
                name = given
            } else {
                var n = counters[type, default: 0] + 1
                while index["\(type)_\(n)"] != nil { n += 1 }
                counters[type] = n
                name = "\(type)_\(n)"
            }
            if let earlier = index[name] {
                throw SpecError(.duplicateName, "name '\(name)' is already used by \(nodes[earlier].path)", path: "\(p).name", node: name)
            }
            lf = try FieldReader(item, path: p, node: name)
            lf.schema = schema
            lf.allow("type", "name")
            let inputs: [String]
            var aliasNames: [String]? = nil
            if lf.has("input") && lf.has("inputs") {
                throw SpecError(.invalidField, "give either 'input' or 'inputs', not both", path: "\(p).inputs", node: name)
            } else if layerType.arity.upperBound == 0 {
                if lf.has("input") || lf.has("inputs") {
                    throw SpecError(.invalidField, "a \(type) node takes no input", path: "\(p).input", node: name)
                }
                inputs = []
            } else if let one = try lf.string("input") {
                inputs = [one]
            } else if let aliases = lf.raw("inputs")?.objectMembers {
                // Named inputs (expression): alias → node.
                var refs: [String] = []
                for (alias, ref) in aliases {
                    guard let r = ref.stringValue else {
                        throw SpecError(.invalidField, "expected a node name, got \(ref.kindName)", path: "\(p).inputs.\(alias)", node: name)
                    }
                    refs.append(r)
                }
                inputs = refs
                aliasNames = aliases.map(\.0)
            } else if let many = try lf.stringList("inputs") {
                inputs = many
            } else {
                guard let previous else {
                    throw SpecError(.missingField, "the model has several inputs, so this layer must name its 'input'", path: "\(p).input", node: name)
                }
                inputs = [previous]
            }
            let arity = layerType.arity
            guard arity.contains(inputs.count) else {
                throw SpecError(.invalidField, "\(type) takes \(arity.lowerBound == arity.upperBound ? "\(arity.lowerBound)" : "\(arity.lowerBound)–\(arity.upperBound)") input(s), got \(inputs.count)", path: "\(p).inputs", node: name)
            }
            var inputShapes: [NodeShape] = []
            for (j, ref) in inputs.enumerated() {
                guard let k = index[ref] else {
                    let later = layerItems[(i + 1)...].contains { $0["name"]?.stringValue == ref }
                    let why = later ? "'\(ref)' is defined later; layers must come after their inputs (a cycle is not allowed)"
                                    : "unknown node '\(ref)'\(Suggest.hint(ref, Array(index.keys)))"
                    throw SpecError(later ? .cycle : .unknownNode, why, path: inputs.count == 1 && lf.object("input") != nil ? "\(p).input" : "\(p).inputs[\(j)]", node: name)
                }
                inputShapes.append(nodes[k].shape)
            }
            let activity = try lf.raw("activity_regularizer").map { j throws(SpecError) in
                try Regularizer.read(j, path: "\(p).activity_regularizer", node: name)
            }
            let layer = try layerType.init(&lf)
            try lf.finish()
            let info = NodeInfo(name: name, path: p)
            let shape = try layer.outputShape(inputShapes, info)
            var node = Node(name: name, type: type, path: p, inputs: inputs, layer: layer, shape: shape, parameters: layer.parameters(inputShapes))
            node.inputAliases = aliasNames
            if let activity {
                guard shape.batched else {
                    throw SpecError(.invalidField, "an activity regularizer needs a node with a batch axis; \(name) is \(shape)", path: "\(p).activity_regularizer", node: name)
                }
                node.activityRegularizer = activity
            }
            // Budgets first: later steps multiply these dimensions.
            try limits.check(node, parameterTotal: &parameterTotal)
            for param in node.parameters {
                try param.initializer.check(shape: param.shape, path: p, node: name)
            }
            index[name] = nodes.count
            nodes.append(node)
            previous = name
        }

        // Outputs: default to the last layer.
        var outputs: [String]
        if let given = try fields.stringList("outputs") {
            outputs = given
            for (j, o) in given.enumerated() where index[o] == nil {
                throw SpecError(.unknownNode, "unknown node '\(o)'\(Suggest.hint(o, Array(index.keys)))", path: "\(path).outputs[\(j)]")
            }
        } else {
            guard let last = nodes.last, last.layer != nil else {
                throw SpecError(.missingField, "the model has no layers", path: "\(path).layers")
            }
            outputs = [last.name]
        }
        if outputs.isEmpty { throw SpecError(.invalidField, "at least one output is needed", path: "\(path).outputs") }
        try fields.finish()

        self.nodes = nodes
        self.inputNames = inputNames
        self.outputs = outputs
        self.index = index
    }

    // MARK: Encoding

    /// The graph as a `model` object that `init(json:)` rebuilds into this graph without
    /// any data (Keras `get_config`): inputs, every layer with its type, name, inputs
    /// (aliases kept), config with defaults filled in and activity regularizer, and
    /// outputs. A trained model's artifact holds this, next to its checkpoint.
    public var json: JSON {
        var layers: [JSON] = []
        for node in nodes {
            guard let layer = node.layer else { continue }
            var members: [(String, JSON)] = [("type", .string(node.type)), ("name", .string(node.name))]
            if let aliases = node.inputAliases {
                members.append(("inputs", .object(zip(aliases, node.inputs).map { ($0, .string($1)) })))
            } else if node.inputs.count == 1 {
                members.append(("input", .string(node.inputs[0])))
            } else if !node.inputs.isEmpty {
                members.append(("inputs", JSON(node.inputs)))
            }
            members += layer.config
            if let r = node.activityRegularizer { members.append(("activity_regularizer", r.json)) }
            layers.append(.object(members))
        }
        return .object([
            ("inputs", .object(inputNames.map { ($0, JSON(node($0)!.shape.dims)) })),
            ("layers", .array(layers)),
            ("outputs", JSON(outputs)),
        ])
    }

    /// Node and input names become checkpoint keys and appear in URLs and logs.
    public static func checkName(_ name: String, path: String) throws(SpecError) {
        let ok = !name.isEmpty && name.count <= 64 && name.unicodeScalars.allSatisfy {
            ($0.properties.isAlphabetic && $0.isASCII) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == "."
        }
        guard ok else { throw SpecError(.invalidField, "names must match [A-Za-z0-9_.-]{1,64}, got '\(name.prefix(80))'", path: path) }
    }
}

/// Budgets checked before anything is allocated.
public struct ModelLimits: Sendable {
    public var maxParameters: Int
    public var maxActivationValuesPerSample: Int
    public init(maxParameters: Int = 100_000_000, maxActivationValuesPerSample: Int = 50_000_000) {
        self.maxParameters = maxParameters
        self.maxActivationValuesPerSample = maxActivationValuesPerSample
    }

    /// Checks one node's activation size and adds its weights to the running total,
    /// with overflow-checked arithmetic, so a 10¹²-parameter model is refused before
    /// anything is allocated.
    func check(_ node: ModelGraph.Node, parameterTotal total: inout Int) throws(SpecError) {
        func product(_ dims: [Int]) -> Int {
            var n = 1
            for d in dims {
                let (r, o) = n.multipliedReportingOverflow(by: d)
                n = o ? Int.max : r
            }
            return n
        }
        if product(node.shape.dims) > maxActivationValuesPerSample {
            throw SpecError(.tooLarge, "output \(node.shape) holds more than the budget of \(maxActivationValuesPerSample) values per sample", path: node.path, node: node.name)
        }
        for p in node.parameters {
            let (s, o) = total.addingReportingOverflow(product(p.shape))
            total = o ? Int.max : s
            if total > maxParameters {
                throw SpecError(.tooLarge, "the model has more than the budget of \(maxParameters) parameters (\(CheckpointKey.make(node: node.name, parameter: p.name)) has shape \(p.shape))", path: node.path, node: node.name)
            }
        }
    }
}
