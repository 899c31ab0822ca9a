import KilnTensor
import XCTest

final class NormalizationRandomTests: XCTestCase {
    func testBatchNormTrainingNormalisesAndUpdatesMovingStatistics() throws {
        let x = randomTensor([6, 3], low: 1, high: 5, seed: 1)
        let movingMean = Variable(Tensor.zeros([3])), movingVariance = Variable(Tensor(shape: [3], repeating: 1))
        let y = try Variable(x).batchNorm(gamma: Variable(Tensor(shape: [3], repeating: 1)), beta: Variable(Tensor.zeros([3])),
                                          movingMean: movingMean, movingVariance: movingVariance, momentum: 0.9, epsilon: 0, training: true)
        for c in 0..<3 {
            let column = (0..<6).map { Double(x[flat: $0 * 3 + c]) }
            let mean = column.reduce(0, +) / 6
            let variance = column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 6
            let out = (0..<6).map { Double(y.value[flat: $0 * 3 + c]) }
            XCTAssertEqual(out.reduce(0, +) / 6, 0, accuracy: 1e-5)
            XCTAssertEqual(out.map { $0 * $0 }.reduce(0, +) / 6, 1, accuracy: 1e-4)
            XCTAssertEqual(Double(movingMean.value[flat: c]), 0.1 * mean, accuracy: 1e-5)
            XCTAssertEqual(Double(movingVariance.value[flat: c]), 0.9 + 0.1 * variance, accuracy: 1e-5)
        }
    }

    func testBatchNormInferenceUsesMovingStatistics() throws {
        let x = randomTensor([2, 2, 2, 2], seed: 2)
        let mm = Tensor(shape: [2], values: [0.5, -1]), mv = Tensor(shape: [2], values: [4, 0.25])
        let gamma = Tensor(shape: [2], values: [2, 3]), beta = Tensor(shape: [2], values: [1, 0])
        let movingMean = Variable(mm), movingVariance = Variable(mv)
        let y = try Variable(x).batchNorm(gamma: Variable(gamma), beta: Variable(beta), movingMean: movingMean,
                                          movingVariance: movingVariance, epsilon: 0, training: false).value
        for i in 0..<x.count {
            let c = i % 2
            XCTAssertEqual(y[flat: i], (x[flat: i] - mm[flat: c]) / mv[flat: c].squareRoot() * gamma[flat: c] + beta[flat: c], accuracy: 1e-5)
        }
        XCTAssertEqual(movingMean.value.scalars, mm.scalars)
        XCTAssertEqual(movingVariance.value.scalars, mv.scalars)
    }

    func testBatchNormGradients() throws {
        let x = randomTensor([4, 2, 3], seed: 3), gamma = randomTensor([3], low: 0.5, high: 2, seed: 4), beta = randomTensor([3], seed: 5)
        for training in [true, false] {
            try checkGradients([x, gamma, beta], label: "batch_norm training=\(training)") { v in
                try v[0].batchNorm(gamma: v[1], beta: v[2], movingMean: Variable(Tensor(shape: [3], repeating: 0.1)),
                                   movingVariance: Variable(Tensor(shape: [3], repeating: 0.8)), training: training)
            }
        }
        XCTAssertThrowsError(try Variable(x).batchNorm(gamma: Variable(gamma), beta: Variable(Tensor.zeros([2])), movingMean: Variable(Tensor.zeros([3])),
                                                       movingVariance: Variable(Tensor.zeros([3])), training: true)) { error in
            XCTAssertEqual((error as! TensorError).shapes, [[4, 2, 3], [2]])
        }
    }

    func testLayerNorm() throws {
        let x = randomTensor([3, 2, 5], seed: 6), gamma = randomTensor([5], low: 0.5, high: 2, seed: 7), beta = randomTensor([5], seed: 8)
        let y = try Variable(x).layerNorm(gamma: Variable(Tensor(shape: [5], repeating: 1)), beta: Variable(Tensor.zeros([5])), epsilon: 0).value
        for r in 0..<6 {
            let row = (0..<5).map { Double(y[flat: r * 5 + $0]) }
            XCTAssertEqual(row.reduce(0, +) / 5, 0, accuracy: 1e-5)
            XCTAssertEqual(row.map { $0 * $0 }.reduce(0, +) / 5, 1, accuracy: 1e-4)
        }
        try checkGradients([x, gamma, beta], label: "layer_norm") { v in try v[0].layerNorm(gamma: v[1], beta: v[2]) }
        XCTAssertThrowsError(try Variable(x).layerNorm(gamma: Variable(gamma), beta: Variable(Tensor.zeros([3]))))
    }

    func testDropout() throws {
        var generator = SeededGenerator(seed: 1)
        let x = Variable(Tensor(shape: [10_000], repeating: 1), requiresGrad: true)
        let y = try x.dropout(rate: 0.25, training: true, generator: &generator)
        let kept = y.value.scalars.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 4.0 / 3) < 1e-6 })
        XCTAssertEqual(Double(kept.count) / 10_000, 0.75, accuracy: 0.02)
        y.backward()
        XCTAssertEqual(x.grad!.scalars, y.value.scalars)  // gradient is the same mask
        XCTAssertTrue(try x.dropout(rate: 0.5, training: false, generator: &generator) === x)
        XCTAssertThrowsError(try x.dropout(rate: 1, training: true, generator: &generator))
        // A mask of several blocks, drawn on the cores: the same seed gives the same
        // mask, blocks are not copies of each other, and the rate holds.
        let big = Variable(Tensor(shape: [100_000], repeating: 1))
        var g1 = SeededGenerator(seed: 5), g2 = SeededGenerator(seed: 5)
        let a = try big.dropout(rate: 0.25, training: true, generator: &g1).value.scalars
        XCTAssertEqual(a, try big.dropout(rate: 0.25, training: true, generator: &g2).value.scalars)
        XCTAssertNotEqual(Array(a[0..<16_384]), Array(a[16_384..<32_768]))
        XCTAssertEqual(Double(a.filter { $0 != 0 }.count) / 100_000, 0.75, accuracy: 0.01)
        let input = randomTensor([3, 4], seed: 9)
        try checkGradients([input], label: "dropout") { v in
            var g = SeededGenerator(seed: 3)
            return try v[0].dropout(rate: 0.5, training: true, generator: &g)
        }
    }

    func testGaussianNoiseAndSampleNormal() throws {
        var generator = SeededGenerator(seed: 2)
        let x = Variable(Tensor.zeros([20_000]))
        let noisy = try x.gaussianNoise(stddev: 0.5, training: true, generator: &generator).value.scalars.map(Double.init)
        let variance = noisy.map { $0 * $0 }.reduce(0, +) / Double(noisy.count)
        XCTAssertEqual(variance, 0.25, accuracy: 0.01)
        XCTAssertTrue(try x.gaussianNoise(stddev: 0.5, training: false, generator: &generator) === x)
        try checkGradients([randomTensor([5], seed: 10)], label: "gaussian_noise") { v in
            var g = SeededGenerator(seed: 4)
            return try v[0].gaussianNoise(stddev: 0.3, training: true, generator: &g)
        }

        // mu + exp(½·logVar)·ε has mean mu and variance exp(logVar).
        let draws = try Variable.sampleNormal(mu: Variable(Tensor(shape: [20_000], repeating: 2)),
                                              logVar: Variable(Tensor(shape: [20_000], repeating: Float(Foundation.log(0.09)))),
                                              generator: &generator).value.scalars.map(Double.init)
        let mean = draws.reduce(0, +) / Double(draws.count)
        XCTAssertEqual(mean, 2, accuracy: 0.01)
        XCTAssertEqual(draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count), 0.09, accuracy: 0.005)
        try checkGradients([randomTensor([2, 3], seed: 11), randomTensor([2, 3], seed: 12)], label: "sample_normal") { v in
            var g = SeededGenerator(seed: 5)
            return try Variable.sampleNormal(mu: v[0], logVar: v[1], generator: &g)
        }
        XCTAssertThrowsError(try Variable.sampleNormal(mu: Variable(Tensor.zeros([2])), logVar: Variable(Tensor.zeros([3])), generator: &generator))
    }
}
