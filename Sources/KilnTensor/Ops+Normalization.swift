import Foundation

// MARK: - Batch and layer normalisation over the last (channel) axis

/// A tensor viewed as rows × channels, the channel being the last axis.
private struct ChannelRows {
    let rows: Int, channels: Int
    init(_ shape: [Int]) {
        channels = shape.last ?? 1
        rows = channels == 0 ? 0 : Shapes.count(shape) / channels
    }

    /// Per-channel Σ g and Σ g·x̂ — the gradients of beta and gamma.
    func affineGradients(_ g: Tensor, _ xhat: Tensor) -> (gamma: Tensor, beta: Tensor) {
        let dGamma = Tensor(shape: [channels], repeating: 0), dBeta = Tensor(shape: [channels], repeating: 0)
        let pg = g.storage.pointer, ph = xhat.storage.pointer, dgp = dGamma.storage.pointer, dbp = dBeta.storage.pointer
        for r in 0..<rows {
            let gr = pg + r * channels, hr = ph + r * channels
            for c in 0..<channels { dgp[c] += gr[c] * hr[c]; dbp[c] += gr[c] }
        }
        return (dGamma, dBeta)
    }

    /// y = x̂·gamma + beta per channel, in parallel over rows.
    func scaleShift(_ xhat: Tensor, _ gamma: Tensor, _ beta: Tensor) -> Tensor {
        let y = Tensor(uninitializedShape: xhat.shape)
        let ph = xhat.storage.pointer, py = y.storage.pointer, pgam = gamma.storage.pointer, pbet = beta.storage.pointer
        let c = channels
        parallelChunks(rows, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(c, 1))) { range in
            for r in range {
                let hr = ph + r * c, yr = py + r * c
                for j in 0..<c { yr[j] = hr[j] * pgam[j] + pbet[j] }
            }
        }
        return y
    }
}

extension Variable {
    /// Batch normalisation over every axis but the last, as Keras `BatchNormalization`.
    ///
    /// Training uses the batch's mean and (biased) variance and updates the moving
    /// statistics in place: moving = moving·momentum + batch·(1 − momentum).
    /// Inference (and a frozen layer) uses the moving statistics and leaves them alone.
    /// - Parameters:
    ///   - gamma, beta: scale and offset, [channels].
    ///   - movingMean, movingVariance: [channels]; their `value` is updated when training.
    /// - Throws: `TensorError` when a parameter's shape is not [channels].
    public func batchNorm(
        gamma: Variable, beta: Variable, movingMean: Variable, movingVariance: Variable,
        momentum: Float = 0.99, epsilon: Float = 1e-3, training: Bool
    ) throws(TensorError) -> Variable {
        let x = value
        guard x.rank >= 2 else {
            throw TensorError(.shapeMismatch, op: "batch_norm", "expected an input with a batch axis and channels. Received: \(x.shape)", shapes: [x.shape])
        }
        let layout = ChannelRows(x.shape), c = layout.channels
        for (name, p) in [("gamma", gamma), ("beta", beta), ("moving_mean", movingMean), ("moving_variance", movingVariance)] where p.shape != [c] {
            throw TensorError.shapes("batch_norm", x.shape, p.shape, "\(name) must be [\(c)] for the input's channels")
        }
        let mean = Tensor(shape: [c], repeating: 0), invStd = Tensor(uninitializedShape: [c])
        let pm = mean.storage.pointer, ps = invStd.storage.pointer, px = x.storage.pointer
        if training {
            guard layout.rows >= 1 else {
                throw TensorError(.shapeMismatch, op: "batch_norm", "cannot compute batch statistics of an empty batch", shapes: [x.shape])
            }
            let variance = Tensor(shape: [c], repeating: 0), pv = variance.storage.pointer
            for r in 0..<layout.rows { let xr = px + r * c; for j in 0..<c { pm[j] += xr[j] } }
            let scale = 1 / Float(layout.rows)
            for j in 0..<c { pm[j] *= scale }
            for r in 0..<layout.rows { let xr = px + r * c; for j in 0..<c { let d = xr[j] - pm[j]; pv[j] += d * d } }
            for j in 0..<c { pv[j] *= scale; ps[j] = 1 / (pv[j] + epsilon).squareRoot() }
            movingMean.value.withUnsafeMutableBufferPointer { m in
                for j in 0..<c { m[j] = m[j] * momentum + pm[j] * (1 - momentum) }
            }
            movingVariance.value.withUnsafeMutableBufferPointer { m in
                for j in 0..<c { m[j] = m[j] * momentum + pv[j] * (1 - momentum) }
            }
            withExtendedLifetime(variance) {}
        } else {
            let mm = movingMean.value.storage.pointer, mv = movingVariance.value.storage.pointer
            for j in 0..<c { pm[j] = mm[j]; ps[j] = 1 / (mv[j] + epsilon).squareRoot() }
        }
        let xhat = Tensor(uninitializedShape: x.shape), ph = xhat.storage.pointer
        parallelChunks(layout.rows, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(c, 1))) { range in
            for r in range {
                let xr = px + r * c, hr = ph + r * c
                for j in 0..<c { hr[j] = (xr[j] - pm[j]) * ps[j] }
            }
        }
        withExtendedLifetime(mean) {}
        let g0 = gamma.value
        let y = layout.scaleShift(xhat, g0, beta.value)
        return Variable(y, op: "batch_norm", parents: [self, gamma, beta]) { g in
            let (dGamma, dBeta) = layout.affineGradients(g, xhat)
            if self.requiresGrad {
                let dx = Tensor(uninitializedShape: x.shape)
                let pd = dx.storage.pointer, pg = g.storage.pointer, pgam = g0.storage.pointer
                let dgp = dGamma.storage.pointer, dbp = dBeta.storage.pointer
                let ph = xhat.storage.pointer, ps = invStd.storage.pointer
                let m = Float(layout.rows)
                parallelChunks(layout.rows, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(c, 1))) { range in
                    for r in range {
                        let gr = pg + r * c, hr = ph + r * c, dr = pd + r * c
                        if training {
                            // dx = γ·σ⁻¹/M · (M·g − Σg − x̂·Σ g·x̂)
                            for j in 0..<c { dr[j] = pgam[j] * ps[j] / m * (m * gr[j] - dbp[j] - hr[j] * dgp[j]) }
                        } else {
                            for j in 0..<c { dr[j] = gr[j] * pgam[j] * ps[j] }
                        }
                    }
                }
                self.accumulate(dx)
            }
            if gamma.requiresGrad { gamma.accumulate(dGamma) }
            if beta.requiresGrad { beta.accumulate(dBeta) }
        }
    }

    /// Layer normalisation over the last axis, as Keras `LayerNormalization(axis=-1)`:
    /// each row is normalised by its own mean and variance, then scaled and shifted.
    /// - Throws: `TensorError` when gamma or beta is not [channels].
    public func layerNorm(gamma: Variable, beta: Variable, epsilon: Float = 1e-3) throws(TensorError) -> Variable {
        let x = value
        guard x.rank >= 1 else {
            throw TensorError(.shapeMismatch, op: "layer_norm", "expected at least one axis. Received: \(x.shape)", shapes: [x.shape])
        }
        let layout = ChannelRows(x.shape), c = layout.channels
        for (name, p) in [("gamma", gamma), ("beta", beta)] where p.shape != [c] {
            throw TensorError.shapes("layer_norm", x.shape, p.shape, "\(name) must be [\(c)] for the last axis")
        }
        let xhat = Tensor(uninitializedShape: x.shape), invStd = Tensor(uninitializedShape: [layout.rows])
        let px = x.storage.pointer, ph = xhat.storage.pointer, ps = invStd.storage.pointer
        let minimumRows = Swift.max(1, (1 << 15) / Swift.max(c, 1))
        parallelChunks(layout.rows, minimumChunk: minimumRows) { range in
            for r in range {
                let xr = px + r * c, hr = ph + r * c
                var mean: Float = 0
                for j in 0..<c { mean += xr[j] }
                mean /= Float(c)
                var variance: Float = 0
                for j in 0..<c { let d = xr[j] - mean; variance += d * d }
                let s = 1 / (variance / Float(c) + epsilon).squareRoot()
                ps[r] = s
                for j in 0..<c { hr[j] = (xr[j] - mean) * s }
            }
        }
        let g0 = gamma.value
        let y = layout.scaleShift(xhat, g0, beta.value)
        return Variable(y, op: "layer_norm", parents: [self, gamma, beta]) { g in
            if self.requiresGrad {
                let dx = Tensor(uninitializedShape: x.shape)
                let pd = dx.storage.pointer, pg = g.storage.pointer, pgam = g0.storage.pointer
                let ph = xhat.storage.pointer, ps = invStd.storage.pointer
                parallelChunks(layout.rows, minimumChunk: minimumRows) { range in
                    for r in range {
                        let gr = pg + r * c, hr = ph + r * c, dr = pd + r * c
                        // dx = σ⁻¹ · (d − mean(d) − x̂·mean(d·x̂)), d = g·γ
                        var sum: Float = 0, dot: Float = 0
                        for j in 0..<c { let d = gr[j] * pgam[j]; sum += d; dot += d * hr[j] }
                        sum /= Float(c); dot /= Float(c)
                        for j in 0..<c { dr[j] = ps[r] * (gr[j] * pgam[j] - sum - hr[j] * dot) }
                    }
                }
                self.accumulate(dx)
            }
            if gamma.requiresGrad || beta.requiresGrad {
                let (dGamma, dBeta) = layout.affineGradients(g, xhat)
                if gamma.requiresGrad { gamma.accumulate(dGamma) }
                if beta.requiresGrad { beta.accumulate(dBeta) }
            }
        }
    }
}
