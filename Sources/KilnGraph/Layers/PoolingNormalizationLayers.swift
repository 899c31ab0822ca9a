import KilnJSON
import KilnTensor

let poolingNormalizationLayers: [any Layer.Type] = [
    MaxPool2D.self, AvgPool2D.self, GlobalAvgPool2D.self, UpSampling2D.self,
    BatchNorm.self, LayerNorm.self, Dropout.self, GaussianNoise.self, SampleNormal.self,
]

// MARK: - pooling

/// The shared body of max_pool2d and avg_pool2d: pool_size (2), strides (pool_size), padding.
struct PoolOptions: Sendable {
    var pool: (Int, Int)
    var strides: (Int, Int)
    var padding: Padding

    init(_ fields: inout FieldReader) throws(SpecError) {
        pool = try ConvolutionOptions.pair(&fields, "pool_size") ?? (2, 2)
        strides = try ConvolutionOptions.pair(&fields, "strides") ?? pool
        padding = Padding(rawValue: try fields.string("padding", oneOf: ["valid", "same"], default: "valid")!)!
    }

    var config: [(String, JSON)] { [("pool_size", pairJSON(pool)), ("strides", pairJSON(strides)), ("padding", .string(padding.rawValue))] }

    func outputShape(_ x: NodeShape, _ node: NodeInfo, _ type: String) throws(SpecError) -> NodeShape {
        guard x.batched, x.dims.count == 3 else { throw node.error("\(type) expects images (batch, height, width, channels), got \(x)") }
        guard let h = ConvolutionOptions.convolved(x.dims[0], pool.0, strides.0, 1, padding),
              let w = ConvolutionOptions.convolved(x.dims[1], pool.1, strides.1, 1, padding) else {
            throw node.error("a \(pool.0)×\(pool.1) pool does not fit input \(x) with valid padding", field: "pool_size")
        }
        return NodeShape([h, w, x.dims[2]])
    }
}

public struct MaxPool2D: Layer {
    public static let typeName = "max_pool2d"
    let options: PoolOptions
    public init(_ fields: inout FieldReader) throws(SpecError) { options = try PoolOptions(&fields) }
    public var config: [(String, JSON)] { options.config }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try options.outputShape(inputs[0], node, Self.typeName) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].maxPool2d(poolSize: options.pool, strides: options.strides, padding: options.padding)
    }
}

public struct AvgPool2D: Layer {
    public static let typeName = "avg_pool2d"
    let options: PoolOptions
    public init(_ fields: inout FieldReader) throws(SpecError) { options = try PoolOptions(&fields) }
    public var config: [(String, JSON)] { options.config }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try options.outputShape(inputs[0], node, Self.typeName) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].avgPool2d(poolSize: options.pool, strides: options.strides, padding: options.padding)
    }
}

public struct GlobalAvgPool2D: Layer {
    public static let typeName = "global_avg_pool2d"
    public init(_ fields: inout FieldReader) throws(SpecError) {}
    public var config: [(String, JSON)] { [] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard inputs[0].batched, inputs[0].dims.count == 3 else { throw node.error("global_avg_pool2d expects images (batch, height, width, channels), got \(inputs[0])") }
        return NodeShape([inputs[0].dims[2]])
    }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].globalAvgPool2d()
    }
}

public struct UpSampling2D: Layer {
    public static let typeName = "upsampling2d"
    let size: (Int, Int)
    public init(_ fields: inout FieldReader) throws(SpecError) { size = try ConvolutionOptions.pair(&fields, "size") ?? (2, 2) }
    public var config: [(String, JSON)] { [("size", pairJSON(size))] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        guard x.batched, x.dims.count == 3 else { throw node.error("upsampling2d expects images (batch, height, width, channels), got \(x)") }
        return NodeShape([x.dims[0] * size.0, x.dims[1] * size.1, x.dims[2]])
    }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].upsampling2d(size: size)
    }
}

// MARK: - normalisation

/// Keras `BatchNormalization` over the last axis: `gamma`, `beta` (trainable) and
/// `moving_mean`, `moving_variance` (updated in training, never by the optimizer).
/// A frozen layer (`trainable: false`) runs in inference mode, as in Keras 3.
public struct BatchNorm: Layer {
    public static let typeName = "batch_norm"
    let momentum: Float
    let epsilon: Float
    let trainable: Bool

    public init(_ fields: inout FieldReader) throws(SpecError) {
        momentum = Float(try fields.double("momentum", range: 0...1) ?? 0.99)
        epsilon = Float(try fields.double("epsilon", range: 0...1) ?? 1e-3)
        trainable = try fields.bool("trainable") ?? true
    }

    public var config: [(String, JSON)] { [("momentum", JSON(momentum)), ("epsilon", JSON(epsilon)), ("trainable", JSON(trainable))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard inputs[0].batched, !inputs[0].dims.isEmpty else { throw node.error("batch_norm needs a batched input with a channel axis, got \(inputs[0])") }
        return inputs[0]
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let c = inputs[0].dims.last!
        return [
            ParameterSpec("gamma", shape: [c], initializer: .ones, trainable: trainable),
            ParameterSpec("beta", shape: [c], initializer: .zeros, trainable: trainable),
            ParameterSpec("moving_mean", shape: [c], initializer: .zeros, trainable: false),
            ParameterSpec("moving_variance", shape: [c], initializer: .ones, trainable: false),
        ]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].batchNorm(gamma: w["gamma"]!, beta: w["beta"]!, movingMean: w["moving_mean"]!, movingVariance: w["moving_variance"]!,
                                momentum: momentum, epsilon: epsilon, training: context.training && trainable)
    }
}

public struct LayerNorm: Layer {
    public static let typeName = "layer_norm"
    let epsilon: Float
    let trainable: Bool

    public init(_ fields: inout FieldReader) throws(SpecError) {
        epsilon = Float(try fields.double("epsilon", range: 0...1) ?? 1e-3)
        trainable = try fields.bool("trainable") ?? true
    }

    public var config: [(String, JSON)] { [("epsilon", JSON(epsilon)), ("trainable", JSON(trainable))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard !inputs[0].dims.isEmpty else { throw node.error("layer_norm needs at least one axis, got \(inputs[0])") }
        return inputs[0]
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let c = inputs[0].dims.last!
        return [ParameterSpec("gamma", shape: [c], initializer: .ones, trainable: trainable),
                ParameterSpec("beta", shape: [c], initializer: .zeros, trainable: trainable)]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].layerNorm(gamma: w["gamma"]!, beta: w["beta"]!, epsilon: epsilon)
    }
}

// MARK: - random

public struct Dropout: Layer {
    public static let typeName = "dropout"
    let rate: Float
    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let r = try fields.double("rate", range: 0...0.999999) else {
            throw SpecError(.missingField, "is required (a fraction in [0, 1))", path: fields.fieldPath("rate"), node: fields.node)
        }
        rate = Float(r)
    }
    public var config: [(String, JSON)] { [("rate", JSON(rate))] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { inputs[0] }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].dropout(rate: rate, training: context.training, generator: &context.generator)
    }
}

public struct GaussianNoise: Layer {
    public static let typeName = "gaussian_noise"
    let stddev: Float
    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let s = try fields.double("stddev", range: 0...1e6) else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("stddev"), node: fields.node)
        }
        stddev = Float(s)
    }
    public var config: [(String, JSON)] { [("stddev", JSON(stddev))] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { inputs[0] }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].gaussianNoise(stddev: stddev, training: context.training, generator: &context.generator)
    }
}

/// inputs [mu, log_var]: the reparameterised draw mu + exp(½·log_var)·ε. At predict
/// time it draws too (as Keras layers built this way do); ask for `mu` for the mean.
public struct SampleNormal: Layer {
    public static let typeName = "sample_normal"
    public static var arity: ClosedRange<Int> { 2...2 }
    public init(_ fields: inout FieldReader) throws(SpecError) {}
    public var config: [(String, JSON)] { [] }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard inputs[0] == inputs[1] else { throw node.error("mu \(inputs[0]) and log_var \(inputs[1]) must have one shape") }
        return inputs[0]
    }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try Variable.sampleNormal(mu: inputs[0], logVar: inputs[1], generator: &context.generator)
    }
}

// MARK: - recurrent

let recurrentLayers: [any Layer.Type] = [LSTM.self, GRU.self]

/// Shared fields of lstm and gru: units, return_sequences, initializers.
struct RecurrentOptions: Sendable {
    var units: Int
    var returnSequences: Bool
    var weights: WeightOptions
    var recurrentInitializer: Initializer
    /// LSTM: the forget gate's bias starts at 1 (Keras `unit_forget_bias`, default true).
    var unitForgetBias: Bool
    /// Whether the cell has a forget gate (LSTM), so `unit_forget_bias` applies.
    var forgetGate: Bool

    init(_ fields: inout FieldReader, forgetGate: Bool) throws(SpecError) {
        self.forgetGate = forgetGate
        guard let u = try fields.positiveInt("units") else { throw SpecError(.missingField, "is required", path: fields.fieldPath("units"), node: fields.node) }
        units = u
        returnSequences = try fields.bool("return_sequences") ?? false
        recurrentInitializer = try fields.raw("recurrent_initializer").map { j throws(SpecError) in
            try Initializer.read(j, path: fields.fieldPath("recurrent_initializer"), node: fields.node)
        } ?? .orthogonal
        unitForgetBias = false
        if forgetGate { unitForgetBias = try fields.bool("unit_forget_bias") ?? true }
        weights = try WeightOptions(&fields)
    }

    /// `unit_forget_bias` only for the LSTM.
    var config: [(String, JSON)] {
        [("units", JSON(units)), ("return_sequences", JSON(returnSequences)), ("recurrent_initializer", recurrentInitializer.json)]
            + (forgetGate ? [("unit_forget_bias", JSON(unitForgetBias))] : []) + weights.config
    }

    func outputShape(_ x: NodeShape, _ node: NodeInfo, _ type: String) throws(SpecError) -> NodeShape {
        guard x.batched, x.dims.count == 2 else { throw node.error("\(type) expects sequences (batch, time, features), got \(x)") }
        return NodeShape(returnSequences ? [x.dims[0], units] : [units])
    }

    /// Keras layouts: kernel [features, gates·units], recurrent_kernel [units, gates·units].
    func parameters(_ x: NodeShape, gates: Int, biasShape: [Int]) -> [ParameterSpec] {
        [weights.kernel([x.dims[1], gates * units]),
         ParameterSpec("recurrent_kernel", shape: [units, gates * units], initializer: recurrentInitializer, trainable: weights.trainable),
         biasParameter(biasShape)]
    }

    /// The bias; with `unitForgetBias` and no bias initializer given, zeros but for ones
    /// over the forget gate (the second of the gates i, f, c, o).
    func biasParameter(_ shape: [Int]) -> ParameterSpec {
        guard unitForgetBias, weights.biasInitializer == .zeros else { return weights.bias(shape) }
        var values = [Float](repeating: 0, count: Shapes.count(shape))
        for j in units..<(2 * units) { values[j] = 1 }
        return ParameterSpec("bias", shape: shape, initializer: .values(values), trainable: weights.trainable)
    }
}

public struct LSTM: Layer {
    public static let typeName = "lstm"
    let options: RecurrentOptions
    public init(_ fields: inout FieldReader) throws(SpecError) { options = try RecurrentOptions(&fields, forgetGate: true) }
    public var config: [(String, JSON)] { options.config }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try options.outputShape(inputs[0], node, Self.typeName) }
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] { options.parameters(inputs[0], gates: 4, biasShape: [4 * options.units]) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].lstm(kernel: w["kernel"]!, recurrentKernel: w["recurrent_kernel"]!, bias: w["bias"], returnSequences: options.returnSequences)
    }
}

/// Keras GRU with `reset_after=True`: bias [2, 3·units].
public struct GRU: Layer {
    public static let typeName = "gru"
    let options: RecurrentOptions
    public init(_ fields: inout FieldReader) throws(SpecError) { options = try RecurrentOptions(&fields, forgetGate: false) }
    public var config: [(String, JSON)] { options.config }
    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { try options.outputShape(inputs[0], node, Self.typeName) }
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] { options.parameters(inputs[0], gates: 3, biasShape: [2, 3 * options.units]) }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].gru(kernel: w["kernel"]!, recurrentKernel: w["recurrent_kernel"]!, bias: w["bias"], returnSequences: options.returnSequences)
    }
}
