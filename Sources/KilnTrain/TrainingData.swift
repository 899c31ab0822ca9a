import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor

/// The rows a job trains and validates on, after `derive`, `take` and the validation
/// split have been applied.
public struct TrainingData {
    public var train: Dataset
    public var validation: Dataset?
    /// SHA-256 over field names, shapes and values, recorded with the job.
    public var hash: String

    public init(train: Dataset, validation: Dataset?) {
        self.train = train
        self.validation = validation
        hash = TrainingData.hash(train, validation)
    }

    /// Resolves a job's `data` section. `catalog` serves built-in datasets; `uploaded`
    /// looks up datasets sent with `POST /datasets`.
    public static func resolve(
        _ spec: JobSpec, catalog: DatasetCatalog?, uploaded: (String) -> DatasetSplits? = { _ in nil }
    ) throws(DatasetError) -> TrainingData {
        let data = spec.data
        var splits: DatasetSplits
        if let fields = data.fields {
            splits = DatasetSplits(train: try Dataset(fields: try JSONFields.parse(fields, path: "data.fields")), test: nil)
        } else if let name = data.dataset {
            guard let found = uploaded(name) else { throw DatasetError(field: name, message: "no uploaded dataset named '\(name)'") }
            splits = found
        } else if let source = data.source, source != .none {
            guard let catalog else { throw DatasetError(field: source.rawValue, message: "no dataset mirror is configured") }
            splits = try catalog.load(builtIn: source.rawValue)
        } else {
            return TrainingData(train: try Dataset(fields: [:]), validation: nil)
        }
        for rule in data.derive {
            splits.train = try derive(splits.train, rule)
            if let test = splits.test { splits.test = try derive(test, rule) }
        }
        if let n = data.take.train { splits.train = splits.train.take(n) }
        if let n = data.take.test, let test = splits.test { splits.test = test.take(n) }

        var validation: Dataset?
        switch spec.train.validation {
        case .split(let name)?:
            guard name == "test" || name == "train" else { throw DatasetError(field: name, message: "unknown split '\(name)'; use 'test' or 'train'") }
            guard let set = name == "test" ? splits.test : splits.train else {
                throw DatasetError(field: name, message: "the data has no '\(name)' split; use {\"fraction\": 0.1} instead")
            }
            validation = set
        case .fraction(let f)?:
            let rows = splits.train.rowCount
            let held = max(1, Int((Double(rows) * f).rounded()))
            guard held < rows else { throw DatasetError(field: nil, message: "validation fraction \(f) leaves no training rows out of \(rows)") }
            validation = try slice(splits.train, (rows - held)..<rows)
            splits.train = try slice(splits.train, 0..<(rows - held))
        case nil:
            validation = nil
        }
        let result = TrainingData(train: splits.train, validation: validation)
        try result.check(against: spec)
        return result
    }

    static func slice(_ d: Dataset, _ range: Range<Int>) throws(DatasetError) -> Dataset {
        try Dataset(fields: d.fields.mapValues { $0.rows(range) })
    }

    static func derive(_ d: Dataset, _ rule: (name: String, oneHotOf: String, classes: Int)) throws(DatasetError) -> Dataset {
        guard let source = d.fields[rule.oneHotOf] else {
            throw DatasetError(field: rule.oneHotOf, message: "derive.\(rule.name): no field '\(rule.oneHotOf)' in the data (fields: \(d.fields.keys.sorted().joined(separator: ", ")))")
        }
        var values = [Float](repeating: 0, count: source.values.count * rule.classes)
        for (i, v) in source.values.enumerated() {
            let c = Int(v)
            guard Float(c) == v, c >= 0, c < rule.classes else {
                throw DatasetError(field: rule.oneHotOf, message: "value \(v) at row \(i) is not a class index in 0..<\(rule.classes)")
            }
            values[i * rule.classes + c] = 1
        }
        var fields = d.fields
        fields[rule.name] = DataArray(shape: source.shape + [rule.classes], dtype: .float32, values: values)
        return try Dataset(fields: fields)
    }

    /// Every model input and loss target must be a field, with the shape the model expects.
    func check(against spec: JobSpec) throws(DatasetError) {
        guard !train.fields.isEmpty else { return }
        for name in spec.model.inputNames {
            guard let field = train.fields[name] else {
                throw DatasetError(field: name, message: "the model input '\(name)' needs a data field of that name; the data has \(train.fields.keys.sorted().joined(separator: ", "))")
            }
            let expected = spec.model.node(name)!.shape.dims
            guard field.rowShape == expected else {
                throw DatasetError(field: name, message: "field '\(name)' has rows of shape \(field.rowShape) but the model input expects \(expected)")
            }
        }
        for loss in spec.train.losses {
            if case .field(let f)? = loss.target, train.fields[f] == nil {
                throw DatasetError(field: f, message: "the loss on '\(loss.node)' targets field '\(f)', which the data lacks; it has \(train.fields.keys.sorted().joined(separator: ", "))")
            }
        }
        try checkScaledFields(spec)
        if let validation, validation.rowCount == 0 { throw DatasetError(field: nil, message: "the validation set is empty") }
        for (set, name) in [(train, "training"), (validation, "validation")] {
            if let set { try checkClassIndices(set, name, spec) }
        }
    }

    /// Targets of a cross-entropy over class indices must be whole numbers in
    /// 0..<classes, classes being the prediction's last axis: found before training
    /// starts (at POST for inline data), not at the first batch that holds a bad one.
    func checkClassIndices(_ set: Dataset, _ setName: String, _ spec: JobSpec) throws(DatasetError) {
        for loss in spec.train.losses {
            guard let kind = loss.kind, case .field(let f)? = loss.target, let target = set.fields[f],
                  let prediction = spec.model.node(loss.node)?.shape.dims, let classes = prediction.last,
                  loss.readsClassIndices(prediction: prediction, target: target.rowShape) else { continue }
            for (i, v) in target.values.enumerated() {
                let c = Int(exactly: v) ?? -1
                guard c >= 0, c < classes else {
                    let row = i / Swift.max(target.rowShape.reduce(1, *), 1)
                    throw DatasetError(field: f, message: "\(setName) row \(row): \(v) is not a class index in 0..<\(classes) (the \(kind.rawValue) loss on '\(loss.node)' predicts \(classes) classes)")
                }
            }
        }
    }

    /// Field by field: each field's values are hashed in place (no copy of the
    /// dataset), and the digest covers the field names, shapes, dtypes and those hashes.
    static func hash(_ train: Dataset, _ validation: Dataset?) -> String {
        var summary: [UInt8] = []
        for (label, set) in [("train", train), ("validation", validation)] {
            guard let set else { continue }
            for name in set.fields.keys.sorted() {
                let f = set.fields[name]!
                summary += Array("\(label)/\(name)/\(f.shape)/\(f.dtype.rawValue):".utf8)
                summary += f.values.withUnsafeBytes { SHA256.digest($0) }
            }
        }
        return SHA256.hex(summary)
    }
}

// MARK: - Scaling

extension TrainingData {
    /// The factor each scaled field is multiplied by when its batches are built (see
    /// `DataSpec.Scaling`); fields not listed are used as stored. With the default,
    /// a uint8 field is scaled when it feeds a model input or a `from_data` constant,
    /// so uint8 class labels (mnist.npz's `y_train`) stay class indices; a loss target
    /// reading a scaled field (an autoencoder's `"target": "image"`) is scaled with it.
    public static func scales(_ spec: JobSpec, fields: [String: DataArray]) -> [String: Float] {
        switch spec.data.scale {
        case .none:
            return [:]
        case .divide(let divisors):
            return divisors.mapValues { 1 / $0 }
        case .uint8:
            var used = Set(spec.model.inputNames)
            for node in spec.model.nodes {
                if let constant = node.layer as? Constant, let source = constant.source { used.insert(source.field) }
            }
            var out: [String: Float] = [:]
            for name in used where fields[name]?.dtype == .uint8 { out[name] = 1 / 255 }
            return out
        }
    }

    /// Every field `"scale"` names must exist.
    func checkScaledFields(_ spec: JobSpec) throws(DatasetError) {
        guard case .divide(let divisors) = spec.data.scale else { return }
        for name in divisors.keys.sorted() where train.fields[name] == nil {
            throw DatasetError(field: name, message: "data.scale names field '\(name)', which the data lacks; it has \(train.fields.keys.sorted().joined(separator: ", "))")
        }
    }
}

extension DataArray {
    /// The given rows as a tensor with the batch axis first, each value multiplied by
    /// `scale` (1 copies them as stored).
    func batch(_ indices: ArraySlice<Int>, scale: Float = 1) -> Tensor {
        let rowSize = rowShape.reduce(1, *)
        let t = Tensor(uninitializedShape: [indices.count] + rowShape)
        let dst = t.storage.pointer
        values.withUnsafeBufferPointer { src in
            for (j, i) in indices.enumerated() {
                let row = dst + j * rowSize, from = src.baseAddress! + i * rowSize
                if scale == 1 {
                    row.update(from: from, count: rowSize)
                } else {
                    for k in 0..<rowSize { row[k] = from[k] * scale }
                }
            }
        }
        return t
    }
}
