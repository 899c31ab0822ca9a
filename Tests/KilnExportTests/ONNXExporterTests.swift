import XCTest
import KilnGraph
import KilnJSON
import KilnTensor
@testable import KilnExport

/// The structure of exported models, read back with `ProtobufReader`. Whether ONNX
/// Runtime computes what `/predict` computes is checked by `scripts/onnx-tests.sh`.
final class ONNXExporterTests: XCTestCase {
    func graph(_ text: String) throws -> ModelGraph {
        try ModelGraph(json: try JSON.parse(Array(text.utf8)))
    }

    func weights(_ g: ModelGraph) -> [String: Tensor] {
        CompiledModel(graph: g, seed: 7, inference: true).weights.mapValues(\.value)
    }

    /// The ops of an exported model's graph, with the model's top-level fields.
    func decode(_ model: ONNXModel) throws -> (top: [ProtobufReader.Field], graph: [ProtobufReader.Field], ops: [String]) {
        let top = try ProtobufReader.fields(model.serialized())
        let graph = try ProtobufReader.fields(top.first { $0.number == 7 }!.payload)
        let ops = try graph.filter { $0.number == 1 }.map { try ProtobufReader.strings(ProtobufReader.fields($0.payload), 4)[0] }
        return (top, graph, ops)
    }

    func testDenseModelHasOpsetWeightsAndASymbolicBatch() throws {
        let g = try graph(#"{"inputs": {"x": [3]}, "layers": [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 2, "activation": "softmax"}]}"#)
        let (top, graph, ops) = try decode(try ONNXExporter.export(g, weights: weights(g)))
        XCTAssertEqual(top.first { $0.number == 1 }?.varint, 8, "ir_version")
        let opset = try ProtobufReader.fields(top.first { $0.number == 8 }!.payload)
        XCTAssertEqual(opset.first { $0.number == 2 }?.varint, 18)
        XCTAssertEqual(ops, ["MatMul", "Add", "Relu", "MatMul", "Add", "Softmax", "Identity"], "dropout leaves no op")
        let initializers = try graph.filter { $0.number == 5 }.map { try ProtobufReader.fields($0.payload) }
        XCTAssertEqual(initializers.map { ProtobufReader.strings($0, 8)[0] }, ["dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"])
        // dense_1.kernel: dims [3, 4], float, 48 raw bytes.
        let kernel = initializers[0]
        XCTAssertEqual(kernel.first { $0.number == 1 }?.payload, [3, 4])
        XCTAssertEqual(kernel.first { $0.number == 2 }?.varint, 1)
        XCTAssertEqual(kernel.first { $0.number == 9 }?.payload.count, 48)
        // Input x: the first dimension is the symbol `batch`, the second 3.
        let input = try ProtobufReader.fields(graph.first { $0.number == 11 }!.payload)
        XCTAssertEqual(ProtobufReader.strings(input, 1), ["x"])
        let tensorType = try ProtobufReader.fields(try ProtobufReader.fields(input.first { $0.number == 2 }!.payload)[0].payload)
        let dims = try ProtobufReader.fields(tensorType.first { $0.number == 2 }!.payload).map { try ProtobufReader.fields($0.payload)[0] }
        XCTAssertEqual(dims.count, 2)
        XCTAssertEqual(dims[0].number, 2)
        XCTAssertEqual(String(decoding: dims[0].payload, as: UTF8.self), "batch")
        XCTAssertEqual(dims[1].number, 1)
        XCTAssertEqual(dims[1].varint, 3)
    }

    func testOnlyWhatTheOutputsNeedIsExported() throws {
        let g = try graph(#"{"inputs": {"x": [2], "y": [2]}, "layers": [{"type": "dense", "name": "a", "input": "x", "units": 2}, {"type": "dense", "name": "b", "input": "y", "units": 2}], "outputs": ["a", "b"]}"#)
        let (_, graph, ops) = try decode(try ONNXExporter.export(g, weights: weights(g), outputs: ["a"]))
        XCTAssertEqual(ops, ["MatMul", "Add", "Identity"])
        XCTAssertEqual(graph.filter { $0.number == 11 }.count, 1, "only input x")
    }

    func testConvolutionsAreWrappedInTransposesWithPermutedKernels() throws {
        let g = try graph(#"{"inputs": {"image": [5, 5, 2]}, "layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same"}, {"type": "max_pool2d"}]}"#)
        let w = weights(g)
        let model = try ONNXExporter.export(g, weights: w)
        let (_, graph, ops) = try decode(model)
        XCTAssertEqual(ops, ["Transpose", "Conv", "Transpose", "Transpose", "MaxPool", "Transpose", "Identity"])
        let kernel = try ProtobufReader.fields(graph.first { $0.number == 5 }!.payload)
        XCTAssertEqual(kernel.first { $0.number == 1 }?.payload, [3, 2, 3, 3], "OIHW")
        // Element [o=1, i=0, h=2, w=1] is HWIO [2, 1, 0, 1].
        let raw = kernel.first { $0.number == 9 }!.payload
        // OIHW dims [3, 2, 3, 3]: [1, 0, 2, 1] is at 1·18 + 0·9 + 2·3 + 1 = 25.
        let index = 25
        var bits: UInt32 = 0
        for b in 0..<4 { bits |= UInt32(raw[4 * index + b]) << UInt32(8 * b) }
        // HWIO dims [3, 3, 2, 3]: [2, 1, 0, 1] is at 2·18 + 1·6 + 0·3 + 1 = 43.
        let hwio: Float = w["conv2d_1.kernel"]!.scalars[43]
        XCTAssertEqual(Float(bitPattern: bits), hwio)
    }

    func testFlooredModIsSpelledOutAndFunctionsMapToOperators() throws {
        let g = try graph(#"{"inputs": {"x": [4]}, "layers": [{"type": "expression", "expr": "mod(x, p) + gelu(x) - sin(x)^2", "params": {"p": {"shape": [4], "init": 1.5}}}]}"#)
        let (_, _, ops) = try decode(try ONNXExporter.export(g, weights: weights(g)))
        XCTAssertFalse(ops.contains("Mod"), "ONNX Mod needs fmod=1 for floats, which is truncated, not floored")
        XCTAssertTrue(ops.contains("Floor"))
        XCTAssertTrue(ops.contains("Erf"))
        XCTAssertTrue(ops.contains("Sin"))
        XCTAssertTrue(ops.contains("Pow"))
    }

    func testAMissingWeightNamesTheNode() throws {
        let g = try graph(#"{"inputs": {"x": [3]}, "layers": [{"type": "dense", "name": "head", "units": 2}]}"#)
        var w = weights(g)
        w["head.kernel"] = nil
        XCTAssertThrowsError(try ONNXExporter.export(g, weights: w)) { error in
            let e = error as? ONNXExportError
            XCTAssertEqual(e?.node, "head")
            XCTAssertTrue(e?.message.contains("head.kernel") ?? false)
        }
    }

    func testPermutedMatchesNumpyTranspose() {
        // np.arange(6).reshape(2, 3).T
        let (dims, values) = ONNXExporter.permuted([0, 1, 2, 3, 4, 5], [2, 3], [1, 0])
        XCTAssertEqual(dims, [3, 2])
        XCTAssertEqual(values, [0, 3, 1, 4, 2, 5])
        // np.arange(24).reshape(2, 3, 4).transpose(2, 0, 1)[3, 1, 2] == 23
        let (d3, v3) = ONNXExporter.permuted((0..<24).map(Float.init), [2, 3, 4], [2, 0, 1])
        XCTAssertEqual(d3, [4, 2, 3])
        XCTAssertEqual(v3[(3 * 2 + 1) * 3 + 2], 23)
    }

    func testEveryCatalogTypeHasATranslation() throws {
        // A layer type added to the catalog without an ONNX translation fails here.
        let translated: Set<String> = ["dense", "activation", "softmax", "flatten", "reshape", "permute", "transpose", "concatenate", "slice",
            "embedding", "one_hot", "add", "subtract", "multiply", "average", "matmul", "sum", "mean", "max", "weight", "constant",
            "elementwise_weights", "bias", "taylor", "expression", "conv2d", "conv2d_transpose", "conditional_conv2d", "max_pool2d",
            "avg_pool2d", "global_avg_pool2d", "upsampling2d", "batch_norm", "layer_norm", "dropout", "gaussian_noise", "sample_normal",
            "lstm", "gru"]
        let catalog = Set(LayerRegistry.names)
        XCTAssertEqual(catalog.subtracting(translated).subtracting(ONNXExporter.unsupported.keys), [])
    }
}
