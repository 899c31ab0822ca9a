import KilnGraph
import KilnSpec
import KilnTensor
@testable import KilnTrain
import XCTest

final class LossTests: XCTestCase {
    func value(_ kind: LossSpec.Kind, _ p: [Float], _ pShape: [Int], _ t: [Float], _ tShape: [Int]) throws -> Float {
        try Loss.compute(kind, prediction: Variable(Tensor(shape: pShape, values: p)), target: Tensor(shape: tShape, values: t)).value.scalar
    }

    func testLossesAgainstHandComputedValues() throws {
        // −(log 0.7 + log 0.5) / 2
        let p: [Float] = [0.7, 0.2, 0.1, 0.25, 0.5, 0.25]
        let expected = -(Foundation.log(0.7) + Foundation.log(0.5)) / 2
        XCTAssertEqual(try value(.categoricalCrossentropy, p, [2, 3], [1, 0, 0, 0, 1, 0], [2, 3]), Float(expected), accuracy: 1e-6)
        XCTAssertEqual(try value(.categoricalCrossentropy, p, [2, 3], [0, 1], [2]), Float(expected), accuracy: 1e-6)
        XCTAssertEqual(try value(.sparseCategoricalCrossentropy, p, [2, 3], [0, 1], [2, 1]), Float(expected), accuracy: 1e-6)
        // mse: ((1−0)² + (2−4)²)/2 = 2.5; mae: (1 + 2)/2 = 1.5
        XCTAssertEqual(try value(.mse, [1, 2], [2, 1], [0, 4], [2, 1]), 2.5, accuracy: 1e-6)
        XCTAssertEqual(try value(.mae, [1, 2], [2, 1], [0, 4], [2, 1]), 1.5, accuracy: 1e-6)
        // binary: −(log 0.9 + log(1−0.2))/2
        XCTAssertEqual(try value(.binaryCrossentropy, [0.9, 0.2], [2, 1], [1, 0], [2, 1]),
                       Float(-(Foundation.log(0.9) + Foundation.log(0.8)) / 2), accuracy: 1e-6)
        // huber with δ=1: errors 0.5 and 3 → (0.125 + 2.5)/2
        XCTAssertEqual(try value(.huber, [0.5, 3], [2, 1], [0, 0], [2, 1]), 1.3125, accuracy: 1e-6)
        // cosine: rows parallel (−1) and orthogonal (0) → −0.5
        XCTAssertEqual(try value(.cosine, [1, 0, 0, 1], [2, 2], [2, 0, 1, 0], [2, 2]), -0.5, accuracy: 1e-6)
    }

    func testCrossEntropyGradientMatchesFiniteDifference() throws {
        let p = Tensor(shape: [2, 3], values: [0.7, 0.2, 0.1, 0.25, 0.5, 0.25])
        for (kind, t) in [(LossSpec.Kind.categoricalCrossentropy, Tensor(shape: [2, 3], values: [1, 0, 0, 0, 1, 0])),
                          (.categoricalCrossentropy, Tensor(shape: [2], values: [0, 1])),
                          (.binaryCrossentropy, Tensor(shape: [2, 3], values: [1, 0, 1, 0, 1, 0]))] {
            let v = Variable(p, requiresGrad: true)
            try Loss.compute(kind, prediction: v, target: t).backward()
            for i in 0..<p.count {
                var plus = p, minus = p
                plus[flat: i] += 1e-3
                minus[flat: i] -= 1e-3
                let numeric = (try Loss.compute(kind, prediction: Variable(plus), target: t).value.scalar
                    - Loss.compute(kind, prediction: Variable(minus), target: t).value.scalar) / 2e-3
                XCTAssertEqual(v.grad![flat: i], numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(kind) element \(i)")
            }
        }
    }

    func testOutOfRangeLabelIsAnError() {
        XCTAssertThrowsError(try value(.sparseCategoricalCrossentropy, [0.5, 0.5], [1, 2], [2], [1]))
    }

    func testAccuracyMetric() {
        let p = Tensor(shape: [3, 2], values: [0.9, 0.1, 0.2, 0.8, 0.6, 0.4])
        XCTAssertEqual(Metric.sum(.accuracy, prediction: p, target: Tensor(shape: [3], values: [0, 1, 1])), 2)
        XCTAssertEqual(Metric.sum(.accuracy, prediction: p, target: Tensor(shape: [3, 2], values: [1, 0, 0, 1, 0, 1])), 2)
        XCTAssertEqual(Metric.sum(.binaryAccuracy, prediction: Tensor(shape: [2, 1], values: [0.7, 0.2]), target: Tensor(shape: [2, 1], values: [1, 1])), 1)
    }
}
