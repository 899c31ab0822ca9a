import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
@testable import KilnTrain
import XCTest

final class OptimizerTests: XCTestCase {
    /// Two steps of an optimizer on w = [1, −2] with constant gradient g = [0.5, −1].
    func steps(_ json: JSON, count: Int = 2) throws -> [Float] {
        let spec = try OptimizerSpec(json: json, path: "optimizer")
        let optimizer = Optimizer(spec)
        let w = Variable(Tensor(shape: [2], values: [1, -2]), requiresGrad: true)
        for _ in 0..<count {
            w.grad = Tensor(shape: [2], values: [0.5, -1])
            optimizer.step([("w", w)])
        }
        return w.value.scalars
    }

    func testSGDAndMomentumAgainstHandComputedUpdates() throws {
        // Plain: w − 2·lr·g
        XCTAssertEqual(try steps(["type": "sgd", "learning_rate": 0.1]), [0.9, -1.8])
        // Momentum 0.9: v1 = −lr·g, v2 = 0.9·v1 − lr·g → w + v1 + v2 = w − 2.9·lr·g
        let m = try steps(["type": "sgd", "learning_rate": 0.1, "momentum": 0.9])
        XCTAssertEqual(m[0], 1 - 2.9 * 0.05, accuracy: 1e-6)
        XCTAssertEqual(m[1], -2 + 2.9 * 0.1, accuracy: 1e-6)
        // Nesterov (Keras): w += m·v − lr·g each step: v1 = −lr·g → Δ1 = −1.9·lr·g; v2 = −1.9·lr·g → Δ2 = −2.71·lr·g
        let n = try steps(["type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": true])
        XCTAssertEqual(n[0], 1 - (1.9 + 2.71) * 0.05, accuracy: 1e-6)
    }

    func testAdamFirstStepsAgainstHandComputedUpdates() throws {
        // With a constant gradient, Adam's bias-corrected step is lr·g/(|g| + ε·…) ≈ lr·sign(g) per step.
        let w = try steps(["type": "adam", "learning_rate": 0.01])
        XCTAssertEqual(w[0], 1 - 0.02, accuracy: 1e-5)
        XCTAssertEqual(w[1], -2 + 0.02, accuracy: 1e-5)
        // AdamW also decays the weight by lr·wd each step first.
        let d = try steps(["type": "adamw", "learning_rate": 0.01, "weight_decay": 0.1], count: 1)
        XCTAssertEqual(d[0], 1 * (1 - 0.001) - 0.01, accuracy: 1e-5)
    }

    func testRMSpropFirstStep() throws {
        // v = 0.1·g² → step = lr·g/(sqrt(0.1)·|g| + ε)
        let w = try steps(["type": "rmsprop", "learning_rate": 0.01], count: 1)
        XCTAssertEqual(w[0], 1 - 0.01 / Float(0.1).squareRoot(), accuracy: 1e-5)
    }

    func testClipnormScalesLongGradients() throws {
        // |g| = √1.25 ≈ 1.118 → clipped to 0.5: step = lr·g·0.5/1.118
        let w = try steps(["type": "sgd", "learning_rate": 1, "clipnorm": 0.5], count: 1)
        XCTAssertEqual(w[0], 1 - 0.5 * 0.5 / Float(1.25).squareRoot(), accuracy: 1e-6)
    }

    func testSafetensorsRoundTripAndRejectsBadFiles() throws {
        let a = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6]), b = Tensor(shape: [4], values: [-1, 0, 1, 2])
        let bytes = Safetensors.encode([("dense_1.kernel", a), ("dense_1.bias", b)], metadata: ["epoch": "3"])
        // Header length is a little-endian u64 and the header is 8-byte aligned.
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
        XCTAssertEqual(bytes.count, 8 + headerLength + 40)
        let (tensors, metadata) = try Safetensors.decode(bytes)
        XCTAssertEqual(tensors.map(\.0), ["dense_1.kernel", "dense_1.bias"])
        XCTAssertEqual(tensors[0].1.shape, [2, 3])
        XCTAssertEqual(tensors[1].1.scalars, [-1, 0, 1, 2])
        XCTAssertEqual(metadata["epoch"], "3")
        XCTAssertThrowsError(try Safetensors.decode(Array(bytes.dropLast(4))))
        XCTAssertThrowsError(try Safetensors.decode([1, 2, 3]))
    }

    func testAtomicWriteReplacesAndLeavesNoTempFiles() throws {
        let dir = NSTemporaryDirectory() + "kiln-atomic-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write("one", to: "\(dir)/f.json")
        try AtomicFile.write("two", to: "\(dir)/f.json")
        XCTAssertEqual(String(decoding: AtomicFile.read("\(dir)/f.json")!, as: UTF8.self), "two")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["f.json"])
        XCTAssertThrowsError(try AtomicFile.write("x", to: "\(dir)/missing/f.json"))
    }

    /// Saving and restoring the optimizer mid-run gives the same weights as not stopping.
    func testOptimizerStateRoundTripContinuesTheSameRun() throws {
        let spec = try OptimizerSpec(json: ["type": "adam", "learning_rate": 0.1], path: "optimizer")
        func run(_ steps: Int, _ optimizer: Optimizer, _ w: Variable) {
            for i in 0..<steps {
                w.grad = Tensor(shape: [3], values: [Float(i) - 1, 0.5, -2])
                optimizer.step([("w", w)])
            }
        }
        let straight = Variable(Tensor(shape: [3], values: [1, 2, 3]), requiresGrad: true)
        run(6, Optimizer(spec), straight)

        let resumed = Variable(Tensor(shape: [3], values: [1, 2, 3]), requiresGrad: true)
        let first = Optimizer(spec)
        run(3, first, resumed)
        let saved = Safetensors.encode(first.state.tensors, metadata: ["iterations": String(first.state.iterations)])
        let (tensors, metadata) = try Safetensors.decode(saved)
        let second = Optimizer(spec)
        second.restore(tensors, iterations: Int(metadata["iterations"]!)!, weights: ["w": [3]])
        XCTAssertEqual(second.iterations, 3)
        // The continuation replays steps 3…5 with the same gradients.
        for i in 3..<6 {
            resumed.grad = Tensor(shape: [3], values: [Float(i) - 1, 0.5, -2])
            second.step([("w", resumed)])
        }
        XCTAssertEqual(resumed.value.scalars, straight.value.scalars)
        // Without the state, the moments restart and the weights differ.
        let fresh = Variable(Tensor(shape: [3], values: [1, 2, 3]), requiresGrad: true)
        let a = Optimizer(spec)
        run(3, a, fresh)
        let b = Optimizer(spec)
        for i in 3..<6 {
            fresh.grad = Tensor(shape: [3], values: [Float(i) - 1, 0.5, -2])
            b.step([("w", fresh)])
        }
        XCTAssertNotEqual(fresh.value.scalars, straight.value.scalars)
    }

    /// The vectorised, core-split update against a plain scalar loop in Double, on a
    /// weight long enough to be cut into chunks and to end in a partial group of eight.
    func testLargeWeightsMatchAScalarReferenceAndReportTheGradientNorm() throws {
        let count = 70_003
        var generator = SeededGenerator(seed: 5)
        let start = (0..<count).map { _ in generator.nextNormal() }
        let gradients = (0..<3).map { _ in (0..<count).map { _ in generator.nextNormal() * 0.1 } }
        for json: JSON in [
            ["type": "adam", "learning_rate": 0.01],
            ["type": "adamw", "learning_rate": 0.01, "weight_decay": 0.1],
            ["type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": true],
            ["type": "rmsprop", "learning_rate": 0.01],
            ["type": "adam", "learning_rate": 0.01, "clipnorm": 1.0],  // the gradients' norms are ≈ 26
        ] {
            let spec = try OptimizerSpec(json: json, path: "optimizer")
            let optimizer = Optimizer(spec)
            let w = Variable(Tensor(shape: [count], values: start), requiresGrad: true)
            var ref = start.map(Double.init), m = [Double](repeating: 0, count: count), v = m
            for (t, g) in gradients.enumerated() {
                w.grad = Tensor(shape: [count], values: g)
                let norms = optimizer.step([("w", w)])
                let expectedNorm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                XCTAssertEqual(norms[0], expectedNorm, accuracy: expectedNorm * 1e-5)
                let lr = Double(spec.learningRate), step = Double(t + 1)
                let clip = spec.clipnorm.map { Double($0) < expectedNorm ? Double($0) / expectedNorm : 1 } ?? 1
                for i in 0..<count {
                    let gi = Double(g[i]) * clip
                    switch spec.kind {
                    case .adam, .adamw:
                        let b1 = Double(spec.beta1), b2 = Double(spec.beta2)
                        m[i] += (gi - m[i]) * (1 - b1)
                        v[i] += (gi * gi - v[i]) * (1 - b2)
                        let alpha = lr * (1 - pow(b2, step)).squareRoot() / (1 - pow(b1, step))
                        if spec.kind == .adamw { ref[i] *= 1 - lr * Double(spec.weightDecay) }
                        ref[i] -= alpha * m[i] / (v[i].squareRoot() + Double(spec.epsilon))
                    case .sgd:
                        let mu = Double(spec.momentum)
                        m[i] = mu * m[i] - lr * gi
                        ref[i] += mu * m[i] - lr * gi
                    case .rmsprop:
                        let rho = Double(spec.rho)
                        v[i] = rho * v[i] + (1 - rho) * gi * gi
                        ref[i] -= lr * gi / (v[i].squareRoot() + Double(spec.epsilon))
                    }
                }
            }
            let got = w.value.scalars
            var worst = 0.0
            for i in 0..<count { worst = max(worst, abs(Double(got[i]) - ref[i])) }
            XCTAssertLessThan(worst, 1e-5, "\(json)")
        }
    }
}
