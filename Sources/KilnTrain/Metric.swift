import Foundation
import KilnGraph
import KilnSpec
import KilnTensor

/// The reported metrics (Keras names and History keys). Most are means of per-sample
/// values, summed per batch and averaged by the trainer; precision, recall, AUC and
/// RMSE are not, so for those the trainer sums each batch's `statistics` over the
/// epoch and reports `value(_:statistics:)` of the total, as Keras's stateful metrics do.
public enum Metric {
    /// The accuracy Keras picks for a loss: sparse or one-hot categorical, or binary.
    public static func resolve(_ kind: MetricKind, loss: LossSpec.Kind?) -> MetricKind {
        guard kind == .accuracy else { return kind }
        return loss == .binaryCrossentropy ? .binaryAccuracy : .accuracy
    }

    /// Keras's `top_k_categorical_accuracy` default.
    public static let topK = 5
    /// Keras's `AUC` default: thresholds 0 − ε, 1/199, …, 198/199, 1 + ε.
    public static let aucThresholds: [Float] = (0..<200).map { i in
        i == 0 ? -1e-7 : i == 199 ? 1 + 1e-7 : Float(i) / 199
    }

    /// The metric summed over the batch's samples (divide by sample count for the mean).
    /// A streaming metric's is its value on this batch alone, times the samples.
    public static func sum(_ kind: MetricKind, prediction p: Tensor, target t: Tensor) -> Double {
        let pp = p.storage.pointer, pt = t.storage.pointer
        let samples = Swift.max(p.shape.first ?? 1, 1)
        switch kind {
        case .accuracy, .categoricalAccuracy, .sparseCategoricalAccuracy, .topKCategoricalAccuracy, .sparseTopKCategoricalAccuracy:
            let classes = p.shape.last ?? 1
            let rows = p.count / Swift.max(classes, 1)
            let sparse = LossSpec.holdsClassIndices(prediction: Array(p.shape.dropFirst()), target: Array(t.shape.dropFirst()))
            let topK = kind == .topKCategoricalAccuracy || kind == .sparseTopKCategoricalAccuracy
            var correct = 0
            for r in 0..<rows {
                let label = sparse ? Int(pt[r]) : argmax(pt + r * classes, classes)
                guard label >= 0 && label < classes else { continue }
                if !topK {
                    if argmax(pp + r * classes, classes) == label { correct += 1 }
                    continue
                }
                // Among the k highest when fewer than k scores beat it (ties count as
                // in, as TensorFlow's in_top_k has it).
                let score = pp[r * classes + label]
                var higher = 0
                for j in 0..<classes where pp[r * classes + j] > score { higher += 1 }
                if higher < Metric.topK { correct += 1 }
            }
            // Per sample: rows per sample for sequence outputs.
            let rowsPerSample = Swift.max(rows / samples, 1)
            return Double(correct) / Double(rowsPerSample)
        case .binaryAccuracy:
            var correct = 0
            for i in 0..<p.count where (pp[i] > 0.5) == (pt[i] > 0.5) { correct += 1 }
            return Double(correct) / Double(Swift.max(p.count / samples, 1))
        case .mse, .mae:
            var total: Double = 0
            for i in 0..<Swift.min(p.count, t.count) {
                let e = Double(pp[i] - pt[i])
                total += kind == .mse ? e * e : Swift.abs(e)
            }
            return total / Double(Swift.max(p.count / samples, 1))
        case .precision, .recall, .auc, .rootMeanSquaredError:
            return value(kind, statistics: statistics(kind, prediction: p, target: t)) * Double(samples)
        }
    }

    /// One batch's additive statistics of a streaming metric.
    /// - precision: [true positives, predicted positives]; recall: [true positives,
    ///   actual positives] (a prediction is positive above 0.5, every element counts);
    /// - auc: [positives, negatives, true positives per threshold…, false positives per
    ///   threshold…];
    /// - root_mean_squared_error: [Σ squared error, elements];
    /// - a mean metric: [its sum over the batch, samples].
    /// Class-index targets are read as one-hot rows of the prediction's classes.
    public static func statistics(_ kind: MetricKind, prediction p: Tensor, target t: Tensor) -> [Double] {
        let pp = p.storage.pointer, pt = t.storage.pointer
        let classes = p.shape.last ?? 1
        let sparse = p.count != t.count && LossSpec.holdsClassIndices(prediction: Array(p.shape.dropFirst()), target: Array(t.shape.dropFirst()))
        func truth(_ i: Int) -> Bool { sparse ? Int(pt[i / classes]) == i % classes : pt[i] > 0.5 }
        let n = sparse ? p.count : Swift.min(p.count, t.count)
        switch kind {
        case .precision, .recall:
            var truePositive = 0.0, counted = 0.0
            for i in 0..<n {
                let predicted = pp[i] > 0.5, actual = truth(i)
                if predicted && actual { truePositive += 1 }
                if kind == .precision ? predicted : actual { counted += 1 }
            }
            return [truePositive, counted]
        case .auc:
            let m = aucThresholds.count
            var stats = [Double](repeating: 0, count: 2 + 2 * m)
            for i in 0..<n {
                // How many thresholds lie below the score: it counts as positive at those.
                var lo = 0, hi = m
                while lo < hi { let mid = (lo + hi) / 2; if aucThresholds[mid] < pp[i] { lo = mid + 1 } else { hi = mid } }
                let actual = truth(i)
                stats[actual ? 0 : 1] += 1
                if lo > 0 { stats[(actual ? 2 : 2 + m) + lo - 1] += 1 }
            }
            // Histogram → counts above each threshold (a score above threshold k is above every lower one).
            for base in [2, 2 + m] {
                for k in stride(from: m - 2, through: 0, by: -1) { stats[base + k] += stats[base + k + 1] }
            }
            return stats
        case .rootMeanSquaredError:
            var total = 0.0
            for i in 0..<Swift.min(p.count, t.count) { let e = Double(pp[i] - pt[i]); total += e * e }
            return [total, Double(Swift.min(p.count, t.count))]
        case .accuracy, .binaryAccuracy, .categoricalAccuracy, .sparseCategoricalAccuracy, .topKCategoricalAccuracy,
             .sparseTopKCategoricalAccuracy, .mse, .mae:
            return [sum(kind, prediction: p, target: t), Double(Swift.max(p.shape.first ?? 1, 1))]
        }
    }

    /// The metric from statistics summed over batches.
    public static func value(_ kind: MetricKind, statistics s: [Double]) -> Double {
        func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? a / b : 0 }
        switch kind {
        case .precision, .recall: return ratio(s[0], s[1])
        case .rootMeanSquaredError: return ratio(s[0], s[1]).squareRoot()
        case .accuracy, .binaryAccuracy, .categoricalAccuracy, .sparseCategoricalAccuracy, .topKCategoricalAccuracy,
             .sparseTopKCategoricalAccuracy, .mse, .mae: return ratio(s[0], s[1])
        case .auc:
            // Keras's ROC curve summed by interpolation (trapezoids).
            let m = aucThresholds.count, positives = s[0], negatives = s[1]
            let tpr = (0..<m).map { ratio(s[2 + $0], positives) }, fpr = (0..<m).map { ratio(s[2 + m + $0], negatives) }
            var area = 0.0
            for k in 0..<(m - 1) { area += (fpr[k] - fpr[k + 1]) * (tpr[k] + tpr[k + 1]) / 2 }
            return area
        }
    }

    @inline(__always)
    static func argmax(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for i in 1..<Swift.max(n, 1) where p[i] > p[best] { best = i }
        return best
    }
}
