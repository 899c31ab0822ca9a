import Foundation
import KilnGraph
import KilnTensor

/// Updates weights from their gradients, with the Keras 3 update rules. Slot tensors
/// (moments, velocities) are kept per weight name, so they can be checkpointed.
public final class Optimizer {
    public let spec: OptimizerSpec
    public private(set) var iterations = 0
    var slots: [String: [Tensor]] = [:]
    /// The learning rate for the next step (schedules set it per epoch).
    public var learningRate: Float

    public init(_ spec: OptimizerSpec) {
        self.spec = spec
        learningRate = spec.learningRate
    }

    /// L2 norm of a gradient.
    public static func norm(_ g: Tensor) -> Float {
        var total: Double = 0
        g.withUnsafeBufferPointer { p in for v in p { total += Double(v) * Double(v) } }
        return Float(total.squareRoot())
    }

    /// Applies one step to every weight that has a gradient, then clears the gradients.
    public func step(_ weights: [(name: String, variable: Variable)]) {
        iterations += 1
        let t = Float(iterations)
        for (name, w) in weights {
            guard var g = w.grad else { continue }
            w.grad = nil
            if let clip = spec.clipnorm {
                let n = Optimizer.norm(g)
                if n > clip { let s = clip / n; g.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] *= s } } }
            }
            let count = g.count
            let lr = learningRate
            let gp = g.storage.pointer
            w.value.withUnsafeMutableBufferPointer { wb in
                let wp = wb.baseAddress!
                switch spec.kind {
                case .sgd:
                    if spec.momentum == 0 {
                        for i in 0..<count { wp[i] -= lr * gp[i] }
                    } else {
                        let v = slot(name, 0, g.shape).storage.pointer
                        let m = spec.momentum
                        for i in 0..<count {
                            v[i] = m * v[i] - lr * gp[i]
                            wp[i] += spec.nesterov ? m * v[i] - lr * gp[i] : v[i]
                        }
                    }
                case .adam, .adamw:
                    let m = slot(name, 0, g.shape).storage.pointer, v = slot(name, 1, g.shape).storage.pointer
                    let b1 = spec.beta1, b2 = spec.beta2, eps = spec.epsilon
                    let alpha = lr * (1 - Foundation.pow(b2, t)).squareRoot() / (1 - Foundation.pow(b1, t))
                    if spec.kind == .adamw && spec.weightDecay > 0 {
                        let decay = 1 - lr * spec.weightDecay
                        for i in 0..<count { wp[i] *= decay }
                    }
                    for i in 0..<count {
                        m[i] += (gp[i] - m[i]) * (1 - b1)
                        v[i] += (gp[i] * gp[i] - v[i]) * (1 - b2)
                        wp[i] -= alpha * m[i] / (v[i].squareRoot() + eps)
                    }
                case .rmsprop:
                    let v = slot(name, 0, g.shape).storage.pointer
                    let rho = spec.rho, eps = spec.epsilon
                    for i in 0..<count {
                        v[i] = rho * v[i] + (1 - rho) * gp[i] * gp[i]
                        wp[i] -= lr * gp[i] / (v[i].squareRoot() + eps)
                    }
                }
            }
        }
    }

    /// The moments and velocities, named `<weight>/<slot>`, and the step count, so a
    /// resumed job continues with the same optimizer state.
    public var state: (tensors: [(String, Tensor)], iterations: Int) {
        let tensors = slots.keys.sorted().flatMap { name in slots[name]!.enumerated().map { ("\(name)/\($0.offset)", $0.element) } }
        return (tensors, iterations)
    }

    /// Restores `state`; slots whose weight is unknown are ignored.
    public func restore(_ tensors: [(String, Tensor)], iterations: Int, weights: [String: [Int]]) {
        var restored: [String: [Int: Tensor]] = [:]
        for (key, tensor) in tensors {
            guard let slash = key.lastIndex(of: "/"), let index = Int(key[key.index(after: slash)...]) else { continue }
            let name = String(key[..<slash])
            guard weights[name] == tensor.shape else { continue }
            restored[name, default: [:]][index] = tensor
        }
        slots = restored.compactMapValues { byIndex in
            let count = byIndex.count
            guard (0..<count).allSatisfy({ byIndex[$0] != nil }) else { return nil }
            return (0..<count).map { byIndex[$0]! }
        }
        self.iterations = iterations
    }

    func slot(_ name: String, _ index: Int, _ shape: [Int]) -> Tensor {
        if slots[name] == nil { slots[name] = [] }
        while slots[name]!.count <= index { slots[name]!.append(Tensor(shape: shape, repeating: 0)) }
        return slots[name]![index]
    }
}
