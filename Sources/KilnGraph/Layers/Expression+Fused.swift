import Foundation
import KilnTensor

/// An expression compiled to a straight-line program evaluated element by element: the
/// whole formula runs in one pass over the broadcast output, and its backward pass
/// replays the program in reverse per element, so no intermediate tensor is built for
/// any sub-expression. Values and derivatives come from the element-wise table
/// (`UnaryFunction`, `BinaryFunction` in KilnTensor), the same the tensor ops use.
struct FusedProgram: Sendable {
    enum Op: Sendable {
        case leaf(Int)            // operand index
        case number(Float)
        case unary(UnaryFunction, Int)
        case binary(BinaryFunction, Int, Int)
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

    /// Output elements per core-sized chunk (below twice this, one core runs it all).
    static let chunk = 1 << 13

    /// Runs the program over broadcast operands, building one output tensor. Chunks of
    /// the output run on the cores, each with its own registers; in the backward pass an
    /// operand that is broadcast (so several output elements add into one of its
    /// elements) gets a gradient buffer per chunk, added up at the end. The per-element
    /// loops read only unsafe buffers: an array or closure context touched per element
    /// would be retained and released per element, from every core at once.
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
        let pointers = values.map { UnsafePointer($0.storage.pointer) }
        let po = out.storage.pointer
        ops.withUnsafeBufferPointer { code in
            pointers.withUnsafeBufferPointer { leaves in
                Parallel.forEachChunk(count, minimumChunk: FusedProgram.chunk) { _, range in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: code.count) { r in
                        walk.forEach(range) { index, offsets in
                            FusedProgram.forward(code, r) { k in leaves[k][offsets[k]] }
                            po[index] = r[r.count - 1]
                        }
                    }
                }
            }
        }
        let program = self
        return Variable(out, op: "expression", parents: operands) { g in
            let chunks = Parallel.chunkCount(count, minimumChunk: FusedProgram.chunk)
            let needs = operands.map(\.requiresGrad)
            // Per operand: one buffer, or one per chunk when broadcast and split.
            let perChunk = values.map { chunks > 1 && $0.count != count }
            let grads = values.indices.map { k in Tensor(shape: [(perChunk[k] ? chunks : 1) * (needs[k] ? values[k].count : 0)], repeating: 0) }
            // Where chunk c adds operand k's gradient (nil when k needs none).
            var targets = [UnsafeMutablePointer<Float>?](repeating: nil, count: chunks * operands.count)
            for c in 0..<chunks {
                for k in operands.indices where needs[k] {
                    targets[c * operands.count + k] = grads[k].storage.pointer + (perChunk[k] ? c * values[k].count : 0)
                }
            }
            let pg = g.storage.pointer, operandCount = operands.count
            program.ops.withUnsafeBufferPointer { code in
                pointers.withUnsafeBufferPointer { leaves in
                    targets.withUnsafeBufferPointer { targets in
                        Parallel.forEachChunk(count, minimumChunk: FusedProgram.chunk) { c, range in
                            let mine = UnsafeBufferPointer(rebasing: targets[(c * operandCount)..<((c + 1) * operandCount)])
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: code.count) { r in
                                withUnsafeTemporaryAllocation(of: Float.self, capacity: code.count) { a in
                                    walk.forEach(range) { index, offsets in
                                        FusedProgram.forward(code, r) { k in leaves[k][offsets[k]] }
                                        FusedProgram.backward(code, r, a, seed: pg[index]) { k, d in
                                            if let target = mine[k] { target[offsets[k]] += d }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for (k, operand) in operands.enumerated() where needs[k] {
                let total = Tensor(uninitializedShape: values[k].shape)
                let pt = total.storage.pointer, pk = grads[k].storage.pointer, n = values[k].count
                pt.update(from: pk, count: n)
                if perChunk[k] { for c in 1..<chunks { for i in 0..<n { pt[i] += pk[c * n + i] } } }
                operand.accumulate(total)
            }
            // Written only through their pointers: keep them alive until the sums are read.
            withExtendedLifetime(grads) {}
        }
    }

    @inline(__always)
    static func forward(_ code: UnsafeBufferPointer<Op>, _ r: UnsafeMutableBufferPointer<Float>, _ leaf: (Int) -> Float) {
        for i in 0..<code.count {
            switch code[i] {
            case let .leaf(k): r[i] = leaf(k)
            case let .number(n): r[i] = n
            case let .unary(f, a): r[i] = f.value(r[a])
            case let .binary(f, a, b): r[i] = f.value(r[a], r[b])
            }
        }
    }

    @inline(__always)
    static func backward(_ code: UnsafeBufferPointer<Op>, _ r: UnsafeMutableBufferPointer<Float>, _ a: UnsafeMutableBufferPointer<Float>,
                         seed: Float, _ leaf: (Int, Float) -> Void) {
        for i in 0..<a.count { a[i] = 0 }
        a[a.count - 1] = seed
        for i in stride(from: code.count - 1, through: 0, by: -1) {
            let d = a[i]
            if d == 0 { continue }
            switch code[i] {
            case let .leaf(k): leaf(k, d)
            case .number: break
            case let .unary(f, x): a[x] += d * f.derivative(r[x], r[i])
            case let .binary(f, x, y):
                let (dx, dy) = f.partials(r[x], r[y], r[i])
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
        let rank = shape.count, count = operands.count
        // Flat buffers: strides[k * rank + axis]; the multi-index; the offsets.
        var flat = [Int](repeating: 0, count: count * rank + 2 * rank + count)
        flat.withUnsafeMutableBufferPointer { buffer in
            let strides = buffer.baseAddress!, dims = strides + count * rank
            let index = dims + rank, o = UnsafeMutableBufferPointer(start: index + rank, count: count)
            for k in 0..<count { for axis in 0..<rank { strides[k * rank + axis] = operands[k][axis] } }
            for axis in 0..<rank { dims[axis] = shape[axis] }
            // The multi-index and operand offsets of the first element.
            var rest = range.lowerBound
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                index[axis] = rest % dims[axis]
                rest /= dims[axis]
            }
            for k in 0..<count {
                o[k] = 0
                for axis in 0..<rank { o[k] += index[axis] * strides[k * rank + axis] }
            }
            for flat in range {
                body(flat, o)
                var axis = rank - 1
                while axis >= 0 {
                    index[axis] += 1
                    for k in 0..<count { o[k] += strides[k * rank + axis] }
                    if index[axis] < dims[axis] { break }
                    for k in 0..<count { o[k] -= strides[k * rank + axis] * dims[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}
