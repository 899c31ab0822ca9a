import KilnJSON
import KilnTensor

let convolutionLayers: [any Layer.Type] = [Conv2D.self, Conv2DTranspose.self, ConditionalConv2D.self]

/// The fields convolutions share: filters, kernel_size, strides, padding,
/// dilation_rate, activation, use_bias. Sizes may be an integer or a pair.
struct ConvolutionOptions: Sendable {
    var filters: Int
    var kernel: (Int, Int)
    var strides: (Int, Int)
    var dilation: (Int, Int)
    var padding: Padding
    var activation: Activation
    var useBias: Bool

    init(_ fields: inout FieldReader) throws(SpecError) {
        guard let filters = try fields.positiveInt("filters") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("filters"), node: fields.node)
        }
        self.filters = filters
        guard let kernel = try ConvolutionOptions.pair(&fields, "kernel_size") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("kernel_size"), node: fields.node)
        }
        self.kernel = kernel
        strides = try ConvolutionOptions.pair(&fields, "strides") ?? (1, 1)
        dilation = try ConvolutionOptions.pair(&fields, "dilation_rate") ?? (1, 1)
        padding = Padding(rawValue: try fields.string("padding", oneOf: ["valid", "same"], default: "valid")!)!
        activation = try Activation.read(&fields)
        useBias = try fields.bool("use_bias") ?? true
        if (strides.0 > 1 || strides.1 > 1) && (dilation.0 > 1 || dilation.1 > 1) {
            throw SpecError(.invalidField, "strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)", path: fields.fieldPath("dilation_rate"), node: fields.node)
        }
    }

    var config: [(String, JSON)] {
        [("filters", JSON(filters)), ("kernel_size", pairJSON(kernel)), ("strides", pairJSON(strides)),
         ("padding", .string(padding.rawValue)), ("dilation_rate", pairJSON(dilation)), ("activation", activation.json),
         ("use_bias", JSON(useBias))]
    }

    /// An integer n (meaning (n, n)) or a list of two positive integers.
    static func pair(_ fields: inout FieldReader, _ key: String) throws(SpecError) -> (Int, Int)? {
        guard let raw = fields.raw(key) else { return nil }
        if let n = raw.intValue, n > 0 { return (n, n) }
        if let items = raw.arrayValue, items.count == 2, let a = items[0].intValue, let b = items[1].intValue, a > 0, b > 0 { return (a, b) }
        throw SpecError(.invalidField, "expected a positive integer or a pair of them. Received: \(key)=\(raw.serialized().prefix(40))", path: fields.fieldPath(key), node: fields.node)
    }

    /// Output length of conv2d along one axis, or nil when a valid window does not fit.
    static func convolved(_ input: Int, _ kernel: Int, _ stride: Int, _ dilation: Int, _ padding: Padding) -> Int? {
        let effective = (kernel - 1) * dilation + 1
        switch padding {
        case .same: return (input + stride - 1) / stride
        case .valid: return input >= effective ? (input - effective) / stride + 1 : nil
        }
    }

    /// Output length of conv2d_transpose along one axis, as Keras computes it.
    static func transposed(_ input: Int, _ kernel: Int, _ stride: Int, _ dilation: Int, _ padding: Padding, _ outputPadding: Int?) -> Int {
        let effective = (kernel - 1) * dilation + 1
        if let extra = outputPadding {
            return (input - 1) * stride + effective - 2 * (padding == .same ? effective / 2 : 0) + extra
        }
        return padding == .same ? input * stride : input * stride + max(effective - stride, 0)
    }

    func checkImage(_ x: NodeShape, _ node: NodeInfo, _ type: String) throws(SpecError) {
        guard x.batched, x.dims.count == 3 else {
            throw node.error("\(type) expects images (batch, height, width, channels), got \(x)")
        }
    }

    /// The output of a convolution of image `x` with these options.
    func convolvedShape(_ x: NodeShape, _ node: NodeInfo, _ type: String) throws(SpecError) -> NodeShape {
        try checkImage(x, node, type)
        guard let h = ConvolutionOptions.convolved(x.dims[0], kernel.0, strides.0, dilation.0, padding),
              let w = ConvolutionOptions.convolved(x.dims[1], kernel.1, strides.1, dilation.1, padding) else {
            throw node.error("a \(kernel.0)×\(kernel.1) kernel (dilation \(dilation)) does not fit input \(x) with valid padding; use padding \"same\" or a smaller kernel", field: "kernel_size")
        }
        return NodeShape([h, w, filters])
    }
}

// MARK: - conv2d

public struct Conv2D: Layer {
    public static let typeName = "conv2d"
    let options: ConvolutionOptions
    let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        options = try ConvolutionOptions(&fields)
        weights = try WeightOptions(&fields)
    }

    public var config: [(String, JSON)] { options.config + weights.config }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        try options.convolvedShape(inputs[0], node, Self.typeName)
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let k = weights.kernel([options.kernel.0, options.kernel.1, inputs[0].dims.last ?? 1, options.filters])
        return options.useBias ? [k, weights.bias([options.filters])] : [k]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let relu = options.activation == .relu
        let y = try inputs[0].conv2d(kernel: w["kernel"]!, strides: options.strides, padding: options.padding, dilation: options.dilation,
                                     bias: w["bias"], relu: relu)
        return relu ? y : try options.activation.apply(y)
    }
}

// MARK: - conv2d_transpose

public struct Conv2DTranspose: Layer {
    public static let typeName = "conv2d_transpose"
    let options: ConvolutionOptions
    let outputPadding: (Int, Int)?
    let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        options = try ConvolutionOptions(&fields)
        if let raw = fields.raw("output_padding") {
            if let n = raw.intValue, n >= 0 { outputPadding = (n, n) } else if let items = raw.arrayValue, items.count == 2,
                let a = items[0].intValue, let b = items[1].intValue, a >= 0, b >= 0 { outputPadding = (a, b) } else {
                throw SpecError(.invalidField, "expected a non-negative integer or a pair of them", path: fields.fieldPath("output_padding"), node: fields.node)
            }
        } else {
            outputPadding = nil
        }
        if let op = outputPadding, op.0 >= options.strides.0 || op.1 >= options.strides.1 {
            throw SpecError(.invalidField, "output_padding \(op) must be smaller than strides \(options.strides)", path: fields.fieldPath("output_padding"), node: fields.node)
        }
        weights = try WeightOptions(&fields)
    }

    /// Without `output_padding`, Keras's default output size.
    public var config: [(String, JSON)] {
        options.config + (outputPadding.map { [("output_padding", pairJSON($0))] } ?? []) + weights.config
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let x = inputs[0]
        try options.checkImage(x, node, "conv2d_transpose")
        let o = options
        let h = ConvolutionOptions.transposed(x.dims[0], o.kernel.0, o.strides.0, o.dilation.0, o.padding, outputPadding?.0)
        let w = ConvolutionOptions.transposed(x.dims[1], o.kernel.1, o.strides.1, o.dilation.1, o.padding, outputPadding?.1)
        guard h >= 1, w >= 1 else { throw node.error("the output of input \(x) would be empty (\(h)×\(w))") }
        return NodeShape([h, w, o.filters])
    }

    /// Keras layout [kh, kw, filters, in].
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let k = weights.kernel([options.kernel.0, options.kernel.1, options.filters, inputs[0].dims.last ?? 1])
        return options.useBias ? [k, weights.bias([options.filters])] : [k]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        var y = try inputs[0].conv2dTranspose(kernel: w["kernel"]!, strides: options.strides, padding: options.padding,
                                               outputPadding: outputPadding, dilation: options.dilation)
        if let b = w["bias"] { y = try y.add(b) }
        return try options.activation.apply(y)
    }
}

// MARK: - conditional_conv2d

/// inputs [x, one_hot]: each sample is convolved with its class's kernel, from a kernel
/// bank [classes, kh, kw, in, filters] that is learned, or fixed with
/// `trainable: false` and exact values in `kernel_initializer`.
public struct ConditionalConv2D: Layer {
    public static let typeName = "conditional_conv2d"
    public static var arity: ClosedRange<Int> { 2...2 }
    let options: ConvolutionOptions
    let classes: Int
    let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        options = try ConvolutionOptions(&fields)
        guard let c = try fields.positiveInt("classes") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("classes"), node: fields.node)
        }
        classes = c
        weights = try WeightOptions(&fields)
    }

    public var config: [(String, JSON)] { options.config + [("classes", JSON(classes))] + weights.config }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        let label = inputs[1]
        guard label.batched, label.dims == [classes] else {
            throw node.error("the second input must be one-hot labels (batch, \(classes)), got \(label)", field: "inputs")
        }
        return try options.convolvedShape(inputs[0], node, Self.typeName)
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        let k = weights.kernel([classes, options.kernel.0, options.kernel.1, inputs[0].dims.last ?? 1, options.filters])
        return options.useBias ? [k, weights.bias([options.filters])] : [k]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        var y = try inputs[0].conditionalConv2d(classes: inputs[1], kernels: w["kernel"]!, strides: options.strides,
                                                padding: options.padding, dilation: options.dilation)
        if let b = w["bias"] { y = try y.add(b) }
        return try options.activation.apply(y)
    }
}

/// A pair of sizes as the spec writes it.
func pairJSON(_ pair: (Int, Int)) -> JSON { JSON([pair.0, pair.1]) }
