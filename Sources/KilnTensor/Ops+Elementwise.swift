import Foundation

// MARK: - Kernels

/// y = f(x) element-wise, split over the cores for large tensors.
@inline(__always)
func mapUnary(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    let y = Tensor(uninitializedShape: x.shape)
    let src = x.storage.pointer, dst = y.storage.pointer
    parallelChunks(x.count) { r in for i in r { dst[i] = f(src[i]) } }
    return y
}

/// out = f(a, b, c) element-wise over three tensors of one shape.
@inline(__always)
func mapTernary(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, pc = c.storage.pointer, po = out.storage.pointer
    parallelChunks(a.count) { r in for i in r { po[i] = f(pa[i], pb[i], pc[i]) } }
    return out
}

/// out = f(a, b) with numpy broadcasting; `shape` is the broadcast shape.
@inline(__always)
func mapBinary(_ a: Tensor, _ b: Tensor, shape: [Int], _ f: (Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
    if a.shape == shape && b.shape == shape {
        parallelChunks(out.count) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
        return out
    }
    // A full operand and a repeated trailing block (a bias): rows over the cores.
    if a.shape == shape, let inner = suffixBlock(b.shape, of: shape), inner > 0, b.count == inner {
        let rows = out.count / inner
        parallelChunks(rows, minimumChunk: Swift.max(1, (1 << 15) / inner)) { r in
            for row in r {
                let o = po + row * inner, x = pa + row * inner
                for i in 0..<inner { o[i] = f(x[i], pb[i]) }
            }
        }
        return out
    }
    if b.shape == shape, let inner = suffixBlock(a.shape, of: shape), inner > 0, a.count == inner {
        let rows = out.count / inner
        parallelChunks(rows, minimumChunk: Swift.max(1, (1 << 15) / inner)) { r in
            for row in r {
                let o = po + row * inner, y = pb + row * inner
                for i in 0..<inner { o[i] = f(pa[i], y[i]) }
            }
        }
        return out
    }
    let runs = BroadcastRuns(shape: shape, strides: [
        Shapes.strides(shape), Shapes.broadcastStrides(a.shape, to: shape), Shapes.broadcastStrides(b.shape, to: shape),
    ])
    runs.forEachRun { off, n, inner in
        let o = po + off[0], x = pa + off[1], y = pb + off[2]
        switch (inner[1], inner[2]) {
        case (1, 1): for i in 0..<n { o[i] = f(x[i], y[i]) }
        case (1, 0): let v = y[0]; for i in 0..<n { o[i] = f(x[i], v) }
        case (0, 1): let v = x[0]; for i in 0..<n { o[i] = f(v, y[i]) }
        default: for i in 0..<n { o[i] = f(x[0], y[0]) }
        }
    }
    return out
}

/// out = g where y > 0, else 0 (relu's backward from its output), eight lanes at a
/// time: a select, not a branch, since the signs of y follow no pattern.
@inline(__always)
func reluMask(_ g: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
    typealias Lanes = SIMD8<Float>
    var i = range.lowerBound
    while i + 8 <= range.upperBound {
        let gv = UnsafeRawPointer(g + i).loadUnaligned(as: Lanes.self)
        let yv = UnsafeRawPointer(y + i).loadUnaligned(as: Lanes.self)
        UnsafeMutableRawPointer(out + i).storeBytes(of: gv.replacing(with: 0, where: .!(yv .> 0)), as: Lanes.self)
        i += 8
    }
    while i < range.upperBound { out[i] = y[i] > 0 ? g[i] : 0; i += 1 }
}

/// g·c (g itself when c is 1).
func scaled(_ g: Tensor, _ c: Float) -> Tensor {
    c == 1 ? g : mapUnary(g) { $0 * c }
}

/// The length of the trailing block that `small` repeats when broadcast to `shape`, when
/// `small` (leading 1s aside) is a suffix of `shape` — a bias added to every row.
func suffixBlock(_ small: [Int], of shape: [Int]) -> Int? {
    var s = small[...]
    while let first = s.first, first == 1, s.count > 0 { s = s.dropFirst() }
    guard s.count <= shape.count, Array(shape.suffix(s.count)) == Array(s) else { return nil }
    return Shapes.count(Array(s))
}

/// Reads a tensor at the broadcast shape as a contiguous tensor (a copy when broadcast).
func broadcasted(_ t: Tensor, to shape: [Int]) -> Tensor {
    if t.shape == shape { return t }
    return mapBinary(t, Tensor(shape: [], repeating: 0), shape: shape) { x, _ in x }
}

// MARK: - Unary ops: the element-wise table (ElementwiseFunction.swift) on tensors

extension Variable {
    /// An element-wise op given by its function and its derivative in terms of the
    /// input x and the output y: for ops with constants of their own (affine); the
    /// table's functions go through `unary(_: UnaryFunction)`.
    @inline(__always)
    func unary(_ name: String, _ f: (Float) -> Float, derivative: @escaping (Float, Float) -> Float) -> Variable {
        let x = value
        let y = mapUnary(x, f)
        return Variable(y, op: name, parents: [self]) { g in
            self.accumulate(mapTernary(g, x, y) { g, x, y in g * derivative(x, y) })
        }
    }

    /// The op of a function of the element-wise table, by its value and derivative;
    /// both loops are compiled for the one function (`specialized`).
    @inline(__always)
    func unary(_ f: UnaryFunction) -> Variable {
        let x = value
        let y = f.specialized { value, _ in mapUnary(x, value) }
        return Variable(y, op: f.rawValue, parents: [self]) { g in
            self.accumulate(f.specialized { _, derivative in mapTernary(g, x, y) { g, x, y in g * derivative(x, y) } })
        }
    }

    /// Applies a function of the element-wise table (relu through its buffer kernel).
    public func apply(_ f: UnaryFunction) -> Variable { f == .relu ? relu() : unary(f) }

    public func neg() -> Variable { unary(.neg) }
    public func exp() -> Variable { unary(.exp) }
    public func log() -> Variable { unary(.log) }
    public func sqrt() -> Variable { unary(.sqrt) }
    public func abs() -> Variable { unary(.abs) }
    public func square() -> Variable { unary(.square) }
    public func sin() -> Variable { unary(.sin) }
    public func cos() -> Variable { unary(.cos) }
    public func tanh() -> Variable { unary(.tanh) }
    public func sigmoid() -> Variable { unary(.sigmoid) }
    /// relu on raw buffers (the hottest activation): the backward pass keeps only the
    /// output, since x > 0 exactly where y > 0 (where the table's derivative is 1), and
    /// runs no per-element closure.
    public func relu() -> Variable {
        let y = Tensor(uninitializedShape: value.shape)
        let src = value.storage.pointer, dst = y.storage.pointer
        parallelChunks(y.count) { r in for i in r { dst[i] = UnaryFunction.relu.value(src[i]) } }
        return Variable(y, op: "relu", parents: [self]) { g in
            let dx = Tensor(uninitializedShape: y.shape)
            let pg = g.storage.pointer, py = y.storage.pointer, pd = dx.storage.pointer
            parallelChunks(dx.count) { r in reluMask(pg, py, pd, r) }
            self.accumulate(dx)
        }
    }
    /// Slope 0.2 below zero (Keras 3's default).
    public func leakyRelu() -> Variable { unary(.leakyRelu) }
    public func elu() -> Variable { unary(.elu) }
    public func selu() -> Variable { unary(.selu) }
    /// GELU, exact form (Keras `approximate=False`): x·Φ(x).
    public func gelu() -> Variable { unary(.gelu) }
    public func softplus() -> Variable { unary(.softplus) }
    public func floor() -> Variable { unary(.floor) }

    /// x·scale + shift with constants.
    public func affine(scale: Float, shift: Float = 0) -> Variable {
        unary("affine", { $0 * scale + shift }, derivative: { _, _ in scale })
    }
}

// MARK: - Binary ops with broadcasting

extension Variable {
    /// The op of a function of the element-wise table on two broadcast operands, by
    /// its value and partial derivatives (in terms of a, b and the output y); the loops
    /// are compiled for the one function (`specialized`).
    @inline(__always)
    func binary(_ f: BinaryFunction, _ other: Variable) throws(TensorError) -> Variable {
        let a = value, b = other.value
        guard let shape = Shapes.broadcast(a.shape, b.shape) else {
            throw TensorError.shapes(f.rawValue, a.shape, b.shape, "cannot broadcast shapes")
        }
        let y = f.specialized { value, _ in mapBinary(a, b, shape: shape, value) }
        if let (ca, cb) = f.constantPartials {
            // Constant partials (add, sub): the gradients are g scaled and summed over
            // the broadcast axes; no operand is read.
            let (aShape, bShape) = (a.shape, b.shape)
            return Variable(y, op: f.rawValue, parents: [self, other]) { g in
                if self.requiresGrad { self.accumulate(scaled(g, ca).summed(toShape: aShape)) }
                if other.requiresGrad { other.accumulate(scaled(g, cb).summed(toShape: bShape)) }
            }
        }
        return Variable(y, op: f.rawValue, parents: [self, other]) { g in
            let fa = broadcasted(a, to: shape), fb = broadcasted(b, to: shape)
            if self.requiresGrad {
                let ga = f.specialized { _, partials in mapBinary(mapTernary(fa, fb, y) { x, z, w in partials(x, z, w).0 }, g, shape: shape, *) }
                self.accumulate(ga.summed(toShape: a.shape))
            }
            if other.requiresGrad {
                let gb = f.specialized { _, partials in mapBinary(mapTernary(fa, fb, y) { x, z, w in partials(x, z, w).1 }, g, shape: shape, *) }
                other.accumulate(gb.summed(toShape: b.shape))
            }
        }
    }

    /// Applies a function of the element-wise table to two broadcast operands.
    public func apply(_ f: BinaryFunction, _ other: Variable) throws(TensorError) -> Variable { try binary(f, other) }

    public func add(_ o: Variable) throws(TensorError) -> Variable { try binary(.add, o) }
    public func sub(_ o: Variable) throws(TensorError) -> Variable { try binary(.sub, o) }
    public func mul(_ o: Variable) throws(TensorError) -> Variable { try binary(.mul, o) }
    public func div(_ o: Variable) throws(TensorError) -> Variable { try binary(.div, o) }
    public func pow(_ o: Variable) throws(TensorError) -> Variable { try binary(.pow, o) }
    /// Floored modulo, like Python and TensorFlow: the result has the sign of b.
    public func mod(_ o: Variable) throws(TensorError) -> Variable { try binary(.mod, o) }
    public func minimum(_ o: Variable) throws(TensorError) -> Variable { try binary(.min, o) }
    public func maximum(_ o: Variable) throws(TensorError) -> Variable { try binary(.max, o) }
}
