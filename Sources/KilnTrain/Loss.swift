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
