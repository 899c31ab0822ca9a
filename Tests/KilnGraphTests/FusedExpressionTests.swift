@testable import KilnGraph
import KilnJSON
import KilnTensor
import XCTest

/// The fused expression pass against the same formula built from engine ops (each with
/// its own checked gradient): values and gradients agree, with broadcasting.
final class FusedExpressionTests: XCTestCase {
    func testFusedMatchesComposedOps() throws {
        let formulas = [
            "exp(-(x - p)^2 / c)", "sigmoid(x) * tanh(p) + relu(x - 0.5)", "mod(x, 2) * p - floor(x) / c",
            "pow(abs(x) + 1, p) + sqrt(square(p) + 1)", "min(x, p) - max(x, 0.1) + elu(x) * softplus(p)",
            "log(abs(x) + 1) + sin(x) * cos(p) - -x",
        ]
        var g = SeededGenerator(seed: 5)
        let x = Tensor.uniform([4, 3, 2], low: -2, high: 2, generator: &g)
        let p = Tensor.uniform([3, 2], low: -1, high: 1, generator: &g)
        let c = Tensor(shape: [], values: [1.7])
        for formula in formulas {
            var parser = ExpressionParser(formula)
            let tree = try parser.parse()
            let program = FusedProgram(tree, leaves: ["x", "p", "c"])
            let fusedInputs = [x, p, c].map { Variable($0, requiresGrad: true) }
            let fused = try program.run(fusedInputs)
            let composedInputs = [x, p, c].map { Variable($0, requiresGrad: true) }
            let composed = try tree.evaluate(["x": composedInputs[0], "p": composedInputs[1], "c": composedInputs[2]])
            XCTAssertEqual(fused.shape, composed.shape, formula)
            for i in 0..<fused.value.count {
                XCTAssertEqual(fused.value[flat: i], composed.value[flat: i], accuracy: 1e-5 * max(1, abs(composed.value[flat: i])), formula)
            }
            let seed = Tensor.uniform(fused.shape, low: -1, high: 1, generator: &g)
            fused.backward(seed: seed)
            composed.backward(seed: seed)
            for k in 0..<3 {
                let zeros = Tensor.zeros(fusedInputs[k].shape)
                let a = fusedInputs[k].grad ?? zeros, b = composedInputs[k].grad ?? zeros
                XCTAssertEqual(a.shape, b.shape)
                for i in 0..<a.count {
                    XCTAssertEqual(a[flat: i], b[flat: i], accuracy: 1e-4 * max(1, abs(b[flat: i])), "\(formula) d/d\(["x", "p", "c"][k])[\(i)]")
                }
            }
        }
    }

    /// Every function a formula can call, fused and composed from the engine ops: one
    /// table defines both, so they agree on values and gradients.
    func testEveryCallableFunctionFusedMatchesComposed() throws {
        var g = SeededGenerator(seed: 9)
        // Positive, away from integers and from mod's wrap points, so every function is smooth here.
        let x = Tensor.uniform([2, 3], low: 0.2, high: 0.8, generator: &g)
        let p = Tensor.uniform([3], low: 1.2, high: 1.8, generator: &g)
        for name in ExpressionFunction.names {
            let formula: String
            switch ExpressionFunction.byName[name]! {
            case .unary: formula = "\(name)(x) * p"
            case .binary: formula = "\(name)(x, p) + x"
            }
            var parser = ExpressionParser(formula)
            let tree = try parser.parse()
            let fusedInputs = [x, p].map { Variable($0, requiresGrad: true) }
            let fused = try FusedProgram(tree, leaves: ["x", "p"]).run(fusedInputs)
            let composedInputs = [x, p].map { Variable($0, requiresGrad: true) }
            let composed = try tree.evaluate(["x": composedInputs[0], "p": composedInputs[1]])
            XCTAssertEqual(fused.value.scalars, composed.value.scalars, formula)
            let seed = Tensor.uniform(fused.shape, low: -1, high: 1, generator: &g)
            fused.backward(seed: seed)
            composed.backward(seed: seed)
            for k in 0..<2 {
                let a = fusedInputs[k].grad!.scalars, b = composedInputs[k].grad!.scalars
                for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-5 * max(1, abs(b[i])), "\(formula) d/d\(["x", "p"][k])[\(i)]") }
            }
        }
        XCTAssertEqual(ExpressionFunction.names.count, UnaryFunction.allCases.count - 1 + 4, "every table function but neg (unary minus), and pow, mod, min, max")
    }

    /// An output large enough to be split over the cores, with broadcast operands whose
    /// gradients are summed from per-chunk buffers.
    func testFusedInChunksMatchesComposedOps() throws {
        var g = SeededGenerator(seed: 8)
        let x = Tensor.uniform([48, 1, 400], low: -1, high: 1, generator: &g)
        let p = Tensor.uniform([10, 400], low: -1, high: 1, generator: &g)
        let c = Tensor(shape: [], values: [0.7])
        XCTAssertGreaterThan(Parallel.chunkCount(48 * 10 * 400, minimumChunk: FusedProgram.chunk), Parallel.cores > 1 ? 1 : 0)
        var parser = ExpressionParser("exp(-square(x - p) / c) * p")
        let tree = try parser.parse()
        let fusedInputs = [x, p, c].map { Variable($0, requiresGrad: true) }
        let fused = try FusedProgram(tree, leaves: ["x", "p", "c"]).run(fusedInputs)
        let composedInputs = [x, p, c].map { Variable($0, requiresGrad: true) }
        let composed = try tree.evaluate(["x": composedInputs[0], "p": composedInputs[1], "c": composedInputs[2]])
        XCTAssertEqual(fused.value.scalars, composed.value.scalars)
        let seed = Tensor.uniform(fused.shape, low: -1, high: 1, generator: &g)
        fused.backward(seed: seed)
        composed.backward(seed: seed)
        for k in 0..<3 {
            let a = fusedInputs[k].grad!, b = composedInputs[k].grad!
            var worst: Float = 0
            for i in 0..<a.count { worst = max(worst, abs(a[flat: i] - b[flat: i]) / max(1, abs(b[flat: i]))) }
            XCTAssertLessThan(worst, 1e-4, "d/d\(["x", "p", "c"][k])")
        }
    }

    func testExpressionLayerUsesTheFusedPass() throws {
        let g = try ModelGraph(json: ["inputs": ["x": [3]], "layers": [["type": "expression", "expr": "x * a + 1", "params": ["a": ["shape": [3], "init": 2.0]], "name": "e"]]])
        let model = CompiledModel(graph: g, seed: 1)
        let y = try model.run(["x": Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])], targets: ["e"], training: true)["e"]!
        XCTAssertEqual(y.value.scalars, [3, 5, 7, 9, 11, 13])
        XCTAssertEqual(y.op, "expression")
        try y.sum().backward()
        XCTAssertEqual(model.weights["e.a"]!.grad!.scalars, [5, 7, 9])
    }
}
