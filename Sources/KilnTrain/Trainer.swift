import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor

/// One finished epoch, with Keras History keys in `values` (`loss`, `accuracy`,
/// `val_loss`, …).
public struct EpochMetrics: Sendable {
    public var epoch: Int
    public var values: [String: Double]
    public var seconds: Double
    public var samplesPerSecond: Double
    public var learningRate: Double
    public var gradNorms: [String: Double]

    public var json: JSON {
        var members: [(String, JSON)] = [("epoch", JSON(epoch))]
        for k in values.keys.sorted() { members.append((k, .number(values[k]!.isFinite ? values[k]! : -1))) }
        members += [
            ("seconds", .number((seconds * 1000).rounded() / 1000)),
            ("samples_per_second", .number(samplesPerSecond.rounded())),
            ("learning_rate", .number(learningRate)),
            ("grad_norms", .object(gradNorms.keys.sorted().map { ($0, .number(gradNorms[$0]!)) })),
        ]
        return .object(members)
    }
}

public enum TrainError: Error, CustomStringConvertible {
    case cancelled
    case nonFinite(epoch: Int, step: Int, loss: Double)
    case model(String)
    case data(DatasetError)

    public var description: String {
        switch self {
        case .cancelled: return "cancelled"
        case let .nonFinite(e, s, l): return "the loss became \(l) at epoch \(e), step \(s); the last good checkpoint is kept"
        case let .model(m): return m
        case let .data(d): return d.description
        }
    }
}

/// Runs `fit` the way Keras does: per epoch, shuffled batches, forward, the summed
/// objective, backward, one optimizer step; then validation and the epoch's metrics.
public final class Trainer {
    public let spec: JobSpec
    public let model: CompiledModel
    public let data: TrainingData
    public let optimizer: Optimizer
    /// The factor each scaled data field is multiplied by when batches are built
    /// (`TrainingData.scales`: uint8 inputs ÷255 unless the spec says otherwise).
    public let fieldScales: [String: Float]
    /// Called after each step with (epoch, step, steps per epoch).
    public var onStep: (Int, Int, Int) -> Void = { _, _, _ in }
    /// The mean loss of the current epoch's steps so far (for progress displays).
    public private(set) var runningLoss: Double?
    /// Checked between steps; returning true stops training with `.cancelled`.
    public var shouldStop: () -> Bool = { false }
    /// Trouble explained in words, each said once (constant inputs, vanishing or
    /// exploding gradients, …).
    public private(set) var warnings: [String] = []
    private var warnedKeys = Set<String>()
    /// Set when early stopping ended training before `epochs`.
    public private(set) var stoppedEarly: (epoch: Int, bestEpoch: Int)?
    var modWarned: Set<String> = []
    /// Statistics of the streaming metrics (precision, recall, AUC, …) since the start
    /// of the epoch or of the validation pass, by History key.
    var metricTotals: [String: (metric: MetricKind, statistics: [Double])] = [:]

    public init(spec: JobSpec, model: CompiledModel, data: TrainingData) {
        self.spec = spec
        self.model = model
        self.data = data
        optimizer = Optimizer(spec.train.optimizer)
        fieldScales = TrainingData.scales(spec, fields: data.train.fields)
    }

    var lossNodes: [String] { Array(Set(spec.train.losses.map(\.node))).sorted() }
    /// Nodes with an activity regularizer; computed with the loss nodes in training.
    var regularizedNodes: [String] { model.graph.nodes.filter { $0.activityRegularizer != nil }.map(\.name) }

    /// Metric names reported per loss: plain names for a single loss, else prefixed.
    func metricKeys() -> [(loss: LossSpec, metric: MetricKind, key: String)] {
        var keys: [(LossSpec, MetricKind, String)] = []
        let targeted = spec.train.losses.filter { $0.kind != nil }
        for loss in targeted {
            for m in spec.train.metrics {
                let resolved = Metric.resolve(m, loss: loss.kind)
                keys.append((loss, resolved, targeted.count == 1 ? m.rawValue : "\(loss.node)_\(m.rawValue)"))
            }
        }
        return keys
    }

    public var stepsPerEpoch: Int {
        let rows = data.train.rowCount
        if rows == 0 { return spec.data.stepsPerEpoch ?? 1 }
        return (rows + spec.train.batchSize - 1) / spec.train.batchSize
    }

    /// Trains for `epochs` starting after `startEpoch` finished epochs; `onEpoch` sees
    /// each finished epoch (to record metrics and write a checkpoint).
    public func fit(startEpoch: Int = 0, onEpoch: (EpochMetrics) throws -> Void) throws {
        let train = spec.train
        do {
            try model.bindData { [data] name in data.train.fields[name].map { ($0.rowShape, $0.values) } }
        } catch {
            throw TrainError.model(error.description)
        }
        scaleBoundConstants()
        inspectInputs()
        var best: (value: Double, epoch: Int, weights: [String: Tensor])?
        for epoch in (startEpoch + 1)...max(train.epochs, startEpoch + 1) where epoch <= train.epochs {
            let started = Date()
            var generator = SeededGenerator(seed: train.seed &* 0x9E37_79B9 &+ UInt64(epoch))
            var order = Array(0..<data.train.rowCount)
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
            }
            var sums: [String: Double] = [:]
            var normSums: [String: Double] = [:]
            var samples = 0
            metricTotals = [:]
            let steps = stepsPerEpoch
            for step in 0..<steps {
                if shouldStop() { throw TrainError.cancelled }
                if let schedule = train.optimizer.schedule {
                    optimizer.learningRate = schedule.rate(base: train.optimizer.learningRate, epoch: Double(epoch - 1) + Double(step) / Double(steps))
                }
                let indices = order.isEmpty ? [][...] : order[(step * train.batchSize)..<min(order.count, (step + 1) * train.batchSize)]
                let batchSize = max(indices.count, 1)
                let parts = try gradients(indices, seed: train.seed &+ UInt64(epoch * 1_000_003 + step), epoch: epoch, step: step)
                let weights = model.trainableWeights
                for (w, norm) in zip(weights, optimizer.step(weights)) { normSums[w.name, default: 0] += norm }
                for (k, v) in parts { sums[k, default: 0] += v * Double(batchSize) }
                samples += batchSize
                runningLoss = sums["loss"].map { $0 / Double(samples) }
                onStep(epoch, step + 1, steps)
            }
            var values = sums.mapValues { $0 / Double(max(samples, 1)) }
            for (k, total) in metricTotals { values[k] = Metric.value(total.metric, statistics: total.statistics) }
            for (k, v) in inspectModWraps() { values[k] = v }
            if let validation = data.validation {
                for (k, v) in try validate(validation) { values["val_\(k)"] = v }
            }
            let seconds = Date().timeIntervalSince(started)
            let metrics = EpochMetrics(
                epoch: epoch, values: values, seconds: seconds,
                samplesPerSecond: Double(data.train.rowCount == 0 ? steps : samples) / max(seconds, 1e-9),
                learningRate: Double(optimizer.learningRate),
                gradNorms: normSums.mapValues { $0 / Double(steps) })
            inspectGradients(metrics.gradNorms, loss: values["loss"] ?? .infinity, epoch: epoch)
            try onEpoch(metrics)
            if let rule = train.earlyStopping, let value = values[rule.monitor] {
                let improved = best.map { rule.maximize ? value > $0.value + rule.minDelta : value < $0.value - rule.minDelta } ?? true
                if improved {
                    best = (value, epoch, rule.restoreBestWeights ? model.weights.mapValues { $0.value } : [:])
                } else if let b = best, epoch - b.epoch > rule.patience - 1 {
                    for (name, t) in b.weights { _ = model.load(name, t) }
                    stoppedEarly = (epoch, b.epoch)
                    warn("early stopping after epoch \(epoch): \(rule.monitor) has not improved since epoch \(b.epoch)")
                    return
                }
            }
        }
    }

    /// Forward and backward over one training batch: leaves each weight's gradient in
    /// `grad` and returns the batch's reported values. The graph is released on
    /// return, so the optimizer then updates weights no graph node still shares.
    func gradients(_ indices: ArraySlice<Int>, seed: UInt64, epoch: Int, step: Int) throws -> [String: Double] {
        let (objective, parts) = try evaluate(indices, in: data.train, training: true, seed: seed)
        let loss = Double(objective.value.scalar)
        guard loss.isFinite else { throw TrainError.nonFinite(epoch: epoch, step: step + 1, loss: loss) }
        objective.backward()
        return parts
    }

    func warn(_ message: String) {
        if !warnings.contains(message) { warnings.append(message) }
    }

    /// `from_data` constants hold rows of the data as stored; a scaled field's rows are
    /// scaled as its batches are, so the constant and the inputs it meets agree.
    func scaleBoundConstants() {
        for node in model.graph.nodes {
            guard let constant = node.layer as? Constant, let source = constant.source,
                  let scale = fieldScales[source.field], scale != 1,
                  case let key = CheckpointKey.make(node: node.name, parameter: "value"),
                  let bound = model.weights[key] else { continue }
            _ = model.load(key, Tensor(shape: bound.value.shape, values: bound.value.scalars.map { $0 * scale }))
        }
    }

    /// Values far outside this range saturate activations and make gradients explode.
    static let usualInputRange: ClosedRange<Float> = -10...10

    /// Inputs that are all zero or constant carry no information; the usual cause is
    /// integer division when scaling (`x //= 255`). Inputs far outside [-10, 10] (as
    /// the model sees them, after `data.scale`) train badly; the usual cause is
    /// unscaled pixels.
    func inspectInputs() {
        for name in model.graph.inputNames {
            guard let field = data.train.fields[name], !field.values.isEmpty else { continue }
            let scale = fieldScales[name] ?? 1
            var lo = Float.infinity, hi = -Float.infinity
            for v in field.values { lo = Swift.min(lo, v); hi = Swift.max(hi, v) }
            lo *= scale
            hi *= scale
            if lo == 0 && hi == 0 {
                warn("input '\(name)' is all zeros, so the model cannot learn from it; if the data was scaled with integer division (x //= 255), use x / 255.0")
            } else if lo == hi {
                warn("input '\(name)' is constant (every value is \(lo)), so the model cannot learn from it")
            } else if lo < Trainer.usualInputRange.lowerBound || hi > Trainer.usualInputRange.upperBound {
                let hint = lo >= 0 && hi <= 255
                    ? "for pixels 0–255 sent as numbers, set \"data\": {\"scale\": {\"\(name)\": 255}} (then send /predict inputs divided by 255 too)"
                    : "standardise it (subtract the mean, divide by the standard deviation) or set \"data\": {\"scale\": {\"\(name)\": <divisor>}}"
                warn("input '\(name)' ranges over [\(lo), \(hi)], far outside [-10, 10]: large inputs saturate activations and make gradients explode; \(hint)")
            }
        }
    }

    /// How a `mod` applied to weights behaves, per expression node with such a term.
    public struct ModWrapStats: Equatable, Sendable {
        /// Values outside [0, m): the mod changes them.
        public var wrapped: Double
        /// Values whose sign differs from m's: mod gives them m's sign (for m > 0, the
        /// negative values come out in [0, m)), so they lost their sign.
        public var signLost: Double
        /// Values within 1% of m of a multiple of m, where a small step jumps by m.
        public var nearWrap: Double
        public var count: Int
    }

    static func modWrapStats(value: Tensor, modulus: Tensor) -> ModWrapStats? {
        let x = value.scalars, ms = modulus.scalars
        guard !x.isEmpty, ms.count == 1 || ms.count == x.count else { return nil }
        var wrapped = 0, signLost = 0, near = 0
        for (i, v) in x.enumerated() {
            let m = ms.count == 1 ? ms[0] : ms[i]
            guard m != 0 else { continue }
            let q = v / m
            if q < 0 || q >= 1 { wrapped += 1 }
            if (v < 0 && m > 0) || (v > 0 && m < 0) { signLost += 1 }
            if Swift.abs(q - q.rounded()) < 0.01 { near += 1 }
        }
        let n = Double(x.count)
        return ModWrapStats(wrapped: Double(wrapped) / n, signLost: Double(signLost) / n, nearWrap: Double(near) / n, count: x.count)
    }

    /// For each expression that applies `mod` to weights (its params, or weight nodes
    /// it reads): the share of values that wrap, lost their sign, or sit near a wrap
    /// point, reported as `<node>_mod_wrapped`, `<node>_mod_sign_lost` and
    /// `<node>_mod_near_wrap`, with a warning the first time many values wrap.
    public func inspectModWraps() -> [String: Double] {
        var out: [String: Double] = [:]
        let graph = model.graph
        for node in graph.nodes {
            guard let expression = node.layer as? KilnGraph.Expression else { continue }
            var scope: [String: Variable] = [:]
            for p in expression.params { scope[p.name] = model.weights[CheckpointKey.make(node: node.name, parameter: p.name)] }
            for (alias, input) in zip(expression.aliases, node.inputs) where graph.node(input)?.shape.batched == false {
                if let v = try? model.run([:], targets: [input], training: false)[input] { scope[alias] = v }
            }
            var total = ModWrapStats(wrapped: 0, signLost: 0, nearWrap: 0, count: 0)
            var modulusText = ""
            for (value, modulus) in expression.modOperands(scope) {
                if modulus.scalars.count == 1 { modulusText = String(format: ", m = %.4g", modulus.scalars[0]) }
                guard let s = Trainer.modWrapStats(value: value, modulus: modulus) else { continue }
                let n = Double(total.count + s.count)
                total.wrapped = (total.wrapped * Double(total.count) + s.wrapped * Double(s.count)) / n
                total.signLost = (total.signLost * Double(total.count) + s.signLost * Double(s.count)) / n
                total.nearWrap = (total.nearWrap * Double(total.count) + s.nearWrap * Double(s.count)) / n
                total.count += s.count
            }
            guard total.count > 0 else { continue }
            out["\(node.name)_mod_wrapped"] = total.wrapped
            out["\(node.name)_mod_sign_lost"] = total.signLost
            out["\(node.name)_mod_near_wrap"] = total.nearWrap
            if total.wrapped > 0.01, !modWarned.contains(node.name) {
                modWarned.insert(node.name)
                func pct(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
                warn("mod in \(node.name) wraps \(pct(total.wrapped)) of its \(total.count) weight values (they lie outside [0, m)\(modulusText)); "
                     + "\(pct(total.signLost)) lost their sign: every effective weight takes the sign of m, so the layer cannot mix positive and negative weights; "
                     + "\(pct(total.nearWrap)) lie within 1% of a wrap point, where a small step jumps the effective weight by m. "
                     + "The gradient passes through mod as if it were the identity, so it cannot see these jumps")
            }
        }
        return out
    }

    /// Gradients that vanish or explode, named per weight.
    /// Gradients that vanish or explode, named per weight, said once per weight and
    /// epoch of first notice. A vanishing gradient is not trouble when the loss itself
    /// has reached zero (the model fits exactly, as W2 does).
    func inspectGradients(_ norms: [String: Double], loss: Double, epoch: Int) {
        for (name, norm) in norms.sorted(by: { $0.key < $1.key }) {
            if norm < 1e-8 && loss > 1e-6 {
                warnOnce("vanishes:\(name)", "the gradient of \(name) vanishes from epoch \(epoch) (mean norm \(String(format: "%.1e", norm))): the weight is not learning")
            } else if norm > 1e4 {
                warnOnce("explodes:\(name)", "the gradient of \(name) explodes from epoch \(epoch) (mean norm \(String(format: "%.1e", norm))): lower the learning rate or set clipnorm")
            }
        }
    }

    /// Warns once per key, however often the condition recurs.
    func warnOnce(_ key: String, _ message: String) {
        guard warnedKeys.insert(key).inserted else { return }
        warn(message)
    }

    /// Loss and metrics over a whole dataset, in inference mode.
    public func validate(_ set: Dataset) throws -> [String: Double] {
        var sums: [String: Double] = [:]
        var start = 0
        let size = max(spec.train.batchSize, 256)
        let trainingTotals = metricTotals
        metricTotals = [:]
        defer { metricTotals = trainingTotals }
        while start < set.rowCount {
            let indices = Array(start..<min(set.rowCount, start + size))[...]
            let (_, parts) = try evaluate(indices, in: set, training: false, seed: 0)
            for (k, v) in parts { sums[k, default: 0] += v * Double(indices.count) }
            start += size
        }
        var values = sums.mapValues { $0 / Double(max(set.rowCount, 1)) }
        for (k, total) in metricTotals { values[k] = Metric.value(total.metric, statistics: total.statistics) }
        return values
    }

    /// Forward pass over some rows: the objective (Σ weight·loss + node losses +
    /// regularisation) and the per-batch mean of each reported value.
    func evaluate(_ indices: ArraySlice<Int>, in set: Dataset, training: Bool, seed: UInt64) throws -> (Variable, [String: Double]) {
        var feeds: [String: Tensor] = [:]
        for name in model.graph.inputNames {
            if let field = set.fields[name] { feeds[name] = field.batch(indices, scale: fieldScales[name] ?? 1) }
        }
        let values: [String: Variable]
        do {
            values = try model.run(feeds, targets: lossNodes + (training ? regularizedNodes : []), training: training, seed: seed)
        } catch { throw TrainError.model(error.description) }
        var objective: Variable?
        var parts: [String: Double] = [:]
        let targeted = spec.train.losses.filter { $0.kind != nil }
        do {
            for loss in spec.train.losses {
                let node = values[loss.node]!
                let term: Variable
                var lossTarget: Tensor?
                if let kind = loss.kind {
                    let target = try targetTensor(loss, set: set, indices: indices)
                    lossTarget = target
                    term = try Loss.compute(kind, prediction: node, target: target)
                    parts[targeted.count == 1 ? "loss" : "\(loss.node)_loss"] = Double(term.value.scalar)
                } else {
                    term = try node.mean()
                    parts["\(loss.node)_loss"] = Double(term.value.scalar)
                }
                let weighted = loss.weight == 1 ? term : term.affine(scale: loss.weight)
                objective = try objective.map { try $0.add(weighted) } ?? weighted
                if let target = lossTarget {
                    for (l, metric, key) in metricKeys() where l.path == loss.path {
                        if metric.isStreaming {
                            let batch = Metric.statistics(metric, prediction: node.value, target: target)
                            let total = metricTotals[key]?.statistics ?? [Double](repeating: 0, count: batch.count)
                            metricTotals[key] = (metric, zip(total, batch).map { $0 + $1 })
                        } else {
                            parts[key] = Metric.sum(metric, prediction: node.value, target: target) / Double(max(node.shape.first ?? 1, 1))
                        }
                    }
                }
            }
            for node in model.graph.nodes {
                if training, let r = node.activityRegularizer, let out = values[node.name], let penalty = try r.penalty(out) {
                    // As in Keras: the sum over the batch divided by the batch size.
                    let perSample = penalty.affine(scale: 1 / Float(max(out.shape.first ?? 1, 1)))
                    objective = try objective.map { try $0.add(perSample) } ?? perSample
                }
                for p in node.parameters {
                    if let r = p.regularizer, let penalty = try r.penalty(model.weights[CheckpointKey.make(node: node.name, parameter: p.name)]!) {
                        objective = try objective.map { try $0.add(penalty) } ?? penalty
                    }
                }
            }
        } catch let e as TensorError {
            throw TrainError.model(e.description)
        }
        guard let objective else { throw TrainError.model("the job has no loss to train") }
        parts["loss"] = Double(objective.value.scalar)
        return (objective, parts)
    }

    func targetTensor(_ loss: LossSpec, set: Dataset, indices: ArraySlice<Int>) throws -> Tensor {
        switch loss.target! {
        case .field(let name):
            guard let field = set.fields[name] else { throw TrainError.data(DatasetError(field: name, message: "no field '\(name)' in the data")) }
            return field.batch(indices, scale: fieldScales[name] ?? 1)
        case let .value(shape, values):
            return Tensor(shape: shape, values: values)
        }
    }
}
