import Foundation
import KilnTensor

/// An expression compiled to a straight-line program evaluated element by element: the
/// whole formula runs in one pass over the broadcast output, and its backward pass
/// replays the program in reverse per element, so no intermediate tensor is built for
/// any sub-expression.
struct FusedProgram: Sendable {
    /// The one-argument functions, resolved from their names once, when the program is
    /// built (a switch on strings per element cost more than the arithmetic).
    enum Unary: Sendable {
        case exp, log, sqrt, abs, sin, cos, tanh, sigmoid, relu, elu, softplus, square, floor, neg

        init(_ name: String) {
            switch name {
            case "exp": self = .exp
            case "log": self = .log
            case "sqrt": self = .sqrt
            case "abs": self = .abs
            case "sin": self = .sin
            case "cos": self = .cos
            case "tanh": self = .tanh
            case "sigmoid": self = .sigmoid
            case "relu": self = .relu
            case "elu": self = .elu
            case "softplus": self = .softplus
            case "square": self = .square
            case "floor": self = .floor
            default: self = .neg
            }
        }
    }

    enum Binary: Sendable {
        case add, sub, mul, div, pow, mod, min, max

        init(_ name: String) {
            switch name {
            case "+": self = .add
            case "-": self = .sub
            case "*": self = .mul
            case "/": self = .div
            case "^", "pow": self = .pow
            case "mod": self = .mod
            case "min": self = .min
            default: self = .max
            }
        }
    }

    enum Op: Sendable {
        case leaf(Int)            // operand index
        case number(Float)
        case unary(Unary, Int)
        case binary(Binary, Int, Int)
    }

    let ops: [Op]
    let leafNames: [String]

    init(_ tree: ExpressionNode, leaves: [String]) {
        var ops: [Op] = []
        func emit(_ node: ExpressionNode) -> Int {
            switch node {
            case let .number(n): ops.append(.number(n))
            case let .variable(v): ops.append(.leaf(leaves.firstIndex(of: v)!))
            case let .unary(f, a): let i = emit(a); ops.append(.unary(Unary(f), i))
            case let .binary(f, a, b): let i = emit(a), j = emit(b); ops.append(.binary(Binary(f), i, j))
            }
            return ops.count - 1
        }
        _ = emit(tree)
        self.ops = ops
        leafNames = leaves
    }

    @inline(__always)
    static func apply(_ f: Unary, _ x: Float) -> Float {
        switch f {
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .abs: return Swift.abs(x)
        case .sin: return Foundation.sin(x)
        case .cos: return Foundation.cos(x)
        case .tanh: return Foundation.tanh(x)
        case .sigmoid: return x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        case .relu: return x > 0 ? x : 0
        case .elu: return x > 0 ? x : Foundation.exp(x) - 1
        case .softplus: return x > 20 ? x : Foundation.log1p(Foundation.exp(x))
        case .square: return x * x
        case .floor: return Foundation.floor(x)
        case .neg: return -x
        }
    }

    /// d f(x) / dx given x and y = f(x).
    @inline(__always)
    static func derivative(_ f: Unary, _ x: Float, _ y: Float) -> Float {
        switch f {
        case .exp: return y
        case .log: return 1 / x
        case .sqrt: return 0.5 / y
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .sin: return Foundation.cos(x)
        case .cos: return -Foundation.sin(x)
        case .tanh: return 1 - y * y
        case .sigmoid: return y * (1 - y)
        case .relu: return x > 0 ? 1 : 0
        case .elu: return x > 0 ? 1 : y + 1
        case .softplus: return 1 / (1 + Foundation.exp(-x))
        case .square: return 2 * x
        case .floor: return 0
        case .neg: return -1
        }
    }

    @inline(__always)
    static func apply(_ f: Binary, _ a: Float, _ b: Float) -> Float {
        switch f {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return Foundation.pow(a, b)
        case .mod: return a - b * Foundation.floor(a / b)
        case .min: return Swift.min(a, b)
        case .max: return Swift.max(a, b)
        }
    }

    /// (d/da, d/db) given a, b and y.
    @inline(__always)
    static func partials(_ f: Binary, _ a: Float, _ b: Float, _ y: Float) -> (Float, Float) {
        switch f {
        case .add: return (1, 1)
        case .sub: return (1, -1)
        case .mul: return (b, a)
        case .div: return (1 / b, -a / (b * b))
        case .pow: return (b * Foundation.pow(a, b - 1), a > 0 ? y * Foundation.log(a) : 0)
        case .mod: return (1, -Foundation.floor(a / b))
        case .min: return a <= b ? (1, 0) : (0, 1)
        case .max: return a >= b ? (1, 0) : (0, 1)
        }
    }

    /// Output elements per core-sized chunk (below twice this, one core runs it all).
    static let chunk = 1 << 13

    /// Runs the program over broadcast operands, building one output tensor. Chunks of
    /// the output run on the cores, each with its own registers; in the backward pass an
    /// operand that is broadcast (so several output elements add into one of its
    /// elements) gets a gradient buffer per chunk, added up at the end.
    func run(_ operands: [Variable]) throws(TensorError) -> Variable {
        var shape: [Int] = []
        for o in operands {
            guard let s = Shapes.broadcast(shape, o.shape) else {
                throw TensorError.mismatch("expression", shape, o.shape, "cannot broadcast shapes")
            }
            shape = s
        }
        let values = operands.map(\.value)
        let walk = OperandWalk(shape: shape, operands: values.map { Shapes.broadcastStrides($0.shape, to: shape) })
        let count = Shapes.count(shape)
        let out = Tensor(uninitializedShape: shape)
        let pointers = values.map { $0.storage.pointer }
        let program = self
        let po = out.storage.pointer
        Parallel.forEachChunk(count, minimumChunk: FusedProgram.chunk) { _, range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: program.ops.count) { r in
                walk.forEach(range) { index, offsets in
                    program.forward(r) { k in pointers[k][offsets[k]] }
                    po[index] = r[r.count - 1]
                }
            }
        }
        return Variable(out, op: "expression", parents: operands) { g in
            let chunks = Parallel.chunkCount(count, minimumChunk: FusedProgram.chunk)
            let needs = operands.map(\.requiresGrad)
            // Per operand: one buffer, or one per chunk when broadcast and split.
            let perChunk = values.map { chunks > 1 && $0.count != count }
            let grads = values.indices.map { k in Tensor(shape: [(perChunk[k] ? chunks : 1) * (needs[k] ? values[k].count : 0)], repeating: 0) }
            let gradPointers = grads.map { $0.storage.pointer }
            let sizes = values.map(\.count)
            let pg = g.storage.pointer
            Parallel.forEachChunk(count, minimumChunk: FusedProgram.chunk) { c, range in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: program.ops.count) { r in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: program.ops.count) { a in
                        walk.forEach(range) { index, offsets in
                            program.forward(r) { k in pointers[k][offsets[k]] }
                            program.backward(r, a, seed: pg[index]) { k, d in
                                guard needs[k] else { return }
                                gradPointers[k][(perChunk[k] ? c * sizes[k] : 0) + offsets[k]] += d
                            }
                        }
                    }
                }
            }
            for (k, operand) in operands.enumerated() where needs[k] {
                let total = Tensor(uninitializedShape: values[k].shape)
                let pt = total.storage.pointer, pk = gradPointers[k], n = sizes[k]
                pt.update(from: pk, count: n)
                if perChunk[k] { for c in 1..<chunks { for i in 0..<n { pt[i] += pk[c * n + i] } } }
                operand.accumulate(total)
            }
            // Written only through their pointers: keep them alive until the sums are read.
            withExtendedLifetime(grads) {}
        }
    }

    @inline(__always)
    func forward(_ r: UnsafeMutableBufferPointer<Float>, _ leaf: (Int) -> Float) {
        for (i, op) in ops.enumerated() {
            switch op {
            case let .leaf(k): r[i] = leaf(k)
            case let .number(n): r[i] = n
            case let .unary(f, a): r[i] = FusedProgram.apply(f, r[a])
            case let .binary(f, a, b): r[i] = FusedProgram.apply(f, r[a], r[b])
            }
        }
    }

    @inline(__always)
    func backward(_ r: UnsafeMutableBufferPointer<Float>, _ a: UnsafeMutableBufferPointer<Float>, seed: Float, _ leaf: (Int, Float) -> Void) {
        for i in 0..<a.count { a[i] = 0 }
        a[a.count - 1] = seed
        for i in stride(from: ops.count - 1, through: 0, by: -1) {
            let d = a[i]
            if d == 0 { continue }
            switch ops[i] {
            case let .leaf(k): leaf(k, d)
            case .number: break
            case let .unary(f, x): a[x] += d * FusedProgram.derivative(f, r[x], r[i])
            case let .binary(f, x, y):
                let (dx, dy) = FusedProgram.partials(f, r[x], r[y], r[i])
                a[x] += d * dx
                a[y] += d * dy
            }
        }
    }
}

/// Visits every element of a broadcast output in order with each operand's offset
/// (stride 0 along the axes an operand is broadcast on).
struct OperandWalk {
    let shape: [Int]
    let operands: [[Int]]

    /// Visits the output elements in `range` (in order) with each operand's offset.
    @inline(__always)
    func forEach(_ range: Range<Int>, _ body: (Int, UnsafeMutableBufferPointer<Int>) -> Void) {
        guard !range.isEmpty else { return }
        let rank = shape.count
        // The multi-index and operand offsets of the first element.
        var index = [Int](repeating: 0, count: rank)
        var rest = range.lowerBound
        for axis in stride(from: rank - 1, through: 0, by: -1) where shape[axis] > 0 {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        var offsets = [Int](repeating: 0, count: operands.count)
        for k in 0..<operands.count {
            for axis in 0..<rank { offsets[k] += index[axis] * operands[k][axis] }
        }
        offsets.withUnsafeMutableBufferPointer { o in
            for flat in range {
                body(flat, o)
                var axis = rank - 1
                while axis >= 0 {
                    index[axis] += 1
                    for k in 0..<operands.count { o[k] += operands[k][axis] }
                    if index[axis] < shape[axis] { break }
                    for k in 0..<operands.count { o[k] -= operands[k][axis] * shape[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}
