// MARK: - 2-D convolutions on NHWC images, through im2col and sgemm

extension Variable {
    /// 2-D convolution (cross-correlation, as in Keras) of an NHWC batch with a Keras
    /// kernel [kh, kw, in, filters], then optionally a bias [filters] and relu, applied
    /// in place to the sgemm output as in `dense`.
    /// - Parameters:
    ///   - strides: (rows, columns) steps of the window.
    ///   - padding: `.valid` or `.same` (TensorFlow's rule: output ceil(in / stride)).
    ///   - dilation: spacing of the kernel taps.
    /// - Throws: `TensorError` when the ranks or channel counts disagree, a valid
    ///   window does not fit the image, or the bias is not [filters].
    public func conv2d(
        kernel: Variable, strides: (Int, Int) = (1, 1), padding: Padding = .valid, dilation: (Int, Int) = (1, 1),
        bias: Variable? = nil, relu: Bool = false
    ) throws(TensorError) -> Variable {
        let plan = try convolutionPlan(op: "conv2d", kernel: kernel, perSample: false,
                                       strides: strides, padding: padding, dilation: dilation)
        if let b = bias, b.shape != [plan.columns] {
            throw TensorError.shapes("conv2d", kernel.shape, b.shape, "the bias must be [\(plan.columns)]")
        }
        return convolve(kernel: kernel, plan: plan, op: "conv2d", bias: bias, relu: relu)
    }

    /// 2-D convolution where every sample has its own kernel: `kernels` is
    /// [batch, kh, kw, in, filters]. One sgemm per sample.
    /// - Throws: `TensorError` as `conv2d`, or when the kernel batch differs from the input's.
    public func conv2dPerSample(
        kernels: Variable, strides: (Int, Int) = (1, 1), padding: Padding = .valid, dilation: (Int, Int) = (1, 1)
    ) throws(TensorError) -> Variable {
        let plan = try convolutionPlan(op: "conv2d_per_sample", kernel: kernels, perSample: true,
                                       strides: strides, padding: padding, dilation: dilation)
        return convolve(kernel: kernels, plan: plan, op: "conv2d_per_sample")
    }

    /// Class-conditional convolution: each sample is convolved with its class's kernel.
    /// `classes` is [batch, classCount] (one-hot; soft labels mix the kernels linearly),
    /// `kernels` is [classCount, kh, kw, in, filters]. The per-sample kernels are
    /// `classes · kernels`, so gradients reach the kernels of the classes used.
    /// - Throws: `TensorError` when the label, kernel and input shapes disagree.
    public func conditionalConv2d(
        classes: Variable, kernels: Variable, strides: (Int, Int) = (1, 1), padding: Padding = .valid, dilation: (Int, Int) = (1, 1)
    ) throws(TensorError) -> Variable {
        let k = kernels.shape, c = classes.shape
        guard k.count == 5, c.count == 2, c[1] == k[0], shape.count == 4, c[0] == shape[0] else {
            throw TensorError(.shapeMismatch, op: "conditional_conv2d",
                              "expected input [N,H,W,C], classes [N,classes] and kernels [classes,kh,kw,C,filters]. Received: input \(shape), classes \(c), kernels \(k)",
                              shapes: [shape, c, k])
        }
        let flat = try kernels.reshape([k[0], Shapes.count(Array(k.dropFirst()))])
        let selected = try classes.matmul(flat).reshape([c[0]] + Array(k.dropFirst()))
        return try conv2dPerSample(kernels: selected, strides: strides, padding: padding, dilation: dilation)
    }

    /// Transposed 2-D convolution (the adjoint of conv2d in its input) with a Keras kernel
    /// [kh, kw, filters, in]. The output size per axis follows Keras: without
    /// `outputPadding`, valid gives in·s + max(k − s, 0) and same gives in·s; with it,
    /// (in − 1)·s + k − 2·pad + outputPadding, pad being k/2 for same and 0 for valid
    /// (k is the dilated kernel size).
    /// - Throws: `TensorError` when the shapes disagree, or outputPadding is negative or
    ///   not smaller than the stride.
    public func conv2dTranspose(
        kernel: Variable, strides: (Int, Int) = (1, 1), padding: Padding = .valid,
        outputPadding: (Int, Int)? = nil, dilation: (Int, Int) = (1, 1)
    ) throws(TensorError) -> Variable {
        let x = shape, k = kernel.shape
        guard x.count == 4, k.count == 4, k[3] == x[3], k.allSatisfy({ $0 > 0 }) else {
            throw TensorError(.shapeMismatch, op: "conv2d_transpose",
                              "expected input [N,H,W,in] and kernel [kh,kw,filters,in] with matching in, no size zero. Received: input \(x), kernel \(k)",
                              shapes: [x, k])
        }
        guard strides.0 >= 1, strides.1 >= 1, dilation.0 >= 1, dilation.1 >= 1 else {
            throw TensorError(.invalidArgument, op: "conv2d_transpose",
                              "strides and dilation must be positive. Received: strides=\(strides), dilation_rate=\(dilation)", shapes: [x, k])
        }
        if let op = outputPadding {
            guard op.0 >= 0, op.1 >= 0, op.0 < strides.0, op.1 < strides.1 else {
                throw TensorError(.invalidArgument, op: "conv2d_transpose",
                                  "output_padding must be non-negative and smaller than strides. Received: output_padding=\(op), strides=\(strides)",
                                  shapes: [x, k])
            }
        }
        func axis(_ input: Int, _ kernel: Int, _ stride: Int, _ dilation: Int, _ extra: Int?) -> (Int, Int) {
            let effective = (kernel - 1) * dilation + 1
            let length: Int
            if let extra {
                length = (input - 1) * stride + effective - 2 * (padding == .same ? effective / 2 : 0) + extra
            } else {
                length = padding == .same ? input * stride : input * stride + Swift.max(effective - stride, 0)
            }
            let before = padding == .same ? Swift.max((input - 1) * stride + effective - length, 0) / 2 : 0
            return (length, before)
        }
        let (outH, padTop) = axis(x[1], k[0], strides.0, dilation.0, outputPadding?.0)
        let (outW, padLeft) = axis(x[2], k[1], strides.1, dilation.1, outputPadding?.1)
        guard outH >= 1, outW >= 1 else {
            throw TensorError(.shapeMismatch, op: "conv2d_transpose", "output would be empty (\(outH)×\(outW))", shapes: [x, k])
        }
        let geometry = WindowGeometry(
            batch: x[0], height: outH, width: outW, channels: k[2], kernelH: k[0], kernelW: k[1],
            strideH: strides.0, strideW: strides.1, dilationH: dilation.0, dilationW: dilation.1,
            padTop: padTop, padLeft: padLeft, outH: x[1], outW: x[2])
        let plan = ConvolutionPlan(geometry: geometry, columns: x[3], perSample: false)
        let input = value, w = kernel.value
        if x[0] > 0 && Kernels.library(for: .transposedConvolution) == .onednn,
           let direct = transposeDirect(kernel: kernel, plan: plan) {
            return direct
        }
        let y = plan.rowsToImage(input.reshaped([x[0] * x[1] * x[2], x[3]]), w)
        return Variable(y, op: "conv2d_transpose", parents: [self, kernel]) { g in
            if self.requiresGrad { self.accumulate(plan.imageToRows(g, w).rows.reshaped(x)) }
            if kernel.requiresGrad { kernel.accumulate(plan.kernelGradient(g, input.reshaped([x[0] * x[1] * x[2], x[3]]), kernelShape: k)) }
        }
    }

    /// conv2d_transpose on oneDNN's direct NHWC primitives, nil when oneDNN has none for
    /// this geometry. A transposed convolution is the backward-data pass of the
    /// convolution `plan` describes (its image is the output here, its rows the input),
    /// so it runs on that convolution's primitives: forward = backward data, the input
    /// gradient = the forward pass over the output gradient, the kernel gradient =
    /// backward weights with the roles of image and rows swapped. The backward passes
    /// fall back to the im2col products if oneDNN has no primitive for them.
    private func transposeDirect(kernel: Variable, plan: ConvolutionPlan) -> Variable? {
        let g = plan.geometry, x = value, w = kernel.value, columns = plan.columns
        guard let y = OneDNN.convolutionBackwardData(g, filters: columns, gradient: x.storage.pointer, kernel: w.storage.pointer,
                                                      bias: false, relu: false) else { return nil }
        let rows = x.reshaped([g.batch * g.positions, columns])
        return Variable(y, op: "conv2d_transpose", parents: [self, kernel]) { grad in
            let pg = grad.storage.pointer
            if self.requiresGrad {
                let dx = Tensor(uninitializedShape: x.shape)
                let direct = OneDNN.convolutionForward(g, filters: columns, image: pg, kernel: w.storage.pointer,
                                                       bias: nil, relu: false, output: dx.storage.pointer)
                self.accumulate(direct ? dx : plan.imageToRows(grad, w).rows.reshaped(x.shape))
            }
            if kernel.requiresGrad {
                let dk = OneDNN.convolutionBackwardWeights(g, filters: columns, image: pg, gradient: x.storage.pointer, bias: false, relu: false)
                    ?? plan.kernelGradient(grad, rows, kernelShape: w.shape)
                kernel.accumulate(dk)
            }
            withExtendedLifetime(grad) {}
            withExtendedLifetime(x) {}
            withExtendedLifetime(w) {}
        }
    }

    /// Validates an input/kernel pair and lays out the windows of conv2d.
    private func convolutionPlan(
        op: String, kernel: Variable, perSample: Bool, strides: (Int, Int), padding: Padding, dilation: (Int, Int)
    ) throws(TensorError) -> ConvolutionPlan {
        let x = shape, k = kernel.shape
        let taps = perSample ? Array(k.dropFirst()) : k
        guard x.count == 4, k.count == (perSample ? 5 : 4), taps[2] == x[3], !perSample || k[0] == x[0], taps.allSatisfy({ $0 > 0 }) else {
            let expected = perSample ? "kernels [N,kh,kw,in,filters]" : "kernel [kh,kw,in,filters]"
            throw TensorError(.shapeMismatch, op: op,
                              "expected input [N,H,W,in] and \(expected) with matching in, no size zero. Received: input \(x), kernel \(k)",
                              shapes: [x, k])
        }
        let rows = try windowOutput(op: op, input: x[1], kernel: taps[0], stride: strides.0, dilation: dilation.0, padding: padding, shapes: [x, k])
        let cols = try windowOutput(op: op, input: x[2], kernel: taps[1], stride: strides.1, dilation: dilation.1, padding: padding, shapes: [x, k])
        let geometry = WindowGeometry(
            batch: x[0], height: x[1], width: x[2], channels: x[3], kernelH: taps[0], kernelW: taps[1],
            strideH: strides.0, strideW: strides.1, dilationH: dilation.0, dilationW: dilation.1,
            padTop: rows.padBefore, padLeft: cols.padBefore, outH: rows.length, outW: cols.length)
        return ConvolutionPlan(geometry: geometry, columns: taps[3], perSample: perSample)
    }

    private func convolve(kernel: Variable, plan: ConvolutionPlan, op: String, bias: Variable? = nil, relu: Bool = false) -> Variable {
        let g = plan.geometry, x = value, w = kernel.value
        let outShape = [g.batch, g.outH, g.outW, plan.columns]
        if !plan.perSample && g.batch > 0 && Kernels.library(for: .convolution) == .onednn,
           let direct = convolveDirect(kernel: kernel, plan: plan, op: op, bias: bias, relu: relu) {
            return direct
        }
        let (y, patches) = plan.imageToRows(x, w, keepPatches: kernel.requiresGrad)
        biasRelu(y, columns: plan.columns, bias: bias?.value, relu: relu)
        let parents = bias.map { [self, kernel, $0] } ?? [self, kernel]
        return Variable(y.reshaped(outShape), op: op, parents: parents) { grad in
            let dz = preActivationGradient(grad, output: y, columns: plan.columns, relu: relu, bias: bias)
            let rows = dz.reshaped([g.batch * g.positions, plan.columns])
            if self.requiresGrad { self.accumulate(plan.rowsToImage(rows, w)) }
            if kernel.requiresGrad {
                kernel.accumulate(plan.kernelGradient(x, rows, kernelShape: w.shape, patches: patches))
            }
        }
    }

    /// conv2d on oneDNN's direct NHWC primitives (no im2col), nil when oneDNN has none
    /// for this geometry. The bias and relu are post-ops of the forward primitive; the
    /// backward passes fall back to the im2col products if oneDNN has no primitive for them.
    private func convolveDirect(kernel: Variable, plan: ConvolutionPlan, op: String, bias: Variable?, relu: Bool) -> Variable? {
        let g = plan.geometry, x = value, w = kernel.value, filters = plan.columns
        let y = Tensor(uninitializedShape: [g.batch * g.positions, filters])
        guard OneDNN.convolutionForward(g, filters: filters, image: x.storage.pointer, kernel: w.storage.pointer,
                                        bias: bias?.value.storage.pointer, relu: relu, output: y.storage.pointer) else { return nil }
        withExtendedLifetime(bias) {}
        let parents = bias.map { [self, kernel, $0] } ?? [self, kernel]
        let hasBias = bias != nil
        return Variable(y.reshaped([g.batch, g.outH, g.outW, filters]), op: op, parents: parents) { grad in
            let dz = preActivationGradient(grad, output: y, columns: filters, relu: relu, bias: bias)
            let pz = dz.storage.pointer
            if self.requiresGrad {
                let dx = OneDNN.convolutionBackwardData(g, filters: filters, gradient: pz, kernel: w.storage.pointer, bias: hasBias, relu: relu)
                    ?? plan.rowsToImage(dz.reshaped([g.batch * g.positions, filters]), w)
                self.accumulate(dx)
            }
            if kernel.requiresGrad {
                let dk = OneDNN.convolutionBackwardWeights(g, filters: filters, image: x.storage.pointer, gradient: pz, bias: hasBias, relu: relu)
                    ?? plan.kernelGradient(x, dz.reshaped([g.batch * g.positions, filters]), kernelShape: w.shape)
                kernel.accumulate(dk)
            }
            withExtendedLifetime(dz) {}
            withExtendedLifetime(x) {}
            withExtendedLifetime(w) {}
        }
    }
}
