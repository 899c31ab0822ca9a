import KilnJSON
import KilnTensor

// MARK: - add, subtract, multiply, average: element-wise with numpy broadcasting

/// Broadcasts per-sample shapes (batchless operands align to the trailing axes).
func broadcastShapes(_ inputs: [NodeShape], _ node: NodeInfo, _ op: String) throws(SpecError) -> NodeShape {
    var dims: [Int] = []
    var batched = false
    for (i, s) in inputs.enumerated() {
        guard let b = Shapes.broadcast(dims, s.dims) else {
            throw node.error("\(op) cannot broadcast input \(i) of shape \(s) with \(NodeShape(dims, batched: batched)) (sizes must match or be 1, aligned at the last axis)")
        }
        dims = b
        batched = batched || s.batched
    }
    return NodeShape(dims, batched: batched)
}

/// The shared body of the merge layers. A batchless operand broadcasts against the
/// trailing axes of batched ones, as in numpy.
public struct Merge: Sendable {
    public enum Op: String, Sendable { case add, subtract, multiply, average }
    let op: Op

    func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        if op == .subtract && inputs.count != 2 {
            throw node.error("subtract takes exactly 2 inputs, got \(inputs.count)", field: "inputs", code: .invalidField)
        }
        return try broadcastShapes(inputs, node, op.rawValue)
    }

    func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        var y = inputs[0]
        for x in inputs.dropFirst() {
            switch op {
            case .add, .average: y = try y.add(x)
            case .subtract: y = try y.sub(x)
            case .multiply: y = try y.mul(x)
            }
        }
        return op == .average ? y.affine(scale: 1 / Float(inputs.count)) : y
    }
}

/// Names one merge operation as a type, so one generic layer serves all four.
public protocol MergeKind: Sendable { static var op: Merge.Op { get } }
public enum AddKind: MergeKind { public static let op = Merge.Op.add }
public enum SubtractKind: MergeKind { public static let op = Merge.Op.subtract }
public enum MultiplyKind: MergeKind { public static let op = Merge.Op.multiply }
public enum AverageKind: MergeKind { public static let op = Merge.Op.average }

/// `add`, `subtract` (exactly two inputs), `multiply` and `average`.
public struct MergeLayer<Kind: MergeKind>: Layer {
    public static var typeName: String { Kind.op.rawValue }
    public static var arity: ClosedRange<Int> { Kind.op == .subtract ? 2...2 : 2...64 }
    let merge = Merge(op: Kind.op)
    public init(_ fields: inout FieldReader) throws(SpecError) {}
    public var config: [(String, JSON)] { [] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try merge.outputShape(inputs, node) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ c: inout ForwardContext) throws(TensorError) -> Variable { try merge.forward(inputs, w, &c) }
}

public typealias Add = MergeLayer<AddKind>
public typealias Subtract = MergeLayer<SubtractKind>
public typealias Multiply = MergeLayer<MultiplyKind>
public typealias Average = MergeLayer<AverageKind>

// MARK: - matmul

/// Matrix product over the last two axes, batched, with transpose flags; a batchless
/// operand (a weight) broadcasts over the batch.
public struct Matmul: Layer {
    public static let typeName = "matmul"
    public static var arity: ClosedRange<Int> { 2...2 }
    public let transposeA: Bool
    public let transposeB: Bool

    public init(_ fields: inout FieldReader) throws(SpecError) {
        transposeA = try fields.bool("transpose_a") ?? false
        transposeB = try fields.bool("transpose_b") ?? false
    }

    public var config: [(String, JSON)] { [("transpose_a", JSON(transposeA)), ("transpose_b", JSON(transposeB))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let a = inputs[0], b = inputs[1]
        // With the batch axis counted, each operand needs two matrix axes.
        let ra = a.dims.count + (a.batched ? 1 : 0), rb = b.dims.count + (b.batched ? 1 : 0)
        guard ra >= 2, rb >= 2, !a.dims.isEmpty, !b.dims.isEmpty else {
            throw node.error("matmul needs two axes per operand, got \(a) and \(b)")
        }
        let full = { (s: NodeShape) -> [Int] in s.batched ? [-1] + s.dims : s.dims }
        let fa = full(a), fb = full(b)
        let (m, ka) = transposeA ? (fa[fa.count - 1], fa[fa.count - 2]) : (fa[fa.count - 2], fa[fa.count - 1])
        let (kb, n) = transposeB ? (fb[fb.count - 1], fb[fb.count - 2]) : (fb[fb.count - 2], fb[fb.count - 1])
        guard ka == kb, ka != -1 else {
            throw node.error("matmul inner dimensions differ: \(a)\(transposeA ? "ᵀ" : "") · \(b)\(transposeB ? "ᵀ" : "") (\(ka) vs \(kb))")
        }
        guard let batch = Shapes.broadcast(Array(fa.dropLast(2)).map { $0 == -1 ? 1 : $0 }, Array(fb.dropLast(2)).map { $0 == -1 ? 1 : $0 }) else {
            throw node.error("matmul batch axes of \(a) and \(b) cannot broadcast")
        }
        let batched = a.batched || b.batched
        let out = batch + [m, n]
        return NodeShape(batched ? Array(out.dropFirst()) : out, batched: batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].matmul(inputs[1], transposeA: transposeA, transposeB: transposeB)
    }
}

// MARK: - sum, mean, max over axes

/// Reductions; `axis` counts the batch axis like numpy and Keras (−1 is the last axis),
/// and reducing over the batch axis is refused.
public struct Reduce: Sendable {
    public enum Op: String, Sendable { case sum, mean, max }
    let op: Op
    let axes: [Int]?
    let keepDims: Bool

    init(_ fields: inout FieldReader, op: Op) throws(SpecError) {
        self.op = op
        if let list = try? fields.intList("axis", minimum: Int.min) { axes = list } else { axes = try fields.int("axis", minimum: Int.min).map { [$0] } }
        keepDims = try fields.bool("keepdims") ?? false
    }

    /// Without `axis`, every axis but the batch axis; one axis is written as a number.
    var config: [(String, JSON)] {
        var out: [(String, JSON)] = []
        if let axes { out.append(("axis", axes.count == 1 ? JSON(axes[0]) : JSON(axes))) }
        out.append(("keepdims", JSON(keepDims)))
        return out
    }

    func resolvedAxes(_ input: NodeShape) -> [Int]? {
        let rank = input.dims.count + (input.batched ? 1 : 0)
        let raw = axes ?? Array((input.batched ? 1 : 0)..<rank)
        var out: [Int] = []
        for a in raw {
            guard let n = Shapes.axis(a, rank: rank) else { return nil }
            out.append(n)
        }
        return out
    }

    func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        guard let resolved = resolvedAxes(x) else {
            throw node.error("axis \(axes ?? []) is out of range for input \(x)", field: "axis", code: .invalidField)
        }
        if x.batched && resolved.contains(0) {
            throw node.error("cannot reduce over the batch axis (axis 0) of input \(x)", field: "axis", code: .invalidField)
        }
        let offset = x.batched ? 1 : 0
        var dims: [Int] = []
        for (i, d) in x.dims.enumerated() {
            if resolved.contains(i + offset) { if keepDims { dims.append(1) } } else { dims.append(d) }
        }
        return NodeShape(dims, batched: x.batched)
    }

    func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = inputs[0]
        // Default: every axis but the batch axis.
        let axes = self.axes ?? Array((context.inputShapes[0].batched ? 1 : 0)..<x.shape.count)
        switch op {
        case .sum: return try x.sum(axes: axes, keepDims: keepDims)
        case .mean: return try x.mean(axes: axes, keepDims: keepDims)
        case .max: return try x.max(axes: axes, keepDims: keepDims)
        }
    }
}

/// Names one reduction as a type, so one generic layer serves `sum`, `mean` and `max`.
public protocol ReduceKind: Sendable { static var op: Reduce.Op { get } }
public enum SumKind: ReduceKind { public static let op = Reduce.Op.sum }
public enum MeanKind: ReduceKind { public static let op = Reduce.Op.mean }
public enum MaxKind: ReduceKind { public static let op = Reduce.Op.max }

public struct ReduceLayer<Kind: ReduceKind>: Layer {
    public static var typeName: String { Kind.op.rawValue }
    let reduce: Reduce
    public init(_ fields: inout FieldReader) throws(SpecError) { reduce = try Reduce(&fields, op: Kind.op) }
    public var config: [(String, JSON)] { reduce.config }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try reduce.outputShape(inputs, node) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ c: inout ForwardContext) throws(TensorError) -> Variable { try reduce.forward(inputs, w, &c) }
}

public typealias Sum = ReduceLayer<SumKind>
public typealias Mean = ReduceLayer<MeanKind>
public typealias Max = ReduceLayer<MaxKind>

let mergeLayers: [any Layer.Type] = [Add.self, Subtract.self, Multiply.self, Average.self, Matmul.self, Sum.self, Mean.self, Max.self]
