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
