import KilnGraph
import KilnTensor

// Kiln's activations and element-wise functions as ONNX operators.
extension ONNXExporter {
    mutating func activation(_ name: String, _ x: String) throws(ONNXExportError) -> String {
        switch name {
        case "linear": return x
        case "softmax": return op("Softmax", [x], [ONNXAttribute("axis", .int(-1))])
        case "exponential": return unary(.exp, x)
        default:
            guard let f = UnaryFunction(rawValue: name) else { throw fail("activation '\(name)' has no ONNX form") }
            return unary(f, x)
        }
    }

    /// Each function as ONNX computes it with Kiln's constants (selu's, leaky_relu's 0.2)
    /// and Kiln's definitions (exact gelu through Erf).
    mutating func unary(_ f: UnaryFunction, _ x: String) -> String {
        switch f {
        case .neg: return op("Neg", [x])
        case .exp: return op("Exp", [x])
        case .log: return op("Log", [x])
        case .sqrt: return op("Sqrt", [x])
        case .abs: return op("Abs", [x])
        case .square: return op("Mul", [x, x])
        case .sin: return op("Sin", [x])
        case .cos: return op("Cos", [x])
        case .tanh: return op("Tanh", [x])
        case .sigmoid: return op("Sigmoid", [x])
        case .relu: return op("Relu", [x])
        case .elu: return op("Elu", [x], [ONNXAttribute("alpha", .float(1))])
        case .selu: return op("Selu", [x], [ONNXAttribute("alpha", .float(1.6732632423543772)), ONNXAttribute("gamma", .float(1.0507009873554805))])
        case .gelu:
            // 0.5·x·(1 + erf(x/√2)); Gelu itself is opset 20.
            let e = op("Erf", [op("Div", [x, scalar(Float(2).squareRoot())])])
            return op("Mul", [op("Mul", [x, op("Add", [e, scalar(1)])]), scalar(0.5)])
        case .softplus: return op("Softplus", [x])
        case .floor: return op("Floor", [x])
        case .leakyRelu: return op("LeakyRelu", [x], [ONNXAttribute("alpha", .float(0.2))])
        }
    }

    mutating func binary(_ f: BinaryFunction, _ a: String, _ b: String) -> String {
        switch f {
        case .add: return op("Add", [a, b])
        case .sub: return op("Sub", [a, b])
        case .mul: return op("Mul", [a, b])
        case .div: return op("Div", [a, b])
        case .pow: return op("Pow", [a, b])
        case .min: return op("Min", [a, b])
        case .max: return op("Max", [a, b])
        case .mod:
            // Floored modulo, a − b·floor(a/b) (the sign of b, like Python). ONNX `Mod`
            // requires fmod=1 (truncated, the sign of a) for floats, so it is spelled out.
            return op("Sub", [a, op("Mul", [b, op("Floor", [op("Div", [a, b])])])])
        }
    }

    mutating func expression(_ tree: ExpressionNode, _ scope: [String: String]) -> String {
        switch tree {
        case let .number(v): return scalar(v)
        case let .variable(v): return scope[v]!
        case let .unary(f, a): return unary(f, expression(a, scope))
        case let .binary(f, a, b):
            let x = expression(a, scope)
            return binary(f, x, expression(b, scope))
        }
    }
}
