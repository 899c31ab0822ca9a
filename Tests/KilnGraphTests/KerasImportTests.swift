import Foundation
import KilnGraph
import KilnJSON
import KilnSpec
import KilnTensor
import XCTest

/// Keras's own `to_json()` of a set of models (written by scripts/keras-fixtures.py),
/// translated and built: every layer's output shape and parameter count must equal what
/// Keras reported.
final class KerasImportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/keras")

    func fixtureText(_ name: String) throws -> String {
        try String(contentsOf: Self.fixtures.appendingPathComponent("\(name).json"), encoding: .utf8)
    }

    func fixture(_ name: String, replacing edits: [(String, String)] = []) throws -> JSON {
        var text = try fixtureText(name)
        for (old, new) in edits {
            XCTAssertTrue(text.contains(old), "\(name) has no \(old)")
            text = text.replacingOccurrences(of: old, with: new)
        }
        return try JSON.parse(text)
    }

    func graph(_ keras: JSON) throws -> ModelGraph {
        try ModelGraph(json: ["keras": keras], path: "model")
    }

    func error(_ keras: JSON, file: StaticString = #filePath, line: UInt = #line) -> SpecError? {
        do {
            _ = try graph(keras)
            XCTFail("expected a SpecError", file: file, line: line)
            return nil
        } catch {
            return error as? SpecError
        }
    }

    // MARK: Shapes and parameter counts against Keras

    func testEveryFixtureMatchesKerasShapesAndParameterCounts() throws {
        let models = ["mlp", "mnist_convnet", "lstm", "text_gru", "two_inputs", "w1_trunk", "w8_mlp", "conv_catalog"]
        for name in models {
            let f = try fixture(name)
            let g: ModelGraph
            do { g = try graph(f["keras"]!) } catch {
                XCTFail("\(name): \(error)")
                continue
            }
            let (trainable, frozen) = g.parameterCount
            XCTAssertEqual(trainable + frozen, f["count_params"]!.intValue!, "\(name): parameter count")
            for (layer, info) in f["layers"]!.objectMembers! {
                // A layer whose Keras option needed a second Kiln node ends there.
                guard let node = g.node("\(layer)_keepdims") ?? g.node(layer) else {
                    XCTFail("\(name): no node for Keras layer '\(layer)'")
                    continue
                }
                let expected = info["output_shape"]!.arrayValue!.map { $0.intValue! }
                XCTAssertEqual(node.shape.dims, expected, "\(name): output shape of \(layer)")
                XCTAssertTrue(node.shape.batched, "\(name): \(layer) has a batch axis")
                let params = g.nodes.filter { $0.name == layer }.flatMap(\.parameters).map { Shapes.count($0.shape) }.reduce(0, +)
                XCTAssertEqual(params, info["count_params"]!.intValue!, "\(name): parameters of \(layer)")
            }
        }
    }

    /// With Keras's weights loaded by name, Kiln's predictions equal Keras's own (GRU
    /// reset_after, LSTM gate order, batch-norm statistics, padding, dilation, strides,
    /// transposed convolutions, pooling, layer norm, merges).
    func testPredictionsEqualKerasWithKerasWeights() throws {
        for name in ["lstm", "text_gru", "two_inputs", "conv_catalog"] {
            let f = try fixture(name)
            let check = try XCTUnwrap(f["check"], name)
            let model = CompiledModel(graph: try graph(f["keras"]!), seed: 0, inference: true)
            var loaded = 0
            for (layer, weights) in check["weights"]!.objectMembers! {
                for (weight, values) in weights.objectMembers! {
                    let key = "\(layer).\(weight)"
                    let shape = try XCTUnwrap(model.weights[key], "\(name): Kiln has no weight \(key)").value.shape
                    XCTAssertTrue(model.load(key, Tensor(shape: shape, values: values.arrayValue!.map { Float($0.doubleValue!) })), "\(name): \(key)")
                    loaded += 1
                }
            }
            XCTAssertEqual(loaded, model.weightNames.count, "\(name): every Kiln weight comes from Keras")
            var feeds: [String: Tensor] = [:]
            for (input, value) in check["inputs"]!.objectMembers! {
                feeds[input] = Tensor(shape: value["shape"]!.arrayValue!.map { $0.intValue! }, values: value["values"]!.arrayValue!.map { Float($0.doubleValue!) })
            }
            let outputs = check["outputs"]!.objectMembers!
            let results = try model.run(feeds, targets: outputs.map(\.0), training: false)
            for (output, expected) in outputs {
                let got = try XCTUnwrap(results[output], "\(name): \(output)").value
                XCTAssertEqual(got.shape, expected["shape"]!.arrayValue!.map { $0.intValue! }, "\(name): \(output)")
                var worst = 0.0
                for (i, e) in expected["values"]!.arrayValue!.enumerated() {
                    let reference = e.doubleValue!
                    worst = max(worst, abs(Double(got[flat: i]) - reference) / max(1, abs(reference)))
                }
                XCTAssertLessThan(worst, 1e-4, "\(name): \(output) differs from Keras by \(worst)")
            }
        }
    }

    func testTranslationKeepsNamesOptionsAndGraphEdges() throws {
        let model = try KerasModel.translate(try fixture("two_inputs")["keras"]!, path: "model.keras")
        XCTAssertEqual(model["inputs"], ["a": [16], "b": [16]])
        XCTAssertEqual(model["outputs"], ["score", "aux"])
        let layers = model["layers"]!.arrayValue!
        let byName = Dictionary(uniqueKeysWithValues: layers.map { ($0["name"]!.stringValue!, $0) })
        XCTAssertEqual(byName["dense_b"], ["type": "dense", "name": "dense_b", "input": "b", "units": 32, "activation": "tanh", "use_bias": false,
                                           "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"])
        XCTAssertEqual(byName["joined"]?["inputs"], ["sum", "product", "a"])
        XCTAssertEqual(byName["norm"]?["type"], "layer_norm")

        let cnn = try KerasModel.translate(try fixture("w1_trunk")["keras"]!, path: "model.keras")
        let first = cnn["layers"]![0]!
        XCTAssertEqual(first["kernel_initializer"], "he_normal")
        XCTAssertEqual(first["kernel_regularizer"], ["l2": 1e-4])
        XCTAssertEqual(first["padding"], "same")
        XCTAssertEqual(cnn["layers"]![5]?["activity_regularizer"], ["l1": 1e-5, "l2": 1e-4])

        let catalog = try KerasModel.translate(try fixture("conv_catalog")["keras"]!, path: "model.keras")
        let strided = catalog["layers"]!.arrayValue!.first { $0["name"] == "strided" }!
        XCTAssertEqual(strided["strides"], [2, 1])
        XCTAssertEqual(strided["kernel_size"], [3, 5])
        XCTAssertEqual(strided["use_bias"], false)
        let bn = catalog["layers"]!.arrayValue!.first { $0["name"] == "bn" }!
        XCTAssertEqual(bn["momentum"], 0.9)
        XCTAssertEqual(bn["epsilon"], 1e-5)

        let recurrent = try KerasModel.translate(try fixture("text_gru")["keras"]!, path: "model.keras")
        let lstm = recurrent["layers"]!.arrayValue!.first { $0["type"] == "lstm" }!
        XCTAssertEqual(lstm["unit_forget_bias"], false)
        XCTAssertEqual(lstm["recurrent_initializer"], "glorot_uniform")
    }

    func testInputsKeepKerasOrder() throws {
        // Keras lists input_layers [b, a]: Kiln's inputs follow that order, not the layer list's.
        var keras = try fixture("two_inputs")["keras"]!
        keras = keras.setting("config", to: keras["config"]!.setting("input_layers", to: [["b", 0, 0], ["a", 0, 0]]))
        XCTAssertEqual(try graph(keras).inputNames, ["b", "a"])
        XCTAssertEqual(try graph(try fixture("two_inputs")["keras"]!).inputNames, ["a", "b"])
    }

    func testModelTextAndGetConfigAreAccepted() throws {
        // model.to_json() sent as the string it returns, and model.get_config() without the wrapper.
        let keras = try fixture("mlp")["keras"]!
        let fromText = try graph(.string(keras.serialized()))
        XCTAssertEqual(fromText.outputs, ["probs"])
        let fromConfig = try graph(keras["config"]!)
        XCTAssertEqual(fromConfig.parameterCount.trainable, 407_050)
    }

    /// tf.keras 2 wrote `batch_input_shape` and `inbound_nodes` as [[name, 0, 0, {}]] lists.
    func testKeras2FunctionalJSON() throws {
        let keras = try JSON.parse("""
        {"class_name": "Functional", "config": {"name": "m", "layers": [
          {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 8], "dtype": "float32", "name": "x"}, "name": "x", "inbound_nodes": []},
          {"class_name": "Dense", "config": {"name": "h", "units": 4, "activation": "swish", "use_bias": true,
             "kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"}},
             "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.001}}},
           "name": "h", "inbound_nodes": [[["x", 0, 0, {}]]]},
          {"class_name": "Add", "config": {"name": "s"}, "name": "s", "inbound_nodes": [[["h", 0, 0, {}], ["h", 0, 0, {}]]]}],
          "input_layers": [["x", 0, 0]], "output_layers": [["s", 0, 0]]}}
        """)
        let model = try KerasModel.translate(keras, path: "model.keras")
        let layers = model["layers"]!.arrayValue!
        XCTAssertEqual(layers[0]["kernel_initializer"], "he_normal")
        XCTAssertEqual(layers[0]["kernel_regularizer"], ["l2": 0.001])
        XCTAssertEqual(layers[1]["name"], "h_swish")
        XCTAssertEqual(layers[2]["inputs"], ["h_swish", "h_swish"], "the Add reads the activation node")
        let g = try graph(keras)
        XCTAssertEqual(g.node("s")?.shape.dims, [4])
        XCTAssertEqual(g.parameterCount.trainable, 36)
    }

    func testActivationKilnLacksBecomesAnExpressionNode() throws {
        let keras = try fixture("w8_mlp", replacing: [("\"activation\": \"gelu\"", "\"activation\": \"silu\"")])
        let g = try graph(keras["keras"]!)
        let dense = g.nodes.first { $0.type == "dense" && $0.shape.dims == [64] }!
        let silu = g.node("\(dense.name)_silu")
        XCTAssertEqual(silu?.type, "expression")
        XCTAssertEqual(silu?.inputs, [dense.name])
        XCTAssertEqual(g.nodes.last?.inputs, ["\(dense.name)_silu"], "the next layer reads the activation")
    }

    func testJobSpecTakesKerasModelLossAndMetricNames() throws {
        let spec: JSON = [
            "name": "keras-mlp",
            "model": ["keras": try fixture("mlp")["keras"]!],
            "data": ["source": "mnist"],
            "train": [
                "losses": [["node": "probs", "type": "SparseCategoricalCrossentropy", "target": "label"]],
                "metrics": ["sparse_categorical_accuracy", "SparseTopKCategoricalAccuracy", "AUC", "precision", "Recall", "acc"],
                "validation": ["split": "test"], "early_stopping": ["monitor": "val_auc"],
            ],
        ]
        let job = try JobSpec(json: spec)
        XCTAssertEqual(job.train.earlyStopping?.maximize, true, "AUC, like accuracy, is better higher (Keras's auto mode)")
        XCTAssertEqual(job.train.losses[0].kind, .sparseCategoricalCrossentropy)
        XCTAssertEqual(job.train.metrics.map(\.rawValue), ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy", "auc", "precision", "recall", "accuracy"])
        XCTAssertEqual(job.model.inputNames, ["image"])
    }

    /// Every loss and metric the fixtures' compile() calls used, as Keras wrote them
    /// (names, or objects with a class_name), has a Kiln name.
    func testCompiledLossesAndMetricsOfTheFixturesAreKnown() throws {
        var losses: [String] = [], metrics: [String] = []
        func names(_ j: JSON, into out: inout [String]) {
            if let s = j.stringValue { out.append(s) } else if let c = j["class_name"]?.stringValue { out.append(c) } else {
                for item in j.arrayValue ?? [] { names(item, into: &out) }
            }
        }
        for name in ["mlp", "mnist_convnet", "lstm", "text_gru", "two_inputs", "w1_trunk", "w8_mlp", "conv_catalog"] {
            let compiled = try XCTUnwrap(try fixture(name)["keras"]?["compile_config"], name)
            names(compiled["loss"]!, into: &losses)
            names(compiled["metrics"]!, into: &metrics)
        }
        XCTAssertEqual(losses.count, 9)
        XCTAssertEqual(metrics.count, 14)
        for l in losses { XCTAssertNotNil(KerasNames.loss(l).flatMap(LossSpec.Kind.init(rawValue:)), l) }
        for m in metrics { XCTAssertTrue(KerasNames.metric(m).map(TrainSpec.metricNames.contains) == true, m) }
    }

    func testKerasLossAndMetricAliases() {
        for (keras, kiln) in [("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"), ("kl_divergence", "kl_divergence"),
                              ("KLDivergence", "kl_divergence"), ("kld", "kl_divergence"), ("MeanSquaredError", "mse"), ("mse", "mse"),
                              ("mean_absolute_error", "mae"), ("Huber", "huber"), ("CosineSimilarity", "cosine"), ("LogCosh", "log_cosh"),
                              ("categorical_hinge", "categorical_hinge"), ("MeanSquaredLogarithmicError", "msle")] {
            XCTAssertEqual(KerasNames.loss(keras), kiln, keras)
        }
        for (keras, kiln) in [("categorical_accuracy", "categorical_accuracy"), ("SparseCategoricalAccuracy", "sparse_categorical_accuracy"),
                              ("top_k_categorical_accuracy", "top_k_categorical_accuracy"), ("auc", "auc"), ("AUC", "auc"),
                              ("Precision", "precision"), ("recall", "recall"), ("RootMeanSquaredError", "root_mean_squared_error")] {
            XCTAssertEqual(KerasNames.metric(keras), kiln, keras)
        }
        XCTAssertNil(KerasNames.loss("focal_wobble"))
        XCTAssertNil(KerasNames.metric("f1_wobble"))
    }

    func testUnknownLossStillSuggests() {
        var spec: JSON = [
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 1]]],
            "data": ["fields": ["x": [[1, 2]], "y": [[1]]]],
            "train": ["losses": [["node": "dense_1", "type": "mean_squared_eror", "target": "y"]]],
        ]
        XCTAssertThrowsError(try JobSpec(json: spec)) { e in
            let error = e as! SpecError
            XCTAssertEqual(error.path, "train.losses[0].type")
            XCTAssertTrue(error.message.contains("mean_squared_eror"), error.message)
        }
        spec = spec.setting("train", to: ["losses": [["node": "dense_1", "type": "MeanSquaredError", "target": "y"]], "metrics": ["nonsense"]])
        XCTAssertThrowsError(try JobSpec(json: spec)) { e in XCTAssertEqual((e as! SpecError).path, "train.metrics[0]") }
    }

    // MARK: What Kiln refuses, with 422 and what to write instead

    func testLambdaIs422NamingTheLayerAndTheKilnAlternative() throws {
        let e = error(try fixture("lambda_model")["keras"]!)
        XCTAssertEqual(e?.code, .unsupportedLayer)
        XCTAssertEqual(e?.status, 422)
        XCTAssertEqual(e?.node, "double_it")
        XCTAssertEqual(e?.path, "model.keras.config.layers[2]")
        XCTAssertTrue(e?.message.contains("Lambda") == true && e?.message.contains("expression") == true, e?.message ?? "")
    }

    func testCustomLayerClassIs422() throws {
        let e = error(try fixture("custom_model")["keras"]!)
        XCTAssertEqual(e?.status, 422)
        XCTAssertEqual(e?.node, "scale")
        XCTAssertEqual(e?.path, "model.keras.config.layers[1]")
        XCTAssertTrue(e?.message.contains("MyPackage>Scale") == true, e?.message ?? "")
    }

    func testKerasSemanticsKilnLacksAreRefusedWithTheOption() throws {
        let cases: [(String, (String, String), String)] = [
            ("text_gru", ("\"reset_after\": true", "\"reset_after\": false"), "reset_after"),
            ("lstm", ("\"recurrent_activation\": \"sigmoid\"", "\"recurrent_activation\": \"hard_sigmoid\""), "recurrent_activation"),
            ("lstm", ("\"go_backwards\": false", "\"go_backwards\": true"), "go_backwards"),
            ("lstm", ("\"return_state\": false", "\"return_state\": true"), "return_state"),
            ("conv_catalog", ("\"axis\": -1", "\"axis\": 1"), "axis"),
            ("conv_catalog", ("\"interpolation\": \"nearest\"", "\"interpolation\": \"bilinear\""), "interpolation"),
            ("mnist_convnet", ("\"data_format\": \"channels_last\"", "\"data_format\": \"channels_first\""), "data_format"),
            ("mlp", ("\"bias_regularizer\": null", "\"bias_regularizer\": {\"class_name\": \"L2\", \"config\": {\"l2\": 0.1}}"), "bias_regularizer"),
            ("text_gru", ("\"mask_zero\": false", "\"mask_zero\": true"), "mask_zero"),
        ]
        for (name, edit, field) in cases {
            guard let e = error(try fixture(name, replacing: [edit])["keras"]!) else { continue }
            XCTAssertEqual(e.status, 422, "\(name) \(field): \(e)")
            XCTAssertTrue(e.path.hasPrefix("model.keras.config.layers["), e.path)
            XCTAssertTrue(e.path.hasSuffix(".config.\(field)"), "\(name): \(e.path)")
            XCTAssertNotNil(e.node)
        }
    }

    func testSharedLayerAndVariableLengthInputAreRefused() throws {
        var keras = try fixture("two_inputs")["keras"]!
        // dense_a called a second time, on b.
        var layers = keras["config"]!["layers"]!.arrayValue!
        let i = layers.firstIndex { $0["name"] == "dense_a" }!
        let calls = layers[i]["inbound_nodes"]!.arrayValue!
        layers[i] = layers[i].setting("inbound_nodes", to: .array(calls + calls))
        keras = keras.setting("config", to: keras["config"]!.setting("layers", to: .array(layers)))
        let shared = error(keras)
        XCTAssertEqual(shared?.status, 422)
        XCTAssertEqual(shared?.node, "dense_a")
        XCTAssertTrue(shared?.message.contains("called 2 times") == true, shared?.message ?? "")

        let ragged = error(try fixture("lstm", replacing: [("\"batch_shape\": [\n       null,\n       900,", "\"batch_shape\": [\n       null,\n       null,")])["keras"]!)
        XCTAssertEqual(ragged?.status, 422)
        XCTAssertEqual(ragged?.path, "model.keras.config.layers[0].config.batch_shape[1]")
    }

    func testNestedModelAndUnknownLayerAreRefused() throws {
        // The MLP as a layer of another Sequential model.
        let inner = try fixture("mlp")["keras"]!
        let outer: JSON = ["module": "keras", "class_name": "Sequential", "config": ["name": "outer", "layers": [
            ["module": "keras.layers", "class_name": "InputLayer", "config": ["batch_shape": [nil, 28, 28, 1], "name": "image"]],
            inner.setting("module", to: "keras.src.models.sequential"),
        ]]]
        let nested = error(outer)
        XCTAssertEqual(nested?.status, 422)
        XCTAssertTrue(nested?.message.contains("nested") == true, nested?.message ?? "")
        let conv1d = error(try fixture("mlp", replacing: [("\"class_name\": \"Flatten\"", "\"class_name\": \"Conv1D\"")])["keras"]!)
        XCTAssertEqual(conv1d?.path, "model.keras.config.layers[1].class_name")
        XCTAssertTrue(conv1d?.message.contains("Conv1D") == true, conv1d?.message ?? "")
    }

    /// Seeded mutations of Keras's JSON (a value replaced by another kind, a key
    /// dropped) end in a SpecError or a graph, never a crash.
    func testMutatedKerasJSONNeverCrashes() throws {
        var g = SeededGenerator(seed: 17)
        let replacements: [JSON] = [.null, 0, -1, 3.5, "x", "", true, [], [nil], ["class_name": "Zeros"], [[1, 2]], 1e9]
        func mutate(_ j: JSON, _ chance: UInt64) -> JSON {
            if g.next() % chance == 0 { return replacements[Int(g.next() % UInt64(replacements.count))] }
            if let members = j.objectMembers {
                return .object(members.compactMap { k, v in g.next() % (chance * 4) == 0 ? nil : (k, mutate(v, chance)) })
            }
            if let items = j.arrayValue { return .array(items.map { mutate($0, chance) }) }
            return j
        }
        var outcomes = (graphs: 0, errors: 0)
        for name in ["mlp", "two_inputs", "text_gru", "conv_catalog"] {
            let keras = try fixture(name)["keras"]!
            for _ in 0..<150 {
                do {
                    _ = try graph(mutate(keras, 60))
                    outcomes.graphs += 1
                } catch {
                    outcomes.errors += 1
                }
            }
        }
        XCTAssertGreaterThan(outcomes.errors, 100)
        XCTAssertGreaterThan(outcomes.graphs, 10)
    }

    func testMalformedKerasJSONIs400WithPath() {
        XCTAssertEqual(error(["class_name": "Sequential"])?.path, "model.keras.config")
        XCTAssertEqual(error(["class_name": "Sequential", "config": ["layers": 3]])?.path, "model.keras.config.layers")
        XCTAssertEqual(error("{not json")?.status, 400)
        XCTAssertEqual(error(["class_name": "MyModel", "config": [:]])?.status, 422)
    }
}

private extension SpecError {
    /// The status the service answers with (`KilnService/Errors.swift`).
    var status: Int { code == .tooLarge || code == .unsupportedLayer ? 422 : 400 }
}
