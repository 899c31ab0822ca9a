import Foundation
import KilnGraph
import KilnSpec
import KilnTensor

/// The losses of DESIGN.md §1, each the mean over the batch of a per-sample loss, as in
/// Keras. Predictions are probabilities (not logits) where the loss needs them,
/// clipped to [ε, 1−ε] like Keras.
public enum Loss {
    static let epsilon: Float = 1e-7

    public static func compute(_ kind: LossSpec.Kind, prediction p: Variable, target t: Tensor) throws(TensorError) -> Variable {
        switch kind {
        case .categoricalCrossentropy, .sparseCategoricalCrossentropy:
            let sparse = kind == .sparseCategoricalCrossentropy
                || LossSpec.holdsClassIndices(prediction: Array(p.shape.dropFirst()), target: Array(t.shape.dropFirst()))
            return sparse ? try sparseCrossentropy(p, t) : try categoricalCrossentropy(p, t)
        case .binaryCrossentropy: return try binaryCrossentropy(p, t)
        case .mse: return try p.sub(Variable(t)).square().mean()
        case .mae: return try p.sub(Variable(t)).abs().mean()
        case .huber: return try huber(p, t, delta: 1)
        case .cosine: return try cosine(p, t)
        case .mape, .msle, .poisson, .logCosh, .klDivergence, .hinge, .squaredHinge, .categoricalHinge:
            guard p.shape == t.shape else { throw TensorError.mismatch(kind.rawValue, p.shape, t.shape, "prediction and target differ") }
            return try elementwise(kind, p, Variable(t))
        }
    }

    /// The Keras losses built from differentiable element-wise ops (their gradients come
    /// from the ops' own): each a mean over every element, Keras's mean over the last
    /// axis then over the batch.
    static func elementwise(_ kind: LossSpec.Kind, _ p: Variable, _ t: Variable) throws(TensorError) -> Variable {
        func scalar(_ v: Float) -> Variable { Variable(Tensor(scalar: v)) }
        func clip(_ x: Variable, _ lo: Float, _ hi: Float) throws(TensorError) -> Variable { try x.maximum(scalar(lo)).minimum(scalar(hi)) }
        switch kind {
        case .mape:
            // 100·|t − p| / max(|t|, ε)
            return try p.sub(t).abs().div(t.abs().maximum(scalar(epsilon))).mean().affine(scale: 100)
        case .msle:
            // (log(max(p, ε) + 1) − log(max(t, ε) + 1))²
            let lp = try p.maximum(scalar(epsilon)).affine(scale: 1, shift: 1).log()
            let lt = try t.maximum(scalar(epsilon)).affine(scale: 1, shift: 1).log()
            return try lp.sub(lt).square().mean()
        case .poisson:
            // p − t·log(p + ε)
            return try p.sub(t.mul(p.affine(scale: 1, shift: epsilon).log())).mean()
        case .logCosh:
            // log(cosh(e)) = e + softplus(−2e) − log 2, stable for large |e|
            let e = try p.sub(t)
            return try e.add(e.affine(scale: -2).softplus()).affine(scale: 1, shift: -Float(Foundation.log(2.0))).mean()
        case .klDivergence:
            // Σ over the last axis of t·log(t / p), both clipped to [ε, 1]
            let tc = try clip(t, epsilon, 1), pc = try clip(p, epsilon, 1)
            let perRow = try tc.mul(tc.div(pc).log()).sum(axes: [-1])
            return try perRow.mean()
        case .hinge, .squaredHinge:
            // Targets of 0/1 are read as −1/1, as in Keras.
            let values = t.value.storage.pointer
            let binary = (0..<t.value.count).allSatisfy { values[$0] == 0 || values[$0] == 1 }
            let signed = binary ? t.affine(scale: 2, shift: -1) : t
            let margin = try signed.mul(p).affine(scale: -1, shift: 1).relu()
            return try (kind == .hinge ? margin : margin.square()).mean()
        case .categoricalHinge:
            // max(0, max((1 − t)·p) − Σ t·p + 1) per row
            let positive = try t.mul(p).sum(axes: [-1])
            let negative = try t.affine(scale: -1, shift: 1).mul(p).max(axes: [-1])
            return try negative.sub(positive).affine(scale: 1, shift: 1).relu().mean()
        default:
            preconditionFailure("\(kind) is not an element-wise loss")
        }
    }

    /// −Σ t·log(clip(p)) over the last axis, averaged over everything else.
    static func categoricalCrossentropy(_ p: Variable, _ t: Tensor) throws(TensorError) -> Variable {
        guard p.shape == t.shape else { throw TensorError.mismatch("categorical_crossentropy", p.shape, t.shape, "prediction and one-hot target differ") }
        let classes = p.shape.last ?? 1
        let rows = p.value.count / Swift.max(classes, 1)
        let pp = p.value.storage.pointer, pt = t.storage.pointer
        var total: Double = 0
        for i in 0..<p.value.count where pt[i] != 0 {
            total -= Double(pt[i]) * Double(Foundation.log(Swift.min(Swift.max(pp[i], epsilon), 1 - epsilon)))
        }
        let value = Tensor(scalar: Float(total / Double(rows)))
        let prediction = p.value
        return Variable(value, op: "categorical_crossentropy", parents: [p]) { g in
            // Hold the tensors (not just their pointers) until the backward pass.
            let pp = prediction.storage.pointer, pt = t.storage.pointer
            let scale = g.scalar / Float(rows)
            let dp = Tensor(shape: p.shape, repeating: 0)
            let d = dp.storage.pointer
            for i in 0..<p.value.count where pt[i] != 0 && pp[i] > epsilon && pp[i] < 1 - epsilon {
                d[i] = -scale * pt[i] / pp[i]
            }
            p.accumulate(dp)
        }
    }

    /// −log(clip(p[label])) per row, labels given as class indices.
    static func sparseCrossentropy(_ p: Variable, _ t: Tensor) throws(TensorError) -> Variable {
        let classes = p.shape.last ?? 1
        let rows = p.value.count / Swift.max(classes, 1)
        guard t.count == rows else {
            throw TensorError.mismatch("sparse_categorical_crossentropy", p.shape, t.shape, "one class index is needed per prediction row")
        }
        let pp = p.value.storage.pointer, pt = t.storage.pointer
        var total: Double = 0
        for r in 0..<rows {
            let label = Int(pt[r])
            guard label >= 0 && label < classes && Float(label) == pt[r] else {
                throw TensorError(.invalidArgument, op: "sparse_categorical_crossentropy", "label \(pt[r]) is not a class index in 0..<\(classes)", shapes: [p.shape, t.shape])
            }
            total -= Double(Foundation.log(Swift.min(Swift.max(pp[r * classes + label], epsilon), 1 - epsilon)))
        }
        let prediction = p.value
        return Variable(Tensor(scalar: Float(total / Double(rows))), op: "sparse_categorical_crossentropy", parents: [p]) { g in
            let pp = prediction.storage.pointer, pt = t.storage.pointer
            let scale = g.scalar / Float(rows)
            let dp = Tensor(shape: p.shape, repeating: 0)
            let d = dp.storage.pointer
            for r in 0..<rows {
                let i = r * classes + Int(pt[r])
                if pp[i] > epsilon && pp[i] < 1 - epsilon { d[i] = -scale / pp[i] }
            }
            p.accumulate(dp)
        }
    }

    /// −mean(t·log p + (1−t)·log(1−p)), element-wise over any shape.
    static func binaryCrossentropy(_ p: Variable, _ t: Tensor) throws(TensorError) -> Variable {
        guard p.shape == t.shape else { throw TensorError.mismatch("binary_crossentropy", p.shape, t.shape, "prediction and target differ") }
        let n = p.value.count
        let pp = p.value.storage.pointer, pt = t.storage.pointer
        var total: Double = 0
        for i in 0..<n {
            let q = Swift.min(Swift.max(pp[i], epsilon), 1 - epsilon)
            total -= Double(pt[i] * Foundation.log(q) + (1 - pt[i]) * Foundation.log(1 - q))
        }
        let prediction = p.value
        return Variable(Tensor(scalar: Float(total / Double(n))), op: "binary_crossentropy", parents: [p]) { g in
            let pp = prediction.storage.pointer, pt = t.storage.pointer
            let scale = g.scalar / Float(n)
            let dp = Tensor(shape: p.shape, repeating: 0)
            let d = dp.storage.pointer
            for i in 0..<n where pp[i] > epsilon && pp[i] < 1 - epsilon {
                d[i] = scale * (pp[i] - pt[i]) / (pp[i] * (1 - pp[i]))
            }
            p.accumulate(dp)
        }
    }

    /// 0.5·e² where |e| ≤ δ, else δ·(|e| − 0.5·δ); mean over elements.
    static func huber(_ p: Variable, _ t: Tensor, delta: Float) throws(TensorError) -> Variable {
        let e = try p.sub(Variable(t))
        let a = e.abs()
        let quadratic = try a.minimum(Variable(Tensor(scalar: delta)))
        let linear = try a.sub(quadratic)
        return try quadratic.square().affine(scale: 0.5).add(linear.affine(scale: delta)).mean()
    }

    /// −mean over rows of cos(p, t) along the last axis (Keras' CosineSimilarity loss).
    static func cosine(_ p: Variable, _ t: Tensor) throws(TensorError) -> Variable {
        let tv = Variable(t)
        let eps = Variable(Tensor(scalar: 1e-12))
        let pn = try p.div(p.square().sum(axes: [-1], keepDims: true).maximum(eps).sqrt())
        let tn = try tv.div(tv.square().sum(axes: [-1], keepDims: true).maximum(eps).sqrt())
        return try pn.mul(tn).sum(axes: [-1]).mean().neg()
    }
}
