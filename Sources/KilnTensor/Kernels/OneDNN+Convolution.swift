import CDNNL
import Dispatch
import Synchronization

// MARK: - Direct NHWC convolutions

extension OneDNN {
    /// The convolution primitives of one geometry and batch size. Images stay NHWC; the
    /// weights are laid out as each primitive prefers ("any"), reordered from and to the
    /// Keras kernel [kh, kw, in, filters] (oneDNN's `hwio`) on every call (a few
    /// thousand floats). The backward primitives are made at the first backward pass, so
    /// a model that only predicts never creates them.
    final class Convolution: @unchecked Sendable {
        struct Backward {
            let data: Primitive
            let kernelToData: Primitive?
            let weights: Primitive
            let gradientToKernel: Primitive?
        }

        let forward: Primitive
        let kernelToForward: Primitive?
        private let source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t
        private let kernel: dnnl_memory_desc_t, anyWeights: dnnl_memory_desc_t
        private let strides: [Int64], dilates: [Int64], padBefore: [Int64], padAfter: [Int64]
        private let backward = Mutex<Backward?>(nil)

        init?(_ g: WindowGeometry, batch: Int, filters: Int, bias: Bool, relu: Bool) {
            source = plainLayout([batch, g.channels, g.height, g.width], dnnl_nhwc)
            destination = plainLayout([batch, filters, g.outH, g.outW], dnnl_nhwc)
            kernel = plainLayout([filters, g.channels, g.kernelH, g.kernelW], dnnl_hwio)
            anyWeights = plainLayout([filters, g.channels, g.kernelH, g.kernelW], dnnl_format_tag_any)
            strides = [Int64(g.strideH), Int64(g.strideW)]
            dilates = [Int64(g.dilationH - 1), Int64(g.dilationW - 1)]
            padBefore = [Int64(g.padTop), Int64(g.padLeft)]
            // oneDNN checks (in − extent + before + after) / stride + 1 = out, rounding down.
            let afterH = Swift.max(0, (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1 - g.height - g.padTop)
            let afterW = Swift.max(0, (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1 - g.width - g.padLeft)
            padAfter = [Int64(afterH), Int64(afterW)]

            var src = source, dst = destination, weights = anyWeights
            var biasLayout = plainLayout([filters], dnnl_a)
            var desc = dnnl_convolution_desc_t()
            let status = bias
                ? dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &src, &weights, &biasLayout, &dst, strides, dilates, padBefore, padAfter)
                : dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &src, &weights, nil, &dst, strides, dilates, padBefore, padAfter)
            guard status == dnnl_success else { return nil }
            let ops = reluPostOps(relu)
            defer { if let ops { dnnl_post_ops_destroy(ops) } }
            guard let forward = withUnsafePointer(to: &desc, { Primitive(descriptor: UnsafeRawPointer($0), postOps: ops) }) else { return nil }
            self.forward = forward
            guard let reorder = OneDNN.reorder(from: kernel, to: forward.layout(DNNL_ARG_WEIGHTS)) else { return nil }
            kernelToForward = reorder.primitive
        }

        /// The backward primitives, made on first use; nil when oneDNN has none.
        func backwardPrimitives() -> Backward? {
            backward.withLock { (made: inout Backward?) -> Backward? in
                if let made { return made }
                var src = source, dst = destination, weights = anyWeights
                var dataDesc = dnnl_convolution_desc_t(), weightsDesc = dnnl_convolution_desc_t()
                guard dnnl_dilated_convolution_backward_data_desc_init(&dataDesc, dnnl_convolution_direct, &src, &weights, &dst, strides, dilates, padBefore, padAfter) == dnnl_success,
                      dnnl_dilated_convolution_backward_weights_desc_init(&weightsDesc, dnnl_convolution_direct, &src, &weights, nil, &dst, strides, dilates, padBefore, padAfter) == dnnl_success
                else { return nil }
                let hint = forward.descriptor
                guard let data = withUnsafePointer(to: &dataDesc, { Primitive(descriptor: UnsafeRawPointer($0), hint: hint) }),
                      let weightGradient = withUnsafePointer(to: &weightsDesc, { Primitive(descriptor: UnsafeRawPointer($0), hint: hint) }),
                      let toData = OneDNN.reorder(from: kernel, to: data.layout(DNNL_ARG_WEIGHTS)),
                      let toKernel = OneDNN.reorder(from: weightGradient.layout(DNNL_ARG_DIFF_WEIGHTS), to: kernel)
                else { return nil }
                made = Backward(data: data, kernelToData: toData.primitive, weights: weightGradient, gradientToKernel: toKernel.primitive)
                return made
            }
        }
    }

    /// A reorder between two layouts (no primitive when they are the same layout).
    struct Reorder { let primitive: Primitive? }

    /// The reorder from one layout to another; nil when oneDNN cannot reorder them.
    static func reorder(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) -> Reorder? {
        if sameLayout(from, to) { return Reorder(primitive: nil) }
        var a = from, b = to
        guard let primitive = Primitive(reorder: &a, to: &b) else { return nil }
        return Reorder(primitive: primitive)
    }

    static func convolution(_ g: WindowGeometry, batch: Int, filters: Int, bias: Bool, relu: Bool) -> Convolution? {
        let key = [1, batch, g.height, g.width, g.channels, filters, g.kernelH, g.kernelW, g.strideH, g.strideW,
                   g.dilationH, g.dilationW, g.padTop, g.padLeft, g.outH, g.outW, bias ? 1 : 0, relu ? 1 : 0, threadsPerCall]
        return cached(key) { Convolution(g, batch: batch, filters: filters, bias: bias, relu: relu) }
    }

    /// The images of the batch each core takes: one block per core when the work is
    /// large enough to split (as for sgemm), else the whole batch.
    static func batchBlocks(_ g: WindowGeometry, filters: Int) -> [Range<Int>] {
        let cores = Parallel.cores, n = g.batch
        let work = n * g.positions * g.patch * filters
        guard splits, cores > 1, n >= 2, work >= BLAS.splitThreshold else { return [0..<n] }
        let parts = Swift.min(cores, n), size = (n + parts - 1) / parts
        return stride(from: 0, to: n, by: size).map { $0..<Swift.min(n, $0 + size) }
    }

    /// Weights as `layout` wants them: `kernel` itself, or a reordered copy.
    private static func weights(_ kernel: UnsafePointer<Float>, _ reorder: Primitive?, layout: dnnl_memory_desc_t) -> (UnsafeRawPointer, Tensor?) {
        guard let reorder else { return (UnsafeRawPointer(kernel), nil) }
        var md = layout
        let copy = Tensor(uninitializedShape: [(dnnl_memory_desc_get_size(&md) + 3) / 4])
        reorder.execute([(DNNL_ARG_FROM, UnsafeRawPointer(kernel)), (DNNL_ARG_TO, UnsafeRawPointer(copy.storage.pointer))])
        return (UnsafeRawPointer(copy.storage.pointer), copy)
    }

    /// rows [batch·positions, filters] = relu?(conv(image, kernel) + bias). Returns false
    /// (nothing written) when oneDNN has no primitive for this geometry.
    static func convolutionForward(
        _ g: WindowGeometry, filters: Int, image: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, relu: Bool, output: UnsafeMutablePointer<Float>
    ) -> Bool {
        let blocks = batchBlocks(g, filters: filters)
        var convolutions: [Convolution] = []
        for block in blocks {
            guard let c = convolution(g, batch: block.count, filters: filters, bias: bias != nil, relu: relu) else { return false }
            convolutions.append(c)
        }
        func run(_ p: Int) {
            let c = convolutions[p], start = blocks[p].lowerBound
            let (w, copy) = weights(kernel, c.kernelToForward, layout: c.forward.layout(DNNL_ARG_WEIGHTS))
            var args: [(Int32, UnsafeRawPointer)] = [
                (DNNL_ARG_SRC, UnsafeRawPointer(image + start * g.imageSize)), (DNNL_ARG_WEIGHTS, w),
                (DNNL_ARG_DST, UnsafeRawPointer(output + start * g.positions * filters))]
            if let bias { args.append((DNNL_ARG_BIAS, UnsafeRawPointer(bias))) }
            c.forward.execute(args)
            withExtendedLifetime(copy) {}
        }
        Parallel.run(blocks.count, run)
        return true
    }

    /// The backward primitives for every block, or nil.
    private static func backwardPrimitives(_ g: WindowGeometry, filters: Int, bias: Bool, relu: Bool, _ blocks: [Range<Int>]) -> [Convolution.Backward]? {
        var result: [Convolution.Backward] = []
        for block in blocks {
            guard let c = convolution(g, batch: block.count, filters: filters, bias: bias, relu: relu),
                  let b = c.backwardPrimitives() else { return nil }
            result.append(b)
        }
        return result
    }

    /// d image [batch, h, w, channels] from d rows [batch·positions, filters]; nil when
    /// oneDNN has no primitive for it. (`bias` and `relu` only name the cached forward.)
    static func convolutionBackwardData(
        _ g: WindowGeometry, filters: Int, gradient: UnsafePointer<Float>, kernel: UnsafePointer<Float>, bias: Bool, relu: Bool
    ) -> Tensor? {
        let blocks = batchBlocks(g, filters: filters)
        guard let primitives = backwardPrimitives(g, filters: filters, bias: bias, relu: relu, blocks) else { return nil }
        let image = Tensor(uninitializedShape: [g.batch, g.height, g.width, g.channels])
        let pi = image.storage.pointer
        func run(_ p: Int) {
            let b = primitives[p], start = blocks[p].lowerBound
            let (w, copy) = weights(kernel, b.kernelToData, layout: b.data.layout(DNNL_ARG_WEIGHTS))
            let dst = UnsafeRawPointer(gradient + start * g.positions * filters), src = UnsafeRawPointer(pi + start * g.imageSize)
            b.data.execute([(DNNL_ARG_DIFF_DST, dst), (DNNL_ARG_WEIGHTS, w), (DNNL_ARG_DIFF_SRC, src)])
            withExtendedLifetime(copy) {}
        }
        Parallel.run(blocks.count, run)
        return image
    }

    /// d kernel [kh, kw, channels, filters] from the image and d rows; each block of
    /// images gives a partial gradient, added in block order. Nil when oneDNN has no
    /// primitive for it.
    static func convolutionBackwardWeights(
        _ g: WindowGeometry, filters: Int, image: UnsafePointer<Float>, gradient: UnsafePointer<Float>, bias: Bool, relu: Bool
    ) -> Tensor? {
        let blocks = batchBlocks(g, filters: filters)
        guard let primitives = backwardPrimitives(g, filters: filters, bias: bias, relu: relu, blocks) else { return nil }
        let count = g.patch * filters
        let kernel = Tensor(uninitializedShape: [g.kernelH, g.kernelW, g.channels, filters])
        let partial = Tensor(uninitializedShape: [Swift.max(1, (blocks.count - 1) * count)])
        let pk = kernel.storage.pointer, pp = partial.storage.pointer
        func run(_ p: Int) {
            let b = primitives[p], start = blocks[p].lowerBound
            let target = p == 0 ? pk : pp + (p - 1) * count
            let src = UnsafeRawPointer(image + start * g.imageSize), dst = UnsafeRawPointer(gradient + start * g.positions * filters)
            var args: [(Int32, UnsafeRawPointer)] = [(DNNL_ARG_SRC, src), (DNNL_ARG_DIFF_DST, dst)]
            if let reorder = b.gradientToKernel {
                var md = b.weights.layout(DNNL_ARG_DIFF_WEIGHTS)
                let blocked = Tensor(uninitializedShape: [(dnnl_memory_desc_get_size(&md) + 3) / 4])
                args.append((DNNL_ARG_DIFF_WEIGHTS, UnsafeRawPointer(blocked.storage.pointer)))
                b.weights.execute(args)
                reorder.execute([(DNNL_ARG_FROM, UnsafeRawPointer(blocked.storage.pointer)), (DNNL_ARG_TO, UnsafeRawPointer(target))])
                withExtendedLifetime(blocked) {}
            } else {
                args.append((DNNL_ARG_DIFF_WEIGHTS, UnsafeRawPointer(target)))
                b.weights.execute(args)
            }
        }
        Parallel.run(blocks.count, run)
        for p in 1..<Swift.max(1, blocks.count) {
            let src = pp + (p - 1) * count
            for i in 0..<count { pk[i] += src[i] }
        }
        withExtendedLifetime(partial) {}
        return kernel
    }
}
