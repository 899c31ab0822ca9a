import KilnGraph
import KilnSpec
import KilnTensor

/// Per-batch metric sums, averaged over an epoch by the trainer.
public enum Metric {
    /// The accuracy Keras picks for a loss: sparse or one-hot categorical, or binary.
    public static func resolve(_ name: String, loss: LossSpec.Kind?) -> String {
        guard name == "accuracy" else { return name }
        return loss == .binaryCrossentropy ? "binary_accuracy" : "accuracy"
    }

    /// The metric summed over the batch's samples (divide by sample count for the mean).
    public static func sum(_ name: String, prediction p: Tensor, target t: Tensor) -> Double {
        let pp = p.storage.pointer, pt = t.storage.pointer
        switch name {
        case "accuracy":
            let classes = p.shape.last ?? 1
            let rows = p.count / Swift.max(classes, 1)
            let sparse = LossSpec.holdsClassIndices(prediction: Array(p.shape.dropFirst()), target: Array(t.shape.dropFirst()))
            var correct = 0
            for r in 0..<rows {
                let predicted = argmax(pp + r * classes, classes)
                let label = sparse ? Int(pt[r]) : argmax(pt + r * classes, classes)
                if predicted == label { correct += 1 }
            }
            // Per sample: rows per sample for sequence outputs.
            let rowsPerSample = Swift.max(rows / Swift.max(p.shape.first ?? 1, 1), 1)
            return Double(correct) / Double(rowsPerSample)
        case "binary_accuracy":
            var correct = 0
            for i in 0..<p.count where (pp[i] > 0.5) == (pt[i] > 0.5) { correct += 1 }
            return Double(correct) / Double(Swift.max(p.count / Swift.max(p.shape.first ?? 1, 1), 1))
        case "mse", "mae":
            var total: Double = 0
            for i in 0..<Swift.min(p.count, t.count) {
                let e = Double(pp[i] - pt[i])
                total += name == "mse" ? e * e : Swift.abs(e)
            }
            return total / Double(Swift.max(p.count / Swift.max(p.shape.first ?? 1, 1), 1))
        default:
            return .nan
        }
    }

    @inline(__always)
    static func argmax(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for i in 1..<Swift.max(n, 1) where p[i] > p[best] { best = i }
        return best
    }
}
