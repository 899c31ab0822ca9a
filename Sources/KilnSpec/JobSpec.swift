import Foundation
import KilnGraph
import KilnJSON

/// A whole job spec (DESIGN.md §1): the model graph, where its data comes from, and how
/// to train it. Decoding checks everything that can be checked without the data.
public struct JobSpec: Sendable {
    public var name: String
    public var model: ModelGraph
    public var data: DataSpec
    public var train: TrainSpec
    public var initFrom: String?
    /// The spec as sent, for storage and hashing.
    public var json: JSON
    /// What training would still need, when decoded for `.validation` (a model alone
    /// validates): each a problem `POST /jobs` would refuse.
    public var notes: [SpecError] = []

    /// What the spec is decoded for: a job needs everything; validation needs only the model.
    public enum Purpose: Sendable { case training, validation }

    /// - Parameters:
    ///   - schema: the data's fields when the caller knows them (uploaded datasets);
    ///     otherwise taken from the `data` section.
    ///   - purpose: with `.validation`, what only training needs becomes `notes`.
    public init(json: JSON, limits: ModelLimits = ModelLimits(), schema: DataSchema? = nil, purpose: Purpose = .training) throws(SpecError) {
        JobSpec.countDecode()
        var fields = try FieldReader(json, path: "")
        name = try fields.string("name") ?? "model"
        try ModelGraph.checkName(name, path: "name")
        let modelJSON = try fields.required("model")
        data = try DataSpec(json: fields.raw("data") ?? .object([("source", "none")]), path: "data")
        model = try ModelGraph(json: modelJSON, path: "model", limits: limits, schema: schema ?? data.schema)
        train = try TrainSpec(json: fields.raw("train") ?? .object([]), path: "train", model: model)
        initFrom = try fields.string("init_from")
        try fields.finish()
        self.json = json
        let used = Set(model.dependencies(of: model.outputs + train.losses.map(\.node)))
        for input in model.inputNames where !used.contains(input) {
            throw SpecError(.unusedInput, "input '\(input)' is not used by any output or loss; remove it or connect it", path: "model.inputs.\(input)", node: input)
        }
        try JobSpec.checkData(model: model, train: train, schema: schema ?? data.schema)
        var needs: [SpecError] = []
        if data.source == DataSpec.Source.none && !model.inputNames.isEmpty && data.fields == nil && data.dataset == nil {
            let path = json["data"] == nil ? "data" : "data.source"
            needs.append(SpecError(json["data"] == nil ? .missingField : .invalidField,
                                   "the model has inputs (\(model.inputNames.joined(separator: ", "))), so training needs data: a built-in \"source\", an uploaded \"dataset\" or inline \"fields\"", path: path))
        }
        if let missing = train.missingLoss(model) { needs.append(missing) }
        if purpose == .training, let first = needs.first { throw first }
        notes = needs
    }
}

extension JobSpec {
    /// How many times a spec has been decoded in this process: the service decodes a
    /// spec once per request and once per job start, and tests hold it to that.
    public static var decodeCount: Int { decodeLock.lock(); defer { decodeLock.unlock() }; return decodes }
    private static let decodeLock = NSLock()
    nonisolated(unsafe) private static var decodes = 0
    private static func countDecode() { decodeLock.lock(); decodes += 1; decodeLock.unlock() }

    /// The model summary with what each loss depends on.
    public var summary: JSON { model.summary(lossNodes: train.losses.map(\.node)) }

    /// `POST /validate`'s answer: the summary, and the notes when there are any.
    public var validation: JSON {
        var members: [(String, JSON)] = [("valid", true), ("summary", summary)]
        if !notes.isEmpty {
            members.append(("notes", .array(notes.map { .object([("path", .string($0.path)), ("code", .string($0.code.rawValue)), ("message", .string($0.message))]) })))
        }
        return .object(members)
    }

    /// When the data's fields are known before it loads, every model input must be a
    /// field with the input's row shape and every loss target field must exist.
    static func checkData(model: ModelGraph, train: TrainSpec, schema: DataSchema) throws(SpecError) {
        guard schema.known else { return }
        let available = schema.fields.keys.sorted()
        for name in model.inputNames {
            let dims = model.node(name)!.shape.dims
            guard let rowShape = schema.fields[name] else {
                throw SpecError(.invalidField, "the model input '\(name)' needs a data field of that name; the data has \(available.joined(separator: ", "))\(Suggest.hint(name, available))", path: "model.inputs.\(name)", node: name)
            }
            guard rowShape == dims else {
                throw SpecError(.shapeMismatch, "the model input '\(name)' has per-sample shape \(dims) but the data field '\(name)' has rows of shape \(rowShape)", path: "model.inputs.\(name)", node: name)
            }
        }
        for (i, loss) in train.losses.enumerated() {
            if case let .field(f)? = loss.target, schema.fields[f] == nil {
                throw SpecError(.invalidField, "the loss on '\(loss.node)' targets field '\(f)', which the data lacks; it has \(available.joined(separator: ", "))\(Suggest.hint(f, available))", path: "train.losses[\(i)].target")
            }
            // A built-in dataset's labels run over a known number of classes: a sparse
            // cross-entropy whose prediction has fewer would fail at its first batch.
            if case let .field(f)? = loss.target, let classes = schema.classes[f], let targetShape = schema.fields[f],
               let prediction = model.node(loss.node)?.shape.dims, let predicted = prediction.last,
               loss.readsClassIndices(prediction: prediction, target: targetShape), predicted < classes {
                throw SpecError(.shapeMismatch, "the loss on '\(loss.node)' reads '\(f)' as class indices 0..<\(classes), but '\(loss.node)' predicts \(predicted) classes; give it \(classes) units", path: "train.losses[\(i)]", node: loss.node)
            }
        }
    }
}

/// `data`: a built-in dataset, an uploaded one, inline fields, or none.
public struct DataSpec: Sendable {
    /// The fields known from the spec alone: built-in datasets and inline fields.
    public var schema: DataSchema {
        var base = baseSchema
        for rule in derive {
            if let shape = base.fields[rule.oneHotOf] { base.fields[rule.name] = (shape == [1] ? [] : shape) + [rule.classes] }
        }
        return base
    }

    var baseSchema: DataSchema {
        if let source, let s = DataSchema.builtIn(source.rawValue) { return s }
        if let members = fields?.objectMembers {
            var shapes: [String: [Int]] = [:]
            for (name, value) in members { shapes[name] = Array(NumberArray.probeShape(value).dropFirst()) }
            return DataSchema(fields: shapes, known: true)
        }
        return DataSchema()
    }

    public enum Source: String, Sendable { case mnist, cifar10, none }
    public var source: Source?
    public var dataset: String?
    public var fields: JSON?
    public var stepsPerEpoch: Int?
    public var take: (train: Int?, test: Int?)
    public var derive: [(name: String, oneHotOf: String, classes: Int)]
    public var scale: Scaling = .uint8

    /// How data fields are scaled when batches are built (for training, validation and
    /// data-bound constants); the stored data is never changed.
    public enum Scaling: Sendable, Equatable {
        /// `"scale": true`, the default: uint8 fields (images, mnist.npz) that feed a
        /// model input or a data-bound constant are divided by 255, to [0, 1].
        case uint8
        /// `"scale": false`: every field as stored.
        case none
        /// `"scale": {"features": 255}`: these fields, whatever their dtype, divided
        /// by these numbers, and no others (pixels that arrived as CSV numbers).
        case divide([String: Float])
    }

    public init(json: JSON, path: String) throws(SpecError) {
        var f = try FieldReader(json, path: path)
        source = try f.string("source", oneOf: ["mnist", "cifar10", "none"]).flatMap(Source.init(rawValue:))
        dataset = try f.string("dataset")
        fields = f.raw("fields")
        stepsPerEpoch = try f.positiveInt("steps_per_epoch")
        take = (nil, nil)
        if let t = f.raw("take") {
            var tf = try FieldReader(t, path: f.fieldPath("take"))
            take = (try tf.positiveInt("train"), try tf.positiveInt("test"))
            try tf.finish()
        }
        derive = []
        if let d = f.raw("derive") {
            guard let members = d.objectMembers else {
                throw SpecError(.invalidField, "expected an object of derived fields", path: f.fieldPath("derive"))
            }
            for (name, rule) in members {
                var rf = try FieldReader(rule, path: "\(f.fieldPath("derive")).\(name)")
                guard let of = try rf.string("one_hot") else { throw SpecError(.missingField, "is required", path: rf.fieldPath("one_hot")) }
                guard let classes = try rf.positiveInt("classes") else { throw SpecError(.missingField, "is required", path: rf.fieldPath("classes")) }
                try rf.finish()
                derive.append((name, of, classes))
            }
        }
        switch f.raw("scale") {
        case nil, .bool(true)?: scale = .uint8
        case .bool(false)?: scale = .none
        case .object(let members)?:
            var divisors: [String: Float] = [:]
            for (name, value) in members {
                guard case .number(let d) = value, d.isFinite, d > 0, Float(d).isNormal else {
                    throw SpecError(.invalidField, "expected a positive number to divide field '\(name)' by. Received: \(value.serialized())", path: "\(f.fieldPath("scale")).\(name)")
                }
                divisors[name] = Float(d)
            }
            scale = .divide(divisors)
        case let other?:
            throw SpecError(.invalidField, "expected true, false or an object of field: divisor (e.g. {\"features\": 255}). Received: \(other.serialized())", path: f.fieldPath("scale"))
        }
        try f.finish()
        let given = [source != nil, dataset != nil, fields != nil].filter { $0 }.count
        if given > 1 { throw SpecError(.invalidField, "give one of source, dataset or fields", path: path) }
        if given == 0 { source = Source.none }
        if source == Source.none && stepsPerEpoch == nil && fields == nil && dataset == nil { stepsPerEpoch = 1 }
    }
}

/// The metrics a job can report (Keras's names and History keys).
public enum MetricKind: String, CaseIterable, Sendable {
    case accuracy
    case binaryAccuracy = "binary_accuracy"
    case categoricalAccuracy = "categorical_accuracy"
    case sparseCategoricalAccuracy = "sparse_categorical_accuracy"
    case topKCategoricalAccuracy = "top_k_categorical_accuracy"
    case sparseTopKCategoricalAccuracy = "sparse_top_k_categorical_accuracy"
    case mse, mae
    case rootMeanSquaredError = "root_mean_squared_error"
    case auc, precision, recall

    /// Computed from statistics summed over the epoch (as Keras's stateful metrics),
    /// not as a mean of per-batch values.
    public var isStreaming: Bool {
        switch self {
        case .precision, .recall, .auc, .rootMeanSquaredError: return true
        case .accuracy, .binaryAccuracy, .categoricalAccuracy, .sparseCategoricalAccuracy,
             .topKCategoricalAccuracy, .sparseTopKCategoricalAccuracy, .mse, .mae: return false
        }
    }

    /// Larger is better (early stopping's `auto` mode).
    public var maximizes: Bool {
        switch self {
        case .accuracy, .binaryAccuracy, .categoricalAccuracy, .sparseCategoricalAccuracy, .topKCategoricalAccuracy,
             .sparseTopKCategoricalAccuracy, .auc, .precision, .recall: return true
        case .mse, .mae, .rootMeanSquaredError: return false
        }
    }
}

/// `train`: epochs, batches, optimizer, losses, metrics, validation.
public struct TrainSpec: Sendable {
    public var epochs: Int
    public var batchSize: Int
    public var seed: UInt64
    public var optimizer: OptimizerSpec
    public var losses: [LossSpec]
    public var metrics: [MetricKind]
    public var validation: Validation?
    public var earlyStopping: EarlyStopping?

    /// Stop when `monitor` has not improved by `minDelta` for `patience` epochs.
    public struct EarlyStopping: Sendable, Equatable {
        public var monitor: String
        public var patience: Int
        public var minDelta: Double
        /// Whether larger is better (accuracy) or smaller (losses), as Keras' `auto`.
        public var maximize: Bool
        public var restoreBestWeights: Bool
    }

    public enum Validation: Sendable, Equatable { case split(String), fraction(Double) }

    public static let metricNames = MetricKind.allCases.map(\.rawValue)

    public init(json: JSON, path: String, model: ModelGraph) throws(SpecError) {
        var f = try FieldReader(json, path: path)
        epochs = try f.positiveInt("epochs") ?? 1
        batchSize = try f.positiveInt("batch_size") ?? 32
        seed = UInt64(try f.int("seed", minimum: 0) ?? 0)
        optimizer = try OptimizerSpec(json: f.raw("optimizer") ?? .object([("type", "adam")]), path: f.fieldPath("optimizer"))
        losses = []
        if let l = f.raw("losses") {
            guard let items = l.arrayValue else { throw SpecError(.invalidField, "expected a list of losses", path: f.fieldPath("losses")) }
            for (i, item) in items.enumerated() {
                losses.append(try LossSpec(json: item, path: "\(f.fieldPath("losses"))[\(i)]", model: model))
            }
        }
        if epochs > 100_000 { throw SpecError(.invalidField, "at most 100000 epochs, got \(epochs)", path: f.fieldPath("epochs")) }
        if batchSize > 65_536 { throw SpecError(.invalidField, "at most 65536 per batch, got \(batchSize)", path: f.fieldPath("batch_size")) }
        metrics = []
        for (i, name) in (try f.stringList("metrics") ?? []).enumerated() {
            guard let kind = MetricKind(rawValue: KerasNames.metric(name) ?? name) else {
                throw SpecError(.invalidField, "unknown metric '\(name)'\(Suggest.hint(name, TrainSpec.metricNames))", path: "\(f.fieldPath("metrics"))[\(i)]")
            }
            metrics.append(kind)
        }
        if let v = f.raw("validation") {
            var vf = try FieldReader(v, path: f.fieldPath("validation"))
            if let split = try vf.string("split") {
                validation = .split(split)
            } else if let fraction = try vf.double("fraction") {
                guard fraction > 0 && fraction < 1 else {
                    throw SpecError(.invalidField, "must be between 0 and 1 (exclusive), got \(fraction)", path: vf.fieldPath("fraction"))
                }
                validation = .fraction(fraction)
            }
            try vf.finish()
        }
        if let e = f.raw("early_stopping") {
            var ef = try FieldReader(e, path: f.fieldPath("early_stopping"))
            let monitor = try ef.string("monitor") ?? (validation == nil ? "loss" : "val_loss")
            let mode = try ef.string("mode", oneOf: ["auto", "min", "max"], default: "auto")!
            let maximize = mode == "max" || (mode == "auto" && MetricKind.allCases.contains { $0.maximizes && monitor.hasSuffix($0.rawValue) })
            earlyStopping = EarlyStopping(
                monitor: monitor, patience: try ef.int("patience", minimum: 0) ?? 0,
                minDelta: try ef.double("min_delta", range: 0...1e9) ?? 0, maximize: maximize,
                restoreBestWeights: try ef.bool("restore_best_weights") ?? false)
            try ef.finish()
            if monitor.hasPrefix("val_") && validation == nil {
                throw SpecError(.invalidField, "monitors '\(monitor)' but train.validation is not set", path: ef.fieldPath("monitor"))
            }
        }
        if case let .cosine(epochs, alpha)? = optimizer.schedule, epochs == 0 {
            optimizer.schedule = .cosine(epochs: Double(self.epochs), alpha: alpha)
        }
        try f.finish()
        lossesPath = f.fieldPath("losses")
    }

    let lossesPath: String

    /// A model with trainable weights trains only against a loss.
    func missingLoss(_ model: ModelGraph) -> SpecError? {
        let hasTrainableWeights = model.nodes.contains { $0.parameters.contains(where: \.trainable) }
        guard losses.isEmpty && hasTrainableWeights else { return nil }
        return SpecError(.missingField, "the model has trainable weights but no loss; add e.g. {\"node\": \"\(model.outputs[0])\", \"type\": \"categorical_crossentropy\", \"target\": \"label\"}", path: lossesPath)
    }
}

/// One term of the objective: a loss between a node and a target, or a node loss.
public struct LossSpec: Sendable {
    /// Whether a target of per-sample shape `target` holds class indices for a
    /// prediction of per-sample shape `prediction` (rather than one-hot rows).
    public static func holdsClassIndices(prediction: [Int], target: [Int]) -> Bool {
        target.isEmpty || (target == [1] && prediction != [1]) || target == Array(prediction.dropLast())
    }

    /// Whether this loss reads its target as class indices: a sparse cross-entropy, or a
    /// categorical one given indices.
    public func readsClassIndices(prediction: [Int], target: [Int]) -> Bool {
        kind == .sparseCategoricalCrossentropy
            || (kind == .categoricalCrossentropy && LossSpec.holdsClassIndices(prediction: prediction, target: target))
    }

    public enum Kind: String, CaseIterable, Sendable {
        case categoricalCrossentropy = "categorical_crossentropy"
        case sparseCategoricalCrossentropy = "sparse_categorical_crossentropy"
        case binaryCrossentropy = "binary_crossentropy"
        case mse, mae, huber, cosine, mape, msle, poisson, hinge
        case logCosh = "log_cosh", klDivergence = "kl_divergence", squaredHinge = "squared_hinge", categoricalHinge = "categorical_hinge"
    }
    public enum Target: Sendable { case field(String), value(shape: [Int], values: [Float]) }

    public var node: String
    /// nil for a node loss: weight·mean(node).
    public var kind: Kind?
    public var target: Target?
    public var weight: Float
    public var path: String

    public init(json: JSON, path: String, model: ModelGraph) throws(SpecError) {
        var f = try FieldReader(json, path: path)
        guard let node = try f.string("node") else { throw SpecError(.missingField, "is required", path: f.fieldPath("node")) }
        guard model.node(node) != nil else {
            throw SpecError(.unknownNode, "unknown node '\(node)'\(Suggest.hint(node, model.nodes.map(\.name)))", path: f.fieldPath("node"))
        }
        self.node = node
        kind = try f.string("type").map { t throws(SpecError) in
            guard let k = Kind(rawValue: KerasNames.loss(t) ?? t) else {
                throw SpecError(.invalidField, "'\(t)' is not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))\(Suggest.hint(t, Kind.allCases.map(\.rawValue)))", path: f.fieldPath("type"))
            }
            return k
        }
        if let t = f.raw("target") {
            if let name = t.stringValue {
                target = .field(name)
            } else if let v = t["value"] {
                let (shape, values) = try nestedArray(v, path: "\(f.fieldPath("target")).value", node: nil)
                target = .value(shape: shape, values: values)
            } else {
                throw SpecError(.invalidField, "expected a data field name or {\"value\": [...]}", path: f.fieldPath("target"))
            }
        }
        weight = Float(try f.double("weight") ?? 1)
        self.path = path
        try f.finish()
        if kind != nil && target == nil {
            throw SpecError(.missingField, "a \(kind!.rawValue) loss needs a target (a data field name or {\"value\": ...})", path: f.fieldPath("target"))
        }
        if kind == nil && target != nil {
            throw SpecError(.missingField, "a loss with a target needs a type", path: f.fieldPath("type"))
        }
    }
}

/// `optimizer`: type and hyperparameters (Keras names and defaults).
public struct OptimizerSpec: Sendable {
    public enum Kind: String, CaseIterable, Sendable { case sgd, adam, adamw, rmsprop }
    public var kind: Kind
    public var learningRate: Float
    public var momentum: Float
    public var nesterov: Bool
    public var beta1: Float, beta2: Float, epsilon: Float
    public var weightDecay: Float
    public var rho: Float
    public var clipnorm: Float?
    public var schedule: Schedule?

    /// Learning-rate schedules, evaluated at a fractional epoch (epoch − 1 + step/steps).
    public enum Schedule: Sendable, Equatable {
        /// lr · factor^⌊epoch / every⌋
        case step(everyEpochs: Int, factor: Float)
        /// Cosine decay from lr to alpha·lr over `epochs`, then constant.
        case cosine(epochs: Double, alpha: Float)

        public func rate(base: Float, epoch: Double) -> Float {
            switch self {
            case let .step(every, factor):
                return base * Float(Foundation.pow(Double(factor), (epoch / Double(every)).rounded(.down)))
            case let .cosine(epochs, alpha):
                let t = Swift.min(epoch, epochs) / epochs
                let decayed = 0.5 * (1 + Foundation.cos(Double.pi * t))
                return base * Float((1 - Double(alpha)) * decayed + Double(alpha))
            }
        }
    }

    public init(json: JSON, path: String) throws(SpecError) {
        var f = try FieldReader(json, path: path)
        let type = try f.string("type", oneOf: Kind.allCases.map(\.rawValue), default: "adam")!
        kind = Kind(rawValue: type)!
        learningRate = Float(try f.double("learning_rate", range: 0...10) ?? (kind == .sgd ? 0.01 : 0.001))
        momentum = Float(try f.double("momentum", range: 0...1) ?? 0)
        nesterov = try f.bool("nesterov") ?? false
        beta1 = Float(try f.double("beta_1", range: 0...1) ?? 0.9)
        beta2 = Float(try f.double("beta_2", range: 0...1) ?? 0.999)
        epsilon = Float(try f.double("epsilon", range: 0...1) ?? 1e-7)
        weightDecay = Float(try f.double("weight_decay", range: 0...1) ?? (kind == .adamw ? 0.004 : 0))
        rho = Float(try f.double("rho", range: 0...1) ?? 0.9)
        clipnorm = try f.double("clipnorm", range: 0...1e9).map(Float.init)
        if let sj = f.raw("schedule") {
            var sf = try FieldReader(sj, path: f.fieldPath("schedule"))
            let type = try sf.string("type", oneOf: ["step", "cosine"]) ?? "step"
            if type == "step" {
                let every = try sf.positiveInt("every_epochs") ?? 1
                let factor = Float(try sf.double("factor", range: 0...1) ?? 0.1)
                schedule = .step(everyEpochs: every, factor: factor)
            } else {
                let epochs = try sf.double("epochs", range: 1e-6...1e9)
                let alpha = Float(try sf.double("alpha", range: 0...1) ?? 0)
                schedule = .cosine(epochs: epochs ?? 0, alpha: alpha)
            }
            try sf.finish()
        }
        try f.finish()
    }
}
