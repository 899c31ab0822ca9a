import Foundation

// The element-wise functions of the engine, each defined once: its value and its
// derivative. The tensor ops (`Variable.exp()`, `Variable.mod(_:)`, …) and the fused
// expression programs, which evaluate a whole formula element by element, both read
// these definitions, so a function and its gradient cannot drift apart between them.
// The bodies are `@inlinable`: the fused path calls them per element from another module.

/// A one-argument element-wise function.
public enum UnaryFunction: String, CaseIterable, Sendable {
    case neg, exp, log, sqrt, abs, square, sin, cos, tanh, sigmoid, relu, elu, selu, gelu, softplus, floor
    /// Keras 3's default slope, 0.2.
    case leakyRelu = "leaky_relu"

    /// f(x).
    @inlinable @inline(__always)
    public func value(_ x: Float) -> Float {
        switch self {
        case .neg: return -x
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .abs: return Swift.abs(x)
        case .square: return x * x
        case .sin: return Foundation.sin(x)
        case .cos: return Foundation.cos(x)
        case .tanh: return Foundation.tanh(x)
        case .sigmoid: return x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        case .relu: return x > 0 ? x : 0
        case .elu: return x > 0 ? x : Foundation.exp(x) - 1
        // Keras's constants: scale 1.0507009873554805, alpha 1.6732632423543772.
        case .selu: return x > 0 ? 1.0507009873554805 * x : 1.0507009873554805 * 1.6732632423543772 * (Foundation.exp(x) - 1)
        // Exact GELU (Keras `approximate=False`): x·Φ(x).
        case .gelu: return 0.5 * x * (1 + erff(x / Float(2).squareRoot()))
        case .softplus: return x > 20 ? x : Foundation.log1p(Foundation.exp(x))
        case .floor: return Foundation.floor(x)
        case .leakyRelu: return x > 0 ? x : 0.2 * x
        }
    }

    /// df/dx, given x and y = f(x) (whichever is cheaper to use).
    @inlinable @inline(__always)
    public func derivative(_ x: Float, _ y: Float) -> Float {
        switch self {
        case .neg: return -1
        case .exp: return y
        case .log: return 1 / x
        case .sqrt: return 0.5 / y
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .square: return 2 * x
        case .sin: return Foundation.cos(x)
        case .cos: return -Foundation.sin(x)
        case .tanh: return 1 - y * y
        case .sigmoid: return y * (1 - y)
        case .relu: return x > 0 ? 1 : 0
        case .elu: return x > 0 ? 1 : y + 1
        case .selu: return x > 0 ? 1.0507009873554805 : y + 1.0507009873554805 * 1.6732632423543772
        case .gelu:
            let cdf = 0.5 * (1 + erff(x / Float(2).squareRoot()))
            let pdf = Foundation.exp(-0.5 * x * x) / Float(2 * Double.pi).squareRoot()
            return cdf + x * pdf
        case .softplus: return 1 / (1 + Foundation.exp(-x))
        case .floor: return 0
        case .leakyRelu: return x > 0 ? 1 : 0.2
        }
    }

    /// Calls `body` with this function's value and derivative as closures of one literal
    /// case, so a loop that takes them is compiled for that function alone: per element,
    /// a call through a closure or a switch on the function costs more than most of these
    /// functions do. Listing the cases is all this does; the math is above.
    @inlinable @inline(__always)
    public func specialized<R>(_ body: (_ value: (Float) -> Float, _ derivative: (Float, Float) -> Float) -> R) -> R {
        switch self {
        case .neg: return body({ UnaryFunction.neg.value($0) }, { UnaryFunction.neg.derivative($0, $1) })
        case .exp: return body({ UnaryFunction.exp.value($0) }, { UnaryFunction.exp.derivative($0, $1) })
        case .log: return body({ UnaryFunction.log.value($0) }, { UnaryFunction.log.derivative($0, $1) })
        case .sqrt: return body({ UnaryFunction.sqrt.value($0) }, { UnaryFunction.sqrt.derivative($0, $1) })
        case .abs: return body({ UnaryFunction.abs.value($0) }, { UnaryFunction.abs.derivative($0, $1) })
        case .square: return body({ UnaryFunction.square.value($0) }, { UnaryFunction.square.derivative($0, $1) })
        case .sin: return body({ UnaryFunction.sin.value($0) }, { UnaryFunction.sin.derivative($0, $1) })
        case .cos: return body({ UnaryFunction.cos.value($0) }, { UnaryFunction.cos.derivative($0, $1) })
        case .tanh: return body({ UnaryFunction.tanh.value($0) }, { UnaryFunction.tanh.derivative($0, $1) })
        case .sigmoid: return body({ UnaryFunction.sigmoid.value($0) }, { UnaryFunction.sigmoid.derivative($0, $1) })
        case .relu: return body({ UnaryFunction.relu.value($0) }, { UnaryFunction.relu.derivative($0, $1) })
        case .elu: return body({ UnaryFunction.elu.value($0) }, { UnaryFunction.elu.derivative($0, $1) })
        case .selu: return body({ UnaryFunction.selu.value($0) }, { UnaryFunction.selu.derivative($0, $1) })
        case .gelu: return body({ UnaryFunction.gelu.value($0) }, { UnaryFunction.gelu.derivative($0, $1) })
        case .softplus: return body({ UnaryFunction.softplus.value($0) }, { UnaryFunction.softplus.derivative($0, $1) })
        case .floor: return body({ UnaryFunction.floor.value($0) }, { UnaryFunction.floor.derivative($0, $1) })
        case .leakyRelu: return body({ UnaryFunction.leakyRelu.value($0) }, { UnaryFunction.leakyRelu.derivative($0, $1) })
        }
    }
}

/// A two-argument element-wise function (operands broadcast like numpy).
public enum BinaryFunction: String, CaseIterable, Sendable {
    case add, sub, mul, div, pow
    /// Floored modulo, like Python and TensorFlow: the result has the sign of b.
    case mod
    case min, max

    /// f(a, b).
    @inlinable @inline(__always)
    public func value(_ a: Float, _ b: Float) -> Float {
        switch self {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return Foundation.pow(a, b)
        case .mod: return a - b * Foundation.floor(a / b)
        case .min: return Swift.min(a, b)
        case .max: return Swift.max(a, b)
        }
    }

    /// (∂f/∂a, ∂f/∂b), given a, b and y = f(a, b).
    @inlinable @inline(__always)
    public func partials(_ a: Float, _ b: Float, _ y: Float) -> (Float, Float) {
        switch self {
        case .add: return (1, 1)
        case .sub: return (1, -1)
        case .mul: return (b, a)
        case .div: return (1 / b, -a / (b * b))
        case .pow: return (b * Foundation.pow(a, b - 1), a > 0 ? y * Foundation.log(a) : 0)
        case .mod: return (1, -Foundation.floor(a / b))
        case .min: return a <= b ? (1, 0) : (0, 1)
        case .max: return a >= b ? (1, 0) : (0, 1)
        }
    }

    /// The partials when they do not depend on the operands (add, sub): the backward
    /// pass then scales the incoming gradient without reading either operand.
    @inlinable
    public var constantPartials: (Float, Float)? {
        switch self {
        case .add: return (1, 1)
        case .sub: return (1, -1)
        case .mul, .div, .pow, .mod, .min, .max: return nil
        }
    }

    /// Calls `body` with this function's value and partials as closures of one literal
    /// case (see `UnaryFunction.specialized`).
    @inlinable @inline(__always)
    public func specialized<R>(_ body: (_ value: (Float, Float) -> Float, _ partials: (Float, Float, Float) -> (Float, Float)) -> R) -> R {
        switch self {
        case .add: return body({ BinaryFunction.add.value($0, $1) }, { BinaryFunction.add.partials($0, $1, $2) })
        case .sub: return body({ BinaryFunction.sub.value($0, $1) }, { BinaryFunction.sub.partials($0, $1, $2) })
        case .mul: return body({ BinaryFunction.mul.value($0, $1) }, { BinaryFunction.mul.partials($0, $1, $2) })
        case .div: return body({ BinaryFunction.div.value($0, $1) }, { BinaryFunction.div.partials($0, $1, $2) })
        case .pow: return body({ BinaryFunction.pow.value($0, $1) }, { BinaryFunction.pow.partials($0, $1, $2) })
        case .mod: return body({ BinaryFunction.mod.value($0, $1) }, { BinaryFunction.mod.partials($0, $1, $2) })
        case .min: return body({ BinaryFunction.min.value($0, $1) }, { BinaryFunction.min.partials($0, $1, $2) })
        case .max: return body({ BinaryFunction.max.value($0, $1) }, { BinaryFunction.max.partials($0, $1, $2) })
        }
    }
}
