// MARK: - Layout kernels

/// Copies `x` into a new tensor whose axis i is x's axis perm[i].
func permuted(_ x: Tensor, _ perm: [Int]) -> Tensor {
    let outShape = perm.map { x.shape[$0] }
    let out = Tensor(uninitializedShape: outShape)
    if x.count == 0 { return out }
    let inStrides = Shapes.strides(x.shape)
    let runs = BroadcastRuns(shape: outShape, strides: [Shapes.strides(outShape), perm.map { inStrides[$0] }])
    let src = x.storage.pointer, dst = out.storage.pointer
    runs.forEachRun { off, n, inner in
        let d = dst + off[0], s = src + off[1], step = inner[1]
        if step == 1 { d.update(from: s, count: n) } else { for i in 0..<n { d[i] = s[i * step] } }
    }
    return out
}

/// Treats a shape as [outer, axis length · inner] blocks around `axis`.
private func blockLayout(_ shape: [Int], axis: Int) -> (outer: Int, inner: Int) {
    (Shapes.count(Array(shape[..<axis])), Shapes.count(Array(shape[(axis + 1)...])))
}

// MARK: - Permutation, concatenation, slicing, broadcasting

extension Variable {
    /// Permutes the axes: output axis i is input axis `perm[i]` (numpy `transpose`).
    /// Keras `Permute(dims)` is `transpose(perm: [0] + dims)`.
    /// - Throws: `TensorError` when `perm` is not a permutation of the axes.
    public func transpose(perm: [Int]) throws(TensorError) -> Variable {
        let rank = shape.count
        let normalized = perm.compactMap { Shapes.axis($0, rank: rank) }
        guard normalized.count == rank, perm.count == rank, Set(normalized).count == rank else {
            throw TensorError(.invalidArgument, op: "transpose", "perm \(perm) is not a permutation of the axes of shape \(shape)", shapes: [shape])
        }
        var inverse = [Int](repeating: 0, count: rank)
        for (i, p) in normalized.enumerated() { inverse[p] = i }
        let y = permuted(value, normalized)
        return Variable(y, op: "transpose", parents: [self]) { g in
            self.accumulate(permuted(g, inverse))
        }
    }

    /// Joins tensors along `axis`; all other axes must agree.
    /// - Throws: `TensorError` for an empty list, a bad axis or disagreeing shapes.
    public static func concatenate(_ parts: [Variable], axis: Int) throws(TensorError) -> Variable {
        guard let first = parts.first else {
            throw TensorError(.invalidArgument, op: "concatenate", "needs at least one tensor")
        }
        let rank = first.shape.count
        guard let a = Shapes.axis(axis, rank: rank) else {
            throw TensorError(.invalidArgument, op: "concatenate", "axis \(axis) is out of range for shape \(first.shape)", shapes: parts.map(\.shape))
        }
        for p in parts.dropFirst() {
            var s1 = p.shape, s0 = first.shape
            guard s1.count == rank else {
                throw TensorError.shapes("concatenate", first.shape, p.shape, "ranks differ")
            }
            s1[a] = 0; s0[a] = 0
            guard s1 == s0 else {
                throw TensorError.shapes("concatenate", first.shape, p.shape, "shapes differ outside axis \(a)")
            }
        }
        var outShape = first.shape
        outShape[a] = parts.reduce(0) { $0 + $1.shape[a] }
        let (outer, inner) = blockLayout(outShape, axis: a)
        let rowOut = outShape[a] * inner
        let out = Tensor(uninitializedShape: outShape)
        let widths = parts.map { $0.shape[a] * inner }
        var offsets: [Int] = [], running = 0
        for w in widths { offsets.append(running); running += w }
        let dst = out.storage.pointer
        for (k, p) in parts.enumerated() {
            let src = p.value.storage.pointer, w = widths[k], o = offsets[k]
            for r in 0..<outer { (dst + r * rowOut + o).update(from: src + r * w, count: w) }
        }
        return Variable(out, op: "concatenate", parents: parts) { g in
            let pg = g.storage.pointer
            for (k, p) in parts.enumerated() where p.requiresGrad {
                let part = Tensor(uninitializedShape: p.shape)
                let d = part.storage.pointer, w = widths[k], o = offsets[k]
                for r in 0..<outer { (d + r * w).update(from: pg + r * rowOut + o, count: w) }
                p.accumulate(part)
            }
        }
    }

    /// Elements `start..<end` along `axis`. Negative positions count from the end, as
    /// in Python; `end` nil means to the end.
    /// - Throws: `TensorError` when the axis or the range does not fit the shape.
    public func slice(axis: Int, start: Int, end: Int? = nil) throws(TensorError) -> Variable {
        guard let a = Shapes.axis(axis, rank: shape.count) else {
            throw TensorError(.invalidArgument, op: "slice", "axis \(axis) is out of range for shape \(shape)", shapes: [shape])
        }
        let length = shape[a]
        let s = start < 0 ? start + length : start
        let e = end.map { $0 < 0 ? $0 + length : $0 } ?? length
        guard 0 <= s, s <= e, e <= length else {
            throw TensorError(.invalidArgument, op: "slice",
                              "range \(start)..<\(end.map(String.init) ?? "end") does not fit axis \(a) of shape \(shape)", shapes: [shape])
        }
        var outShape = shape
        outShape[a] = e - s
        let (outer, inner) = blockLayout(shape, axis: a)
        let rowIn = length * inner, w = (e - s) * inner, o = s * inner
        let x = value
        let out = Tensor(uninitializedShape: outShape)
        let src = x.storage.pointer, dst = out.storage.pointer
        for r in 0..<outer { (dst + r * w).update(from: src + r * rowIn + o, count: w) }
        return Variable(out, op: "slice", parents: [self]) { g in
            let dx = Tensor(shape: x.shape, repeating: 0)
            let pd = dx.storage.pointer, pg = g.storage.pointer
            for r in 0..<outer { (pd + r * rowIn + o).update(from: pg + r * w, count: w) }
            self.accumulate(dx)
        }
    }

    /// Repeats the tensor to a numpy-broadcast-compatible `shape`; the gradient sums
    /// back over the repeated axes.
    /// - Throws: `TensorError` when the shape cannot be reached by broadcasting.
    public func broadcast(to target: [Int]) throws(TensorError) -> Variable {
        guard target.allSatisfy({ $0 >= 0 }), Shapes.broadcast(shape, target) == target else {
            throw TensorError.shapes("broadcast", shape, target, "cannot broadcast")
        }
        let x = value
        return Variable(broadcasted(x, to: target), op: "broadcast", parents: [self]) { g in
            self.accumulate(g.summed(toShape: x.shape))
        }
    }
}

// MARK: - Gather (embedding) and one-hot

/// Validates a float tensor of class or row indices and returns them as Ints.
func integerIndices(_ indices: Tensor, below limit: Int, op: String, shapes: [[Int]]) throws(TensorError) -> [Int] {
    var result = [Int](repeating: 0, count: indices.count)
    let p = indices.storage.pointer
    for i in 0..<indices.count {
        let v = p[i]
        guard v.isFinite, v == v.rounded(), v >= 0, v < Float(limit) else {
            throw TensorError(.invalidArgument, op: op,
                              "index \(v) at position \(i) is not an integer in 0..<\(limit)", shapes: shapes)
        }
        result[i] = Int(v)
    }
    return result
}

extension Variable {
    /// Rows of this tensor along axis 0, picked by `indices` (floats holding integers):
    /// the output shape is `indices.shape + shape[1...]`. The gradient scatter-adds
    /// into the picked rows.
    /// - Throws: `TensorError` when an index is not an integer in range.
    public func gatherRows(_ indices: Tensor) throws(TensorError) -> Variable {
        guard shape.count >= 1 else {
            throw TensorError(.invalidArgument, op: "gather", "cannot gather rows of a scalar", shapes: [shape])
        }
        let rows = try integerIndices(indices, below: shape[0], op: "gather", shapes: [indices.shape, shape])
        let width = Shapes.count(Array(shape.dropFirst()))
        let table = value
        let out = Tensor(uninitializedShape: indices.shape + Array(shape.dropFirst()))
        let src = table.storage.pointer, dst = out.storage.pointer
        for (i, r) in rows.enumerated() { (dst + i * width).update(from: src + r * width, count: width) }
        return Variable(out, op: "gather", parents: [self]) { g in
            let dt = Tensor(shape: table.shape, repeating: 0)
            let pd = dt.storage.pointer, pg = g.storage.pointer
            for (i, r) in rows.enumerated() {
                let d = pd + r * width, s = pg + i * width
                for j in 0..<width { d[j] += s[j] }
            }
            self.accumulate(dt)
        }
    }

    /// An embedding lookup: `table` is [input_dim, output_dim], `indices` any shape of
    /// integer-valued floats; the result is `indices.shape + [output_dim]`.
    /// - Throws: `TensorError` when the table is not rank 2 or an index is out of range.
    public static func embedding(indices: Tensor, table: Variable) throws(TensorError) -> Variable {
        guard table.shape.count == 2 else {
            throw TensorError.shapes("embedding", indices.shape, table.shape, "the table must be [input_dim, output_dim]")
        }
        do throws(TensorError) {
            return try table.gatherRows(indices)
        } catch {
            throw TensorError(error.kind, op: "embedding", error.message, shapes: error.shapes)
        }
    }

    /// One-hot encoding of integer-valued floats along a new last axis; a constant
    /// (no gradient flows to indices).
    /// - Throws: `TensorError` when an index is not an integer in 0..<classes.
    public func oneHot(classes: Int) throws(TensorError) -> Variable {
        Variable(try Tensor.oneHot(value, classes: classes))
    }
}

extension Tensor {
    /// One-hot encoding: the result has shape `indices.shape + [classes]`.
    /// - Throws: `TensorError` when `classes` < 1 or an index is not an integer in range.
    public static func oneHot(_ indices: Tensor, classes: Int) throws(TensorError) -> Tensor {
        guard classes >= 1 else {
            throw TensorError(.invalidArgument, op: "one_hot", "expected a positive number of classes. Received: classes=\(classes)")
        }
        let labels = try integerIndices(indices, below: classes, op: "one_hot", shapes: [indices.shape])
        let out = Tensor(shape: indices.shape + [classes], repeating: 0)
        let p = out.storage.pointer
        for (i, c) in labels.enumerated() { p[i * classes + c] = 1 }
        return out
    }
}
