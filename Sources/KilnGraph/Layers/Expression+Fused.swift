import Foundation
import KilnTensor

/// An expression compiled to a straight-line program evaluated element by element: the
/// whole formula runs in one pass over the broadcast output, and its backward pass
/// replays the program in reverse per element, so no intermediate tensor is built for
/// any sub-expression.
struct FusedProgram: Sendable {
    enum Op: Sendable {
        case leaf(Int)            // operand index
        case number(Float)
        case unary(String, Int)
        case binary(String, Int, Int)
    }

    let ops: [Op]
    let leafNames: [String]

    init(_ tree: ExpressionNode, leaves: [String]) {
        var ops: [Op] = []
        func emit(_ node: ExpressionNode) -> Int {
            switch node {
            case let .number(n): ops.append(.number(n))
            case let .variable(v): ops.append(.leaf(leaves.firstIndex(of: v)!))
            case let .unary(f, a): let i = emit(a); ops.append(.unary(f, i))
            case let .binary(f, a, b): let i = emit(a), j = emit(b); ops.append(.binary(f, i, j))
            }
            return ops.count - 1
        }
        _ = emit(tree)
        self.ops = ops
        leafNames = leaves
    }

    @inline(__always)
    static func apply(_ f: String, _ x: Float) -> Float {
        switch f {
        case "exp": return Foundation.exp(x)
        case "log": return Foundation.log(x)
        case "sqrt": return x.squareRoot()
        case "abs": return Swift.abs(x)
        case "sin": return Foundation.sin(x)
        case "cos": return Foundation.cos(x)
        case "tanh": return Foundation.tanh(x)
        case "sigmoid": return x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        case "relu": return x > 0 ? x : 0
        case "elu": return x > 0 ? x : Foundation.exp(x) - 1
        case "softplus": return x > 20 ? x : Foundation.log1p(Foundation.exp(x))
        case "square": return x * x
        case "floor": return Foundation.floor(x)
        default: return -x
        }
    }

    /// d f(x) / dx given x and y = f(x).
    @inline(__always)
    static func derivative(_ f: String, _ x: Float, _ y: Float) -> Float {
        switch f {
        case "exp": return y
        case "log": return 1 / x
        case "sqrt": return 0.5 / y
        case "abs": return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case "sin": return Foundation.cos(x)
        case "cos": return -Foundation.sin(x)
        case "tanh": return 1 - y * y
        case "sigmoid": return y * (1 - y)
        case "relu": return x > 0 ? 1 : 0
        case "elu": return x > 0 ? 1 : y + 1
        case "softplus": return 1 / (1 + Foundation.exp(-x))
        case "square": return 2 * x
        case "floor": return 0
        default: return -1
        }
    }

    @inline(__always)
    static func apply(_ f: String, _ a: Float, _ b: Float) -> Float {
        switch f {
        case "+": return a + b
        case "-": return a - b
        case "*": return a * b
        case "/": return a / b
        case "^", "pow": return Foundation.pow(a, b)
        case "mod": return a - b * Foundation.floor(a / b)
        case "min": return Swift.min(a, b)
        default: return Swift.max(a, b)
        }
    }

    /// (d/da, d/db) given a, b and y.
    @inline(__always)
    static func partials(_ f: String, _ a: Float, _ b: Float, _ y: Float) -> (Float, Float) {
        switch f {
        case "+": return (1, 1)
        case "-": return (1, -1)
        case "*": return (b, a)
        case "/": return (1 / b, -a / (b * b))
        case "^", "pow": return (b * Foundation.pow(a, b - 1), a > 0 ? y * Foundation.log(a) : 0)
        case "mod": return (1, -Foundation.floor(a / b))
        case "min": return a <= b ? (1, 0) : (0, 1)
        default: return a >= b ? (1, 0) : (0, 1)
        }
    }

    /// Runs the program over broadcast operands, building one output tensor.
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
        let out = Tensor(uninitializedShape: shape)
        let pointers = values.map { $0.storage.pointer }
        let program = self
        var registers = [Float](repeating: 0, count: ops.count)
        registers.withUnsafeMutableBufferPointer { r in
            let po = out.storage.pointer
            walk.forEach { index, offsets in
                program.forward(r) { k in pointers[k][offsets[k]] }
                po[index] = r[r.count - 1]
            }
        }
        return Variable(out, op: "expression", parents: operands) { g in
            let grads = values.map { Tensor(shape: $0.shape, repeating: 0) }
            let gradPointers = grads.map { $0.storage.pointer }
            let pg = g.storage.pointer
            var registers = [Float](repeating: 0, count: program.ops.count)
            var adjoints = [Float](repeating: 0, count: program.ops.count)
            registers.withUnsafeMutableBufferPointer { r in
                adjoints.withUnsafeMutableBufferPointer { a in
                    walk.forEach { index, offsets in
                        program.forward(r) { k in pointers[k][offsets[k]] }
                        program.backward(r, a, seed: pg[index]) { k, d in gradPointers[k][offsets[k]] += d }
                    }
                }
            }
            for (k, operand) in operands.enumerated() where operand.requiresGrad { operand.accumulate(grads[k]) }
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

    @inline(__always)
    func forEach(_ body: (Int, UnsafeMutableBufferPointer<Int>) -> Void) {
        let count = Shapes.count(shape)
        guard count > 0 else { return }
        let rank = shape.count
        var index = [Int](repeating: 0, count: rank)
        var offsets = [Int](repeating: 0, count: operands.count)
        offsets.withUnsafeMutableBufferPointer { o in
            for flat in 0..<count {
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
