import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
@testable import KilnTrain
import XCTest

/// The losses and metrics added for Keras's names: values against Keras's formulas
/// computed here in Double, gradients against finite differences, and the streaming
/// metrics (precision, recall, AUC, RMSE) over whole epochs.
final class KerasLossMetricTests: XCTestCase {
    let p: [Float] = [0.7, 0.2, 0.1, 0.25, 0.5, 0.25]
    let t: [Float] = [1, 0, 0, 0, 0.6, 0.4]

    func loss(_ kind: LossSpec.Kind, _ p: [Float], _ t: [Float], shape: [Int] = [2, 3]) throws -> Double {
        Double(try Loss.compute(kind, prediction: Variable(Tensor(shape: shape, values: p)), target: Tensor(shape: shape, values: t)).value.scalar)
    }

    /// Keras's definitions, in Double: a per-row mean (or sum) over the last axis, then
    /// the mean over rows.
    func reference(_ kind: LossSpec.Kind, _ p: [Float], _ t: [Float], columns: Int) -> Double {
        let eps = 1e-7
        var rows: [Double] = []
        for r in 0..<(p.count / columns) {
            let ps = (0..<columns).map { Double(p[r * columns + $0]) }, ts = (0..<columns).map { Double(t[r * columns + $0]) }
            func mean(_ f: (Double, Double) -> Double) -> Double { zip(ps, ts).map(f).reduce(0, +) / Double(columns) }
            switch kind {
            case .mape: rows.append(100 * mean { p, t in abs(t - p) / max(abs(t), eps) })
            case .msle: rows.append(mean { p, t in pow(log(max(p, eps) + 1) - log(max(t, eps) + 1), 2) })
            case .poisson: rows.append(mean { p, t in p - t * log(p + eps) })
            case .logCosh: rows.append(mean { p, t in log(cosh(p - t)) })
            case .klDivergence:
                rows.append(zip(ps, ts).map { p, t in let tc = min(max(t, eps), 1), pc = min(max(p, eps), 1); return tc * log(tc / pc) }.reduce(0, +))
            case .hinge, .squaredHinge:
                let binary = t.allSatisfy { $0 == 0 || $0 == 1 }
                rows.append(mean { p, t in let m = max(1 - (binary ? 2 * t - 1 : t) * p, 0); return kind == .hinge ? m : m * m })
            case .categoricalHinge:
                let pos = zip(ps, ts).map { $0 * $1 }.reduce(0, +), neg = zip(ps, ts).map { (1 - $1) * $0 }.max()!
                rows.append(max(neg - pos + 1, 0))
            default: XCTFail("no reference for \(kind)")
            }
        }
        return rows.reduce(0, +) / Double(rows.count)
    }

    static let newLosses: [LossSpec.Kind] = [.mape, .msle, .poisson, .logCosh, .klDivergence, .hinge, .squaredHinge, .categoricalHinge]

    func testLossesMatchKerasFormulas() throws {
        for kind in Self.newLosses {
            XCTAssertEqual(try loss(kind, p, t), reference(kind, p, t, columns: 3), accuracy: 1e-5 * max(1, abs(reference(kind, p, t, columns: 3))), "\(kind)")
        }
        // Hinge reads 0/1 targets as −1/1.
        let binary: [Float] = [1, 0, 0, 0, 1, 1]
        XCTAssertEqual(try loss(.hinge, p, binary), reference(.hinge, p, binary, columns: 3), accuracy: 1e-6)
        // KL of a distribution with itself is 0; log_cosh of equal values is 0.
        XCTAssertEqual(try loss(.klDivergence, p, p), 0, accuracy: 1e-6)
        XCTAssertEqual(try loss(.logCosh, p, p), 0, accuracy: 1e-6)
        // Large errors stay finite (log cosh of 100).
        XCTAssertEqual(try loss(.logCosh, [100], [0], shape: [1, 1]), 100 - log(2.0), accuracy: 1e-3)
    }

    func testLossGradientsMatchFiniteDifferences() throws {
        let base = Tensor(shape: [2, 3], values: p)
        // No zero targets: MAPE divides by max(|t|, 1e-7), which no float difference resolves.
        let target = Tensor(shape: [2, 3], values: [0.9, 0.15, 0.05, 0.1, 0.6, 0.3])
        for kind in Self.newLosses {
            let v = Variable(base, requiresGrad: true)
            try Loss.compute(kind, prediction: v, target: target).backward()
            for i in 0..<base.count {
                var plus = base, minus = base
                plus[flat: i] += 1e-3
                minus[flat: i] -= 1e-3
                let numeric = (try Loss.compute(kind, prediction: Variable(plus), target: target).value.scalar
                    - Loss.compute(kind, prediction: Variable(minus), target: target).value.scalar) / 2e-3
                XCTAssertEqual(v.grad![flat: i], numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(kind) element \(i)")
            }
        }
    }

    func testLossShapesMustAgree() {
        XCTAssertThrowsError(try Loss.compute(.klDivergence, prediction: Variable(Tensor(shape: [1, 2], values: [0.5, 0.5])), target: Tensor(shape: [1], values: [1])))
    }

    // MARK: Metrics

    func testCategoricalAndTopKAccuracy() {
        let scores = Tensor(shape: [3, 4], values: [0.1, 0.6, 0.2, 0.1,  0.4, 0.3, 0.2, 0.1,  0.1, 0.2, 0.3, 0.4])
        let labels = Tensor(shape: [3], values: [1, 2, 0])
        XCTAssertEqual(Metric.sum(MetricKind(rawValue: "sparse_categorical_accuracy")!, prediction: scores, target: labels), 1)
        XCTAssertEqual(Metric.sum(MetricKind(rawValue: "categorical_accuracy")!, prediction: scores,
                                  target: Tensor(shape: [3, 4], values: [0, 1, 0, 0,  0, 0, 1, 0,  1, 0, 0, 0])), 1)
        // Top 5 of 4 classes: always right. The label ranks 1st, 3rd and 4th.
        XCTAssertEqual(Metric.sum(MetricKind(rawValue: "sparse_top_k_categorical_accuracy")!, prediction: scores, target: labels), 3)
        // Six classes: the 6th-ranked label is out of the top 5.
        let six = Tensor(shape: [2, 6], values: [0.5, 0.2, 0.1, 0.1, 0.05, 0.05,  0.3, 0.25, 0.2, 0.15, 0.1, 0.0])
        XCTAssertEqual(Metric.sum(MetricKind(rawValue: "sparse_top_k_categorical_accuracy")!, prediction: six, target: Tensor(shape: [2], values: [5, 5])), 1,
                       "a tie at the boundary counts as in (row 0); the lowest of six is out (row 1)")
        // Plain accuracy is the argmax: equal scores pick the first class, not every tied one.
        let flat = Tensor(shape: [2, 3], values: [1, 1, 1, 1, 1, 1])
        XCTAssertEqual(Metric.sum(MetricKind(rawValue: "accuracy")!, prediction: flat, target: Tensor(shape: [2], values: [0, 2])), 1)
    }

    func stats(_ name: String, _ p: [Float], _ t: [Float]) -> [Double] {
        Metric.statistics(MetricKind(rawValue: name)!, prediction: Tensor(shape: [p.count, 1], values: p), target: Tensor(shape: [t.count, 1], values: t))
    }

    func testPrecisionRecallAndRMSEAccumulateOverBatches() {
        // Batch 1: TP 1, FP 1, FN 1; batch 2: TP 1, FP 0, FN 1.
        let a = stats("precision", [0.9, 0.8, 0.1], [1, 0, 1]), b = stats("precision", [0.7, 0.2], [1, 1])
        XCTAssertEqual(Metric.value(MetricKind(rawValue: "precision")!, statistics: zip(a, b).map(+)), 2.0 / 3.0, accuracy: 1e-12)
        let c = stats("recall", [0.9, 0.8, 0.1], [1, 0, 1]), d = stats("recall", [0.7, 0.2], [1, 1])
        XCTAssertEqual(Metric.value(MetricKind(rawValue: "recall")!, statistics: zip(c, d).map(+)), 2.0 / 4.0, accuracy: 1e-12)
        // The mean of per-batch precisions (0.5 and 1) would be 0.75: the epoch's ratio is not.
        let e = stats("root_mean_squared_error", [1, 2], [0, 0]), f = stats("root_mean_squared_error", [3], [0])
        XCTAssertEqual(Metric.value(MetricKind(rawValue: "root_mean_squared_error")!, statistics: zip(e, f).map(+)), (14.0 / 3).squareRoot(), accuracy: 1e-9)
        // Class-index targets count as one-hot rows.
        let sparse = Metric.statistics(.recall, prediction: Tensor(shape: [2, 2], values: [0.9, 0.1, 0.8, 0.2]), target: Tensor(shape: [2], values: [0, 1]))
        XCTAssertEqual(sparse, [1, 2])
    }

    func testAUCAgainstTheExactAreaAndItsExtremes() {
        func auc(_ p: [Float], _ t: [Float]) -> Double { Metric.value(MetricKind(rawValue: "auc")!, statistics: stats("auc", p, t)) }
        XCTAssertEqual(auc([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]), 1, accuracy: 1e-9)
        XCTAssertEqual(auc([0.9, 0.6, 0.4, 0.1], [0, 0, 1, 1]), 0, accuracy: 1e-9)
        XCTAssertEqual(auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]), 0.5, accuracy: 1e-9)
        // Many scores: Keras's 200-threshold area is within a bucket of the exact
        // Mann–Whitney area.
        var g = SeededGenerator(seed: 5)
        var scores: [Float] = [], labels: [Float] = []
        for i in 0..<2000 {
            let y = Float(i % 2)
            scores.append(1 / (1 + Foundation.exp(-(2 * y - 1 + 1.5 * g.nextNormal()))))
            labels.append(y)
        }
        var wins = 0.0
        let pos = zip(scores, labels).filter { $0.1 == 1 }.map(\.0), neg = zip(scores, labels).filter { $0.1 == 0 }.map(\.0)
        for a in pos { for b in neg { wins += a > b ? 1 : a == b ? 0.5 : 0 } }
        let exact = wins / Double(pos.count * neg.count)
        // Split into batches: the sum of statistics is the whole set's.
        let first = stats("auc", Array(scores[..<700]), Array(labels[..<700])), rest = stats("auc", Array(scores[700...]), Array(labels[700...]))
        XCTAssertEqual(Metric.value(MetricKind(rawValue: "auc")!, statistics: zip(first, rest).map(+)), exact, accuracy: 5e-3)
        XCTAssertEqual(zip(first, rest).map(+), stats("auc", scores, labels))
    }

    /// Keras's JSON of a two-input, two-output functional model, with Keras's loss and
    /// metric names, trains through Kiln's trainer.
    func testKerasFunctionalModelTrainsWithKerasNames() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../KilnGraphTests/Fixtures/keras/two_inputs.json")
        let keras = try XCTUnwrap(JSON.parse(Array(try Data(contentsOf: fixture)))["keras"])
        var g = SeededGenerator(seed: 3)
        var a: [JSON] = [], b: [JSON] = [], score: [JSON] = [], kind: [JSON] = []
        for i in 0..<256 {
            let xa = (0..<16).map { _ in g.nextNormal() }, xb = (0..<16).map { _ in g.nextNormal() }
            a.append(JSON(xa)); b.append(JSON(xb))
            score.append(JSON([xa[0] - xb[1]]))
            kind.append(JSON(i % 4))
        }
        let json: JSON = [
            "model": ["keras": keras],
            "data": ["fields": ["a": .array(a), "b": .array(b), "score_target": .array(score), "kind": .array(kind)]],
            "train": [
                "epochs": 4, "batch_size": 32, "seed": 1, "optimizer": ["type": "adam", "learning_rate": 0.01],
                "losses": [["node": "score", "type": "MeanSquaredError", "target": "score_target"],
                           ["node": "aux", "type": "SparseCategoricalCrossentropy", "target": "kind"]],
                "metrics": ["mae"],
            ],
        ]
        let spec = try JobSpec(json: json)
        let data = try TrainingData.resolve(spec, catalog: nil)
        var history: [EpochMetrics] = []
        try Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: 1), data: data).fit { history.append($0) }
        let first = history.first!.values, last = history.last!.values
        XCTAssertLessThan(last["score_loss"]!, first["score_loss"]! * 0.8, "the score head learns a linear target")
        XCTAssertNotNil(last["score_mae"])
        XCTAssertNotNil(last["aux_loss"])
    }

    func testTrainerReportsStreamingMetricsPerEpochAndForValidation() throws {
        var g = SeededGenerator(seed: 11)
        var xs: [JSON] = [], ys: [JSON] = []
        for i in 0..<200 {
            let label = i % 2
            let c: Float = label == 0 ? -1 : 1
            xs.append(JSON([c + 0.7 * g.nextNormal(), c + 0.7 * g.nextNormal()]))
            ys.append(JSON([label]))
        }
        let json: JSON = [
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 1, "activation": "sigmoid", "name": "p"]]],
            "data": ["fields": ["x": .array(xs), "y": .array(ys)]],
            "train": [
                "epochs": 3, "batch_size": 16, "optimizer": ["type": "adam", "learning_rate": 0.05],
                "losses": [["node": "p", "type": "BinaryCrossentropy", "target": "y"]],
                "metrics": ["AUC", "Precision", "recall", "RootMeanSquaredError", "binary_accuracy"], "validation": ["fraction": 0.25],
            ],
        ]
        let spec = try JobSpec(json: json)
        let data = try TrainingData.resolve(spec, catalog: nil)
        var history: [EpochMetrics] = []
        try Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: 0), data: data).fit { history.append($0) }
        let last = try XCTUnwrap(history.last).values
        for key in ["auc", "precision", "recall", "root_mean_squared_error", "val_auc", "val_precision", "val_recall", "val_root_mean_squared_error"] {
            let v = try XCTUnwrap(last[key], key)
            XCTAssertTrue(v > 0 && v <= 1, "\(key) = \(v)")
        }
        // Blobs 2.8σ apart: the ranking is nearly perfect.
        XCTAssertGreaterThan(last["val_auc"]!, 0.9)
        XCTAssertGreaterThan(last["auc"]!, 0.9)
    }
}
