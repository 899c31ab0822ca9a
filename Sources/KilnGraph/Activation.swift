import KilnJSON
import KilnTensor

/// The activations a layer's `activation` field can name (Keras names).
public enum Activation: String, CaseIterable, Sendable {
    case linear, relu, elu, selu, gelu, sigmoid, tanh, softmax, softplus, exponential
    case leakyRelu = "leaky_relu"

    public func apply(_ x: Variable) throws(TensorError) -> Variable {
        switch self {
        case .linear: return x
        case .relu: return x.relu()
        case .elu: return x.elu()
        case .selu: return x.selu()
        case .gelu: return x.gelu()
        case .sigmoid: return x.sigmoid()
        case .tanh: return x.tanh()
        case .softmax: return try x.softmax(axis: -1)
        case .softplus: return x.softplus()
        case .exponential: return x.exp()
        case .leakyRelu: return x.leakyRelu()
        }
    }

    var json: JSON { .string(rawValue) }

    static func read(_ fields: inout FieldReader, _ key: String = "activation") throws(SpecError) -> Activation {
        let name = try fields.string(key, oneOf: allCases.map(\.rawValue), default: "linear")!
        return Activation(rawValue: name)!
    }
}
