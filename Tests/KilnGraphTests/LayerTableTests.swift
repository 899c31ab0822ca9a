import KilnGraph
import KilnJSON
import KilnTensor
import XCTest

/// Every layer type of the catalog in one table: its output shape, its parameter count,
/// a finite-difference check of its forward pass (with respect to its inputs and its
/// trainable weights), and the round trip of its config through `ModelGraph.json`.
final class LayerTableTests: XCTestCase {
    /// One row: a layer (named `t`) wired to model inputs fed with batches of 2.
    struct Case {
        var inputs: [(String, [Int])]
        var layer: JSON
        var shape: NodeShape
        var parameters: Int
        /// Inputs read as integers or one-hot codes: fed as given, not differentiated.
        var fixedInputs: [String: Tensor] = [:]
        /// Row shapes of data fields, for `constant` with `from_data`.
        var schema = DataSchema()
        var type: String { layer["type"]!.stringValue! }
    }

    static let batch = 2

    static var cases: [Case] {
        var c: [Case] = []
        func add(_ inputs: [(String, [Int])], _ layer: JSON, _ shape: NodeShape, _ parameters: Int,
                 fixed: [String: Tensor] = [:], schema: DataSchema = DataSchema()) {
            c.append(Case(inputs: inputs, layer: layer, shape: shape, parameters: parameters, fixedInputs: fixed, schema: schema))
        }
        let ids = Tensor(shape: [batch, 3], values: [4, 0, 2, 1, 1, 3])
        let labels = Tensor(shape: [batch, 2], values: [0, 1, 1, 0])
        let regularized: JSON = ["l1": 0.001, "l2": 0.01]

        // core
        add([("x", [3, 4])], ["type": "dense", "input": "x", "units": 2, "activation": "tanh", "kernel_regularizer": regularized,
                              "activity_regularizer": ["l2": 0.5]], NodeShape([3, 2]), 4 * 2 + 2)
        add([("x", [4])], ["type": "dense", "input": "x", "units": 3, "use_bias": false, "trainable": false,
                           "kernel_initializer": ["type": "normal", "mean": 0.5, "stddev": 0.2]], NodeShape([3]), 12)
        add([("x", [2, 3])], ["type": "flatten", "input": "x"], NodeShape([6]), 0)
        add([("x", [5])], ["type": "activation", "input": "x", "activation": "gelu"], NodeShape([5]), 0)
        add([("x", [2, 3])], ["type": "softmax", "input": "x", "axis": 1], NodeShape([2, 3]), 0)
        add([("x", [2, 3])], ["type": "reshape", "input": "x", "shape": [3, -1]], NodeShape([3, 2]), 0)
        // merge
        add([("a", [3]), ("b", [3])], ["type": "add", "inputs": ["a", "b"]], NodeShape([3]), 0)
        add([("a", [2, 3]), ("b", [3])], ["type": "subtract", "inputs": ["a", "b"]], NodeShape([2, 3]), 0)
        add([("a", [3]), ("b", [3])], ["type": "multiply", "inputs": ["a", "b"]], NodeShape([3]), 0)
        add([("a", [3]), ("b", [3]), ("c", [3])], ["type": "average", "inputs": ["a", "b", "c"]], NodeShape([3]), 0)
        add([("a", [2, 3]), ("b", [4, 3])], ["type": "matmul", "inputs": ["a", "b"], "transpose_b": true], NodeShape([2, 4]), 0)
        add([("x", [2, 3])], ["type": "sum", "input": "x", "axis": -1], NodeShape([2]), 0)
        add([("x", [2, 3])], ["type": "mean", "input": "x", "axis": [1], "keepdims": true], NodeShape([1, 3]), 0)
        add([("x", [2, 3])], ["type": "max", "input": "x"], NodeShape([]), 0)
        // parameters
        add([], ["type": "weight", "shape": [2, 3], "initializer": ["type": "uniform", "min": -0.5, "max": 0.5]], NodeShape([2, 3], batched: false), 6)
        add([], ["type": "constant", "value": [[1, 2], [3, 4.5]]], NodeShape([2, 2], batched: false), 0)
        add([], ["type": "constant", "from_data": ["field": "x", "rows": [0, 3]]], NodeShape([2, 3], batched: false), 6,
            schema: DataSchema(fields: ["x": [3], "y": []], classes: ["y": 4], known: true))
        add([], ["type": "constant", "from_data": ["field": "x", "per_class": "y"]], NodeShape([4, 3], batched: false), 12,
            schema: DataSchema(fields: ["x": [3], "y": []], classes: ["y": 4], known: true))
        add([("x", [2, 3])], ["type": "elementwise_weights", "input": "x", "kernel_initializer": "glorot_normal"], NodeShape([2, 3]), 6)
        add([("x", [2, 3])], ["type": "bias", "input": "x", "axis": 1, "bias_initializer": ["value": [0.5, -1]]], NodeShape([2, 3]), 2)
        add([("x", [3])], ["type": "taylor", "input": "x", "order": 3, "units": 2], NodeShape([2]), 3 * 3 * 2 + 2)
        add([("x", [3])], ["type": "taylor", "input": "x", "mode": "elementwise", "order": 2, "activation": "sigmoid"], NodeShape([3]), 3 * 3)
        add([("a", [3]), ("b", [3])], ["type": "expression", "inputs": ["x": "a", "p": "b"],
                                      "expr": "exp(-(x - p)^2 / c) * w + mod(x + 3, 5) - max(x, p) + pow(abs(p) + 1, 1.5)",
                                      "params": ["c": ["shape": [], "init": 2.0, "trainable": false], "w": ["shape": [3], "init": "he_uniform"]]],
            NodeShape([3]), 4)
        add([("x", [3])], ["type": "expression", "input": "x", "expr": "sigmoid(x) * softplus(x) + sin(x) / (cos(x) + 2) - tanh(square(x))"],
            NodeShape([3]), 0)
        // shape
        add([("x", [2, 3])], ["type": "permute", "input": "x", "dims": [2, 1]], NodeShape([3, 2]), 0)
        add([("x", [2, 3])], ["type": "transpose", "input": "x"], NodeShape([3, 2]), 0)
        add([("a", [2, 3]), ("b", [2, 1])], ["type": "concatenate", "inputs": ["a", "b"], "axis": -1], NodeShape([2, 4]), 0)
        add([("x", [4])], ["type": "slice", "input": "x", "axis": -1, "start": 1, "end": 3], NodeShape([2]), 0)
        add([("ids", [3])], ["type": "embedding", "input": "ids", "input_dim": 5, "output_dim": 2], NodeShape([3, 2]), 10, fixed: ["ids": ids])
        add([("ids", [3])], ["type": "one_hot", "input": "ids", "classes": 5], NodeShape([3, 5]), 0, fixed: ["ids": ids])
        // convolution
        add([("x", [5, 5, 2])], ["type": "conv2d", "input": "x", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "tanh"],
            NodeShape([5, 5, 3]), 3 * 3 * 2 * 3 + 3)
        add([("x", [5, 5, 1])], ["type": "conv2d", "input": "x", "filters": 2, "kernel_size": [2, 3], "dilation_rate": 2], NodeShape([3, 1, 2]), 2 * 3 * 2 + 2)
        add([("x", [3, 3, 2])], ["type": "conv2d_transpose", "input": "x", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"],
            NodeShape([6, 6, 2]), 3 * 3 * 2 * 2 + 2)
        add([("x", [2, 2, 1])], ["type": "conv2d_transpose", "input": "x", "filters": 1, "kernel_size": 3, "strides": 2, "output_padding": 1],
            NodeShape([6, 6, 1]), 3 * 3 + 1)
        add([("x", [4, 4, 1]), ("label", [2])], ["type": "conditional_conv2d", "inputs": ["x", "label"], "filters": 2, "kernel_size": 2, "classes": 2],
            NodeShape([3, 3, 2]), 2 * 2 * 2 * 1 * 2 + 2, fixed: ["label": labels])
        // pooling, normalisation, random
        add([("x", [4, 4, 2])], ["type": "max_pool2d", "input": "x", "pool_size": 2], NodeShape([2, 2, 2]), 0)
        add([("x", [4, 4, 2])], ["type": "avg_pool2d", "input": "x", "pool_size": 2, "strides": 1, "padding": "same"], NodeShape([4, 4, 2]), 0)
        add([("x", [3, 3, 2])], ["type": "global_avg_pool2d", "input": "x"], NodeShape([2]), 0)
        add([("x", [2, 2, 1])], ["type": "upsampling2d", "input": "x", "size": [2, 3]], NodeShape([4, 6, 1]), 0)
        add([("x", [3, 2])], ["type": "batch_norm", "input": "x", "momentum": 0.9], NodeShape([3, 2]), 8)
        add([("x", [4])], ["type": "layer_norm", "input": "x", "epsilon": 0.01], NodeShape([4]), 8)
        add([("x", [6])], ["type": "dropout", "input": "x", "rate": 0.3], NodeShape([6]), 0)
        add([("x", [4])], ["type": "gaussian_noise", "input": "x", "stddev": 0.1], NodeShape([4]), 0)
        add([("mu", [3]), ("lv", [3])], ["type": "sample_normal", "inputs": ["mu", "lv"]], NodeShape([3]), 0)
        // sequence
        add([("seq", [3, 2])], ["type": "lstm", "input": "seq", "units": 2, "return_sequences": true], NodeShape([3, 2]), 4 * 2 * (2 + 2) + 8)
        add([("seq", [3, 2])], ["type": "gru", "input": "seq", "units": 2, "recurrent_initializer": "glorot_uniform"], NodeShape([2]), 3 * 2 * (2 + 2) + 12)
        return c
    }

    func graph(_ c: Case, schema: DataSchema? = nil) throws -> ModelGraph {
        let inputs = JSON.object(c.inputs.map { ($0.0, JSON($0.1)) })
        return try ModelGraph(json: ["inputs": inputs, "layers": [c.layer.setting("name", to: "t")]], schema: schema ?? c.schema)
    }

    func testEveryRegisteredTypeHasARow() {
        let covered = Set(Self.cases.map(\.type))
        for type in LayerRegistry.names {
            XCTAssertTrue(covered.contains(type), "layer type '\(type)' has no row in the layer table")
        }
    }

    func testOutputShapesAndParameterCounts() throws {
        for c in Self.cases {
            let g = try graph(c)
            let node = try XCTUnwrap(g.node("t"), c.type)
            XCTAssertEqual(node.shape, c.shape, c.layer.serialized())
            XCTAssertEqual(node.parameters.reduce(0) { $0 + Shapes.count($1.shape) }, c.parameters, c.layer.serialized())
            // The forward pass produces that shape at run time.
            let y = try forward(g, inputs: feeds(c).map(\.0), weights: initialWeights(g))
            XCTAssertEqual(y.shape, c.shape.runtime(batch: Self.batch), c.layer.serialized())
        }
    }

    func testGradientsMatchFiniteDifferences() throws {
        for c in Self.cases {
            let g = try graph(c)
            let node = g.node("t")!
            let given = feeds(c)
            let weights = initialWeights(g)
            // What is differentiated: the non-fixed inputs and the trainable weights.
            let trainable = node.parameters.filter(\.trainable).map(\.name)
            let checked = given.enumerated().compactMap { $0.element.1 ? $0.offset : nil }
            let compared = try checkGradients(label: c.layer.serialized(), inputs: given.map(\.0), checkedInputs: checked,
                               weights: weights, checkedWeights: trainable) { inputs, w throws(TensorError) in
                try forward(g, inputs: inputs, weights: w)
            }
            let expected = checked.reduce(0) { $0 + given[$1].0.count } + trainable.reduce(0) { $0 + Shapes.count(weights[$1]!.shape) }
            XCTAssertEqual(compared, expected, c.layer.serialized())
        }
    }

    /// `ModelGraph(json: g.json)` rebuilds g node by node, without the data, and writes
    /// the same JSON again.
    func testConfigsRoundTripThroughTheGraphJSON() throws {
        for c in Self.cases {
            let g = try graph(c)
            let json = g.json
            let rebuilt: ModelGraph
            do {
                rebuilt = try ModelGraph(json: json, schema: DataSchema())
            } catch {
                XCTFail("\(c.layer.serialized()): \(json.serialized()) does not decode: \(error)")
                continue
            }
            assertSameGraph(g, rebuilt, label: json.serialized())
            XCTAssertEqual(rebuilt.json.serialized(), json.serialized())
            // A field the config leaves out would change what the layer computes.
            let inputs = feeds(c).map(\.0), weights = initialWeights(g)
            XCTAssertEqual(try forward(rebuilt, inputs: inputs, weights: weights).scalars,
                           try forward(g, inputs: inputs, weights: weights).scalars, json.serialized())
        }
    }

    /// A functional graph with several inputs, an expression with named inputs, layers
    /// reading the previous node, automatic names and an explicit output list.
    func testFunctionalGraphRoundTrips() throws {
        let model: JSON = [
            "inputs": ["image": [4, 4, 1], "label": [3]],
            "layers": [
                ["type": "conv2d", "input": "image", "filters": 2, "kernel_size": 3, "activation": "relu"],
                ["type": "flatten"],
                ["type": "dense", "units": 3, "name": "code", "activity_regularizer": ["l2": 0.1]],
                ["type": "dense", "input": "label", "units": 3, "name": "scale"],
                ["type": "expression", "inputs": ["z": "code", "a": "scale"], "expr": "tanh(exp(a) * z + b)",
                 "params": ["b": ["shape": [3], "init": ["value": [0.1, 0.2, 0.3]]]], "name": "mod"],
                ["type": "weight", "shape": [3, 3], "name": "w"],
                ["type": "matmul", "inputs": ["mod", "w"], "name": "out"],
            ],
            "outputs": ["out", "code"],
        ]
        let g = try ModelGraph(json: model)
        let rebuilt = try ModelGraph(json: g.json)
        assertSameGraph(g, rebuilt, label: "functional")
        XCTAssertEqual(rebuilt.json.serialized(), g.json.serialized())
        XCTAssertEqual(g.json["layers"]?[0]?["name"], "conv2d_1")
        XCTAssertEqual(g.json["layers"]?[1]?["input"], "conv2d_1")
        XCTAssertEqual(g.json["layers"]?[4]?["inputs"], ["z": "code", "a": "scale"])
        XCTAssertEqual(g.json["outputs"], ["out", "code"])
        // Defaults are written out, so the JSON says what the layer does.
        XCTAssertEqual(g.json["layers"]?[0]?["strides"], [1, 1])
        XCTAssertEqual(g.json["layers"]?[0]?["kernel_initializer"], "glorot_uniform")
        // The summary tells two layers of one type apart by their configs.
        let nodes = g.summary()["nodes"]!.arrayValue!
        XCTAssertEqual(nodes.first { $0["name"] == "code" }?["config"]?["units"], 3)
        XCTAssertEqual(nodes.first { $0["name"] == "conv2d_1" }?["config"]?["activation"], "relu")
        XCTAssertNil(nodes.first { $0["name"] == "image" }?["config"])
        XCTAssertNil(g.summary(configs: false)["nodes"]?[1]?["config"])
        // Checkpoints and the summary name weights the same way, through one function.
        XCTAssertEqual(CheckpointKey.make(node: "dense_1", parameter: "kernel"), "dense_1.kernel")
        let summaryNames = nodes.flatMap { $0["weights"]?.arrayValue ?? [] }.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(CompiledModel(graph: g, seed: 1).weightNames, summaryNames)
        XCTAssertTrue(summaryNames.contains("mod.b") && summaryNames.contains("w.kernel"), "\(summaryNames)")
    }

    /// A constant taken from the data keeps its resolved shape in the graph JSON, so the
    /// artifact decodes without the data and its values come from the checkpoint.
    func testConstantFromDataDecodesWithoutTheData() throws {
        let schema = DataSchema(fields: ["image": [2, 2, 1], "label": []], classes: ["label": 3], known: true)
        let model: JSON = ["inputs": ["image": [2, 2, 1]], "layers": [
            ["type": "constant", "from_data": ["field": "image", "per_class": "label", "classes": 3], "name": "protos"],
            ["type": "subtract", "inputs": ["image", "protos"], "name": "d"],
        ]]
        XCTAssertThrowsError(try ModelGraph(json: model)) { error in
            XCTAssertEqual((error as? SpecError)?.path, "model.layers[0].from_data.field")
        }
        let g = try ModelGraph(json: model, schema: schema)
        let artifact = try ModelGraph(json: JSON.parse(Array(g.json.serialized().utf8)))
        XCTAssertEqual(artifact.node("protos")?.shape, NodeShape([3, 2, 2, 1], batched: false))
        XCTAssertEqual(artifact.node("protos")?.parameters.map(\.name), ["value"])
        // Trained values load into the rebuilt graph under the same key.
        let trained = CompiledModel(graph: g, seed: 1)
        try trained.bindData { field in
            field == "image" ? ([2, 2, 1], (0..<24).map(Float.init)) : ([], [0, 1, 2, 0, 1, 2])
        }
        let key = CheckpointKey.make(node: "protos", parameter: "value")
        let served = CompiledModel(graph: artifact, seed: 2, inference: true)
        XCTAssertTrue(served.load(key, trained.weights[key]!.value))
        XCTAssertEqual(served.weights[key]!.value.scalars, (0..<12).map(Float.init))
        // With the data known, a shape that disagrees with it is an error naming both.
        var stale = g.json["layers"]![0]!
        stale = stale.setting("from_data", to: stale["from_data"]!.setting("shape", to: [3, 4]))
        XCTAssertThrowsError(try ModelGraph(json: ["inputs": ["image": [2, 2, 1]], "layers": [stale]], schema: schema)) { error in
            XCTAssertEqual((error as? SpecError)?.path, "model.layers[0].from_data.shape")
            XCTAssertTrue("\(error)".contains("[3, 2, 2, 1]"), "\(error)")
        }
    }

    // MARK: Helpers

    /// Random inputs of each model input's batched shape (or the fixed ones), with
    /// whether each is differentiated.
    func feeds(_ c: Case) -> [(Tensor, Bool)] {
        var generator = SeededGenerator(seed: 11)
        return c.inputs.map { name, dims in
            if let fixed = c.fixedInputs[name] { return (fixed, false) }
            return (Tensor.uniform([Self.batch] + dims, low: -1, high: 1, generator: &generator), true)
        }
    }

    func initialWeights(_ g: ModelGraph) -> [String: Tensor] {
        let model = CompiledModel(graph: g, seed: 5)
        var generator = SeededGenerator(seed: 13)
        var out: [String: Tensor] = [:]
        for p in g.node("t")!.parameters {
            let value = model.weights[CheckpointKey.make(node: "t", parameter: p.name)]!.value
            // A frozen bank of zeros (a constant from the data) gets values to pass on.
            out[p.name] = p.initializer == .zeros && !p.trainable ? Tensor.uniform(p.shape, low: -1, high: 1, generator: &generator) : value
        }
        return out
    }

    /// The layer's forward pass in training mode with a fixed seed, so dropout and noise
    /// draw the same values on every call.
    func forward(_ g: ModelGraph, inputs: [Tensor], weights: [String: Tensor]) throws(TensorError) -> Tensor {
        try forward(g, inputs: inputs.map { Variable($0) }, weights: weights.mapValues { Variable($0) }).value
    }

    func forward(_ g: ModelGraph, inputs: [Variable], weights: [String: Variable]) throws(TensorError) -> Variable {
        let node = g.node("t")!
        var context = ForwardContext(training: true, seed: 3)
        context.inputShapes = node.inputs.map { g.node($0)!.shape }
        return try node.layer!.forward(inputs, weights, &context)
    }

    func assertSameGraph(_ a: ModelGraph, _ b: ModelGraph, label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.nodes.map(\.name), b.nodes.map(\.name), label, file: file, line: line)
        XCTAssertEqual(a.inputNames, b.inputNames, label, file: file, line: line)
        XCTAssertEqual(a.outputs, b.outputs, label, file: file, line: line)
        for (x, y) in zip(a.nodes, b.nodes) {
            XCTAssertEqual(x.type, y.type, label, file: file, line: line)
            XCTAssertEqual(x.path, y.path, label, file: file, line: line)
            XCTAssertEqual(x.inputs, y.inputs, label, file: file, line: line)
            XCTAssertEqual(x.shape, y.shape, label, file: file, line: line)
            XCTAssertEqual(x.activityRegularizer, y.activityRegularizer, label, file: file, line: line)
            XCTAssertEqual(x.parameters.map(\.name), y.parameters.map(\.name), label, file: file, line: line)
            XCTAssertEqual(x.parameters.map(\.shape), y.parameters.map(\.shape), label, file: file, line: line)
            XCTAssertEqual(x.parameters.map(\.initializer), y.parameters.map(\.initializer), label, file: file, line: line)
            XCTAssertEqual(x.parameters.map(\.trainable), y.parameters.map(\.trainable), label, file: file, line: line)
            XCTAssertEqual(x.parameters.map(\.regularizer), y.parameters.map(\.regularizer), label, file: file, line: line)
            XCTAssertEqual(x.layer.map { JSON.object($0.config) }, y.layer.map { JSON.object($0.config) }, label, file: file, line: line)
        }
    }
}

/// Compares autodiff gradients of `f` with central finite differences for every element
/// of the checked inputs and weights. The scalar checked is Σ f·w for fixed random w,
/// accumulated in Double, so every output element contributes. Returns how many
/// elements it compared.
@discardableResult
func checkGradients(
    label: String, inputs: [Tensor], checkedInputs: [Int], weights: [String: Tensor], checkedWeights: [String],
    epsilon: Float = 1e-3, tolerance: Double = 2e-2, file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Variable], [String: Variable]) throws(TensorError) -> Variable
) throws -> Int {
    let inputVariables = inputs.enumerated().map { Variable($0.element, requiresGrad: checkedInputs.contains($0.offset)) }
    let weightVariables = weights.mapValues { $0 }.reduce(into: [String: Variable]()) { $0[$1.key] = Variable($1.value, requiresGrad: checkedWeights.contains($1.key)) }
    let output = try f(inputVariables, weightVariables)
    var generator = SeededGenerator(seed: 7)
    let seed = Tensor.uniform(output.shape, low: -1, high: 1, generator: &generator)
    output.backward(seed: seed)

    func objective(_ inputs: [Tensor], _ weights: [String: Tensor]) throws -> Double {
        let y = try f(inputs.map { Variable($0) }, weights.mapValues { Variable($0) }).value
        var total = 0.0
        for i in 0..<y.count { total += Double(y[flat: i]) * Double(seed[flat: i]) }
        return total
    }

    var checkedElements = 0
    func compare(_ what: String, _ analytic: Tensor?, _ value: Tensor, _ perturbed: (Tensor) throws -> Double) rethrows {
        let analytic = analytic ?? Tensor.zeros(value.shape)
        XCTAssertEqual(analytic.shape, value.shape, "\(label): gradient shape of \(what)", file: file, line: line)
        for e in 0..<value.count {
            var plus = value, minus = value
            plus[flat: e] += epsilon
            minus[flat: e] -= epsilon
            let numeric = (try perturbed(plus) - perturbed(minus)) / (2 * Double(epsilon))
            let a = Double(analytic[flat: e])
            checkedElements += 1
            if Swift.abs(a - numeric) > tolerance * Swift.max(1, Swift.abs(numeric), Swift.abs(a)) {
                XCTFail("\(label): \(what) element \(e): analytic \(a), numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }

    for k in checkedInputs {
        try compare("input \(k)", inputVariables[k].grad, inputs[k]) { t in
            var changed = inputs
            changed[k] = t
            return try objective(changed, weights)
        }
    }
    for name in checkedWeights {
        try compare("weight \(name)", weightVariables[name]!.grad, weights[name]!) { t in
            var changed = weights
            changed[name] = t
            return try objective(inputs, changed)
        }
    }
    return checkedElements
}
