import KilnJSON
import KilnTensor

let shapeLayers: [any Layer.Type] = [Permute.self, Transpose.self, Concatenate.self, Slice.self, Embedding.self, OneHot.self]

/// A per-node axis (counting the batch axis as 0 for batched nodes) as an index into
/// the per-sample dims, or nil when out of range or the batch axis itself.
func sampleAxis(_ axis: Int, _ x: NodeShape) -> Int? {
    let rank = x.dims.count + (x.batched ? 1 : 0)
    guard let a = Shapes.axis(axis, rank: rank) else { return nil }
    let s = a - (x.batched ? 1 : 0)
    return s >= 0 ? s : nil
}

// MARK: - permute

/// Keras `Permute`: `dims` is a permutation of the per-sample axes, numbered from 1.
public struct Permute: Layer {
    public static let typeName = "permute"
    public let dims: [Int]

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let dims = try fields.intList("dims") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("dims"), node: fields.node)
        }
        self.dims = dims
    }

    public var config: [(String, JSON)] { [("dims", JSON(dims))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        guard x.batched, dims.sorted() == Array(1...max(x.dims.count, 1)), dims.count == x.dims.count else {
            throw node.error("dims \(dims) must be a permutation of 1…\(x.dims.count) for input \(x)", field: "dims", code: .invalidField)
        }
        return NodeShape(dims.map { x.dims[$0 - 1] })
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].transpose(perm: [0] + dims)
    }
}

// MARK: - transpose

/// numpy `transpose(perm)` over all axes of the node; a batched node must keep its
/// batch axis first (perm[0] = 0). Without `perm`, the last two axes swap.
public struct Transpose: Layer {
    public static let typeName = "transpose"
    public let perm: [Int]?

    public init(_ fields: inout FieldReader) throws(SpecError) {
        perm = try fields.intList("perm", minimum: 0)
    }

    /// Without `perm`, the last two axes swap.
    public var config: [(String, JSON)] { perm.map { [("perm", JSON($0))] } ?? [] }

    func resolved(_ x: NodeShape) -> [Int] {
        let rank = x.dims.count + (x.batched ? 1 : 0)
        if let perm { return perm }
        var p = Array(0..<rank)
        if rank >= 2 { p.swapAt(rank - 1, rank - 2) }
        return p
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        let rank = x.dims.count + (x.batched ? 1 : 0)
        let p = resolved(x)
        guard p.sorted() == Array(0..<rank), !(x.batched && p.first != 0) else {
            throw node.error("perm \(p) must be a permutation of 0…\(rank - 1)\(x.batched ? " keeping the batch axis 0 first" : "") for input \(x)", field: "perm", code: .invalidField)
        }
        let full = x.batched ? [0] + x.dims : x.dims
        let out = p.map { full[$0] }
        return NodeShape(x.batched ? Array(out.dropFirst()) : out, batched: x.batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].transpose(perm: resolved(context.inputShapes[0]))
    }
}

// MARK: - concatenate

public struct Concatenate: Layer {
    public static let typeName = "concatenate"
    public static var arity: ClosedRange<Int> { 2...64 }
    public let axis: Int

    public init(_ fields: inout FieldReader) throws(SpecError) {
        axis = try fields.int("axis", minimum: Int.min) ?? -1
    }

    public var config: [(String, JSON)] { [("axis", JSON(axis))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let first = inputs[0]
        guard inputs.allSatisfy({ $0.batched == first.batched }) else {
            throw node.error("cannot concatenate batched and batchless inputs: \(inputs.map(\.description).joined(separator: ", "))")
        }
        guard let a = sampleAxis(axis, first) else {
            throw node.error("axis \(axis) is not a per-sample axis of input \(first)", field: "axis", code: .invalidField)
        }
        var total = 0
        for (i, s) in inputs.enumerated() {
            var d0 = first.dims, d1 = s.dims
            guard d1.count == d0.count else { throw node.error("input \(i) has shape \(s) but input 0 has \(first); ranks differ") }
            d0[a] = 0; d1[a] = 0
            guard d0 == d1 else { throw node.error("input \(i) has shape \(s) but input 0 has \(first); they must agree except on axis \(axis)") }
            total += s.dims[a]
        }
        var dims = first.dims
        dims[a] = total
        return NodeShape(dims, batched: first.batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try Variable.concatenate(inputs, axis: axis)
    }
}

// MARK: - slice

/// Elements `start..<end` along `axis` (negative positions count from the end).
public struct Slice: Layer {
    public static let typeName = "slice"
    public let axis: Int
    public let start: Int
    public let end: Int?

    public init(_ fields: inout FieldReader) throws(SpecError) {
        axis = try fields.int("axis", minimum: Int.min) ?? -1
        start = try fields.int("start", minimum: Int.min) ?? 0
        end = try fields.int("end", minimum: Int.min)
    }

    /// Without `end`, to the end of the axis.
    public var config: [(String, JSON)] { [("axis", JSON(axis)), ("start", JSON(start))] + (end.map { [("end", JSON($0))] } ?? []) }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        guard let a = sampleAxis(axis, x) else {
            throw node.error("axis \(axis) is not a per-sample axis of input \(x)", field: "axis", code: .invalidField)
        }
        let n = x.dims[a]
        let s = start < 0 ? start + n : start
        let e = end.map { $0 < 0 ? $0 + n : $0 } ?? n
        guard 0 <= s, s < e, e <= n else {
            throw node.error("range \(start)..<\(end.map(String.init) ?? "end") is empty or does not fit axis \(axis) of size \(n) in input \(x)", field: "start", code: .invalidField)
        }
        var dims = x.dims
        dims[a] = e - s
        return NodeShape(dims, batched: x.batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].slice(axis: axis, start: start, end: end)
    }
}

// MARK: - embedding

/// Integer ids (as floats) → rows of a trainable table `embeddings` [input_dim, output_dim].
public struct Embedding: Layer {
    public static let typeName = "embedding"
    public let inputDim: Int
    public let outputDim: Int
    public let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let i = try fields.positiveInt("input_dim") else { throw SpecError(.missingField, "is required", path: fields.fieldPath("input_dim"), node: fields.node) }
        guard let o = try fields.positiveInt("output_dim") else { throw SpecError(.missingField, "is required", path: fields.fieldPath("output_dim"), node: fields.node) }
        inputDim = i
        outputDim = o
        // Keras's name for the table's initializer; `kernel_initializer` is accepted too.
        var weights = try WeightOptions(&fields, kernel: .uniform(min: -0.05, max: 0.05))
        if let j = fields.raw("embeddings_initializer") {
            weights.kernelInitializer = try Initializer.read(j, path: fields.fieldPath("embeddings_initializer"), node: fields.node)
        }
        self.weights = weights
    }

    public var config: [(String, JSON)] { [("input_dim", JSON(inputDim)), ("output_dim", JSON(outputDim))] + weights.config }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        NodeShape(inputs[0].dims + [outputDim], batched: inputs[0].batched)
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] { [weights.kernel([inputDim, outputDim], name: "embeddings")] }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try Variable.embedding(indices: inputs[0].value, table: w["embeddings"]!)
    }
}

// MARK: - one_hot

public struct OneHot: Layer {
    public static let typeName = "one_hot"
    public let classes: Int

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let c = try fields.positiveInt("classes") else { throw SpecError(.missingField, "is required", path: fields.fieldPath("classes"), node: fields.node) }
        classes = c
    }

    public var config: [(String, JSON)] { [("classes", JSON(classes))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        // A trailing axis of 1 (labels as [N, 1]) is replaced, as Keras users expect.
        let dims = inputs[0].dims.last == 1 ? Array(inputs[0].dims.dropLast()) : inputs[0].dims
        return NodeShape(dims + [classes], batched: inputs[0].batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = inputs[0]
        let squeezed = x.shape.last == 1 && x.shape.count > (context.inputShapes[0].batched ? 1 : 0) && context.inputShapes[0].dims.last == 1
            ? try x.reshape(Array(x.shape.dropLast())) : x
        return try squeezed.oneHot(classes: classes)
    }
}
