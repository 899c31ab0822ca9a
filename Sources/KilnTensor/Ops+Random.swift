import Foundation

// MARK: - Random ops: dropout, noise and the reparameterised normal draw

extension Variable {
    /// Inverted dropout: in training each element is zeroed with probability `rate` and
    /// the survivors are scaled by 1/(1 − rate); otherwise the identity.
    /// - Throws: `TensorError` when rate is outside [0, 1).
    public func dropout(rate: Float, training: Bool, generator: inout SeededGenerator) throws(TensorError) -> Variable {
        guard rate >= 0, rate < 1 else {
            throw TensorError(.invalidArgument, op: "dropout", "rate must be in [0, 1). Received: rate=\(rate)", shapes: [shape])
        }
        guard training, rate > 0 else { return self }
        let keep = 1 / (1 - rate)
        let mask = Tensor(uninitializedShape: shape), pm = mask.storage.pointer
        for i in 0..<mask.count { pm[i] = generator.nextUnit() < rate ? 0 : keep }
        let y = mapBinary(value, mask, shape: shape, *)
        return Variable(y, op: "dropout", parents: [self]) { g in
            self.accumulate(mapBinary(g, mask, shape: mask.shape, *))
        }
    }

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
