import CKilnKernels
import Foundation
import KilnGraph
import KilnSpec
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

    /// L2 norm of a gradient (eight lanes at a time, split over the cores).
    public static func norm(_ g: Tensor) -> Float {
        let p = g.storage.pointer
        let total = Parallel.sum(g.count, minimumChunk: chunk) { r in kiln_sum_squares(p + r.lowerBound, r.count) }
        withExtendedLifetime(g) {}
        return Float(total.squareRoot())
    }

    /// Applies one step to every weight that has a gradient, then clears the gradients.
    /// Returns each weight's gradient L2 norm (before clipping), in the order given (0
    /// for a weight without a gradient): the update reads every gradient element once,
    /// so the norms come from the same pass.
    ///
    /// Every weight is cut into the chunks `Parallel.sum` would cut it into, and all the
    /// chunks of all the weights run in one dispatch over the cores (one per weight cost
    /// a wake-up of the workers per tensor). Each chunk's Σ g² is kept apart and the
    /// chunks of a weight are added in order, so the norms are those of a sweep per
    /// weight, whichever core ran which chunk.
    @discardableResult
    public func step(_ weights: [(name: String, variable: Variable)]) -> [Double] {
        iterations += 1
        let t = Float(iterations)
        var norms = [Double](repeating: 0, count: weights.count)
        // One update per weight with a gradient, the weight's index, and the chunks
        // (update, range) of all of them.
        var updates: [(Range<Int>) -> Double] = []
        var owners: [Int] = []
        var chunks: [(update: Int, range: Range<Int>)] = []
        var gradients: [Tensor] = []
        var total = 0
        for (index, (name, w)) in weights.enumerated() {
            guard let g = w.grad else { continue }
            w.grad = nil
            // With clipnorm, the norm is needed before the update; else the update's own
            // pass measures it.
            let measured = spec.clipnorm.map { _ in Optimizer.norm(g) }
            // With clipping, the update sees g scaled; the norm reported is this one.
            if let measured { norms[index] = Double(measured) }
            let scale: Float = measured.map { n in n > spec.clipnorm! ? spec.clipnorm! / n : 1 } ?? 1
            let lr = learningRate
            let gp = g.storage.pointer
            let wp = w.value.withUnsafeMutableBufferPointer { $0.baseAddress! }
            let update: (Range<Int>) -> Double
            switch spec.kind {
            case .sgd:
                let velocity = spec.momentum == 0 ? nil : slot(name, 0, g.shape)
                let momentum = spec.momentum, nesterov: Int32 = spec.nesterov ? 1 : 0
                update = { r in kiln_sgd(wp + r.lowerBound, velocity.map { $0 + r.lowerBound }, gp + r.lowerBound, r.count, scale, lr, momentum, nesterov) }
            case .adam, .adamw:
                let m = slot(name, 0, g.shape), v = slot(name, 1, g.shape)
                let b1 = spec.beta1, b2 = spec.beta2, eps = spec.epsilon
                let alpha = lr * (1 - Foundation.pow(b2, t)).squareRoot() / (1 - Foundation.pow(b1, t))
                let decay: Float = spec.kind == .adamw && spec.weightDecay > 0 ? 1 - lr * spec.weightDecay : 1
                update = { r in
                    let o = r.lowerBound
                    return kiln_adam(wp + o, m + o, v + o, gp + o, r.count, scale, b1, b2, alpha, eps, decay)
                }
            case .rmsprop:
                let v = slot(name, 0, g.shape)
                let rho = spec.rho, eps = spec.epsilon
                update = { r in kiln_rmsprop(wp + r.lowerBound, v + r.lowerBound, gp + r.lowerBound, r.count, scale, lr, rho, eps) }
            }
            let count = g.count
            let parts = Parallel.chunkCount(count, minimumChunk: Optimizer.chunk)
            let size = (count + parts - 1) / parts
            for c in 0..<parts {
                chunks.append((updates.count, (c * size)..<Swift.max(c * size, Swift.min(count, (c + 1) * size))))
            }
            updates.append(update)
            owners.append(spec.clipnorm == nil ? index : -1)
            gradients.append(g)
            total += count
        }
        // Σ g² per chunk, in chunk order.
        var squares = [Double](repeating: 0, count: chunks.count)
        squares.withUnsafeMutableBufferPointer { buffer in
            let sp = buffer.baseAddress!
            let run = { (c: Int) in sp[c] = updates[chunks[c].update](chunks[c].range) }
            if chunks.count == 1 || total < 2 * Optimizer.chunk || Parallel.cores == 1 {
                for c in chunks.indices { run(c) }
            } else {
                Parallel.perform(chunks.count, run)
            }
        }
        var sums = [Double](repeating: 0, count: updates.count)
        for (c, chunk) in chunks.enumerated() { sums[chunk.update] += squares[c] }
        for (u, index) in owners.enumerated() where index >= 0 { norms[index] = sums[u].squareRoot() }
        withExtendedLifetime(gradients) {}
        return norms
    }

    static let chunk = 1 << 14

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
