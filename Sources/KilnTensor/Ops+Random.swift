import Foundation

// MARK: - Random ops: dropout, noise and the reparameterised normal draw

extension Variable {
    /// Inverted dropout: in training each element is zeroed with probability `rate` and
    /// the survivors are scaled by 1/(1 − rate); otherwise the identity.
    ///
    /// The mask is drawn in blocks of `dropoutBlock` elements, each from its own
    /// generator seeded by one draw from `generator` and the block's number, so blocks
    /// are drawn on all cores and the mask depends on the seed only, not on the core count.
    /// - Throws: `TensorError` when rate is outside [0, 1).
    public func dropout(rate: Float, training: Bool, generator: inout SeededGenerator) throws(TensorError) -> Variable {
        guard rate >= 0, rate < 1 else {
            throw TensorError(.invalidArgument, op: "dropout", "rate must be in [0, 1). Received: rate=\(rate)", shapes: [shape])
        }
        guard training, rate > 0 else { return self }
        let keep = 1 / (1 - rate)
        let base = generator.next()
        let x = value, count = x.count
        let mask = Tensor(uninitializedShape: shape), y = Tensor(uninitializedShape: shape)
        let px = x.storage.pointer, pm = mask.storage.pointer, py = y.storage.pointer
        let block = Variable.dropoutBlock
        let blocks = (count + block - 1) / block
        parallelChunks(blocks, minimumChunk: 2) { range in
            for b in range {
                var g = SeededGenerator(seed: base &+ UInt64(b) &* 0x9E37_79B9_7F4A_7C15)
                for i in (b * block)..<Swift.min(count, (b + 1) * block) {
                    let m: Float = g.nextUnit() < rate ? 0 : keep
                    pm[i] = m
                    py[i] = px[i] * m
                }
            }
        }
        return Variable(y, op: "dropout", parents: [self]) { g in
            self.accumulate(mapBinary(g, mask, shape: mask.shape, *))
        }
    }

    /// Elements per dropout mask block (one generator each).
    static let dropoutBlock = 1 << 14

    /// Adds N(0, stddev²) noise in training (Keras `GaussianNoise`); the identity otherwise.
    /// - Throws: `TensorError` when stddev is negative or not finite.
    public func gaussianNoise(stddev: Float, training: Bool, generator: inout SeededGenerator) throws(TensorError) -> Variable {
        guard stddev >= 0, stddev.isFinite else {
            throw TensorError(.invalidArgument, op: "gaussian_noise", "stddev must be non-negative. Received: stddev=\(stddev)", shapes: [shape])
        }
        guard training, stddev > 0 else { return self }
        let noise = Tensor.normal(shape, stddev: stddev, generator: &generator)
        let y = mapBinary(value, noise, shape: shape, +)
        return Variable(y, op: "gaussian_noise", parents: [self]) { g in self.accumulate(g) }
    }

    /// The reparameterisation trick: mu + exp(½·logVar)·ε with ε ~ N(0, 1), so gradients
    /// reach both mu and logVar.
    /// - Throws: `TensorError` when mu and logVar differ in shape.
    public static func sampleNormal(mu: Variable, logVar: Variable, generator: inout SeededGenerator) throws(TensorError) -> Variable {
        guard mu.shape == logVar.shape else {
            throw TensorError.shapes("sample_normal", mu.shape, logVar.shape, "mu and log_var must have one shape")
        }
        let epsilon = Tensor.normal(mu.shape, stddev: 1, generator: &generator)
        // scaledNoise = exp(½·logVar)·ε, which is also d y / d logVar · 2.
        let scaledNoise = mapBinary(logVar.value, epsilon, shape: mu.shape) { lv, e in Foundation.exp(0.5 * lv) * e }
        let y = mapBinary(mu.value, scaledNoise, shape: mu.shape, +)
        return Variable(y, op: "sample_normal", parents: [mu, logVar]) { g in
            if mu.requiresGrad { mu.accumulate(g) }
            if logVar.requiresGrad { logVar.accumulate(mapBinary(g, scaledNoise, shape: g.shape) { g, s in 0.5 * g * s }) }
        }
    }
}
