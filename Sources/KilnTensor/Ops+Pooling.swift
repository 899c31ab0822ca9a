// MARK: - Pooling and upsampling on NHWC images

extension Variable {
    /// Maximum over each pool window; padded positions never win. On Kiln's loop the
    /// gradient goes to the first maximum of each window (in row-major order), whose
    /// input index the forward pass records (branch-free selects: which tap wins follows
    /// no pattern); on oneDNN (`Kernels.library(for: .pooling)`) its primitive records
    /// the winners in its workspace and scatters through them.
    /// - Parameters:
    ///   - strides: defaults to the pool size, as in Keras.
    /// - Throws: `TensorError` when the input is not [N,H,W,C], a valid window does not
    ///   fit, or the input has more elements than a 32-bit index can name.
    public func maxPool2d(poolSize: (Int, Int), strides: (Int, Int)? = nil, padding: Padding = .valid) throws(TensorError) -> Variable {
        let g = try poolGeometry(op: "max_pool2d", poolSize: poolSize, strides: strides ?? poolSize, padding: padding)
        guard value.count <= Int(Int32.max) else {
            throw TensorError(.invalidArgument, op: "max_pool2d", "the input has \(value.count) elements, more than 2³¹ − 1", shapes: [shape])
        }
        let x = value
        let y = Tensor(uninitializedShape: [g.batch, g.outH, g.outW, g.channels])
        if Kernels.library(for: .pooling) == .onednn, y.count > 0,
           let forward = OneDNN.maxPoolForward(g, image: x.storage.pointer, output: y.storage.pointer, training: requiresGrad) {
            return Variable(y, op: "max_pool2d", parents: [self]) { grad in
                // oneDNN scatters through the winners its forward pass recorded; without a
                // backward primitive, Kiln's loop finds the same winners again.
                let dx = OneDNN.maxPoolBackward(g, forward, gradient: grad.storage.pointer)
                    ?? maxPoolScatter(g, winners: maxPoolWinners(g, x: x, y: Tensor(uninitializedShape: y.shape)), gradient: grad, inputShape: x.shape)
                withExtendedLifetime(grad) {}
                self.accumulate(dx)
            }
        }
        let winners = maxPoolWinners(g, x: x, y: y)
        return Variable(y, op: "max_pool2d", parents: [self]) { grad in
            self.accumulate(maxPoolScatter(g, winners: winners, gradient: grad, inputShape: x.shape))
        }
    }

    /// Mean over each pool window; with same padding only the pixels inside the image
    /// count, as in TensorFlow.
    /// - Throws: `TensorError` when the input is not [N,H,W,C] or a valid window does not fit.
    public func avgPool2d(poolSize: (Int, Int), strides: (Int, Int)? = nil, padding: Padding = .valid) throws(TensorError) -> Variable {
        let g = try poolGeometry(op: "avg_pool2d", poolSize: poolSize, strides: strides ?? poolSize, padding: padding)
        let x = value, c = g.channels
        let y = Tensor(uninitializedShape: [g.batch, g.outH, g.outW, c])
        let px = x.storage.pointer, py = y.storage.pointer
        g.forEachWindow { n, p, ys, ye, xs, xe in
            let out = py + (n * g.positions + p) * c
            out.update(repeating: 0, count: c)
            for iy in ys..<ye {
                for ix in xs..<xe {
                    let src = px + ((n * g.height + iy) * g.width + ix) * c
                    for j in 0..<c { out[j] += src[j] }
                }
            }
            let scale = 1 / Float((ye - ys) * (xe - xs))
            for j in 0..<c { out[j] *= scale }
        }
        return Variable(y, op: "avg_pool2d", parents: [self]) { grad in
            let dx = Tensor(shape: x.shape, repeating: 0)
            let pd = dx.storage.pointer, pg = grad.storage.pointer
            g.forEachWindow { n, p, ys, ye, xs, xe in
                let src = pg + (n * g.positions + p) * c
                let scale = 1 / Float((ye - ys) * (xe - xs))
                for iy in ys..<ye {
                    for ix in xs..<xe {
                        let d = pd + ((n * g.height + iy) * g.width + ix) * c
                        for j in 0..<c { d[j] += src[j] * scale }
                    }
                }
            }
            self.accumulate(dx)
        }
    }

    /// Mean over the spatial axes: [N,H,W,C] → [N,C].
    /// - Throws: `TensorError` when the input is not rank 4.
    public func globalAvgPool2d() throws(TensorError) -> Variable {
        guard shape.count == 4 else {
            throw TensorError(.shapeMismatch, op: "global_avg_pool2d", "expected an input [N,H,W,C]. Received: \(shape)", shapes: [shape])
        }
        return try mean(axes: [1, 2])
    }

    /// Nearest-neighbour upsampling: every pixel repeated size.0 × size.1 times.
    /// - Throws: `TensorError` when the input is not rank 4 or a size is not positive.
    public func upsampling2d(size: (Int, Int)) throws(TensorError) -> Variable {
        guard shape.count == 4, size.0 >= 1, size.1 >= 1 else {
            throw TensorError(.invalidArgument, op: "upsampling2d",
                              "expected an input [N,H,W,C] and positive sizes. Received: input \(shape), size=\(size)", shapes: [shape])
        }
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let (sh, sw) = size
        let oh = h * sh, ow = w * sw
        let x = value
        let y = Tensor(uninitializedShape: [n, oh, ow, c])
        let px = x.storage.pointer, py = y.storage.pointer
        parallelChunks(n * oh, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(ow * c, 1))) { rows in
            for row in rows {
                let b = row / oh, iy = (row % oh) / sh
                let dst = py + row * ow * c, src = px + (b * h + iy) * w * c
                for ox in 0..<ow { (dst + ox * c).update(from: src + (ox / sw) * c, count: c) }
            }
        }
        return Variable(y, op: "upsampling2d", parents: [self]) { grad in
            let dx = Tensor(shape: x.shape, repeating: 0)
            let pd = dx.storage.pointer, pg = grad.storage.pointer
            for row in 0..<(n * oh) {
                let b = row / oh, iy = (row % oh) / sh
                let src = pg + row * ow * c, dst = pd + (b * h + iy) * w * c
                for ox in 0..<ow {
                    let d = dst + (ox / sw) * c, s = src + ox * c
                    for j in 0..<c { d[j] += s[j] }
                }
            }
            self.accumulate(dx)
        }
    }

    private func poolGeometry(op: String, poolSize: (Int, Int), strides: (Int, Int), padding: Padding) throws(TensorError) -> WindowGeometry {
        guard shape.count == 4 else {
            throw TensorError(.shapeMismatch, op: op, "expected an input [N,H,W,C]. Received: \(shape)", shapes: [shape])
        }
        let rows = try windowOutput(op: op, input: shape[1], kernel: poolSize.0, stride: strides.0, dilation: 1, padding: padding, shapes: [shape])
        let cols = try windowOutput(op: op, input: shape[2], kernel: poolSize.1, stride: strides.1, dilation: 1, padding: padding, shapes: [shape])
        return WindowGeometry(
            batch: shape[0], height: shape[1], width: shape[2], channels: shape[3], kernelH: poolSize.0, kernelW: poolSize.1,
            strideH: strides.0, strideW: strides.1, dilationH: 1, dilationW: 1,
            padTop: rows.padBefore, padLeft: cols.padBefore, outH: rows.length, outW: cols.length)
    }
}

/// out[j], arg[j] = src[j], index + j where src[j] > out[j], eight channels at a time
/// with selects.
@inline(__always)
private func keepLarger(_ src: UnsafePointer<Float>, index: Int32, _ out: UnsafeMutablePointer<Float>, _ arg: UnsafeMutablePointer<Int32>, _ c: Int) {
    let lanes = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
    var j = 0
    while j + 8 <= c {
        let v = UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self)
        let o = UnsafeRawPointer(out + j).loadUnaligned(as: SIMD8<Float>.self)
        let a = UnsafeRawPointer(arg + j).loadUnaligned(as: SIMD8<Int32>.self)
        let better = v .> o
        UnsafeMutableRawPointer(out + j).storeBytes(of: o.replacing(with: v, where: better), as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(arg + j).storeBytes(of: a.replacing(with: lanes &+ (index &+ Int32(truncatingIfNeeded: j)), where: better), as: SIMD8<Int32>.self)
        j += 8
    }
    while j < c {
        if src[j] > out[j] { out[j] = src[j]; arg[j] = index &+ Int32(truncatingIfNeeded: j) }
        j += 1
    }
}

/// Kiln's max pooling: writes each window's maximum into y and returns its winners'
/// input indices (32-bit, in a tensor buffer of y's size, so they come from the buffer
/// pool like every other per-step array).
private func maxPoolWinners(_ g: WindowGeometry, x: Tensor, y: Tensor) -> Tensor {
    let c = g.channels
    let winners = Tensor(uninitializedShape: y.shape)
    let pw = UnsafeMutableRawPointer(winners.storage.pointer).bindMemory(to: Int32.self, capacity: winners.count)
    let px = x.storage.pointer, py = y.storage.pointer
    // Windows are never empty: same padding is smaller than the window.
    g.forEachWindow { n, p, ys, ye, xs, xe in
        let o = (n * g.positions + p) * c
        let out = py + o, arg = pw + o
        let first = ((n * g.height + ys) * g.width + xs) * c
        for j in 0..<c { out[j] = px[first + j]; arg[j] = Int32(truncatingIfNeeded: first + j) }
        for iy in ys..<ye {
            for ix in xs..<xe where iy != ys || ix != xs {
                let base = ((n * g.height + iy) * g.width + ix) * c
                keepLarger(px + base, index: Int32(truncatingIfNeeded: base), out, arg, c)
            }
        }
    }
    withExtendedLifetime(x) {}
    return winners
}

/// d x from d y: each output's gradient added at its winner's index, in parallel over
/// samples (a sample's winners lie in that sample's image, so overlapping windows only
/// ever add on one core, which also zeroes it).
private func maxPoolScatter(_ g: WindowGeometry, winners: Tensor, gradient: Tensor, inputShape: [Int]) -> Tensor {
    let dx = Tensor(uninitializedShape: inputShape)
    let pd = dx.storage.pointer, pg = gradient.storage.pointer
    let pw = UnsafeMutableRawPointer(winners.storage.pointer).assumingMemoryBound(to: Int32.self)
    let perSample = g.positions * g.channels
    parallelChunks(g.batch, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(perSample, 1))) { samples in
        (pd + samples.lowerBound * g.imageSize).update(repeating: 0, count: samples.count * g.imageSize)
        for i in (samples.lowerBound * perSample)..<(samples.upperBound * perSample) { pd[Int(pw[i])] += pg[i] }
    }
    withExtendedLifetime(winners) {}
    withExtendedLifetime(gradient) {}
    return dx
}

extension WindowGeometry {
    /// Calls body(sample, position, rowStart, rowEnd, columnStart, columnEnd) for every
    /// window, clipped to the image (undilated windows), in parallel over samples.
    func forEachWindow(_ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        parallelChunks(batch, minimumChunk: Swift.max(1, (1 << 15) / Swift.max(positions * kernelH * kernelW * channels, 1))) { samples in
            for n in samples {
                for p in 0..<positions {
                    let oy = p / outW, ox = p % outW
                    let ys = oy * strideH - padTop, xs = ox * strideW - padLeft
                    body(n, p, Swift.max(ys, 0), Swift.min(ys + kernelH, height), Swift.max(xs, 0), Swift.min(xs + kernelW, width))
                }
            }
        }
    }
}
