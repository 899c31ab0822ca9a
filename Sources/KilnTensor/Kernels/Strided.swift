/// Iteration over broadcast operands in contiguous runs along the last axis, so inner
/// loops are simple strided loops the compiler can vectorise.
struct BroadcastRuns {
    let shape: [Int]
    let strides: [[Int]]   // per operand, in elements; 0 on broadcast axes

    /// Calls `body(offsets, runLength, innerStrides)` for each run of the last axis,
    /// `offsets[i]` being operand i's starting element. The output operand is
    /// contiguous and visited in order.
    @inline(__always)
    func forEachRun(_ body: ([Int], Int, [Int]) -> Void) {
        let rank = shape.count
        let operands = strides.count
        if rank == 0 {
            body([Int](repeating: 0, count: operands), 1, [Int](repeating: 0, count: operands))
            return
        }
        let inner = shape[rank - 1]
        let innerStrides = strides.map { $0[rank - 1] }
        let outer = Shapes.count(Array(shape.dropLast()))
        if inner == 0 || outer == 0 { return }
        var index = [Int](repeating: 0, count: rank - 1)
        var offsets = [Int](repeating: 0, count: operands)
        for _ in 0..<outer {
            body(offsets, inner, innerStrides)
            // Advance the multi-index over the outer axes.
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                for o in 0..<operands { offsets[o] += strides[o][axis] }
                if index[axis] < shape[axis] { break }
                for o in 0..<operands { offsets[o] -= strides[o][axis] * shape[axis] }
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

extension Tensor {
    /// Sums this tensor over the axes on which `shape` was broadcast to reach
    /// `self.shape` — the gradient of a broadcast.
    public func summed(toShape target: [Int]) -> Tensor {
        if target == shape { return self }
        let out = Tensor(shape: target, repeating: 0)
        if let inner = suffixBlock(target, of: shape), inner > 0, Shapes.count(target) == inner {
            // A bias gradient: add every row of `inner` elements into one row.
            let src = storage.pointer, dst = out.storage.pointer
            for row in 0..<(count / inner) {
                let s = src + row * inner
                for i in 0..<inner { dst[i] += s[i] }
            }
            return out
        }
        let runs = BroadcastRuns(shape: shape, strides: [Shapes.strides(shape), Shapes.broadcastStrides(target, to: shape)])
        let src = storage.pointer
        let dst = out.storage.pointer
        runs.forEachRun { offsets, n, inner in
            let s = src + offsets[0]
            let d = dst + offsets[1]
            if inner[1] == 1 {
                for i in 0..<n { d[i] += s[i] }
            } else {
                var acc: Float = 0
                for i in 0..<n { acc += s[i] }
                d[0] += acc
            }
        }
        return out
    }
}
