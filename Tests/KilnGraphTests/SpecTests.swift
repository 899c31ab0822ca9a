import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
import XCTest

final class SpecTests: XCTestCase {
    let mlp: JSON = [
        "name": "mnist-mlp",
        "model": [
            "inputs": ["image": [28, 28, 1]],
            "layers": [
                ["type": "flatten"],
                ["type": "dense", "units": 128, "activation": "relu"],
                ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"],
            ],
            "outputs": ["probs"],
        ],
        "data": ["source": "mnist"],
        "train": [
            "epochs": 1, "batch_size": 128,
            "optimizer": ["type": "adam", "learning_rate": 0.001],
            "losses": [["node": "probs", "type": "categorical_crossentropy", "target": "label"]],
            "metrics": ["accuracy"],
            "validation": ["split": "test"],
        ],
    ]

    func decodeError(_ json: JSON, file: StaticString = #filePath, line: UInt = #line) -> SpecError? {
        do {
            _ = try JobSpec(json: json)
            XCTFail("expected a spec error", file: file, line: line)
            return nil
        } catch { return error }
    }

    func testDecodesMLPWithShapesAndKerasParameterCounts() throws {
        let spec = try JobSpec(json: mlp)
        let graph = spec.model
        XCTAssertEqual(graph.nodes.map(\.name), ["image", "flatten_1", "dense_1", "probs"])
        XCTAssertEqual(graph.node("flatten_1")?.shape, NodeShape([784]))
        XCTAssertEqual(graph.node("probs")?.shape, NodeShape([10]))
        // Keras: 784·128 + 128 = 100,480 and 128·10 + 10 = 1,290.
        XCTAssertEqual(graph.parameterCount.trainable, 101_770)
        let summary = spec.summary
        XCTAssertEqual(summary["total_params"]?.intValue, 101_770)
        XCTAssertEqual(summary["nodes"]?[2]?["output_shape"], [nil, 128])
        XCTAssertEqual(summary["dependencies"]?["probs"], ["image", "flatten_1", "dense_1", "probs"])
    }

    func testSpecErrorsCarryPathNodeAndSuggestion() {
        var bad = mlp
        // Unknown layer type with a suggestion.
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "flaten"]]))
        var e = decodeError(bad)
        XCTAssertEqual(e?.path, "model.layers[0].type")
        XCTAssertTrue(e?.message.contains("did you mean 'flatten'") ?? false, e?.message ?? "")

        // Unknown field with a suggestion, naming the node.
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "flatten"], ["type": "dense", "unit": 3, "name": "d"]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.code, .missingField)
        XCTAssertEqual(e?.path, "model.layers[1].units")
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "flatten"], ["type": "dense", "units": 3, "activaton": "relu", "name": "d"]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.code, .unknownField)
        XCTAssertEqual(e?.node, "d")
        XCTAssertEqual(e?.path, "model.layers[1].activaton")
        XCTAssertTrue(e?.message.contains("did you mean 'activation'") ?? false, e?.message ?? "")

        // Keras-style repetition of the bad value.
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "dense", "units": -3]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.path, "model.layers[0].units")
        XCTAssertTrue(e?.message.contains("units=-3") ?? false, e?.message ?? "")

        // Unknown node reference and duplicate names.
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "flatten", "input": "imag"]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.code, .unknownNode)
        XCTAssertTrue(e?.message.contains("did you mean 'image'") ?? false, e?.message ?? "")
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "flatten", "name": "a"], ["type": "flatten", "name": "a"]]))
        XCTAssertEqual(decodeError(bad)?.code, .duplicateName)

        // A reshape that cannot work names both sizes.
        bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [["type": "reshape", "shape": [5, 5]]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.code, .shapeMismatch)
        XCTAssertTrue(e?.message.contains("784") ?? false, e?.message ?? "")

        // A loss on a node that does not exist.
        bad = mlp.setting("train", to: mlp["train"]!.setting("losses", to: [["node": "prob", "type": "mse", "target": "label"]]))
        e = decodeError(bad)
        XCTAssertEqual(e?.path, "train.losses[0].node")
        XCTAssertTrue(e?.message.contains("did you mean 'probs'") ?? false, e?.message ?? "")
    }

    func testTooFewClassesForABuiltInDatasetsLabelsIsAnError() {
        // MNIST labels run over 10 classes; a 5-unit softmax cannot take them.
        let layers: JSON = [["type": "flatten"], ["type": "dense", "units": 5, "activation": "softmax", "name": "probs"]]
        for kind in ["sparse_categorical_crossentropy", "categorical_crossentropy"] {
            let losses: JSON = [["node": "probs", "type": .string(kind), "target": "label"]]
            let bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: layers))
                .setting("train", to: mlp["train"]!.setting("losses", to: losses))
            let e = decodeError(bad)
            XCTAssertEqual(e?.path, "train.losses[0]", kind)
            XCTAssertEqual(e?.node, "probs")
            XCTAssertTrue(e?.message.contains("predicts 5 classes") ?? false, e?.message ?? "")
        }
        XCTAssertNoThrow(try JobSpec(json: mlp.setting("train", to: mlp["train"]!.setting("losses", to: [["node": "probs", "type": "sparse_categorical_crossentropy", "target": "label"]]))))
    }

    func testHugeModelIsRefusedBeforeAllocation() {
        let bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [
            ["type": "flatten"], ["type": "dense", "units": 1_000_000], ["type": "dense", "units": 1_000_000],
        ]))
        let e = decodeError(bad)
        XCTAssertEqual(e?.code, .tooLarge)
        let overflow = mlp.setting("model", to: mlp["model"]!.setting("inputs", to: ["image": [4_000_000_000, 4_000_000_000, 4_000_000_000]]))
        XCTAssertEqual(decodeError(overflow)?.code, .tooLarge)
    }

    func testCompiledModelRunsOnlyWhatTargetsNeed() throws {
        let spec = try JobSpec(json: mlp)
        let model = CompiledModel(graph: spec.model, seed: 1)
        var g = SeededGenerator(seed: 3)
        let x = Tensor.uniform([4, 28, 28, 1], low: 0, high: 1, generator: &g)
        let out = try model.run(["image": x], targets: ["dense_1"], training: false)
        XCTAssertEqual(out["dense_1"]?.shape, [4, 128])
        XCTAssertNil(out["probs"])
        let probs = try model.run(["image": x], targets: ["probs"], training: false)["probs"]!.value
        for r in 0..<4 {
            XCTAssertEqual((0..<10).map { probs[flat: r * 10 + $0] }.reduce(0, +), 1, accuracy: 1e-5)
        }
        // Same seed, same weights.
        let again = CompiledModel(graph: spec.model, seed: 1)
        XCTAssertEqual(model.weights["probs.kernel"]?.value.scalars, again.weights["probs.kernel"]?.value.scalars)
        // The wrong input shape is an error that names the input.
        XCTAssertThrowsError(try model.run(["image": Tensor.zeros([2, 28, 28])], targets: ["probs"], training: false)) { error in
            XCTAssertTrue("\(error)".contains("image"))
        }
    }

    func testExactInitialValuesMustFillTheWeight() {
        let bad = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [
            ["type": "flatten"], ["type": "dense", "units": 2, "kernel_initializer": ["value": [1, 2, 3]]],
        ]))
        let e = decodeError(bad)
        XCTAssertEqual(e?.code, .shapeMismatch)
        XCTAssertTrue(e?.message.contains("[784, 2]") ?? false, e?.message ?? "")
    }

    func testSpecRoundTripsThroughJSONText() throws {
        let text = mlp.serialized(pretty: true)
        let reparsed = try JSON.parse(text)
        XCTAssertEqual(reparsed, mlp)
        XCTAssertEqual(try JobSpec(json: reparsed).model.parameterCount.trainable, 101_770)
    }

    func testUnusedInputAndCycleAreErrors() {
        let unused = mlp.setting("model", to: mlp["model"]!.setting("inputs", to: ["image": [28, 28, 1], "extra": [3]])
            .setting("layers", to: [["type": "flatten", "input": "image"], ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"]]))
        let e = decodeError(unused)
        XCTAssertEqual(e?.code, .unusedInput)
        XCTAssertEqual(e?.path, "model.inputs.extra")
        let cycle = mlp.setting("model", to: mlp["model"]!.setting("layers", to: [
            ["type": "add", "inputs": ["image", "b"], "name": "a"], ["type": "add", "inputs": ["a", "image"], "name": "b"],
        ]))
        let c = decodeError(cycle)
        XCTAssertEqual(c?.code, .cycle)
        XCTAssertEqual(c?.path, "model.layers[0].inputs[1]")
    }
}
