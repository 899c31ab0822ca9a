import KilnJSON
import KilnTensor

let coreLayers: [any Layer.Type] = [Dense.self, Flatten.self, ActivationLayer.self, Softmax.self, Reshape.self]

// MARK: - dense

/// y = activation(x·kernel + bias) on the last axis, for inputs of any rank.
public struct Dense: Layer {
    public static let typeName = "dense"
    public let units: Int
    public let activation: Activation
    public let useBias: Bool
    public let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let units = try fields.positiveInt("units") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("units"), node: fields.node)
        }
        self.units = units
        activation = try Activation.read(&fields)
        useBias = try fields.bool("use_bias") ?? true
        weights = try WeightOptions(&fields)
    }

    public var config: [(String, JSON)] {
        [("units", JSON(units)), ("activation", activation.json), ("use_bias", JSON(useBias))] + weights.config
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard let last = inputs[0].dims.last else {
            throw node.error("dense needs an input with at least one axis, got \(inputs[0])")
        }
        _ = last
        return NodeShape(inputs[0].dims.dropLast() + [units], batched: inputs[0].batched)
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let kernel = weights.kernel([inputs[0].dims.last!, units])
        return useBias ? [kernel, weights.bias([units])] : [kernel]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let relu = activation == .relu
        let y = try inputs[0].dense(kernel: w["kernel"]!, bias: w["bias"], relu: relu)
        return relu ? y : try activation.apply(y)
    }
}

// MARK: - flatten

public struct Flatten: Layer {
    public static let typeName = "flatten"
    public init(_ fields: inout FieldReader) throws(SpecError) {}
    public var config: [(String, JSON)] { [] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        NodeShape([Shapes.count(inputs[0].dims)], batched: inputs[0].batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = inputs[0]
        guard context.inputShapes[0].batched else { return try x.reshape([x.value.count]) }
        return try x.reshape([x.shape[0], Shapes.count(Array(x.shape.dropFirst()))])
    }
}

// MARK: - activation

public struct ActivationLayer: Layer {
    public static let typeName = "activation"
    public let activation: Activation

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard fields.has("activation") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("activation"), node: fields.node)
        }
        activation = try Activation.read(&fields)
    }

    public var config: [(String, JSON)] { [("activation", activation.json)] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { inputs[0] }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try activation.apply(inputs[0])
    }
}

// MARK: - softmax

public struct Softmax: Layer {
    public static let typeName = "softmax"
    public let axis: Int

    public init(_ fields: inout FieldReader) throws(SpecError) {
        axis = try fields.int("axis") ?? -1
    }

    public var config: [(String, JSON)] { [("axis", JSON(axis))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let rank = inputs[0].dims.count + (inputs[0].batched ? 1 : 0)
        guard Shapes.axis(axis, rank: rank) != nil, !(inputs[0].batched && (axis == 0 || axis == -rank)) else {
            throw node.error("axis \(axis) is out of range for input \(inputs[0])", field: "axis", code: .invalidField)
        }
        return inputs[0]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].softmax(axis: axis)
    }
}

// MARK: - reshape

/// Reshapes each sample; `shape` excludes the batch axis and may hold one -1.
public struct Reshape: Layer {
    public static let typeName = "reshape"
    public let shape: [Int]

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let shape = try fields.intList("shape", minimum: -1) else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("shape"), node: fields.node)
        }
        guard shape.filter({ $0 == -1 }).count <= 1, !shape.contains(0) else {
            throw SpecError(.invalidField, "at most one -1 and no 0 allowed, got \(shape)", path: fields.fieldPath("shape"), node: fields.node)
        }
        self.shape = shape
    }

    public var config: [(String, JSON)] { [("shape", JSON(shape))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let total = Shapes.count(inputs[0].dims)
        let known = shape.filter { $0 != -1 }.reduce(1, *)
        var dims = shape
        if let i = shape.firstIndex(of: -1) {
            guard known > 0, total % known == 0 else {
                throw node.error("cannot reshape input \(inputs[0]) (\(total) values per sample) to \(shape)", field: "shape")
            }
            dims[i] = total / known
        } else if known != total {
            throw node.error("cannot reshape input \(inputs[0]) (\(total) values per sample) to \(shape) (\(known) values)", field: "shape")
        }
        return NodeShape(dims, batched: inputs[0].batched)
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = inputs[0]
        let batched = context.inputShapes[0].batched
        let total = Shapes.count(batched ? Array(x.shape.dropFirst()) : x.shape)
        let known = shape.filter { $0 != -1 }.reduce(1, *)
        let dims = shape.map { $0 == -1 ? total / known : $0 }
        return try x.reshape(batched ? [x.shape[0]] + dims : dims)
    }
}
