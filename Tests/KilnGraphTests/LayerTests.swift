import KilnGraph
import KilnJSON
import KilnTensor
import XCTest

/// One test per layer type: output shape, parameter count and a forward value.
final class LayerTests: XCTestCase {
    func graph(_ inputs: JSON, _ layers: [JSON], outputs: [String]? = nil) throws -> ModelGraph {
        var model: JSON = ["inputs": inputs, "layers": .array(layers)]
        if let outputs { model = model.setting("outputs", to: JSON(outputs)) }
        return try ModelGraph(json: model)
    }

    func run(_ g: ModelGraph, _ feeds: [String: Tensor], _ target: String) throws -> Tensor {
        try CompiledModel(graph: g, seed: 1).run(feeds, targets: [target], training: false)[target]!.value
    }

    func testDenseFlattenReshapeActivationSoftmax() throws {
        let g = try graph(["x": [2, 3]], [
            ["type": "flatten"],
            ["type": "dense", "units": 2, "kernel_initializer": ["value": [1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1]], "bias_initializer": ["value": [0.5, -0.5]], "name": "d"],
            ["type": "activation", "activation": "relu", "name": "r"],
            ["type": "reshape", "shape": [-1, 1], "name": "rs"],
            ["type": "softmax", "axis": 1, "name": "s"],
        ])
        XCTAssertEqual(g.node("d")?.parameters.map(\.shape), [[6, 2], [2]])
        let x = Tensor(shape: [1, 2, 3], values: [1, 2, 3, 4, 5, 6])
        // Columns: 1+3+5 = 9 (+0.5), 2+4+6 = 12 (−0.5)
        XCTAssertEqual(try run(g, ["x": x], "d").scalars, [9.5, 11.5])
        XCTAssertEqual(g.node("rs")?.shape, NodeShape([2, 1]))
        let s = try run(g, ["x": x], "s").scalars
        XCTAssertEqual(s[0] + s[1], 1, accuracy: 1e-6)
    }

    func testMergeLayersBroadcastBatchlessOperands() throws {
        let g = try graph(["a": [3], "b": [3]], [
            ["type": "add", "inputs": ["a", "b"], "name": "sum"],
            ["type": "subtract", "inputs": ["a", "b"], "name": "diff"],
            ["type": "multiply", "inputs": ["a", "b"], "name": "prod"],
            ["type": "average", "inputs": ["a", "b"], "name": "avg"],
            ["type": "constant", "value": [10, 20, 30], "name": "c"],
            ["type": "add", "inputs": ["a", "c"], "name": "shifted"],
        ])
        let feeds = ["a": Tensor(shape: [1, 3], values: [1, 2, 3]), "b": Tensor(shape: [1, 3], values: [4, 5, 6])]
        XCTAssertEqual(try run(g, feeds, "sum").scalars, [5, 7, 9])
        XCTAssertEqual(try run(g, feeds, "diff").scalars, [-3, -3, -3])
        XCTAssertEqual(try run(g, feeds, "prod").scalars, [4, 10, 18])
        XCTAssertEqual(try run(g, feeds, "avg").scalars, [2.5, 3.5, 4.5])
        XCTAssertEqual(try run(g, feeds, "shifted").scalars, [11, 22, 33])
        XCTAssertEqual(g.node("c")?.shape, NodeShape([3], batched: false))
        XCTAssertThrowsError(try graph(["a": [3], "b": [4]], [["type": "add", "inputs": ["a", "b"]]])) { error in
            let e = error as! SpecError
            XCTAssertEqual(e.code, .shapeMismatch)
            XCTAssertTrue(e.message.contains("(batch, 4)") && e.message.contains("(batch, 3)"), e.message)
        }
    }

    func testWeightAndMatmulForXXTranspose() throws {
        let g = try ModelGraph(json: [
            "inputs": [:],
            "layers": [
                ["type": "weight", "shape": [3, 2], "initializer": ["value": [1, 2, 3, 4, 5, 6]], "name": "X"],
                ["type": "matmul", "inputs": ["X", "X"], "transpose_b": true, "name": "XXt"],
            ],
        ])
        XCTAssertEqual(g.node("XXt")?.shape, NodeShape([3, 3], batched: false))
        XCTAssertEqual(g.parameterCount.trainable, 6)
        XCTAssertEqual(try run(g, [:], "XXt").scalars, [5, 11, 17, 11, 25, 39, 17, 39, 61])
        XCTAssertThrowsError(try ModelGraph(json: ["inputs": [:], "layers": [
            ["type": "weight", "shape": [3, 2], "name": "X"], ["type": "matmul", "inputs": ["X", "X"]],
        ]])) { error in
            XCTAssertTrue((error as! SpecError).message.contains("inner dimensions"), "\(error)")
        }
    }

    func testReductions() throws {
        let g = try graph(["x": [2, 3]], [
            ["type": "sum", "axis": -1, "name": "s", "input": "x"],
            ["type": "mean", "axis": 1, "keepdims": true, "name": "m", "input": "x"],
            ["type": "max", "name": "mx", "input": "x"],
        ])
        let x = Tensor(shape: [1, 2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(g.node("s")?.shape, NodeShape([2]))
        XCTAssertEqual(try run(g, ["x": x], "s").scalars, [6, 15])
        XCTAssertEqual(g.node("m")?.shape, NodeShape([1, 3]))
        XCTAssertEqual(try run(g, ["x": x], "m").scalars, [2.5, 3.5, 4.5])
        XCTAssertEqual(g.node("mx")?.shape, NodeShape([]))
        XCTAssertEqual(try run(g, ["x": x], "mx").scalars, [6])
        XCTAssertThrowsError(try graph(["x": [2]], [["type": "sum", "axis": 0]]))
    }

    func testElementwiseWeightsBiasTaylor() throws {
        let g = try graph(["x": [2]], [
            ["type": "elementwise_weights", "kernel_initializer": ["value": [2, 3]], "name": "ew"],
            ["type": "bias", "bias_initializer": ["value": [1, -1]], "name": "b"],
            ["type": "taylor", "order": 3, "units": 4, "name": "t"],
            ["type": "taylor", "mode": "elementwise", "order": 2, "input": "x", "name": "te",
             "kernel_initializer": "ones", "bias_initializer": ["value": 0.5]],
        ])
        let x = Tensor(shape: [1, 2], values: [1, 2])
        XCTAssertEqual(try run(g, ["x": x], "ew").scalars, [2, 6])
        XCTAssertEqual(try run(g, ["x": x], "b").scalars, [3, 5])
        // dense mode: 3 kernels of [2, 4] and a bias of 4.
        XCTAssertEqual(g.node("t")?.parameters.map(\.name), ["kernel_1", "kernel_2", "kernel_3", "bias"])
        XCTAssertEqual(g.node("t")?.parameters.reduce(0) { $0 + $1.shape.reduce(1, *) }, 28)
        // elementwise: 0.5 + x + x²
        XCTAssertEqual(try run(g, ["x": x], "te").scalars, [2.5, 6.5])
    }

    func testExpressionLanguage() throws {
        let g = try graph(["x": [3]], [
            ["type": "constant", "value": [1, 2, 3], "name": "p"],
            ["type": "expression", "inputs": ["x": "x", "p": "p"], "expr": "exp(-(x - p)^2 / c) + mod(x, 2) * a", "name": "e",
             "params": ["c": ["shape": [], "init": 2.0, "trainable": false], "a": ["shape": [3], "init": 1.0]]],
        ])
        XCTAssertEqual(g.node("e")?.shape, NodeShape([3]))
        XCTAssertEqual(g.parameterCount.trainable, 3)
        XCTAssertEqual(g.parameterCount.frozen, 1)
        let x: [Float] = [1, -1.5, 5]
        let y = try run(g, ["x": Tensor(shape: [1, 3], values: x)], "e").scalars
        let p: [Float] = [1, 2, 3]
        for i in 0..<3 {
            let m = x[i] - 2 * (x[i] / 2).rounded(.down)
            XCTAssertEqual(y[i], Foundation.exp(-(x[i] - p[i]) * (x[i] - p[i]) / 2) + m, accuracy: 1e-5)
        }
        // The gradient is the formula's own: d/dx of exp(-(x−p)²/c) + a·mod(x, 2).
        let model = CompiledModel(graph: g, seed: 1)
        let xv = Variable(Tensor(shape: [1, 3], values: x), requiresGrad: true)
        _ = xv
        let out = try model.run(["x": Tensor(shape: [1, 3], values: x)], targets: ["e"], training: true)["e"]!
        try out.sum().backward()
        let grad = model.weights["e.a"]!.grad!.scalars
        for i in 0..<3 { XCTAssertEqual(grad[i], x[i] - 2 * (x[i] / 2).rounded(.down), accuracy: 1e-5) }
    }

    func testExpressionErrorsGiveTheColumn() {
        XCTAssertThrowsError(try graph(["x": [3]], [["type": "expression", "expr": "x * (2 + ", "name": "e"]])) { error in
            let e = error as! SpecError
            XCTAssertEqual(e.path, "model.layers[0].expr")
            XCTAssertTrue(e.message.contains("column 10"), e.message)
        }
        XCTAssertThrowsError(try graph(["x": [3]], [["type": "expression", "expr": "tanhh(x)", "name": "e"]])) { error in
            XCTAssertTrue((error as! SpecError).message.contains("did you mean 'tanh'"), "\(error)")
        }
        XCTAssertThrowsError(try graph(["x": [3]], [["type": "expression", "expr": "x * y", "name": "e"]])) { error in
            XCTAssertTrue((error as! SpecError).message.contains("unknown variable 'y'"), "\(error)")
        }
        // Unknown operators and functions, and wrong argument counts, fail at parse time
        // with the expression's path: nothing falls back to another function.
        for (expr, message) in [("x % 2", "unexpected '%'"), ("neg(x)", "unknown function 'neg'"), ("pow(x)", "pow takes 2 arguments"),
                                ("exp(x, 2)", "exp takes 1 argument"), ("x ** 2", "unexpected '*'"), ("gelu(x) + maxx(x, 1)", "did you mean 'max'")] {
            XCTAssertThrowsError(try graph(["x": [3]], [["type": "expression", "expr": .string(expr), "name": "e"]]), expr) { error in
                let e = error as! SpecError
                XCTAssertEqual(e.path, "model.layers[0].expr", expr)
                XCTAssertTrue(e.message.contains(message), "\(expr): \(e.message)")
            }
        }
    }

    func testShapeLayers() throws {
        let g = try graph(["x": [2, 3], "ids": [2]], [
            ["type": "permute", "dims": [2, 1], "input": "x", "name": "p"],
            ["type": "transpose", "input": "x", "name": "t"],
            ["type": "concatenate", "inputs": ["x", "x"], "axis": 1, "name": "c"],
            ["type": "slice", "input": "x", "axis": -1, "start": 1, "end": 3, "name": "s"],
            ["type": "embedding", "input": "ids", "input_dim": 5, "output_dim": 4, "name": "e"],
            ["type": "one_hot", "input": "ids", "classes": 5, "name": "o"],
        ])
        let x = Tensor(shape: [1, 2, 3], values: [1, 2, 3, 4, 5, 6])
        let ids = Tensor(shape: [1, 2], values: [4, 0])
        XCTAssertEqual(g.node("p")?.shape, NodeShape([3, 2]))
        XCTAssertEqual(try run(g, ["x": x], "p").scalars, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(g.node("t")?.shape, NodeShape([3, 2]))
        XCTAssertEqual(g.node("c")?.shape, NodeShape([4, 3]))
        XCTAssertEqual(try run(g, ["x": x], "s").scalars, [2, 3, 5, 6])
        XCTAssertEqual(g.node("e")?.shape, NodeShape([2, 4]))
        XCTAssertEqual(g.parameterCount.trainable, 20)
        let model = CompiledModel(graph: g, seed: 1)
        let table = model.weights["e.embeddings"]!.value.scalars
        XCTAssertEqual(try model.run(["ids": ids], targets: ["e"], training: false)["e"]!.value.scalars, Array(table[16..<20] + table[0..<4]))
        XCTAssertEqual(try run(g, ["ids": ids], "o").scalars, [0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
        XCTAssertThrowsError(try graph(["x": [2, 3]], [["type": "permute", "dims": [1, 3]]]))
        XCTAssertThrowsError(try graph(["x": [2, 3]], [["type": "slice", "axis": 0, "start": 0, "end": 1]]))
        XCTAssertThrowsError(try graph(["a": [2, 3], "b": [2, 4]], [["type": "concatenate", "inputs": ["a", "b"], "axis": 1]])) { error in
            XCTAssertTrue((error as! SpecError).message.contains("(batch, 2, 4)"), "\(error)")
        }
    }

    /// W7: dense → reshape 4×4×256 → conv2d_transpose(64, 5, stride 2) with Keras shapes and counts.
    func testConvolutionTransposeShapesAndKerasCounts() throws {
        for (padding, side) in [("same", 8), ("valid", 11)] {
            let g = try graph(["z": [16]], [
                ["type": "dense", "units": 4096],
                ["type": "reshape", "shape": [4, 4, 256]],
                ["type": "conv2d_transpose", "filters": 64, "kernel_size": 5, "strides": 2, "padding": .string(padding), "name": "up"],
            ])
            XCTAssertEqual(g.node("up")?.shape, NodeShape([side, side, 64]), padding)
            XCTAssertEqual(g.node("up")?.parameters.reduce(0) { $0 + $1.shape.reduce(1, *) }, 409_664)
            let y = try run(g, ["z": Tensor(shape: [2, 16], repeating: 0.1)], "up")
            XCTAssertEqual(y.shape, [2, side, side, 64])
        }
        XCTAssertThrowsError(try graph(["x": [4, 4, 2]], [["type": "conv2d_transpose", "filters": 1, "kernel_size": 3, "strides": 2, "output_padding": 2]])) { error in
            XCTAssertEqual((error as! SpecError).path, "model.layers[0].output_padding")
        }
    }

    func testConv2DForwardValueAndShapeErrors() throws {
        // A 2×2 kernel of ones over a 3×3 ramp sums each window.
        let g = try graph(["x": [3, 3, 1]], [["type": "conv2d", "filters": 1, "kernel_size": 2, "kernel_initializer": "ones", "name": "c"]])
        XCTAssertEqual(g.node("c")?.shape, NodeShape([2, 2, 1]))
        XCTAssertEqual(try run(g, ["x": Tensor(shape: [1, 3, 3, 1], values: [1, 2, 3, 4, 5, 6, 7, 8, 9])], "c").scalars, [12, 16, 24, 28])
        let same = try graph(["x": [28, 28, 1]], [["type": "conv2d", "filters": 32, "kernel_size": 3, "strides": 2, "padding": "same", "name": "c"]])
        XCTAssertEqual(same.node("c")?.shape, NodeShape([14, 14, 32]))
        XCTAssertEqual(same.parameterCount.trainable, 3 * 3 * 32 + 32)
        XCTAssertThrowsError(try graph(["x": [2, 2, 1]], [["type": "conv2d", "filters": 1, "kernel_size": 3]])) { error in
            XCTAssertEqual((error as! SpecError).path, "model.layers[0].kernel_size")
        }
        XCTAssertThrowsError(try graph(["x": [10]], [["type": "conv2d", "filters": 1, "kernel_size": 3]])) { error in
            XCTAssertTrue((error as! SpecError).message.contains("(batch, 10)"), "\(error)")
        }
    }

    func testConditionalConvolutionUsesEachSamplesClassKernel() throws {
        // Two classes with fixed 1×1 kernels ×2 and ×−1.
        let g = try graph(["x": [2, 2, 1], "label": [2]], [
            ["type": "conditional_conv2d", "inputs": ["x", "label"], "filters": 1, "kernel_size": 1, "classes": 2, "use_bias": false,
             "trainable": false, "kernel_initializer": ["value": [2, -1]], "name": "cc"],
        ])
        XCTAssertEqual(g.parameterCount.frozen, 2)
        let x = Tensor(shape: [2, 2, 2, 1], values: [1, 2, 3, 4, 1, 2, 3, 4])
        let label = Tensor(shape: [2, 2], values: [1, 0, 0, 1])
        let y = try CompiledModel(graph: g, seed: 1).run(["x": x, "label": label], targets: ["cc"], training: false)["cc"]!.value
        XCTAssertEqual(y.scalars, [2, 4, 6, 8, -1, -2, -3, -4])
    }

    /// The MNIST convnet of the benchmarks, with Keras' shapes and parameter count.
    func testConvnetPoolingDropoutAndKerasCounts() throws {
        let g = try graph(["image": [28, 28, 1]], [
            ["type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"],
            ["type": "max_pool2d", "pool_size": 2],
            ["type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"],
            ["type": "max_pool2d", "pool_size": 2, "name": "pooled"],
            ["type": "flatten"],
            ["type": "dropout", "rate": 0.5, "name": "drop"],
            ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"],
        ])
        XCTAssertEqual(g.node("pooled")?.shape, NodeShape([5, 5, 64]))
        XCTAssertEqual(g.parameterCount.trainable, 34_826)
        let model = CompiledModel(graph: g, seed: 1)
        let x = Tensor(shape: [2, 28, 28, 1], repeating: 0.5)
        let a = try model.run(["image": x], targets: ["drop"], training: false)["drop"]!.value.scalars
        let b = try model.run(["image": x], targets: ["flatten_1"], training: false)["flatten_1"]!.value.scalars
        XCTAssertEqual(a, b, "dropout is the identity at inference")
        let dropped = try model.run(["image": x], targets: ["drop"], training: true, seed: 3)["drop"]!.value.scalars
        XCTAssertTrue(dropped.contains(0) && dropped.contains { $0 > 0 })
    }

    func testPoolingUpsamplingNormalizationNoiseAndSampling() throws {
        let g = try graph(["x": [4, 4, 2], "v": [3]], [
            ["type": "avg_pool2d", "input": "x", "pool_size": 2, "name": "avg"],
            ["type": "global_avg_pool2d", "input": "x", "name": "gap"],
            ["type": "upsampling2d", "input": "avg", "size": 2, "name": "up"],
            ["type": "batch_norm", "input": "x", "name": "bn"],
            ["type": "layer_norm", "input": "v", "name": "ln"],
            ["type": "gaussian_noise", "input": "v", "stddev": 0.1, "name": "noise"],
            ["type": "sample_normal", "inputs": ["v", "v"], "name": "z"],
        ])
        XCTAssertEqual(g.node("avg")?.shape, NodeShape([2, 2, 2]))
        XCTAssertEqual(g.node("gap")?.shape, NodeShape([2]))
        XCTAssertEqual(g.node("up")?.shape, NodeShape([4, 4, 2]))
        // Keras: batch norm has 2·c trainable and 2·c non-trainable weights.
        XCTAssertEqual(g.node("bn")?.parameters.filter(\.trainable).count, 2)
        XCTAssertEqual(g.parameterCount.frozen, 4)
        let v = Tensor(shape: [1, 3], values: [1, 2, 3])
        let ln = try run(g, ["v": v], "ln").scalars
        XCTAssertEqual(ln[1], 0, accuracy: 1e-5)
        XCTAssertEqual(ln[0], -ln[2], accuracy: 1e-5)
        XCTAssertEqual(try run(g, ["v": v], "noise").scalars, [1, 2, 3], "noise only in training")
        XCTAssertThrowsError(try graph(["a": [2], "b": [3]], [["type": "sample_normal", "inputs": ["a", "b"]]]))
        // Training updates the moving statistics; inference then uses them.
        let model = CompiledModel(graph: g, seed: 1)
        let x = Tensor.uniform([3, 4, 4, 2], low: 1, high: 3, generator: &SeededGeneratorBox.shared.generator)
        _ = try model.run(["x": x], targets: ["bn"], training: true)
        let moving = model.weights["bn.moving_mean"]!.value.scalars
        XCTAssertTrue(moving.allSatisfy { $0 > 0.01 && $0 < 0.03 }, "0.99·0 + 0.01·mean(≈2): \(moving)")
    }

    /// Recurrent layers with Keras parameter counts; a dense after return_sequences acts per step.
    func testLSTMAndGRU() throws {
        let g = try graph(["seq": [5, 3]], [
            ["type": "lstm", "units": 4, "return_sequences": true, "input": "seq", "name": "l"],
            ["type": "dense", "units": 1, "activation": "sigmoid", "name": "per_step"],
            ["type": "gru", "units": 2, "input": "seq", "name": "g"],
        ])
        XCTAssertEqual(g.node("l")?.shape, NodeShape([5, 4]))
        XCTAssertEqual(g.node("per_step")?.shape, NodeShape([5, 1]))
        XCTAssertEqual(g.node("g")?.shape, NodeShape([2]))
        XCTAssertEqual(g.node("l")?.parameters.reduce(0) { $0 + $1.shape.reduce(1, *) }, 4 * 4 * (3 + 4) + 16)
        XCTAssertEqual(g.node("g")?.parameters.reduce(0) { $0 + $1.shape.reduce(1, *) }, 3 * 2 * (3 + 2) + 12)
        let y = try run(g, ["seq": Tensor(shape: [2, 5, 3], repeating: 0.1)], "per_step")
        XCTAssertEqual(y.shape, [2, 5, 1])
        XCTAssertThrowsError(try graph(["x": [3]], [["type": "lstm", "units": 2]]))
    }

    /// Keras's recurrent defaults: an orthogonal recurrent kernel (orthonormal rows of
    /// [units, gates·units]) and, for the LSTM, a forget-gate bias of 1.
    func testRecurrentKernelsStartOrthogonalAndTheForgetGateOpen() throws {
        let g = try graph(["seq": [5, 3]], [
            ["type": "lstm", "units": 4, "return_sequences": true, "input": "seq", "name": "l"],
            ["type": "gru", "units": 3, "input": "l", "name": "g"],
            ["type": "lstm", "units": 2, "input": "seq", "unit_forget_bias": false, "name": "plain"],
        ])
        let model = CompiledModel(graph: g, seed: 3)
        for (name, units, gates) in [("l", 4, 4), ("g", 3, 3)] {
            let u = model.weights[CheckpointKey.make(node: name, parameter: "recurrent_kernel")]!.value
            XCTAssertEqual(u.shape, [units, gates * units])
            for a in 0..<units {
                for b in 0..<units {
                    var dot: Float = 0
                    for j in 0..<(gates * units) { dot += u[flat: a * gates * units + j] * u[flat: b * gates * units + j] }
                    XCTAssertEqual(dot, a == b ? 1 : 0, accuracy: 1e-5, "\(name) rows \(a)·\(b)")
                }
            }
        }
        XCTAssertEqual(model.weights["l.bias"]!.value.scalars, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(model.weights["plain.bias"]!.value.scalars, [Float](repeating: 0, count: 8))
        XCTAssertEqual(model.weights["g.bias"]!.value.scalars, [Float](repeating: 0, count: 18))
        // A kernel with more rows than columns gets orthonormal columns.
        var generator = SeededGenerator(seed: 1)
        let tall = Initializer.orthogonal.make([2, 3, 4], generator: &generator)
        for a in 0..<4 {
            for b in 0..<4 {
                var dot: Float = 0
                for i in 0..<6 { dot += tall[flat: i * 4 + a] * tall[flat: i * 4 + b] }
                XCTAssertEqual(dot, a == b ? 1 : 0, accuracy: 1e-5)
            }
        }
        XCTAssertThrowsError(try graph(["seq": [5, 3]], [["type": "gru", "units": 2, "unit_forget_bias": true]]))
    }

    /// A decoder run on its own: an inner node given a value replaces everything before it.
    func testFeedingAnInnerNodeSkipsWhatComesBefore() throws {
        let g = try ModelGraph(json: ["inputs": ["x": [3]], "layers": [
            ["type": "dense", "units": 2, "name": "code"],
            ["type": "dense", "units": 1, "kernel_initializer": ["value": [2, 3]], "name": "out"],
        ]])
        let model = CompiledModel(graph: g, seed: 1)
        XCTAssertEqual(try model.run(["code": Tensor(shape: [2, 2], values: [1, 1, 0, -1])], targets: ["out"], training: false)["out"]!.value.scalars, [5, -3])
        XCTAssertThrowsError(try model.run(["code": Tensor(shape: [1, 3], values: [1, 1, 1])], targets: ["out"], training: false))
    }
}

/// A shared generator for test inputs.
final class SeededGeneratorBox {
    static let shared = SeededGeneratorBox()
    var generator = SeededGenerator(seed: 42)
}
