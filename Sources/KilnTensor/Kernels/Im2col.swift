/// Padding of convolution and pooling windows, with TensorFlow's rules.
public enum Padding: String, Sendable {
    /// Windows lie entirely inside the image.
    case valid
    /// The output has ceil(input / stride) positions; the padding is split with the
    /// smaller half before (top/left), as in TensorFlow.
    case same
}

/// The output length and leading padding of a sliding window along one axis.
/// - Throws: `TensorError` when a valid window does not fit or a size is not positive.
func windowOutput(
    op: String, input: Int, kernel: Int, stride: Int, dilation: Int, padding: Padding, shapes: [[Int]]
) throws(TensorError) -> (length: Int, padBefore: Int) {
    guard kernel >= 1, stride >= 1, dilation >= 1 else {
        throw TensorError(.invalidArgument, op: op,
                          "window sizes, strides and dilations must be positive. Received: kernel=\(kernel), stride=\(stride), dilation=\(dilation)",
                          shapes: shapes)
    }
    let effective = (kernel - 1) * dilation + 1
    switch padding {
    case .valid:
        guard input >= effective else {
            throw TensorError(.shapeMismatch, op: op,
                              "a window of \(effective) (kernel \(kernel), dilation \(dilation)) does not fit an input of \(input) with valid padding",
                              shapes: shapes)
        }
        return ((input - effective) / stride + 1, 0)
    case .same:
        guard input >= 1 else {
            throw TensorError(.shapeMismatch, op: op, "empty spatial axis", shapes: shapes)
        }
        let length = (input + stride - 1) / stride
        let total = Swift.max((length - 1) * stride + effective - input, 0)
        return (length, total / 2)
    }
}

/// The index arithmetic of a 2-D sliding window over a batch of NHWC images: which
/// image pixel feeds each (window position, kernel tap). conv2d slides over its input,
/// conv2d_transpose over its output; pooling uses the same positions.
struct WindowGeometry {
    /// The image side.
    let batch: Int, height: Int, width: Int, channels: Int
    let kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, dilationH: Int, dilationW: Int
    let padTop: Int, padLeft: Int
    /// The window-position side.
    let outH: Int, outW: Int

    var positions: Int { outH * outW }
    /// Columns of one im2col row: (ky, kx, channel), the order of a Keras kernel.
    var patch: Int { kernelH * kernelW * channels }
    var imageSize: Int { height * width * channels }

    /// Writes the patches of samples `samples` as rows of `cols`
    /// ([samples.count · positions, patch]), zeros where the window leaves the image.
    /// An undilated kernel row that lies inside the image is one contiguous run of
    /// kernelW · channels floats, copied at once.
    func im2col(_ image: UnsafePointer<Float>, samples: Range<Int>, into cols: UnsafeMutablePointer<Float>) {
        let rows = samples.count * positions, patch = self.patch, c = channels, run = kernelW * c
        parallelChunks(rows, minimumChunk: Swift.max(1, (1 << 14) / Swift.max(patch, 1))) { range in
            for row in range {
                let n = samples.lowerBound + row / positions, p = row % positions
                let oy = p / outW, ox = p % outW
                let sample = image + n * imageSize
                let x0 = ox * strideW - padLeft
                let contiguous = dilationW == 1 && x0 >= 0 && x0 + kernelW <= width
                var dst = cols + row * patch
                for ky in 0..<kernelH {
                    let iy = oy * strideH - padTop + ky * dilationH
                    if iy < 0 || iy >= height {
                        dst.update(repeating: 0, count: run)
                    } else if contiguous {
                        copy(sample + (iy * width + x0) * c, dst, run)
                    } else {
                        for kx in 0..<kernelW {
                            let ix = x0 + kx * dilationW
                            if ix >= 0 && ix < width {
                                copy(sample + (iy * width + ix) * c, dst + kx * c, c)
                            } else {
                                (dst + kx * c).update(repeating: 0, count: c)
                            }
                        }
                    }
                    dst += run
                }
            }
        }
    }

    /// The adjoint of `im2col`: adds every patch row of `cols` back into the pixels it
    /// was read from. With `zeroing`, each sample's image is zeroed first (by the core
    /// that then adds into it); else `image` must hold values to add to.
    func col2im(_ cols: UnsafePointer<Float>, samples: Range<Int>, into image: UnsafeMutablePointer<Float>, zeroing: Bool = false) {
        let patch = self.patch, c = channels, run = kernelW * c
        parallelChunks(samples.count, minimumChunk: Swift.max(1, (1 << 14) / Swift.max(positions * patch, 1))) { range in
            for local in range {
                let sample = image + (samples.lowerBound + local) * imageSize
                if zeroing { sample.update(repeating: 0, count: imageSize) }
                for p in 0..<positions {
                    let oy = p / outW, ox = p % outW
                    let x0 = ox * strideW - padLeft
                    let contiguous = dilationW == 1 && x0 >= 0 && x0 + kernelW <= width
                    var src = cols + (local * positions + p) * patch
                    for ky in 0..<kernelH {
                        let iy = oy * strideH - padTop + ky * dilationH
                        if iy >= 0 && iy < height {
                            if contiguous {
                                let d = sample + (iy * width + x0) * c
                                for j in 0..<run { d[j] += src[j] }
                            } else {
                                for kx in 0..<kernelW {
                                    let ix = x0 + kx * dilationW
                                    guard ix >= 0 && ix < width else { continue }
                                    let d = sample + (iy * width + ix) * c, s = src + kx * c
                                    for j in 0..<c { d[j] += s[j] }
                                }
                            }
                        }
                        src += run
                    }
                }
            }
        }
    }
}

/// Copies `count` floats; short runs (one-channel images) in a plain loop, which beats
/// a call to memmove.
@inline(__always)
private func copy(_ from: UnsafePointer<Float>, _ to: UnsafeMutablePointer<Float>, _ count: Int) {
    if count < 16 {
        for j in 0..<count { to[j] = from[j] }
    } else {
        to.update(from: from, count: count)
    }
}

/// Convolution as matrix products: the image's patches (im2col) times a kernel viewed
/// as [patch, columns]. Every convolution op is made of the three products below,
/// run over chunks of samples so the patch matrix stays small.
public struct ConvolutionPlan {
    let geometry: WindowGeometry
    /// Columns of the kernel matrix (conv2d: filters; conv2d_transpose: input channels).
    let columns: Int
    /// Whether each sample has its own kernel ([batch, patch, columns]).
    let perSample: Bool

    /// Floats of patch matrix built at once (32 MB).
    public static var patchBudget = 1 << 23

    /// Samples per sgemm: one for per-sample kernels, else as many as fit in `patchBudget`.
    var chunk: Int {
        if perSample { return 1 }
        let rowsBudget = Swift.max(1, ConvolutionPlan.patchBudget / Swift.max(geometry.patch, 1))
        return Swift.max(1, Swift.min(geometry.batch, rowsBudget / Swift.max(geometry.positions, 1)))
    }

    /// Whether the whole batch's patches fit in one chunk, so the forward pass's patch
    /// matrix can be kept for the kernel gradient instead of being built again.
    var patchesFitOneChunk: Bool { !perSample && geometry.batch > 0 && chunk >= geometry.batch }

    /// Runs `body` on each chunk of samples with one patch buffer, which it returns.
    @discardableResult
    private func forEachChunk(_ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        let g = geometry, size = chunk
        let cols = Tensor(uninitializedShape: [Swift.max(1, size * g.positions * g.patch)])
        var start = 0
        while start < g.batch {
            body(start..<Swift.min(g.batch, start + size), cols.storage.pointer)
            start += size
        }
        return cols
    }

    private func kernelMatrix(_ kernel: UnsafePointer<Float>, _ samples: Range<Int>) -> UnsafePointer<Float> {
        perSample ? kernel + samples.lowerBound * geometry.patch * columns : kernel
    }

    /// rows [batch · positions, columns] = patches(image) · kernel. With `keepPatches`,
    /// when one chunk holds the whole batch, also its patch matrix, for
    /// `kernelGradient(_:_:kernelShape:patches:)` to use instead of building it again.
    func imageToRows(_ image: Tensor, _ kernel: Tensor, keepPatches: Bool = false) -> (rows: Tensor, patches: Tensor?) {
        let g = geometry
        let rows = Tensor(uninitializedShape: [g.batch * g.positions, columns])
        let pi = image.storage.pointer, pk = kernel.storage.pointer, pr = rows.storage.pointer
        let cols = forEachChunk { samples, cols in
            g.im2col(pi, samples: samples, into: cols)
            BLAS.sgemm(transposeA: false, transposeB: false, m: samples.count * g.positions, n: columns, k: g.patch,
                       a: cols, lda: g.patch, b: kernelMatrix(pk, samples), ldb: columns,
                       c: pr + samples.lowerBound * g.positions * columns, ldc: columns)
        }
        return (rows, keepPatches && patchesFitOneChunk ? cols : nil)
    }

    /// image = col2im(rows · kernelᵀ): the adjoint of `imageToRows` in the image.
    func rowsToImage(_ rows: Tensor, _ kernel: Tensor) -> Tensor {
        let g = geometry
        let image = Tensor(uninitializedShape: [g.batch, g.height, g.width, g.channels])
        let pi = image.storage.pointer, pk = kernel.storage.pointer, pr = rows.storage.pointer
        forEachChunk { samples, cols in
            BLAS.sgemm(transposeA: false, transposeB: true, m: samples.count * g.positions, n: g.patch, k: columns,
                       a: pr + samples.lowerBound * g.positions * columns, lda: columns,
                       b: kernelMatrix(pk, samples), ldb: columns, c: cols, ldc: g.patch)
            g.col2im(cols, samples: samples, into: pi, zeroing: true)
        }
        return image
    }

    /// kernel gradient [patch, columns] (per sample when `perSample`) = patches(image)ᵀ · rows:
    /// the adjoint of `imageToRows` in the kernel; from `patches` when `imageToRows` kept them.
    func kernelGradient(_ image: Tensor, _ rows: Tensor, kernelShape: [Int], patches: Tensor? = nil) -> Tensor {
        let g = geometry
        let dk = Tensor(shape: kernelShape, repeating: 0)
        let pi = image.storage.pointer, pd = dk.storage.pointer, pr = rows.storage.pointer
        func product(_ samples: Range<Int>, _ cols: UnsafeMutablePointer<Float>) {
            BLAS.sgemm(transposeA: true, transposeB: false, m: g.patch, n: columns, k: samples.count * g.positions,
                       a: cols, lda: g.patch, b: pr + samples.lowerBound * g.positions * columns, ldb: columns,
                       beta: perSample ? 0 : 1, c: UnsafeMutablePointer(mutating: kernelMatrix(pd, samples)), ldc: columns)
        }
        if let patches {
            product(0..<g.batch, patches.storage.pointer)
            withExtendedLifetime(patches) {}
        } else {
            forEachChunk { samples, cols in
                g.im2col(pi, samples: samples, into: cols)
                product(samples, cols)
            }
        }
        return dk
    }
}
