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
    /// Returns each weight's gradient L2 norm (before clipping), in the order given (0
    /// for a weight without a gradient): the update reads every gradient element once,
    /// so the norms come from the same pass, which is split over the cores.
    @discardableResult
    public func step(_ weights: [(name: String, variable: Variable)]) -> [Double] {
        iterations += 1
        let t = Float(iterations)
        var norms = [Double](repeating: 0, count: weights.count)
        for (index, (name, w)) in weights.enumerated() {
            guard let g = w.grad else { continue }
            w.grad = nil
            // With clipnorm, the norm is needed before the update; else the update's own
            // pass measures it.
            let measured = spec.clipnorm.map { _ in Optimizer.norm(g) }
            let scale: Float = measured.map { n in n > spec.clipnorm! ? spec.clipnorm! / n : 1 } ?? 1
            let count = g.count
            let lr = learningRate
            let gp = g.storage.pointer
            let wp = w.value.withUnsafeMutableBufferPointer { $0.baseAddress! }
            let rule: Rule
            var s0: UnsafeMutablePointer<Float>?, s1: UnsafeMutablePointer<Float>?
            switch spec.kind {
            case .sgd where spec.momentum == 0:
                rule = { g, w, _, _ in w -= lr * g }
            case .sgd:
                s0 = slot(name, 0, g.shape)
                let m = spec.momentum, nesterov = spec.nesterov
                rule = { g, w, v, _ in
                    v = m * v - lr * g
                    w += nesterov ? m * v - lr * g : v
                }
            case .adam, .adamw:
                s0 = slot(name, 0, g.shape)
                s1 = slot(name, 1, g.shape)
                let b1 = spec.beta1, b2 = spec.beta2, eps = spec.epsilon
                let alpha = lr * (1 - Foundation.pow(b2, t)).squareRoot() / (1 - Foundation.pow(b1, t))
                let decay: Float = spec.kind == .adamw && spec.weightDecay > 0 ? 1 - lr * spec.weightDecay : 1
                rule = { g, w, m, v in
                    m += (g - m) * (1 - b1)
                    v += (g * g - v) * (1 - b2)
                    w = w * decay - alpha * m / (v.squareRoot() + eps)
                }
            case .rmsprop:
                s0 = slot(name, 0, g.shape)
                let rho = spec.rho, eps = spec.epsilon
                rule = { g, w, v, _ in
                    v = rho * v + (1 - rho) * g * g
                    w -= lr * g / (v.squareRoot() + eps)
                }
            }
            var sums = [Double](repeating: 0, count: Parallel.chunkCount(count, minimumChunk: Optimizer.chunk))
            sums.withUnsafeMutableBufferPointer { sp in
                Parallel.forEachChunk(count, minimumChunk: Optimizer.chunk) { c, r in
                    sp[c] = Optimizer.sweep(r, g: gp, scale: scale, w: wp, s0, s1, rule)
                }
            }
            // With clipping, the update saw g scaled; report the norm measured before.
            norms[index] = measured.map(Double.init) ?? sums.reduce(0, +).squareRoot()
            withExtendedLifetime(g) {}
        }
        return norms
    }

    static let chunk = 1 << 14

    typealias Lanes = SIMD8<Float>
    /// One update rule on eight weights at once: (gradient, weight, slot 0, slot 1).
    typealias Rule = (Lanes, inout Lanes, inout Lanes, inout Lanes) -> Void

    /// Applies `rule` to the elements in `range`, eight at a time (the last group
    /// padded, and only its real lanes written back), with g scaled by `scale`; returns
    /// the sum of squares of the unscaled g (in Float per lane, in Double every 256
    /// elements).
    static func sweep(
        _ range: Range<Int>, g: UnsafePointer<Float>, scale: Float, w: UnsafeMutablePointer<Float>,
        _ s0: UnsafeMutablePointer<Float>?, _ s1: UnsafeMutablePointer<Float>?, _ rule: Rule
    ) -> Double {
        var total: Double = 0
        var squares = Lanes()
        let zero = UnsafeMutablePointer<Float>.allocate(capacity: 8)
        defer { zero.deallocate() }
        let p0 = s0 ?? zero, p1 = s1 ?? zero
        var i = range.lowerBound
        var groups = 0
        while i < range.upperBound {
            let n = Swift.min(8, range.upperBound - i)
            var gv = Lanes(), wv = Lanes(), v0 = Lanes(), v1 = Lanes()
            if n == 8 {
                gv = UnsafeRawPointer(g + i).loadUnaligned(as: Lanes.self)
                wv = UnsafeRawPointer(w + i).loadUnaligned(as: Lanes.self)
                if s0 != nil { v0 = UnsafeRawPointer(p0 + i).loadUnaligned(as: Lanes.self) }
                if s1 != nil { v1 = UnsafeRawPointer(p1 + i).loadUnaligned(as: Lanes.self) }
            } else {
                for l in 0..<n {
                    gv[l] = g[i + l]; wv[l] = w[i + l]
                    if s0 != nil { v0[l] = p0[i + l] }
                    if s1 != nil { v1[l] = p1[i + l] }
                }
            }
            squares += gv * gv
            rule(gv * scale, &wv, &v0, &v1)
            if n == 8 {
                UnsafeMutableRawPointer(w + i).storeBytes(of: wv, as: Lanes.self)
                if s0 != nil { UnsafeMutableRawPointer(p0 + i).storeBytes(of: v0, as: Lanes.self) }
                if s1 != nil { UnsafeMutableRawPointer(p1 + i).storeBytes(of: v1, as: Lanes.self) }
            } else {
                for l in 0..<n {
                    w[i + l] = wv[l]
                    if s0 != nil { p0[i + l] = v0[l] }
                    if s1 != nil { p1[i + l] = v1[l] }
                }
            }
            i += n
            groups += 1
            if groups == 32 { total += Double(squares.sum()); squares = Lanes(); groups = 0 }
        }
        return total + Double(squares.sum())
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

    /// The elements of a slot tensor, created as zeros on first use, for writing in
    /// place (unshared first, so a tensor handed out by `state` keeps its values).
    func slot(_ name: String, _ index: Int, _ shape: [Int]) -> UnsafeMutablePointer<Float> {
        if slots[name] == nil { slots[name] = [] }
        while slots[name]!.count <= index { slots[name]!.append(Tensor(shape: shape, repeating: 0)) }
        return slots[name]![index].withUnsafeMutableBufferPointer { $0.baseAddress! }
    }
}
