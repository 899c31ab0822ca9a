import KilnTensor
import XCTest

final class ShapeOpsTests: XCTestCase {
    func testTransposeMatchesIndexing() throws {
        let x = randomTensor([2, 3, 4], seed: 1)
        let y = try Variable(x).transpose(perm: [2, 0, 1]).value
        XCTAssertEqual(y.shape, [4, 2, 3])
        for a in 0..<2 { for b in 0..<3 { for c in 0..<4 {
            XCTAssertEqual(y[flat: c * 6 + a * 3 + b], x[flat: a * 12 + b * 4 + c])
        } } }
        try checkGradients([x], label: "transpose") { v in try v[0].transpose(perm: [2, 0, 1]) }
        try checkGradients([x], label: "transpose") { v in try v[0].transpose(perm: [0, 2, 1]) }
        XCTAssertThrowsError(try Variable(x).transpose(perm: [0, 0, 1]))
        XCTAssertThrowsError(try Variable(x).transpose(perm: [0, 1]))
    }

    func testConcatenate() throws {
        let a = randomTensor([2, 3, 2], seed: 2), b = randomTensor([2, 1, 2], seed: 3), c = randomTensor([2, 2, 2], seed: 4)
        let y = try Variable.concatenate([Variable(a), Variable(b), Variable(c)], axis: 1).value
        XCTAssertEqual(y.shape, [2, 6, 2])
        XCTAssertEqual(y[flat: 12 + 6], b[flat: 2])  // sample 1, row 3 = b's row 0
        try checkGradients([a, b, c], label: "concatenate") { v in try Variable.concatenate(v, axis: 1) }
        try checkGradients([a, a], label: "concatenate last") { v in try Variable.concatenate(v, axis: -1) }
        XCTAssertThrowsError(try Variable.concatenate([Variable(a), Variable(b)], axis: 2)) { error in
            XCTAssertEqual((error as! TensorError).shapes, [[2, 3, 2], [2, 1, 2]])
        }
    }

    func testSlice() throws {
        let x = randomTensor([3, 5, 2], seed: 5)
        let y = try Variable(x).slice(axis: 1, start: 1, end: 4).value
        XCTAssertEqual(y.shape, [3, 3, 2])
        XCTAssertEqual(y[flat: 6], x[flat: 10 + 2])
        XCTAssertEqual(try Variable(x).slice(axis: -2, start: -2).shape, [3, 2, 2])
        try checkGradients([x], label: "slice") { v in try v[0].slice(axis: 1, start: 1, end: 4) }
        XCTAssertThrowsError(try Variable(x).slice(axis: 1, start: 2, end: 9))
        XCTAssertThrowsError(try Variable(x).slice(axis: 3, start: 0, end: 1))
    }

    func testBroadcastTo() throws {
        let x = randomTensor([3, 1], seed: 6)
        XCTAssertEqual(try Variable(x).broadcast(to: [2, 3, 4]).shape, [2, 3, 4])
        try checkGradients([x], label: "broadcast") { v in try v[0].broadcast(to: [2, 3, 4]) }
        XCTAssertThrowsError(try Variable(x).broadcast(to: [2, 4]))
    }

    func testEmbeddingGathersRowsAndScattersGradient() throws {
        let table = randomTensor([5, 3], seed: 7)
        let indices = Tensor(shape: [2, 2], values: [4, 0, 4, 2])
        let y = try Variable.embedding(indices: indices, table: Variable(table)).value
        XCTAssertEqual(y.shape, [2, 2, 3])
        XCTAssertEqual(Array(y.scalars[0..<3]), Array(table.scalars[12..<15]))
        try checkGradients([table], label: "embedding") { v in try Variable.embedding(indices: indices, table: v[0]) }
        for bad: Float in [5, -1, 1.5, .nan] {
            XCTAssertThrowsError(try Variable.embedding(indices: Tensor(shape: [1], values: [bad]), table: Variable(table))) { error in
                XCTAssertEqual((error as! TensorError).op, "embedding")
            }
        }
        // Gathering whole kernels by class, as class-conditional convolution needs.
        let kernels = randomTensor([3, 2, 2, 1, 2], seed: 8)
        try checkGradients([kernels], label: "gather") { v in try v[0].gatherRows(Tensor(shape: [4], values: [2, 0, 2, 1])) }
    }

    func testOneHot() throws {
        let y = try Tensor.oneHot(Tensor(shape: [3], values: [2, 0, 1]), classes: 3)
        XCTAssertEqual(y.scalars, [0, 0, 1, 1, 0, 0, 0, 1, 0])
        XCTAssertFalse(try Variable(Tensor(shape: [1], values: [1])).oneHot(classes: 2).requiresGrad)
        XCTAssertThrowsError(try Tensor.oneHot(Tensor(shape: [1], values: [3]), classes: 3))
        XCTAssertThrowsError(try Tensor.oneHot(Tensor(shape: [1], values: [0]), classes: 0))
    }
}
