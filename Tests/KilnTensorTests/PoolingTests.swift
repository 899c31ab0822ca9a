import KilnTensor
import XCTest

final class PoolingTests: XCTestCase {
    typealias Case = (input: [Int], pool: (Int, Int), strides: (Int, Int)?, same: Bool)
    let cases: [Case] = [
        ([2, 4, 4, 3], (2, 2), nil, false),
        ([1, 5, 5, 2], (2, 2), nil, true),
        ([1, 5, 6, 2], (3, 3), (2, 2), true),
        ([2, 5, 5, 1], (3, 2), (1, 2), false),
        ([1, 4, 4, 2], (3, 3), (1, 1), true),
    ]

    func testPoolingForwardMatchesNaiveLoops() throws {
        for (i, c) in cases.enumerated() {
            let x = randomTensor(c.input, seed: UInt64(i + 1))
            let padding: Padding = c.same ? .same : .valid
            let strides = c.strides ?? c.pool
            assertClose(try Variable(x).maxPool2d(poolSize: c.pool, strides: c.strides, padding: padding).value,
                        referencePool(x, pool: c.pool, strides: strides, same: c.same, max: true), "max case \(i)")
            assertClose(try Variable(x).avgPool2d(poolSize: c.pool, strides: c.strides, padding: padding).value,
                        referencePool(x, pool: c.pool, strides: strides, same: c.same, max: false), "avg case \(i)")
        }
    }

    func testPoolingGradients() throws {
        for (i, c) in cases.enumerated() {
            let x = randomTensor(c.input, seed: UInt64(i + 1))
            let padding: Padding = c.same ? .same : .valid
            try checkGradients([x], label: "max_pool2d case \(i)") { v in try v[0].maxPool2d(poolSize: c.pool, strides: c.strides, padding: padding) }
            try checkGradients([x], label: "avg_pool2d case \(i)") { v in try v[0].avgPool2d(poolSize: c.pool, strides: c.strides, padding: padding) }
        }
    }

    func testMaxPoolGradientGoesToTheFirstOfTiedMaxima() throws {
        // After relu many windows are all zeros: one pixel per window gets the gradient,
        // the first in row-major order. Overlapping windows (stride 1) add up.
        let x = Variable(Tensor(shape: [1, 3, 3, 2], values: [0, 1, 0, 5, 2, 5,
                                                             0, 5, 0, 1, 2, 0,
                                                             0, 0, 0, 0, 0, 0]), requiresGrad: true)
        let y = try x.maxPool2d(poolSize: (2, 2), strides: (1, 1))
        XCTAssertEqual(y.value.scalars, [0, 5, 2, 5, 0, 5, 2, 1])
        y.backward(seed: Tensor(shape: [1, 2, 2, 2], values: [1, 10, 100, 1000, 10000, 100000, 1e6, 1e7]))
        XCTAssertEqual(x.grad!.scalars, [1, 0, 0, 1010, 100, 0,
                                         10000, 100000, 0, 1e7, 1e6, 0,
                                         0, 0, 0, 0, 0, 0])
    }

    func testGlobalAveragePoolAndUpsampling() throws {
        let x = randomTensor([2, 3, 4, 2], seed: 9)
        let gap = try Variable(x).globalAvgPool2d().value
        XCTAssertEqual(gap.shape, [2, 2])
        let firstChannel = (0..<12).map { x[flat: $0 * 2] }.reduce(0, +) / 12
        XCTAssertEqual(gap[flat: 0], firstChannel, accuracy: 1e-6)
        try checkGradients([x], label: "global_avg_pool2d") { v in try v[0].globalAvgPool2d() }

        let up = try Variable(x).upsampling2d(size: (2, 3)).value
        XCTAssertEqual(up.shape, [2, 6, 12, 2])
        for b in 0..<2 { for y in 0..<6 { for xx in 0..<12 { for c in 0..<2 {
            XCTAssertEqual(up[flat: ((b * 6 + y) * 12 + xx) * 2 + c], x[flat: ((b * 3 + y / 2) * 4 + xx / 3) * 2 + c])
        } } } }
        try checkGradients([x], label: "upsampling2d") { v in try v[0].upsampling2d(size: (2, 3)) }
    }

    func testPoolingErrors() {
        let x = Variable(Tensor.zeros([1, 3, 3, 1]))
        XCTAssertThrowsError(try x.maxPool2d(poolSize: (4, 4)))
        XCTAssertThrowsError(try x.avgPool2d(poolSize: (0, 2)))
        XCTAssertThrowsError(try Variable(Tensor.zeros([3, 3])).maxPool2d(poolSize: (2, 2)))
        XCTAssertThrowsError(try Variable(Tensor.zeros([3, 3])).globalAvgPool2d())
        XCTAssertThrowsError(try x.upsampling2d(size: (0, 1)))
        XCTAssertEqual(try x.maxPool2d(poolSize: (4, 4), padding: .same).shape, [1, 1, 1, 1])
    }
}
