import KilnJSON

/// The fields every layer with weights takes: `trainable`, initializers and regularizers.
public struct WeightOptions: Sendable {
    public var trainable: Bool
    public var kernelInitializer: Initializer
    public var biasInitializer: Initializer
    public var kernelRegularizer: Regularizer?

    init(_ fields: inout FieldReader, kernel: Initializer = .glorotUniform, bias: Initializer = .zeros) throws(SpecError) {
        trainable = try fields.bool("trainable") ?? true
        kernelInitializer = try fields.raw("kernel_initializer").map { j throws(SpecError) in
            try Initializer.read(j, path: fields.fieldPath("kernel_initializer"), node: fields.node)
        } ?? kernel
        biasInitializer = try fields.raw("bias_initializer").map { j throws(SpecError) in
            try Initializer.read(j, path: fields.fieldPath("bias_initializer"), node: fields.node)
        } ?? bias
        kernelRegularizer = try fields.raw("kernel_regularizer").map { j throws(SpecError) in
            try Regularizer.read(j, path: fields.fieldPath("kernel_regularizer"), node: fields.node)
        }
    }

    /// `trainable`, the initializers and the kernel regularizer as the spec states them.
    var config: [(String, JSON)] {
        var out: [(String, JSON)] = [("trainable", JSON(trainable)), ("kernel_initializer", kernelInitializer.json),
                                     ("bias_initializer", biasInitializer.json)]
        if let kernelRegularizer { out.append(("kernel_regularizer", kernelRegularizer.json)) }
        return out
    }

    func kernel(_ shape: [Int], name: String = "kernel") -> ParameterSpec {
        ParameterSpec(name, shape: shape, initializer: kernelInitializer, trainable: trainable, regularizer: kernelRegularizer)
    }

    func bias(_ shape: [Int], name: String = "bias") -> ParameterSpec {
        ParameterSpec(name, shape: shape, initializer: biasInitializer, trainable: trainable)
    }
}
