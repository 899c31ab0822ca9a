import Dispatch
@testable import KilnTensor
import XCTest

/// The kernel seam: every library that can run here computes the same products,
/// convolutions, transposed convolutions and max pooling, checked against loops in Double on random shapes (every transpose,
/// leading dimensions wider than the matrix, strides, paddings, dilations, batches
/// large enough to be split over the cores).
final class KernelPathTests: XCTestCase {
    func testPolicyNamesTableAndForcing() {
        XCTAssertEqual(KernelPolicy(name: "auto"), .auto)
        XCTAssertEqual(KernelPolicy(name: " OneDNN "), .only(.onednn))
        XCTAssertEqual(KernelPolicy(name: "openblas"), .only(.openblas))
        XCTAssertNil(KernelPolicy(name: "mkl"))
        XCTAssertTrue(Kernels.oneDNNAvailable, "libdnnl-dev is installed by scripts/setup-deps.sh")
        for library in KernelLibrary.allCases {
            Kernels.with(.only(library)) {
                for op in KernelOp.allCases { XCTAssertEqual(Kernels.library(for: op), library) }
            }
        }
        Kernels.with(.auto) {
            for op in KernelOp.allCases { XCTAssertEqual(Kernels.library(for: op), Kernels.table[op]) }
            XCTAssertTrue(Kernels.summary.hasPrefix("kernels auto ("), Kernels.summary)
        }
    }

    func testSgemmOnEveryPathMatchesDoubleOnRandomShapes() {
        var rng = SeededGenerator(seed: 11)
        // Random small shapes, and shapes that split by rows, by columns and along k.
        var shapes: [(Int, Int, Int)] = (0..<20).map { _ in
            (Int.random(in: 1...70, using: &rng), Int.random(in: 1...70, using: &rng), Int.random(in: 1...90, using: &rng))
        }
        shapes += [(256, 40, 128), (40, 300, 100), (10, 24, 5000)]
        for library in Kernels.availableLibraries {
            Kernels.with(.only(library)) {
                for (trial, (m, n, k)) in shapes.enumerated() {
                    let ta = trial % 2 == 1, tb = trial % 4 >= 2
                    let lda = (ta ? m : k) + trial % 3, ldb = (tb ? k : n) + trial % 2, ldc = n + trial % 3
                    let a = randomTensor([(ta ? k : m) * lda], seed: UInt64(trial + 1)).scalars
                    let b = randomTensor([(tb ? n : k) * ldb], seed: UInt64(trial + 100)).scalars
                    var c = randomTensor([m * ldc], seed: UInt64(trial + 200)).scalars
                    let c0 = c
                    let alpha: Float = trial % 5 == 0 ? 0.5 : 1, beta: Float = trial % 3 == 0 ? 1 : 0
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda,
                                           b: pb.baseAddress!, ldb: ldb, beta: beta, c: pc.baseAddress!, ldc: ldc)
                            }
                        }
                    }
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var sum = 0.0
                            for p in 0..<k {
                                sum += Double(ta ? a[p * lda + i] : a[i * lda + p]) * Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                            }
                            let expected = Double(alpha) * sum + Double(beta) * Double(c0[i * ldc + j])
                            worst = max(worst, abs(Double(c[i * ldc + j]) - expected) / max(1, abs(expected)))
                        }
                        // Columns past n in C are not written.
                        for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "\(library) trial \(trial): padding written") }
                    }
                    XCTAssertLessThan(worst, 1e-4, "\(library): m \(m) n \(n) k \(k) ta \(ta) tb \(tb) lda \(lda) ldb \(ldb) ldc \(ldc)")
                }
            }
        }
    }

    func testDenseOnEveryPathMatchesDoubleOnRandomShapes() throws {
        var rng = SeededGenerator(seed: 12)
        var shapes: [(Int, Int, Int)] = (0..<12).map { _ in
            (Int.random(in: 1...90, using: &rng), Int.random(in: 1...120, using: &rng), Int.random(in: 1...60, using: &rng))
        }
        shapes.append((128, 784, 64)) // split by rows on two cores
        for library in Kernels.availableLibraries {
            try Kernels.with(.only(library)) {
                for (trial, (rows, k, n)) in shapes.enumerated() {
                    let relu = trial % 2 == 0, withBias = trial % 3 != 2
                    let x = randomTensor([rows, k], seed: UInt64(trial + 1)), w = randomTensor([k, n], seed: UInt64(trial + 50))
                    let b = randomTensor([n], seed: UInt64(trial + 90))
                    let y = try Variable(x).dense(kernel: Variable(w), bias: withBias ? Variable(b) : nil, relu: relu).value
                    var expected = [Double](repeating: 0, count: rows * n)
                    for r in 0..<rows {
                        for j in 0..<n {
                            var sum = withBias ? Double(b[flat: j]) : 0
                            for p in 0..<k { sum += Double(x[flat: r * k + p]) * Double(w[flat: p * n + j]) }
                            expected[r * n + j] = relu ? max(0, sum) : sum
                        }
                    }
                    assertClose(y, Tensor(shape: [rows, n], values: expected.map(Float.init)), tolerance: 1e-4,
                                "\(library) dense \(rows)×\(k)→\(n) relu \(relu) bias \(withBias)")
                }
            }
        }
    }

    typealias ConvolutionCase = (input: [Int], kernel: [Int], strides: (Int, Int), dilation: (Int, Int), same: Bool)

    func randomConvolutionCases() -> [ConvolutionCase] {
        var rng = SeededGenerator(seed: 13)
        var cases: [ConvolutionCase] = []
        while cases.count < 16 {
            let input = [Int.random(in: 1...4, using: &rng), Int.random(in: 3...9, using: &rng), Int.random(in: 3...9, using: &rng), Int.random(in: 1...5, using: &rng)]
            let kernel = [Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng), input[3], Int.random(in: 1...6, using: &rng)]
            let strides = (Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng))
            let dilation = (Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng))
            let same = Bool.random(using: &rng)
            let fits = (kernel[0] - 1) * dilation.0 < input[1] && (kernel[1] - 1) * dilation.1 < input[2]
            if same || fits { cases.append((input, kernel, strides, dilation, same)) }
        }
        // The convnet's second layer at a batch that is split over the cores.
        cases.append(([8, 13, 13, 32], [3, 3, 32, 64], (1, 1), (1, 1), false))
        cases.append(([6, 12, 12, 3], [5, 5, 3, 16], (2, 2), (1, 1), true))
        return cases
    }

    /// Output positions of a window along one axis: (length, padding before).
    func window(_ input: Int, _ kernel: Int, _ stride: Int, _ dilation: Int, _ same: Bool) -> (Int, Int) {
        let extent = (kernel - 1) * dilation + 1
        if !same { return ((input - extent) / stride + 1, 0) }
        let length = (input + stride - 1) / stride
        return (length, max((length - 1) * stride + extent - input, 0) / 2)
    }

    func testConv2dOnEveryPathMatchesDoubleForwardAndBackward() throws {
        for (index, c) in randomConvolutionCases().enumerated() {
            let (n, h, w, ch) = (c.input[0], c.input[1], c.input[2], c.input[3])
            let (kh, kw, f) = (c.kernel[0], c.kernel[1], c.kernel[3])
            let (oh, pt) = window(h, kh, c.strides.0, c.dilation.0, c.same)
            let (ow, pl) = window(w, kw, c.strides.1, c.dilation.1, c.same)
            let x = randomTensor(c.input, seed: UInt64(index + 1)), k = randomTensor(c.kernel, seed: UInt64(index + 40))
            let b = randomTensor([f], seed: UInt64(index + 80)), g = randomTensor([n, oh, ow, f], seed: UInt64(index + 120))
            // Double references: y = conv + b, dx and dk for the seed g (before relu).
            var y = [Double](repeating: 0, count: n * oh * ow * f)
            var dx = [Double](repeating: 0, count: x.count), dk = [Double](repeating: 0, count: k.count)
            for s in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * c.strides.0 - pt + ky * c.dilation.0, ix = ox * c.strides.1 - pl + kx * c.dilation.1
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                for ci in 0..<ch {
                    let xi = ((s * h + iy) * w + ix) * ch + ci
                    for o in 0..<f {
                        let yi = ((s * oh + oy) * ow + ox) * f + o, ki = ((ky * kw + kx) * ch + ci) * f + o
                        y[yi] += Double(x[flat: xi]) * Double(k[flat: ki])
                        dx[xi] += Double(g[flat: yi]) * Double(k[flat: ki])
                        dk[ki] += Double(g[flat: yi]) * Double(x[flat: xi])
                    }
                }
            } } } } }
            let label = "case \(index) \(c.input) kernel \(c.kernel) strides \(c.strides) dilation \(c.dilation) same \(c.same)"
            for library in Kernels.availableLibraries {
                try Kernels.with(.only(library)) {
                    let xv = Variable(x, requiresGrad: true), kv = Variable(k, requiresGrad: true)
                    let out = try xv.conv2d(kernel: kv, strides: c.strides, padding: c.same ? .same : .valid, dilation: c.dilation)
                    assertClose(out.value, Tensor(shape: [n, oh, ow, f], values: y.map(Float.init)), tolerance: 1e-4, "\(library) forward \(label)")
                    out.backward(seed: g)
                    assertClose(xv.grad ?? Tensor.zeros(c.input), Tensor(shape: c.input, values: dx.map(Float.init)), tolerance: 1e-4, "\(library) d input \(label)")
                    assertClose(kv.grad ?? Tensor.zeros(c.kernel), Tensor(shape: c.kernel, values: dk.map(Float.init)), tolerance: 1e-4, "\(library) d kernel \(label)")
                    // With the bias and relu fused into the forward pass.
                    let fused = try Variable(x).conv2d(kernel: Variable(k), strides: c.strides, padding: c.same ? .same : .valid,
                                                       dilation: c.dilation, bias: Variable(b), relu: true)
                    let expected = y.indices.map { Float(max(0, y[$0] + Double(b[flat: $0 % f]))) }
                    assertClose(fused.value, Tensor(shape: [n, oh, ow, f], values: expected), tolerance: 1e-4, "\(library) bias + relu \(label)")
                }
            }
        }
    }

    /// conv2d_transpose on every path against loops in Double: forward, input gradient
    /// and kernel gradient over random strides, paddings, output paddings and dilations,
    /// and batches split over the cores.
    func testConv2dTransposeOnEveryPathMatchesDoubleForwardAndBackward() throws {
        var rng = SeededGenerator(seed: 19)
        typealias Case = (input: [Int], kernel: [Int], strides: (Int, Int), dilation: (Int, Int), same: Bool, outputPadding: (Int, Int)?)
        var cases: [Case] = (0..<18).map { _ in
            let input = [Int.random(in: 1...4, using: &rng), Int.random(in: 1...7, using: &rng), Int.random(in: 1...7, using: &rng), Int.random(in: 1...6, using: &rng)]
            let kernel = [Int.random(in: 1...4, using: &rng), Int.random(in: 1...4, using: &rng), Int.random(in: 1...6, using: &rng), input[3]]
            let strides = (Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng))
            let dilation = Bool.random(using: &rng) ? (1, 1) : (Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng))
            let outputPadding = Bool.random(using: &rng) ? (Int.random(in: 0..<strides.0, using: &rng), Int.random(in: 0..<strides.1, using: &rng)) : nil
            return (input, kernel, strides, dilation, Bool.random(using: &rng), outputPadding)
        }
        // A decoder's upsampling layer at a batch that is split over the cores.
        cases.append(([8, 7, 7, 64], [3, 3, 32, 64], (2, 2), (1, 1), true, nil))
        cases.append(([6, 14, 14, 32], [3, 3, 1, 32], (2, 2), (1, 1), true, nil))
        for (index, c) in cases.enumerated() {
            let (n, h, w, ch) = (c.input[0], c.input[1], c.input[2], c.input[3])
            let (kh, kw, f) = (c.kernel[0], c.kernel[1], c.kernel[2])
            // The output side and its padding before, as Keras computes them.
            func axis(_ input: Int, _ kernel: Int, _ stride: Int, _ dilation: Int, _ extra: Int?) -> (Int, Int) {
                let effective = (kernel - 1) * dilation + 1
                let length = extra.map { (input - 1) * stride + effective - 2 * (c.same ? effective / 2 : 0) + $0 }
                    ?? (c.same ? input * stride : input * stride + max(effective - stride, 0))
                return (length, c.same ? max((input - 1) * stride + effective - length, 0) / 2 : 0)
            }
            let (oh, pt) = axis(h, kh, c.strides.0, c.dilation.0, c.outputPadding?.0)
            let (ow, pl) = axis(w, kw, c.strides.1, c.dilation.1, c.outputPadding?.1)
            guard oh >= 1, ow >= 1 else { continue }
            let x = randomTensor(c.input, seed: UInt64(index + 400)), k = randomTensor(c.kernel, seed: UInt64(index + 440))
            let g = randomTensor([n, oh, ow, f], seed: UInt64(index + 480))
            var y = [Double](repeating: 0, count: n * oh * ow * f)
            var dx = [Double](repeating: 0, count: x.count), dk = [Double](repeating: 0, count: k.count)
            for s in 0..<n { for iy in 0..<h { for ix in 0..<w { for ky in 0..<kh { for kx in 0..<kw {
                let oy = iy * c.strides.0 - pt + ky * c.dilation.0, ox = ix * c.strides.1 - pl + kx * c.dilation.1
                guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
                for ci in 0..<ch {
                    let xi = ((s * h + iy) * w + ix) * ch + ci
                    for o in 0..<f {
                        let yi = ((s * oh + oy) * ow + ox) * f + o, ki = ((ky * kw + kx) * f + o) * ch + ci
                        y[yi] += Double(x[flat: xi]) * Double(k[flat: ki])
                        dx[xi] += Double(g[flat: yi]) * Double(k[flat: ki])
                        dk[ki] += Double(g[flat: yi]) * Double(x[flat: xi])
                    }
                }
            } } } } }
            let label = "case \(index) \(c.input) kernel \(c.kernel) strides \(c.strides) dilation \(c.dilation) same \(c.same) output padding \(String(describing: c.outputPadding))"
            for library in Kernels.availableLibraries {
                try Kernels.with(.only(library)) {
                    let xv = Variable(x, requiresGrad: true), kv = Variable(k, requiresGrad: true)
                    let out = try xv.conv2dTranspose(kernel: kv, strides: c.strides, padding: c.same ? .same : .valid,
                                                     outputPadding: c.outputPadding, dilation: c.dilation)
                    assertClose(out.value, Tensor(shape: [n, oh, ow, f], values: y.map(Float.init)), tolerance: 1e-4, "\(library) forward \(label)")
                    out.backward(seed: g)
                    assertClose(xv.grad ?? Tensor.zeros(c.input), Tensor(shape: c.input, values: dx.map(Float.init)), tolerance: 1e-4, "\(library) d input \(label)")
                    assertClose(kv.grad ?? Tensor.zeros(c.kernel), Tensor(shape: c.kernel, values: dk.map(Float.init)), tolerance: 1e-4, "\(library) d kernel \(label)")
                }
            }
        }
    }

    /// The transposed convolution really runs on oneDNN's primitives (not its fallback)
    /// for a decoder's upsampling geometry, valid and same.
    func testConv2dTransposeTakesTheDirectPrimitives() throws {
        try XCTSkipUnless(Kernels.oneDNNAvailable)
        for padTop in [0, 1] {
            let g = WindowGeometry(batch: 2, height: 14, width: 14, channels: 32, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                                   dilationH: 1, dilationW: 1, padTop: padTop, padLeft: padTop, outH: 7, outW: 7)
            let rows = randomTensor([2 * g.positions, 64], seed: 5), k = randomTensor([3, 3, 32, 64], seed: 6)
            XCTAssertNotNil(OneDNN.convolutionBackwardData(g, filters: 64, gradient: rows.storage.pointer, kernel: k.storage.pointer, bias: false, relu: false), "pad \(padTop)")
            withExtendedLifetime((rows, k)) {}
        }
    }

    typealias PoolCase = (input: [Int], pool: (Int, Int), strides: (Int, Int), same: Bool)

    func randomPoolCases() -> [PoolCase] {
        var rng = SeededGenerator(seed: 17)
        var cases: [PoolCase] = []
        while cases.count < 24 {
            let input = [Int.random(in: 1...5, using: &rng), Int.random(in: 1...9, using: &rng), Int.random(in: 1...9, using: &rng), Int.random(in: 1...19, using: &rng)]
            let pool = (Int.random(in: 1...4, using: &rng), Int.random(in: 1...4, using: &rng))
            let strides = (Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng))
            let same = Bool.random(using: &rng)
            if same || (pool.0 <= input[1] && pool.1 <= input[2]) { cases.append((input, pool, strides, same)) }
        }
        // The convnet's two pooling layers at batches that are split over the cores.
        cases.append(([16, 26, 26, 32], (2, 2), (2, 2), false))
        cases.append(([24, 11, 11, 64], (2, 2), (2, 2), false))
        cases.append(([9, 10, 10, 8], (3, 3), (2, 2), true))
        return cases
    }

    /// Max pooling on every path against loops in Double: the forward maxima, and the
    /// gradient sent to each window's winner (random values have no ties), on random
    /// shapes, pool sizes, strides and paddings, and on batches split over the cores.
    func testMaxPoolOnEveryPathMatchesDoubleForwardAndBackward() throws {
        for (index, c) in randomPoolCases().enumerated() {
            let (n, h, w, ch) = (c.input[0], c.input[1], c.input[2], c.input[3])
            let (oh, pt) = window(h, c.pool.0, c.strides.0, 1, c.same)
            let (ow, pl) = window(w, c.pool.1, c.strides.1, 1, c.same)
            let x = randomTensor(c.input, seed: UInt64(index + 200)), g = randomTensor([n, oh, ow, ch], seed: UInt64(index + 300))
            var y = [Double](repeating: 0, count: n * oh * ow * ch), dx = [Double](repeating: 0, count: x.count)
            for s in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ci in 0..<ch {
                var best = -Double.infinity, winner = -1
                for ky in 0..<c.pool.0 { for kx in 0..<c.pool.1 {
                    let iy = oy * c.strides.0 - pt + ky, ix = ox * c.strides.1 - pl + kx
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    let xi = ((s * h + iy) * w + ix) * ch + ci
                    if Double(x[flat: xi]) > best { best = Double(x[flat: xi]); winner = xi }
                } }
                let yi = ((s * oh + oy) * ow + ox) * ch + ci
                y[yi] = best
                dx[winner] += Double(g[flat: yi])
            } } } }
            let label = "case \(index) \(c.input) pool \(c.pool) strides \(c.strides) same \(c.same)"
            for library in Kernels.availableLibraries {
                try Kernels.with(.only(library)) {
                    let xv = Variable(x, requiresGrad: true)
                    let out = try xv.maxPool2d(poolSize: c.pool, strides: c.strides, padding: c.same ? .same : .valid)
                    assertClose(out.value, Tensor(shape: [n, oh, ow, ch], values: y.map(Float.init)), tolerance: 0, "\(library) forward \(label)")
                    out.backward(seed: g)
                    assertClose(xv.grad ?? Tensor.zeros(c.input), Tensor(shape: c.input, values: dx.map(Float.init)), tolerance: 1e-6, "\(library) d input \(label)")
                    // Inference (no gradient wanted) takes the same maxima.
                    let inferred = try Variable(x).maxPool2d(poolSize: c.pool, strides: c.strides, padding: c.same ? .same : .valid)
                    assertClose(inferred.value, out.value, tolerance: 0, "\(library) inference \(label)")
                }
            }
        }
    }

    /// Both paths send a tied window's gradient to its first maximum in row-major order
    /// (after relu, many windows are all zeros), and oneDNN really runs its primitive.
    func testMaxPoolTiesAndThePrimitive() throws {
        let g = WindowGeometry(batch: 1, height: 3, width: 3, channels: 2, kernelH: 2, kernelW: 2, strideH: 1, strideW: 1,
                               dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0, outH: 2, outW: 2)
        if Kernels.oneDNNAvailable {
            let pool = try XCTUnwrap(OneDNN.maxPool(g, batch: 1, training: true))
            XCTAssertNotEqual(pool.forward.implementation, "?")
            XCTAssertNotNil(pool.backwardPrimitive())
        }
        for library in Kernels.availableLibraries {
            try Kernels.with(.only(library)) {
                let x = Variable(Tensor(shape: [1, 3, 3, 2], values: [0, 1, 0, 5, 2, 5,
                                                                     0, 5, 0, 1, 2, 0,
                                                                     0, 0, 0, 0, 0, 0]), requiresGrad: true)
                let y = try x.maxPool2d(poolSize: (2, 2), strides: (1, 1))
                XCTAssertEqual(y.value.scalars, [0, 5, 2, 5, 0, 5, 2, 1], "\(library)")
                y.backward(seed: Tensor(shape: [1, 2, 2, 2], values: [1, 10, 100, 1000, 10000, 100000, 1e6, 1e7]))
                XCTAssertEqual(x.grad!.scalars, [1, 0, 0, 1010, 100, 0,
                                                 10000, 100000, 0, 1e7, 1e6, 0,
                                                 0, 0, 0, 0, 0, 0], "\(library)")
            }
        }
    }

    /// oneDNN calls run on one OpenMP thread in their caller, on the calling thread and
    /// on Dispatch workers alike, so they never add threads to the ones Kiln splits over.
    func testOneDNNRunsOnOneThreadPerCaller() throws {
        try XCTSkipUnless(Kernels.oneDNNAvailable)
        try Kernels.with(.only(.onednn)) {
            _ = try Variable(randomTensor([4, 6, 6, 3], seed: 1)).conv2d(kernel: Variable(randomTensor([3, 3, 3, 4], seed: 2)))
            XCTAssertEqual(OneDNN.threadsForThisThread(), 1)
            var threads = [Int](repeating: 0, count: 4)
            threads.withUnsafeMutableBufferPointer { t in
                DispatchQueue.concurrentPerform(iterations: 4) { i in
                    var c = [Float](repeating: 0, count: 4)
                    let a: [Float] = [1, 2, 3, 4]
                    OneDNN.sgemm(false, false, 2, 2, 2, 1, a, 2, a, 2, 0, &c, 2)
                    t[i] = OneDNN.threadsForThisThread()
                }
            }
            XCTAssertEqual(threads, [1, 1, 1, 1])
        }
    }
}
