import KilnTensor
import XCTest

final class MatmulReduceTests: XCTestCase {
    /// A naive triple loop, the reference the sgemm path is checked against.
    func naiveMatmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { c[i * n + j] += a[i * k + p] * b[p * n + j] } } }
        return c
    }

    func testMatmulForwardMatchesNaiveLoop() throws {
        let a = randomTensor([5, 7], seed: 1), b = randomTensor([7, 3], seed: 2)
        let y = try Variable(a).matmul(Variable(b)).value
        let expected = naiveMatmul(a.scalars, b.scalars, m: 5, k: 7, n: 3)
        for (u, v) in zip(y.scalars, expected) { XCTAssertEqual(u, v, accuracy: 1e-5) }
    }

    /// Products large enough to be split over the cores by rows, by columns or along
    /// k, in every transpose combination and with beta 1, against a loop in Double.
    func testSplitSgemmMatchesNaiveProducts() {
        for library in Kernels.availableLibraries {
            Kernels.with(.only(library)) { splitSgemmMatchesNaiveProducts(library) }
        }
    }

    func splitSgemmMatchesNaiveProducts(_ library: KernelLibrary) {
        for (m, n, k) in [(200, 100, 64), (50, 300, 80), (9, 32, 4000), (7, 5, 9)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = randomTensor([m * k], seed: 1).scalars, b = randomTensor([k * n], seed: 2).scalars
                    var c = randomTensor([m * n], seed: 3).scalars
                    let c0 = c
                    let lda = ta ? m : k, ldb = tb ? k : n
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: pa.baseAddress!, lda: lda,
                                           b: pb.baseAddress!, ldb: ldb, beta: 1, c: pc.baseAddress!, ldc: n)
                            }
                        }
                    }
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var sum = 0.0
                            for p in 0..<k {
                                let x = Double(ta ? a[p * lda + i] : a[i * lda + p]), y = Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                                sum += x * y
                            }
                            worst = max(worst, abs(Double(c[i * n + j]) - (0.5 * sum + Double(c0[i * n + j]))))
                        }
                    }
                    XCTAssertLessThan(worst, 1e-3, "\(library): m \(m) n \(n) k \(k) ta \(ta) tb \(tb)")
                }
            }
        }
    }

    func testMatmulGradientsAllTransposeCombinations() throws {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randomTensor(ta ? [4, 3] : [3, 4], seed: 3), b = randomTensor(tb ? [5, 4] : [4, 5], seed: 4)
                try checkGradients([a, b]) { v in try v[0].matmul(v[1], transposeA: ta, transposeB: tb) }
                // Batched, with the left operand broadcast over a batch of right operands.
                let bb = randomTensor([2] + (tb ? [5, 4] : [4, 5]), seed: 5)
                try checkGradients([a, bb]) { v in try v[0].matmul(v[1], transposeA: ta, transposeB: tb) }
                let ab = randomTensor([2] + (ta ? [4, 3] : [3, 4]), seed: 6)
                try checkGradients([ab, b]) { v in try v[0].matmul(v[1], transposeA: ta, transposeB: tb) }
            }
        }
    }

    func testDenseOnRankThreeInput() throws {
        // A (784,64)-style weight applied along the last axis of a (batch, time, features) input.
        let x = randomTensor([2, 3, 4], seed: 7), w = randomTensor([4, 5], seed: 8)
        let y = try Variable(x).matmul(Variable(w))
        XCTAssertEqual(y.shape, [2, 3, 5])
        try checkGradients([x, w]) { v in try v[0].matmul(v[1]) }
    }

    func testFusedDenseEqualsMatmulAddReluAndHasCheckedGradients() throws {
        for (shape, relu) in [([6, 4], true), ([6, 4], false), ([2, 3, 4], true), ([4], true)] {
            // Values away from relu's kink, so finite differences do not straddle it.
            var x = randomTensor(shape, seed: 9)
            x.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] += p[i] < 0 ? -0.05 : 0.05 } }
            let w = randomTensor([4, 5], seed: 10), b = randomTensor([5], seed: 11)
            for library in Kernels.availableLibraries {
                try Kernels.with(.only(library)) {
                    let fused = try Variable(x).dense(kernel: Variable(w), bias: Variable(b), relu: relu).value
                    var plain = try Variable(x.reshaped([shape.dropLast().reduce(1, *), 4])).matmul(Variable(w)).add(Variable(b))
                    if relu { plain = plain.relu() }
                    XCTAssertEqual(fused.shape, Array(shape.dropLast()) + [5])
                    if library == .openblas {
                        XCTAssertEqual(fused.scalars, plain.value.scalars, "\(shape) relu \(relu)")
                    } else {
                        // oneDNN's matmul primitive and its sgemm may add in another order.
                        assertClose(fused.reshaped(plain.shape), plain.value, tolerance: 1e-5, "\(shape) relu \(relu) \(library)")
                    }
                }
            }
            try checkGradients([x, w, b], label: "dense \(shape) relu \(relu)") { v in
                try v[0].dense(kernel: v[1], bias: v[2], relu: relu)
            }
            try checkGradients([x, w], label: "dense without bias \(shape)") { v in
                try v[0].dense(kernel: v[1], bias: nil, relu: relu)
            }
        }
        XCTAssertThrowsError(try Variable(randomTensor([2, 3], seed: 1)).dense(kernel: Variable(randomTensor([4, 5], seed: 2)), bias: nil, relu: false)) { error in
            XCTAssertTrue("\(error)".contains("[2, 3]"), "\(error)")
        }
        XCTAssertThrowsError(try Variable(randomTensor([2, 4], seed: 1)).dense(kernel: Variable(randomTensor([4, 5], seed: 2)), bias: Variable(randomTensor([4], seed: 3)), relu: false))
        // Zero rows and zero input features.
        XCTAssertEqual(try Variable(Tensor.zeros([0, 4])).dense(kernel: Variable(randomTensor([4, 5], seed: 2)), bias: nil, relu: true).shape, [0, 5])
        XCTAssertEqual(try Variable(Tensor.zeros([3, 0])).dense(kernel: Variable(Tensor.zeros([0, 2])), bias: Variable(Tensor(shape: [2], values: [1, -1])), relu: true).value.scalars, [1, 0, 1, 0, 1, 0])
    }

    func testMatmulShapeError() {
        XCTAssertThrowsError(try Variable(Tensor.zeros([2, 3])).matmul(Variable(Tensor.zeros([4, 5])))) { error in
            XCTAssertEqual((error as! TensorError).shapes, [[2, 3], [4, 5]])
        }
    }

    func testReductionsOverAxes() throws {
        let x = randomTensor([2, 3, 4], seed: 9)
        for axes in [nil, [0], [1], [2], [-1], [0, 2]] as [[Int]?] {
            for keep in [false, true] {
                try checkGradients([x]) { v in try v[0].sum(axes: axes, keepDims: keep) }
                try checkGradients([x]) { v in try v[0].mean(axes: axes, keepDims: keep) }
                try checkGradients([x]) { v in try v[0].max(axes: axes, keepDims: keep) }
            }
        }
        let s = try Variable(x).sum(axes: [1]).value
        XCTAssertEqual(s.shape, [2, 4])
        let values = x.scalars
        XCTAssertEqual(s[flat: 0], values[0] + values[4] + values[8], accuracy: 1e-6)
        XCTAssertEqual(try Variable(x).mean(axes: [0, 2], keepDims: true).shape, [1, 3, 1])
    }

    func testSoftmaxAndLogSoftmax() throws {
        let x = randomTensor([3, 5], low: -3, high: 3, seed: 10)
        for axis in [0, 1, -1] {
            try checkGradients([x]) { v in try v[0].softmax(axis: axis) }
            try checkGradients([x]) { v in try v[0].logSoftmax(axis: axis) }
        }
        let p = try Variable(x).softmax().value
        for r in 0..<3 {
            let row = (0..<5).map { p[flat: r * 5 + $0] }
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6)
        }
        // Large logits do not overflow.
        let big = try Variable(Tensor(shape: [1, 2], values: [1000, 0])).softmax().value
        XCTAssertEqual(big.scalars, [1, 0])
    }

    func testReshapeGradient() throws {
        try checkGradients([randomTensor([2, 6])]) { v in try v[0].reshape([3, 4]).square() }
    }
}
