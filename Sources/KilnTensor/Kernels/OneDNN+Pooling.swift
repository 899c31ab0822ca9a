import CDNNL
import Synchronization

// MARK: - Max pooling on NHWC images

extension OneDNN {
    /// The max-pooling primitives of one geometry and batch size: the forward pass
    /// (training, with a workspace recording each window's winner; or inference, without
    /// one) and, made at the first backward pass, the backward pass that scatters the
    /// gradient through that workspace.
    final class MaxPool: @unchecked Sendable {
        let forward: Primitive
        let training: Bool
        /// Bytes of the workspace (winners) per call; 0 for inference.
        let workspaceBytes: Int
        private let source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t
        private let strides: [Int64], kernel: [Int64], padBefore: [Int64], padAfter: [Int64]
        private let backward = Mutex<Primitive?>(nil)

        init?(_ g: WindowGeometry, batch: Int, training: Bool) {
            source = plainLayout([batch, g.channels, g.height, g.width], dnnl_nhwc)
            destination = plainLayout([batch, g.channels, g.outH, g.outW], dnnl_nhwc)
            strides = [Int64(g.strideH), Int64(g.strideW)]
            kernel = [Int64(g.kernelH), Int64(g.kernelW)]
            padBefore = [Int64(g.padTop), Int64(g.padLeft)]
            // oneDNN checks (in − kernel + before + after) / stride + 1 = out, rounding down.
            let afterH = Swift.max(0, (g.outH - 1) * g.strideH + g.kernelH - g.height - g.padTop)
            let afterW = Swift.max(0, (g.outW - 1) * g.strideW + g.kernelW - g.width - g.padLeft)
            padAfter = [Int64(afterH), Int64(afterW)]
            self.training = training
            var src = source, dst = destination
            var desc = dnnl_pooling_desc_t()
            guard dnnl_pooling_forward_desc_init(&desc, training ? dnnl_forward_training : dnnl_forward_inference, dnnl_pooling_max,
                                                 &src, &dst, strides, kernel, padBefore, padAfter) == dnnl_success,
                  let forward = withUnsafePointer(to: &desc, { Primitive(descriptor: UnsafeRawPointer($0)) })
            else { return nil }
            self.forward = forward
            if training {
                guard let md = dnnl_primitive_desc_query_md(forward.descriptor, dnnl_query_workspace_md, 0) else { return nil }
                workspaceBytes = dnnl_memory_desc_get_size(md)
            } else {
                workspaceBytes = 0
            }
        }

        /// The backward primitive, made on first use; nil when oneDNN has none.
        func backwardPrimitive() -> Primitive? {
            backward.withLock { (made: inout Primitive?) -> Primitive? in
                if let made { return made }
                var src = source, dst = destination
                var desc = dnnl_pooling_desc_t()
                guard dnnl_pooling_backward_desc_init(&desc, dnnl_pooling_max, &src, &dst, strides, kernel, padBefore, padAfter) == dnnl_success
                else { return nil }
                let hint = forward.descriptor
                made = withUnsafePointer(to: &desc) { Primitive(descriptor: UnsafeRawPointer($0), hint: hint) }
                return made
            }
        }
    }

    static func maxPool(_ g: WindowGeometry, batch: Int, training: Bool) -> MaxPool? {
        let key = [2, batch, g.height, g.width, g.channels, g.kernelH, g.kernelW, g.strideH, g.strideW,
                   g.padTop, g.padLeft, g.outH, g.outW, training ? 1 : 0, threadsPerCall]
        return cached(key) { MaxPool(g, batch: batch, training: training) }
    }

    /// The images of the batch each core pools: as many blocks as `Parallel` would cut
    /// the batch into for Kiln's own loop (pooling reads and writes memory more than it
    /// computes, so only batches of some size are split).
    static func poolBlocks(_ g: WindowGeometry) -> [Range<Int>] {
        let n = g.batch
        let perSample = Swift.max(g.positions * g.kernelH * g.kernelW * g.channels, 1)
        let parts = splits ? Parallel.chunkCount(n, minimumChunk: Swift.max(1, (1 << 15) / perSample)) : 1
        let size = (n + parts - 1) / parts
        return stride(from: 0, to: n, by: size).map { $0..<Swift.min(n, $0 + size) }
    }

    /// The forward pass of max pooling, and what its backward pass needs.
    struct MaxPoolForward {
        let blocks: [Range<Int>]
        let primitives: [MaxPool]
        /// One workspace per block (training only).
        let workspaces: [Tensor]
    }

    /// y [batch, outH, outW, channels] = the maximum of each window of `image`, padded
    /// positions never winning. With `training`, each block also records its winners in
    /// a workspace for `maxPoolBackward`. Nil (nothing written) when oneDNN has no
    /// primitive for this geometry.
    static func maxPoolForward(_ g: WindowGeometry, image: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, training: Bool) -> MaxPoolForward? {
        let blocks = poolBlocks(g)
        var primitives: [MaxPool] = []
        for block in blocks {
            guard let p = maxPool(g, batch: block.count, training: training) else { return nil }
            primitives.append(p)
        }
        let workspaces = training ? primitives.map { Tensor(uninitializedShape: [($0.workspaceBytes + 3) / 4]) } : []
        let outputImage = g.positions * g.channels
        func run(_ p: Int) {
            let start = blocks[p].lowerBound
            var args: [(Int32, UnsafeRawPointer)] = [
                (DNNL_ARG_SRC, UnsafeRawPointer(image + start * g.imageSize)),
                (DNNL_ARG_DST, UnsafeRawPointer(output + start * outputImage))]
            if training { args.append((DNNL_ARG_WORKSPACE, UnsafeRawPointer(workspaces[p].storage.pointer))) }
            primitives[p].forward.execute(args)
        }
        Parallel.run(blocks.count, run)
        return MaxPoolForward(blocks: blocks, primitives: primitives, workspaces: workspaces)
    }

    /// d image [batch, h, w, channels] from d y through the forward pass's winners; nil
    /// when oneDNN has no backward primitive for it.
    static func maxPoolBackward(_ g: WindowGeometry, _ forward: MaxPoolForward, gradient: UnsafePointer<Float>) -> Tensor? {
        var primitives: [Primitive] = []
        for p in forward.primitives {
            guard p.training, let b = p.backwardPrimitive() else { return nil }
            primitives.append(b)
        }
        let image = Tensor(uninitializedShape: [g.batch, g.height, g.width, g.channels])
        let pi = image.storage.pointer
        let outputImage = g.positions * g.channels
        func run(_ p: Int) {
            let start = forward.blocks[p].lowerBound
            primitives[p].execute([
                (DNNL_ARG_DIFF_DST, UnsafeRawPointer(gradient + start * outputImage)),
                (DNNL_ARG_WORKSPACE, UnsafeRawPointer(forward.workspaces[p].storage.pointer)),
                (DNNL_ARG_DIFF_SRC, UnsafeRawPointer(pi + start * g.imageSize))])
        }
        Parallel.run(forward.blocks.count, run)
        return image
    }
}
