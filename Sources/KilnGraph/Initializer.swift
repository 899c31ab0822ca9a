import Foundation
import KilnJSON
import KilnTensor

/// How a weight's first values are drawn (Keras names and rules).
public enum Initializer: Sendable, Equatable {
    case glorotUniform, glorotNormal, heNormal, heUniform, lecunNormal, lecunUniform
    case zeros, ones
    /// Keras `Orthogonal`: rows (or columns, whichever are fewer) orthonormal.
    case orthogonal
    case constant(Float)
    case uniform(min: Float, max: Float)
    case normal(mean: Float, stddev: Float)
    /// Exact values, row-major.
    case values([Float])

    public static let names = ["glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "orthogonal", "zeros", "ones", "uniform", "normal"]

    /// Parses a name or an object (`{"value": [...]}`, `{"type": "uniform", "min": -1, "max": 1}`).
    public static func read(_ json: JSON, path: String, node: String?) throws(SpecError) -> Initializer {
        if let name = json.stringValue {
            switch name {
            case "glorot_uniform": return .glorotUniform
            case "glorot_normal": return .glorotNormal
            case "he_normal": return .heNormal
            case "he_uniform": return .heUniform
            case "lecun_normal": return .lecunNormal
            case "lecun_uniform": return .lecunUniform
            case "orthogonal": return .orthogonal
            case "zeros": return .zeros
            case "ones": return .ones
            case "uniform": return .uniform(min: -0.05, max: 0.05)
            case "normal": return .normal(mean: 0, stddev: 0.05)
            default:
                throw SpecError(.invalidField, "unknown initializer '\(name)'\(Suggest.hint(name, names))", path: path, node: node)
            }
        }
        if let n = json.doubleValue { return .constant(Float(n)) }
        var fields = try FieldReader(json, path: path, node: node)
        if let value = fields.raw("value") {
            try fields.finish()
            if let n = value.doubleValue { return .constant(Float(n)) }
            return .values(try flattenNumbers(value, path: "\(path).value", node: node))
        }
        let type = try fields.string("type", oneOf: names) ?? "uniform"
        let result: Initializer
        switch type {
        case "uniform":
            let lo = Float(try fields.double("min") ?? -0.05), hi = Float(try fields.double("max") ?? 0.05)
            result = .uniform(min: lo, max: hi)
        case "normal":
            let mean = Float(try fields.double("mean") ?? 0), std = Float(try fields.double("stddev") ?? 0.05)
            result = .normal(mean: mean, stddev: std)
        default:
            result = try read(.string(type), path: path, node: node)
        }
        try fields.finish()
        return result
    }

    /// The spec form `read` turns back into this initializer: a Keras name, a number, or
    /// an object with its arguments.
    public var json: JSON {
        switch self {
        case .glorotUniform: return "glorot_uniform"
        case .glorotNormal: return "glorot_normal"
        case .heNormal: return "he_normal"
        case .heUniform: return "he_uniform"
        case .lecunNormal: return "lecun_normal"
        case .lecunUniform: return "lecun_uniform"
        case .orthogonal: return "orthogonal"
        case .zeros: return "zeros"
        case .ones: return "ones"
        case let .constant(c): return JSON(c)
        case let .uniform(lo, hi): return .object([("type", "uniform"), ("min", JSON(lo)), ("max", JSON(hi))])
        case let .normal(mean, std): return .object([("type", "normal"), ("mean", JSON(mean)), ("stddev", JSON(std))])
        case let .values(v): return .object([("value", JSON(v))])
        }
    }

    /// Checks that exact values fill the weight's shape.
    func check(shape: [Int], path: String, node: String?) throws(SpecError) {
        if case let .values(v) = self, v.count != Shapes.count(shape) {
            throw SpecError(.shapeMismatch, "\(v.count) values given for a weight of shape \(shape) (\(Shapes.count(shape)) values)", path: path, node: node)
        }
    }

    /// Draws the initial tensor. Fans follow Keras: the last axis is fan-out, the one
    /// before it fan-in, both times the receptive field of any leading axes.
    public func make(_ shape: [Int], generator: inout SeededGenerator) -> Tensor {
        let receptive = shape.count > 2 ? Shapes.count(Array(shape.dropLast(2))) : 1
        let fanIn = Float(shape.count >= 2 ? shape[shape.count - 2] * receptive : (shape.first ?? 1))
        let fanOut = Float(shape.count >= 2 ? shape[shape.count - 1] * receptive : (shape.first ?? 1))
        switch self {
        case .zeros: return Tensor(shape: shape, repeating: 0)
        case .ones: return Tensor(shape: shape, repeating: 1)
        case let .constant(c): return Tensor(shape: shape, repeating: c)
        case let .values(v): return Tensor(shape: shape, values: v)
        case let .uniform(lo, hi): return .uniform(shape, low: lo, high: hi, generator: &generator)
        case let .normal(mean, std): return .normal(shape, mean: mean, stddev: std, generator: &generator)
        case .glorotUniform:
            let limit = (6 / (fanIn + fanOut)).squareRoot()
            return .uniform(shape, low: -limit, high: limit, generator: &generator)
        case .glorotNormal:
            return .normal(shape, stddev: (2 / (fanIn + fanOut)).squareRoot() / 0.87962566, truncated: true, generator: &generator)
        case .heNormal:
            return .normal(shape, stddev: (2 / fanIn).squareRoot() / 0.87962566, truncated: true, generator: &generator)
        case .heUniform:
            let limit = (6 / fanIn).squareRoot()
            return .uniform(shape, low: -limit, high: limit, generator: &generator)
        case .lecunNormal:
            return .normal(shape, stddev: (1 / fanIn).squareRoot() / 0.87962566, truncated: true, generator: &generator)
        case .lecunUniform:
            let limit = (3 / fanIn).squareRoot()
            return .uniform(shape, low: -limit, high: limit, generator: &generator)
        case .orthogonal:
            return Initializer.orthogonal(shape, generator: &generator)
        }
    }

    /// As Keras: a normal matrix of (the larger of rows and columns) × (the smaller),
    /// rows being every axis but the last, is orthonormalised (the Q of its QR
    /// decomposition with R's diagonal positive, by modified Gram–Schmidt in Double), and
    /// transposed when there are fewer rows than columns.
    static func orthogonal(_ shape: [Int], generator: inout SeededGenerator) -> Tensor {
        let columns = shape.last ?? 1, rows = Shapes.count(shape) / Swift.max(columns, 1)
        let (m, n) = (Swift.max(rows, columns), Swift.min(rows, columns))
        var q = (0..<(m * n)).map { _ in Double(generator.nextNormal()) }  // m×n, column j at q[i * n + j]
        for j in 0..<n {
            for k in 0..<j {
                var dot = 0.0
                for i in 0..<m { dot += q[i * n + k] * q[i * n + j] }
                for i in 0..<m { q[i * n + j] -= dot * q[i * n + k] }
            }
            var norm = 0.0
            for i in 0..<m { norm += q[i * n + j] * q[i * n + j] }
            norm = norm.squareRoot()
            for i in 0..<m { q[i * n + j] = norm > 0 ? q[i * n + j] / norm : 0 }
        }
        var values = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                // rows ≥ columns: the m×n matrix itself; else its transpose (n×m = rows×columns).
                if rows >= columns { values[i * n + j] = Float(q[i * n + j]) } else { values[j * m + i] = Float(q[i * n + j]) }
            }
        }
        return Tensor(shape: shape, values: values)
    }
}

/// L1/L2 penalties added to the objective (`{"l1": a, "l2": b}`).
public struct Regularizer: Sendable, Equatable {
    public var l1: Float
    public var l2: Float

    public static func read(_ json: JSON, path: String, node: String?) throws(SpecError) -> Regularizer {
        var fields = try FieldReader(json, path: path, node: node)
        let r = Regularizer(l1: Float(try fields.double("l1", range: 0...1e6) ?? 0), l2: Float(try fields.double("l2", range: 0...1e6) ?? 0))
        try fields.finish()
        return r
    }

    /// `{"l1": a, "l2": b}`, as `read` takes it.
    public var json: JSON { .object([("l1", JSON(l1)), ("l2", JSON(l2))]) }

    /// l1·Σ|w| + l2·Σw²
    public func penalty(_ w: Variable) throws(TensorError) -> Variable? {
        var terms: [Variable] = []
        if l1 > 0 { terms.append(try w.abs().sum().affine(scale: l1)) }
        if l2 > 0 { terms.append(try w.square().sum().affine(scale: l2)) }
        guard var total = terms.first else { return nil }
        for t in terms.dropFirst() { total = try total.add(t) }
        return total
    }
}

/// Flattens nested JSON arrays of numbers into row-major values.
func flattenNumbers(_ json: JSON, path: String, node: String?) throws(SpecError) -> [Float] {
    try nestedArray(json, path: path, node: node).1
}
