import Foundation

// MARK: - LSTM and GRU over [batch, time, features], Keras weight layouts
//
// The input projection of every step is one sgemm ([N·T, F] · kernel); each step adds
// one sgemm for the recurrent part. The initial state is zero. Backward is
// back-propagation through time over the stored gates, with the weight gradients
// again as a few large sgemms.

@inline(__always) private func logistic(_ x: Float) -> Float {
    x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
}

/// The sizes of a recurrent layer and the sgemms they share.
private struct RecurrentShape {
    let batch: Int, steps: Int, features: Int, units: Int, gates: Int
    var width: Int { gates * units }

    /// [N·T, width] = x · kernel (+ bias row).
    func inputProjection(_ x: Tensor, _ kernel: Tensor, bias: UnsafePointer<Float>?) -> Tensor {
        let out = Tensor(uninitializedShape: [batch, steps, width])
        BLAS.sgemm(transposeA: false, transposeB: false, m: batch * steps, n: width, k: features,
                   a: x.storage.pointer, lda: features, b: kernel.storage.pointer, ldb: width, c: out.storage.pointer, ldc: width)
        if let bias { addRow(bias, to: out.storage.pointer, rows: batch * steps) }
        return out
    }

    func addRow(_ row: UnsafePointer<Float>, to matrix: UnsafeMutablePointer<Float>, rows: Int, stride: Int? = nil) {
        let w = width, s = stride ?? width
        for r in 0..<rows { let d = matrix + r * s; for j in 0..<w { d[j] += row[j] } }
    }

    /// The upstream gradient for h at `step` of sample b (zero for the hidden steps of a
    /// last-step-only output).
    @inline(__always)
    func outputGradient(_ g: UnsafePointer<Float>, returnSequences: Bool, b: Int, step: Int) -> UnsafePointer<Float>? {
        if returnSequences { return g + (b * steps + step) * units }
        return step == steps - 1 ? g + b * units : nil
    }

    /// (dx, dKernel) from the gradient of the input projection, and its column sums.
    func inputGradients(_ dProjection: Tensor, x: Tensor, kernel: Tensor) -> (x: Tensor, kernel: Tensor) {
        let dx = Tensor(uninitializedShape: [batch, steps, features]), dk = Tensor(uninitializedShape: [features, width])
        let pd = dProjection.storage.pointer
        BLAS.sgemm(transposeA: false, transposeB: true, m: batch * steps, n: features, k: width,
                   a: pd, lda: width, b: kernel.storage.pointer, ldb: width, c: dx.storage.pointer, ldc: features)
        BLAS.sgemm(transposeA: true, transposeB: false, m: features, n: width, k: batch * steps,
                   a: x.storage.pointer, lda: features, b: pd, ldb: width, c: dk.storage.pointer, ldc: width)
        return (dx, dk)
    }

    /// Σ over steps ≥ 1 of h(step−1)ᵀ · d(step): the recurrent kernel's gradient.
    func recurrentKernelGradient(_ hs: Tensor, _ dRecurrent: Tensor) -> Tensor {
        let du = Tensor(shape: [units, width], repeating: 0)
        for step in 1..<Swift.max(steps, 1) {
            BLAS.sgemm(transposeA: true, transposeB: false, m: units, n: width, k: batch,
                       a: hs.storage.pointer + (step - 1) * units, lda: steps * units,
                       b: dRecurrent.storage.pointer + step * width, ldb: steps * width,
                       beta: 1, c: du.storage.pointer, ldc: width)
        }
        return du
    }

    func columnSums(_ m: Tensor, into out: UnsafeMutablePointer<Float>) {
        let p = m.storage.pointer, w = width
        for j in 0..<w { out[j] = 0 }
        for r in 0..<(batch * steps) { let row = p + r * w; for j in 0..<w { out[j] += row[j] } }
    }

    /// The last step of every sequence: [N, T, U] → [N, U].
    func lastStep(_ hs: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: [batch, units])
        for b in 0..<batch {
            (out.storage.pointer + b * units).update(from: hs.storage.pointer + (b * steps + steps - 1) * units, count: units)
        }
        return out
    }
}

extension Variable {
    /// Validates x [N,T,F] against kernel [F, gates·U] and recurrent kernel [U, gates·U].
    private func recurrentShape(op: String, gates: Int, kernel: Variable, recurrentKernel: Variable) throws(TensorError) -> RecurrentShape {
        let x = shape, k = kernel.shape, r = recurrentKernel.shape
        guard x.count == 3, x[1] >= 1, x[2] >= 1 else {
            throw TensorError(.shapeMismatch, op: op, "expected an input [batch, time ≥ 1, features ≥ 1]. Received: \(x)", shapes: [x])
        }
        guard k.count == 2, k[0] == x[2], k[1] % gates == 0, k[1] > 0 else {
            throw TensorError.shapes(op, x, k, "the kernel must be [features, \(gates)·units]")
        }
        let units = k[1] / gates
        guard r == [units, gates * units] else {
            throw TensorError.shapes(op, k, r, "the recurrent kernel must be [units, \(gates)·units] = [\(units), \(gates * units)]")
        }
        return RecurrentShape(batch: x[0], steps: x[1], features: x[2], units: units, gates: gates)
    }

    /// A Keras LSTM layer (tanh activation, sigmoid recurrent activation, zero initial
    /// state) over x [N, T, F].
    /// - Parameters:
    ///   - kernel: [F, 4U], gate order i, f, c, o.
    ///   - recurrentKernel: [U, 4U].
    ///   - bias: [4U], or nil for `use_bias=False`.
    ///   - returnSequences: output every step [N, T, U], or only the last [N, U].
    /// - Throws: `TensorError` when the weight shapes do not fit the input.
    public func lstm(kernel: Variable, recurrentKernel: Variable, bias: Variable?, returnSequences: Bool) throws(TensorError) -> Variable {
        let s = try recurrentShape(op: "lstm", gates: 4, kernel: kernel, recurrentKernel: recurrentKernel)
        if let bias, bias.shape != [s.width] {
            throw TensorError.shapes("lstm", kernel.shape, bias.shape, "the bias must be [4·units] = [\(s.width)]")
        }
        let (n, t, u, w) = (s.batch, s.steps, s.units, s.width)
        let x = value, wk = kernel.value, wr = recurrentKernel.value
        // Pre-activations, then (in place) the activated gates i, f, c̃, o of every step.
        let gates = s.inputProjection(x, wk, bias: bias.map { UnsafePointer($0.value.storage.pointer) })
        let hs = Tensor(uninitializedShape: [n, t, u]), cs = Tensor(uninitializedShape: [n, t, u])
        let pz = gates.storage.pointer, ph = hs.storage.pointer, pc = cs.storage.pointer
        for step in 0..<t {
            if step > 0 {
                BLAS.sgemm(transposeA: false, transposeB: false, m: n, n: w, k: u, a: ph + (step - 1) * u, lda: t * u,
                           b: wr.storage.pointer, ldb: w, beta: 1, c: pz + step * w, ldc: t * w)
            }
            for b in 0..<n {
                let z = pz + (b * t + step) * w, cell = pc + (b * t + step) * u, h = ph + (b * t + step) * u
                for j in 0..<u {
                    let i = logistic(z[j]), f = logistic(z[u + j]), candidate = Foundation.tanh(z[2 * u + j]), o = logistic(z[3 * u + j])
                    z[j] = i; z[u + j] = f; z[2 * u + j] = candidate; z[3 * u + j] = o
                    let previous: Float = step > 0 ? cell[j - u] : 0
                    let c = f * previous + i * candidate
                    cell[j] = c
                    h[j] = o * Foundation.tanh(c)
                }
            }
        }
        let y = returnSequences ? hs : s.lastStep(hs)
        let parents = [self, kernel, recurrentKernel] + (bias.map { [$0] } ?? [])
        return Variable(y, op: "lstm", parents: parents) { g in
            let dz = Tensor(uninitializedShape: [n, t, w])
            let dhNext = Tensor(shape: [n, u], repeating: 0), dcNext = Tensor(shape: [n, u], repeating: 0)
            let pz = gates.storage.pointer, pc = cs.storage.pointer, pg = g.storage.pointer
            let pdz = dz.storage.pointer, pdh = dhNext.storage.pointer, pdc = dcNext.storage.pointer
            for step in stride(from: t - 1, through: 0, by: -1) {
                for b in 0..<n {
                    let z = pz + (b * t + step) * w, d = pdz + (b * t + step) * w, cell = pc + (b * t + step) * u
                    let upstream = s.outputGradient(pg, returnSequences: returnSequences, b: b, step: step)
                    for j in 0..<u {
                        let dh = pdh[b * u + j] + (upstream?[j] ?? 0)
                        let i = z[j], f = z[u + j], candidate = z[2 * u + j], o = z[3 * u + j]
                        let tc = Foundation.tanh(cell[j])
                        let dc = pdc[b * u + j] + dh * o * (1 - tc * tc)
                        let previous: Float = step > 0 ? cell[j - u] : 0
                        d[j] = dc * candidate * i * (1 - i)
                        d[u + j] = dc * previous * f * (1 - f)
                        d[2 * u + j] = dc * i * (1 - candidate * candidate)
                        d[3 * u + j] = dh * tc * o * (1 - o)
                        pdc[b * u + j] = dc * f
                    }
                }
                if step > 0 {
                    // dh(step−1) = dz(step) · recurrentKernelᵀ
                    BLAS.sgemm(transposeA: false, transposeB: true, m: n, n: u, k: w, a: pdz + step * w, lda: t * w,
                               b: wr.storage.pointer, ldb: w, c: pdh, ldc: u)
                }
            }
            // Read only through their pointers above: keep them alive until here.
            withExtendedLifetime((dhNext, dcNext)) {}
            let (dx, dk) = s.inputGradients(dz, x: x, kernel: wk)
            if self.requiresGrad { self.accumulate(dx) }
            if kernel.requiresGrad { kernel.accumulate(dk) }
            if recurrentKernel.requiresGrad { recurrentKernel.accumulate(s.recurrentKernelGradient(hs, dz)) }
            if let bias, bias.requiresGrad {
                let db = Tensor(uninitializedShape: [w])
                s.columnSums(dz, into: db.storage.pointer)
                bias.accumulate(db)
            }
        }
    }

    /// A Keras GRU layer with its defaults (`reset_after=True`, tanh activation, sigmoid
    /// recurrent activation, zero initial state) over x [N, T, F]:
    /// z = σ(x·Wz + bz + h·Uz + b'z), r likewise, h̃ = tanh(x·Wh + bh + r ⊙ (h·Uh + b'h)),
    /// h ← z ⊙ h + (1 − z) ⊙ h̃.
    /// - Parameters:
    ///   - kernel: [F, 3U], gate order z, r, h.
    ///   - recurrentKernel: [U, 3U].
    ///   - bias: [2, 3U] (input bias, recurrent bias), or nil for `use_bias=False`.
    /// - Throws: `TensorError` when the weight shapes do not fit the input.
    public func gru(kernel: Variable, recurrentKernel: Variable, bias: Variable?, returnSequences: Bool) throws(TensorError) -> Variable {
        let s = try recurrentShape(op: "gru", gates: 3, kernel: kernel, recurrentKernel: recurrentKernel)
        if let bias, bias.shape != [2, s.width] {
            throw TensorError.shapes("gru", kernel.shape, bias.shape, "the bias must be [2, 3·units] = [2, \(s.width)]")
        }
        let (n, t, u, w) = (s.batch, s.steps, s.units, s.width)
        let x = value, wk = kernel.value, wr = recurrentKernel.value
        let biasValue = bias?.value
        let projection = s.inputProjection(x, wk, bias: biasValue.map { UnsafePointer($0.storage.pointer) })
        // The recurrent projection h·U + b' of every step, and the activated z, r, h̃.
        let recurrent = Tensor(shape: [n, t, w], repeating: 0), gates = Tensor(uninitializedShape: [n, t, w])
        let hs = Tensor(uninitializedShape: [n, t, u])
        let px = projection.storage.pointer, prc = recurrent.storage.pointer, pgt = gates.storage.pointer, ph = hs.storage.pointer
        for step in 0..<t {
            if step > 0 {
                BLAS.sgemm(transposeA: false, transposeB: false, m: n, n: w, k: u, a: ph + (step - 1) * u, lda: t * u,
                           b: wr.storage.pointer, ldb: w, c: prc + step * w, ldc: t * w)
            }
            if let biasValue { s.addRow(biasValue.storage.pointer + w, to: prc + step * w, rows: n, stride: t * w) }
            for b in 0..<n {
                let row = (b * t + step) * w
                let xp = px + row, rp = prc + row, gp = pgt + row, h = ph + (b * t + step) * u
                for j in 0..<u {
                    let z = logistic(xp[j] + rp[j]), r = logistic(xp[u + j] + rp[u + j])
                    let candidate = Foundation.tanh(xp[2 * u + j] + r * rp[2 * u + j])
                    gp[j] = z; gp[u + j] = r; gp[2 * u + j] = candidate
                    let previous: Float = step > 0 ? h[j - u] : 0
                    h[j] = z * previous + (1 - z) * candidate
                }
            }
        }
        withExtendedLifetime(projection) {}
        let y = returnSequences ? hs : s.lastStep(hs)
        let parents = [self, kernel, recurrentKernel] + (bias.map { [$0] } ?? [])
        return Variable(y, op: "gru", parents: parents) { g in
            let dProjection = Tensor(uninitializedShape: [n, t, w]), dRecurrent = Tensor(uninitializedShape: [n, t, w])
            let dhNext = Tensor(shape: [n, u], repeating: 0)
            let prc = recurrent.storage.pointer, pgt = gates.storage.pointer, ph = hs.storage.pointer, pg = g.storage.pointer
            let pdp = dProjection.storage.pointer, pdr = dRecurrent.storage.pointer, pdh = dhNext.storage.pointer
            for step in stride(from: t - 1, through: 0, by: -1) {
                for b in 0..<n {
                    let row = (b * t + step) * w
                    let rp = prc + row, gp = pgt + row, dp = pdp + row, dr = pdr + row, h = ph + (b * t + step) * u
                    let upstream = s.outputGradient(pg, returnSequences: returnSequences, b: b, step: step)
                    for j in 0..<u {
                        let dh = pdh[b * u + j] + (upstream?[j] ?? 0)
                        let z = gp[j], r = gp[u + j], candidate = gp[2 * u + j]
                        let previous: Float = step > 0 ? h[j - u] : 0
                        let dCandidate = dh * (1 - z) * (1 - candidate * candidate)
                        let dz = dh * (previous - candidate) * z * (1 - z)
                        let dr_ = dCandidate * rp[2 * u + j] * r * (1 - r)
                        dp[j] = dz; dp[u + j] = dr_; dp[2 * u + j] = dCandidate
                        dr[j] = dz; dr[u + j] = dr_; dr[2 * u + j] = dCandidate * r
                        pdh[b * u + j] = dh * z
                    }
                }
                if step > 0 {
                    BLAS.sgemm(transposeA: false, transposeB: true, m: n, n: u, k: w, a: pdr + step * w, lda: t * w,
                               b: wr.storage.pointer, ldb: w, beta: 1, c: pdh, ldc: u)
                }
            }
            withExtendedLifetime(dhNext) {}
            let (dx, dk) = s.inputGradients(dProjection, x: x, kernel: wk)
            if self.requiresGrad { self.accumulate(dx) }
            if kernel.requiresGrad { kernel.accumulate(dk) }
            if recurrentKernel.requiresGrad { recurrentKernel.accumulate(s.recurrentKernelGradient(hs, dRecurrent)) }
            if let bias, bias.requiresGrad {
                let db = Tensor(uninitializedShape: [2, w])
                s.columnSums(dProjection, into: db.storage.pointer)
                s.columnSums(dRecurrent, into: db.storage.pointer + w)
                bias.accumulate(db)
            }
        }
    }
}
