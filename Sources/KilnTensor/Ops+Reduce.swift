import Foundation

// MARK: - Reductions over any axes, with keepdims

extension Variable {
    /// The shape with the reduced axes kept as 1, after validating the axes.
    func reducedShape(_ axes: [Int]?, op: String) throws(TensorError) -> [Int] {
        var keep = shape
        for axis in axes ?? Array(0..<shape.count) {
            guard let a = Shapes.axis(axis, rank: shape.count) else {
                throw TensorError(.invalidArgument, op: op, "axis \(axis) is out of range for shape \(shape)", shapes: [shape])
            }
            keep[a] = 1
        }
        return keep
    }

    static func finalShape(_ keep: [Int], _ axes: [Int]?, rank: Int, keepDims: Bool) -> [Int] {
        if keepDims { return keep }
        let reduced = Set((axes ?? Array(0..<rank)).map { $0 < 0 ? $0 + rank : $0 })
        return keep.enumerated().filter { !reduced.contains($0.offset) }.map { $0.element }
    }

    /// Sum over `axes` (all axes when nil).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) throws(TensorError) -> Variable {
        let keep = try reducedShape(axes, op: "sum")
        let x = value
        let y = x.summed(toShape: keep).reshaped(Variable.finalShape(keep, axes, rank: x.rank, keepDims: keepDims))
        return Variable(y, op: "sum", parents: [self]) { g in
            self.accumulate(broadcasted(g.reshaped(keep), to: x.shape))
        }
    }

    /// Mean over `axes` (all axes when nil).
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) throws(TensorError) -> Variable {
        let keep = try reducedShape(axes, op: "mean")
        let x = value
        let scale = Float(Shapes.count(keep)) / Float(Swift.max(x.count, 1))
        let y = mapUnary(x.summed(toShape: keep), { $0 * scale }).reshaped(Variable.finalShape(keep, axes, rank: x.rank, keepDims: keepDims))
        return Variable(y, op: "mean", parents: [self]) { g in
            self.accumulate(mapUnary(broadcasted(g.reshaped(keep), to: x.shape)) { $0 * scale })
        }
    }

    /// Maximum over `axes`; the gradient flows to every element equal to the maximum.
    public func max(axes: [Int]? = nil, keepDims: Bool = false) throws(TensorError) -> Variable {
        let keep = try reducedShape(axes, op: "max")
        let x = value
        let m = Tensor(shape: keep, repeating: -.infinity)
        let runs = BroadcastRuns(shape: x.shape, strides: [Shapes.strides(x.shape), Shapes.broadcastStrides(keep, to: x.shape)])
        let px = x.storage.pointer, pm = m.storage.pointer
        runs.forEachRun { off, n, inner in
            let s = px + off[0], d = pm + off[1]
            if inner[1] == 1 { for i in 0..<n { d[i] = Swift.max(d[i], s[i]) } } else { for i in 0..<n { d[0] = Swift.max(d[0], s[i]) } }
        }
        let y = m.reshaped(Variable.finalShape(keep, axes, rank: x.rank, keepDims: keepDims))
        return Variable(y, op: "max", parents: [self]) { g in
            let mask = mapBinary(x, m, shape: x.shape) { a, b in a == b ? 1 : 0 }
            self.accumulate(mapBinary(mask, g.reshaped(keep), shape: x.shape, *))
        }
    }
}

// MARK: - Softmax and log-softmax on any axis

/// Views a tensor as [outer, length, inner] around `axis`.
struct AxisView {
    let outer: Int, length: Int, inner: Int
    init(_ shape: [Int], axis: Int) {
        outer = Shapes.count(Array(shape[..<axis]))
        length = shape[axis]
        inner = Shapes.count(Array(shape[(axis + 1)...]))
    }

    /// Calls body(base, stride) for every line along the axis.
    @inline(__always)
    func forEachLine(_ body: (Int, Int) -> Void) {
        for o in 0..<outer { for i in 0..<inner { body(o * length * inner + i, inner) } }
    }
}

extension Variable {
    public func softmax(axis: Int = -1) throws(TensorError) -> Variable {
        guard let a = Shapes.axis(axis, rank: shape.count) else {
            throw TensorError(.invalidArgument, op: "softmax", "axis \(axis) is out of range for shape \(shape)", shapes: [shape])
        }
        let view = AxisView(shape, axis: a)
        let x = value, y = Tensor(uninitializedShape: shape)
        let px = x.storage.pointer, py = y.storage.pointer
        view.forEachLine { base, s in
            var m = -Float.infinity
            for j in 0..<view.length { m = Swift.max(m, px[base + j * s]) }
            var total: Float = 0
            for j in 0..<view.length { let e = Foundation.exp(px[base + j * s] - m); py[base + j * s] = e; total += e }
            let inv = 1 / total
            for j in 0..<view.length { py[base + j * s] *= inv }
        }
        return Variable(y, op: "softmax", parents: [self]) { g in
            let py = y.storage.pointer
            let dx = Tensor(uninitializedShape: y.shape)
            let pg = g.storage.pointer, pd = dx.storage.pointer
            view.forEachLine { base, s in
                var dot: Float = 0
                for j in 0..<view.length { dot += pg[base + j * s] * py[base + j * s] }
                for j in 0..<view.length { pd[base + j * s] = py[base + j * s] * (pg[base + j * s] - dot) }
            }
            self.accumulate(dx)
        }
    }

    public func logSoftmax(axis: Int = -1) throws(TensorError) -> Variable {
        guard let a = Shapes.axis(axis, rank: shape.count) else {
            throw TensorError(.invalidArgument, op: "log_softmax", "axis \(axis) is out of range for shape \(shape)", shapes: [shape])
        }
        let view = AxisView(shape, axis: a)
        let x = value, y = Tensor(uninitializedShape: shape)
        let px = x.storage.pointer, py = y.storage.pointer
        view.forEachLine { base, s in
            var m = -Float.infinity
            for j in 0..<view.length { m = Swift.max(m, px[base + j * s]) }
            var total: Float = 0
            for j in 0..<view.length { total += Foundation.exp(px[base + j * s] - m) }
            let lse = m + Foundation.log(total)
            for j in 0..<view.length { py[base + j * s] = px[base + j * s] - lse }
        }
        return Variable(y, op: "log_softmax", parents: [self]) { g in
            let py = y.storage.pointer
            let dx = Tensor(uninitializedShape: y.shape)
            let pg = g.storage.pointer, pd = dx.storage.pointer
            view.forEachLine { base, s in
                var total: Float = 0
                for j in 0..<view.length { total += pg[base + j * s] }
                for j in 0..<view.length { pd[base + j * s] = pg[base + j * s] - Foundation.exp(py[base + j * s]) * total }
            }
            self.accumulate(dx)
        }
    }
}

// MARK: - Shape ops

extension Variable {
    /// The same elements with another shape of equal size.
    public func reshape(_ newShape: [Int]) throws(TensorError) -> Variable {
        guard Shapes.count(newShape) == value.count, newShape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.shapes("reshape", shape, newShape, "element counts differ")
        }
        let x = value
        return Variable(x.reshaped(newShape), op: "reshape", parents: [self]) { g in
            self.accumulate(g.reshaped(x.shape))
        }
    }
}
