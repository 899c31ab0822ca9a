// MARK: - Matrix multiplication through cblas_sgemm

extension Variable {
    /// Matrix product over the last two axes, with numpy-style broadcasting of the
    /// leading (batch) axes: [..., m, k] · [..., k, n] → [..., m, n]. The transpose
    /// flags swap the last two axes of an operand. A rank-2 right operand (a weight)
    /// is applied to every row of the left one in a single sgemm.
    public func matmul(_ other: Variable, transposeA: Bool = false, transposeB: Bool = false) throws(TensorError) -> Variable {
        let a = value, b = other.value
        guard a.rank >= 2, b.rank >= 2 else {
            throw TensorError.shapes("matmul", a.shape, b.shape, "both operands need at least 2 axes")
        }
        let (am, ak) = transposeA ? (a.shape[a.rank - 1], a.shape[a.rank - 2]) : (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (bk, bn) = transposeB ? (b.shape[b.rank - 1], b.shape[b.rank - 2]) : (b.shape[b.rank - 2], b.shape[b.rank - 1])
        guard ak == bk else {
            throw TensorError.shapes("matmul", a.shape, b.shape, "inner dimensions differ (\(ak) vs \(bk))")
        }
        let aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
        guard let batch = Shapes.broadcast(aBatch, bBatch) else {
            throw TensorError.shapes("matmul", a.shape, b.shape, "batch axes cannot broadcast")
        }
        let plan = MatmulPlan(a: a.shape, b: b.shape, batch: batch, m: am, k: ak, n: bn, transposeA: transposeA, transposeB: transposeB)
        let y = Tensor(shape: batch + [am, bn], repeating: 0)
        plan.forward(a, b, into: y)
        return Variable(y, op: "matmul", parents: [self, other]) { g in
            if self.requiresGrad { self.accumulate(plan.gradientA(g, b)) }
            if other.requiresGrad { other.accumulate(plan.gradientB(g, a)) }
        }
    }
}

/// The sgemm calls for one matmul shape: the forward product and both gradients,
/// each looping over broadcast batch matrices (or folded into one call when the right
/// operand is a plain matrix).
struct MatmulPlan {
    let a: [Int], b: [Int], batch: [Int]
    let m: Int, k: Int, n: Int
    let transposeA: Bool, transposeB: Bool

    var batchCount: Int { Shapes.count(batch) }
    /// Left rows can be folded into m when the right operand has no batch axes.
    var folds: Bool { b.count == 2 && !transposeA }

    /// Matrix offsets (in matrices) of a and b for each broadcast batch index.
    func batchOffsets() -> [(Int, Int)] {
        let aStrides = Shapes.broadcastStrides(Array(a.dropLast(2)), to: batch)
        let bStrides = Shapes.broadcastStrides(Array(b.dropLast(2)), to: batch)
        var result: [(Int, Int)] = []
        result.reserveCapacity(batchCount)
        let runs = BroadcastRuns(shape: batch, strides: [aStrides, bStrides])
        runs.forEachRun { off, len, inner in
            for i in 0..<len { result.append((off[0] + i * inner[0], off[1] + i * inner[1])) }
        }
        return result
    }

    func forward(_ x: Tensor, _ w: Tensor, into y: Tensor) {
        let pa = x.storage.pointer, pb = w.storage.pointer, pc = y.storage.pointer
        let lda = transposeA ? m : k, ldb = transposeB ? k : n
        if folds {
            let rows = batchCount * m
            BLAS.sgemm(transposeA: false, transposeB: transposeB, m: rows, n: n, k: k, a: pa, lda: lda, b: pb, ldb: ldb, c: pc, ldc: n)
            return
        }
        for (i, (oa, ob)) in batchOffsets().enumerated() {
            BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                       a: pa + oa * m * k, lda: lda, b: pb + ob * k * n, ldb: ldb, c: pc + i * m * n, ldc: n)
        }
    }

    /// d loss / d a, accumulated over the batches that broadcast a.
    func gradientA(_ g: Tensor, _ w: Tensor) -> Tensor {
        let da = Tensor(shape: a, repeating: 0)
        let pg = g.storage.pointer, pb = w.storage.pointer, pd = da.storage.pointer
        let ldb = transposeB ? k : n
        if folds {
            // dA = g · op(B)ᵀ
            BLAS.sgemm(transposeA: false, transposeB: !transposeB, m: batchCount * m, n: k, k: n,
                       a: pg, lda: n, b: pb, ldb: ldb, c: pd, ldc: k)
            return da
        }
        for (i, (oa, ob)) in batchOffsets().enumerated() {
            let gi = pg + i * m * n, bi = pb + ob * k * n, di = pd + oa * m * k
            if transposeA {
                // dA (k×m) = op(B) · gᵀ
                BLAS.sgemm(transposeA: transposeB, transposeB: true, m: k, n: m, k: n,
                           a: bi, lda: ldb, b: gi, ldb: n, beta: 1, c: di, ldc: m)
            } else {
                BLAS.sgemm(transposeA: false, transposeB: !transposeB, m: m, n: k, k: n,
                           a: gi, lda: n, b: bi, ldb: ldb, beta: 1, c: di, ldc: k)
            }
        }
        return da
    }

    /// d loss / d b, accumulated over the batches that broadcast b.
    func gradientB(_ g: Tensor, _ x: Tensor) -> Tensor {
        let db = Tensor(shape: b, repeating: 0)
        let pg = g.storage.pointer, pa = x.storage.pointer, pd = db.storage.pointer
        let lda = transposeA ? m : k
        if folds {
            let rows = batchCount * m
            if transposeB {
                // dB (n×k) = gᵀ · A
                BLAS.sgemm(transposeA: true, transposeB: false, m: n, n: k, k: rows, a: pg, lda: n, b: pa, ldb: k, c: pd, ldc: k)
            } else {
                // dB (k×n) = Aᵀ · g
                BLAS.sgemm(transposeA: true, transposeB: false, m: k, n: n, k: rows, a: pa, lda: k, b: pg, ldb: n, c: pd, ldc: n)
            }
            return db
        }
        for (i, (oa, ob)) in batchOffsets().enumerated() {
            let gi = pg + i * m * n, ai = pa + oa * m * k, di = pd + ob * k * n
            if transposeB {
                BLAS.sgemm(transposeA: true, transposeB: transposeA, m: n, n: k, k: m,
                           a: gi, lda: n, b: ai, ldb: lda, beta: 1, c: di, ldc: k)
            } else {
                BLAS.sgemm(transposeA: !transposeA, transposeB: false, m: k, n: n, k: m,
                           a: ai, lda: lda, b: gi, ldb: n, beta: 1, c: di, ldc: n)
            }
        }
        return db
    }
}

// MARK: - Dense: x·W + b, then relu, as one op

extension Variable {
    /// x·W + b along the last axis of x (any rank; W is [k, n], b is [n]), followed by
    /// relu when `relu` is set — the `dense` layer in one op. Forward, the bias and relu
    /// are applied in place to the sgemm output in one pass; backward, relu's mask is
    /// applied to g once and the three gradients follow from it (two sgemms and a column
    /// sum), with no broadcast copies. On OpenBLAS, results equal `matmul`, `add`, `relu`
    /// in turn, bit for bit; on oneDNN the forward pass is one matmul primitive with the
    /// bias and relu as post-ops (equal within rounding).
    public func dense(kernel: Variable, bias: Variable?, relu: Bool) throws(TensorError) -> Variable {
        let x = value, w = kernel.value
        guard x.rank >= 1, w.rank == 2, x.shape.last == w.shape[0] else {
            throw TensorError.shapes("dense", x.shape, w.shape, "the kernel must be [\(x.shape.last ?? 0), units]")
        }
        let k = w.shape[0], n = w.shape[1], rows = k == 0 ? x.shape.dropLast().reduce(1, *) : x.count / k
        if let b = bias?.value, b.shape != [n] {
            throw TensorError.shapes("dense", w.shape, b.shape, "the bias must be [\(n)]")
        }
        let y = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [n])
        let py = y.storage.pointer
        var fused = false
        if k == 0 {
            py.initialize(repeating: 0, count: y.count)
        } else if rows > 0 && n > 0 {
            // oneDNN: one matmul primitive with the bias and relu as post-ops, for
            // products large enough to pay for a primitive call (memory objects, a
            // stream); small ones (a prediction's few rows) take dnnl_sgemm below.
            fused = Kernels.library(for: .matmul) == .onednn && rows * k * n >= OneDNN.primitiveThreshold
                && OneDNN.dense(x: x.storage.pointer, w: w.storage.pointer, bias: bias?.value.storage.pointer, y: py,
                                rows: rows, k: k, n: n, relu: relu)
            if !fused {
                BLAS.sgemm(transposeA: false, transposeB: false, m: rows, n: n, k: k,
                           a: x.storage.pointer, lda: k, b: w.storage.pointer, ldb: n, c: py, ldc: n)
            }
        }
        if !fused { biasRelu(y, columns: n, bias: bias?.value, relu: relu) }
        withExtendedLifetime(bias) {}
        let parents = bias.map { [self, kernel, $0] } ?? [self, kernel]
        return Variable(y, op: relu ? "dense_relu" : "dense", parents: parents) { g in
            let dz = preActivationGradient(g, output: y, columns: n, relu: relu, bias: bias)
            let pz = dz.storage.pointer
            if kernel.requiresGrad {
                // dW (k×n) = xᵀ · dz
                let dw = Tensor(uninitializedShape: [k, n])
                if rows == 0 {
                    dw.storage.pointer.initialize(repeating: 0, count: dw.count)
                } else if dw.count > 0 {
                    BLAS.sgemm(transposeA: true, transposeB: false, m: k, n: n, k: rows,
                               a: x.storage.pointer, lda: k, b: pz, ldb: n, c: dw.storage.pointer, ldc: n)
                }
                kernel.accumulate(dw)
            }
            if self.requiresGrad {
                // dx (rows×k) = dz · Wᵀ
                let dx = Tensor(uninitializedShape: x.shape)
                if n == 0 {
                    dx.storage.pointer.initialize(repeating: 0, count: dx.count)
                } else if dx.count > 0 {
                    BLAS.sgemm(transposeA: false, transposeB: true, m: rows, n: k, k: n,
                               a: pz, lda: n, b: w.storage.pointer, ldb: n, c: dx.storage.pointer, ldc: k)
                }
                self.accumulate(dx)
            }
            withExtendedLifetime(dz) {}
        }
    }
}

// MARK: - Bias and relu epilogues shared by the fused ops (dense, conv2d)

/// y (rows of `columns`) += bias, then relu, in place: one pass over the cores.
func biasRelu(_ y: Tensor, columns n: Int, bias: Tensor?, relu: Bool) {
    guard bias != nil || relu, n > 0 else { return }
    let py = y.storage.pointer, pb = bias?.storage.pointer
    parallelChunks(y.count / n, minimumChunk: Swift.max(1, (1 << 15) / n)) { range in
        for r in range {
            let row = py + r * n
            switch (pb, relu) {
            case let (b?, true): for j in 0..<n { let v = row[j] + b[j]; row[j] = v > 0 ? v : 0 }
            case let (b?, false): for j in 0..<n { row[j] += b[j] }
            default: for j in 0..<n { let v = row[j]; row[j] = v > 0 ? v : 0 }
            }
        }
    }
}

/// The gradient before a fused bias + relu epilogue: g masked where the output y is 0
/// (g itself without relu). Adds the column sums into the bias gradient on the way, in
/// the same pass over rows: partial sums per chunk of rows on the cores, then added.
func preActivationGradient(_ g: Tensor, output y: Tensor, columns n: Int, relu: Bool, bias: Variable?) -> Tensor {
    let sums = bias?.requiresGrad == true && n > 0
    guard relu || sums else { return g }
    let dz = relu ? Tensor(uninitializedShape: g.shape) : g
    let pg = g.storage.pointer, py = y.storage.pointer, pz = dz.storage.pointer
    let rows = n > 0 ? g.count / n : 0
    let minimum = Swift.max(1, (1 << 15) / Swift.max(n, 1))
    let chunks = Parallel.chunkCount(rows, minimumChunk: minimum)
    let partial = Tensor(shape: [sums ? chunks : 0, n], repeating: 0)
    let pp = partial.storage.pointer
    Parallel.forEachChunk(rows, minimumChunk: minimum) { c, range in
        if relu { reluMask(pg, py, pz, (range.lowerBound * n)..<(range.upperBound * n)) }
        guard sums else { return }
        let acc = pp + c * n
        for r in range {
            let row = pz + r * n
            for j in 0..<n { acc[j] += row[j] }
        }
    }
    if let bias, sums {
        let db = Tensor(shape: [n], repeating: 0)
        let pd = db.storage.pointer
        for c in 0..<chunks { for j in 0..<n { pd[j] += pp[c * n + j] } }
        bias.accumulate(db)
    }
    withExtendedLifetime(partial) {}
    return dz
}
