import KilnJSON
import KilnTensor

let parameterLayers: [any Layer.Type] = [Weight.self, Constant.self, ElementwiseWeights.self, Bias.self, Taylor.self, Expression.self]

// MARK: - weight

/// A free tensor with no input and no batch axis, e.g. X in X·Xᵀ = C. Stored as
/// `<node>.kernel`.
public struct Weight: Layer {
    public static let typeName = "weight"
    public static var arity: ClosedRange<Int> { 0...0 }
    public let shape: [Int]
    public let initializer: Initializer
    public let trainable: Bool

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let shape = try fields.intList("shape") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("shape"), node: fields.node)
        }
        self.shape = shape
        initializer = try fields.raw("initializer").map { j throws(SpecError) in
            try Initializer.read(j, path: fields.fieldPath("initializer"), node: fields.node)
        } ?? .glorotUniform
        trainable = try fields.bool("trainable") ?? true
    }

    public var config: [(String, JSON)] { [("shape", JSON(shape)), ("initializer", initializer.json), ("trainable", JSON(trainable))] }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { NodeShape(shape, batched: false) }
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        [ParameterSpec("kernel", shape: shape, initializer: initializer, trainable: trainable)]
    }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable { w["kernel"]! }
}

// MARK: - constant

/// A fixed tensor with no batch axis: `value` (nested arrays or a number), or rows of
/// the training data, `from_data`: `{"field": "image", "rows": [0, 5, 9]}` (or a count
/// n for the first n rows), or one row per class,
/// `{"field": "image", "per_class": "label", "classes": 10}` (the first training row of
/// each class). Rows from data are taken when training starts and stored in the
/// checkpoint as `<node>.value`, so predictions use the same rows. `from_data` may state
/// the resolved `shape` (rows first); the graph JSON of a model always does, so a trained
/// model's graph decodes without its data and takes the values from its checkpoint.
public struct Constant: Layer {
    public static let typeName = "constant"
    public static var arity: ClosedRange<Int> { 0...0 }
    public let shape: [Int]
    public let values: [Float]
    public let source: DataSource?

    public struct DataSource: Sendable {
        public var field: String
        public var rows: [Int]?
        public var perClass: String?
        public var classes: Int
    }

    public init(_ fields: inout FieldReader) throws(SpecError) {
        if let from = fields.raw("from_data") {
            let path = fields.fieldPath("from_data")
            var ff = try FieldReader(from, path: path, node: fields.node)
            guard let field = try ff.string("field") else { throw SpecError(.missingField, "is required", path: ff.fieldPath("field"), node: fields.node) }
            var rows: [Int]?
            if let raw = ff.raw("rows") {
                if let n = raw.intValue, n > 0 { rows = Array(0..<n) } else { rows = try ff.intList("rows", minimum: 0) }
                guard let r = rows, !r.isEmpty, r.count <= 100_000 else {
                    throw SpecError(.invalidField, "expected a row count or a list of row indices", path: ff.fieldPath("rows"), node: fields.node)
                }
            }
            let perClass = try ff.string("per_class")
            var classes = try ff.positiveInt("classes") ?? 0
            let stated = try ff.intList("shape")
            try ff.finish()
            guard (rows == nil) != (perClass == nil) else {
                throw SpecError(.invalidField, "give either 'rows' or 'per_class'", path: path, node: fields.node)
            }
            let schema = fields.schema
            if let label = perClass, classes == 0 {
                guard let known = schema.classes[label] else {
                    throw SpecError(.missingField, "the number of classes of '\(label)' is not known before the data loads; add \"classes\"", path: "\(path).classes", node: fields.node)
                }
                classes = known
            }
            guard let rowShape = schema.fields[field] else {
                if let stated, !schema.known {
                    // A trained model's graph: the rows were taken when it trained.
                    guard let first = stated.first, first == (rows?.count ?? classes) else {
                        throw SpecError(.invalidField, "shape \(stated) must start with the number of rows, \(rows?.count ?? classes)", path: "\(path).shape", node: fields.node)
                    }
                    source = DataSource(field: field, rows: rows, perClass: perClass, classes: classes)
                    shape = stated
                    values = []
                    return
                }
                let known = schema.fields.keys.sorted()
                throw SpecError(.invalidField, schema.known ? "the data has no field '\(field)'; it has \(known.joined(separator: ", "))\(Suggest.hint(field, known))"
                                                          : "the data's fields are not known when the spec is checked; use inline fields, a built-in or an uploaded dataset",
                                path: "\(path).field", node: fields.node)
            }
            if let label = perClass, schema.known, schema.fields[label] == nil {
                throw SpecError(.invalidField, "the data has no field '\(label)'", path: "\(path).per_class", node: fields.node)
            }
            source = DataSource(field: field, rows: rows, perClass: perClass, classes: classes)
            shape = [rows?.count ?? classes] + rowShape
            if let stated, stated != shape {
                throw SpecError(.shapeMismatch, "the data gives shape \(shape) but \(stated) is stated", path: "\(path).shape", node: fields.node)
            }
            values = []
            return
        }
        source = nil
        let value = try fields.required("value")
        (shape, values) = try nestedArray(value, path: fields.fieldPath("value"), node: fields.node)
    }

    /// `value` as nested arrays, or `from_data` with its resolved rows, classes and shape.
    public var config: [(String, JSON)] {
        guard let source else { return [("value", nestedJSON(shape, values))] }
        var from: [(String, JSON)] = [("field", .string(source.field))]
        if let rows = source.rows { from.append(("rows", rows == Array(0..<rows.count) ? JSON(rows.count) : JSON(rows))) }
        if let label = source.perClass { from += [("per_class", .string(label)), ("classes", JSON(source.classes))] }
        from.append(("shape", JSON(shape)))
        return [("from_data", .object(from))]
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { NodeShape(shape, batched: false) }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        source == nil ? [] : [ParameterSpec("value", shape: shape, initializer: .zeros, trainable: false)]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        if let v = w["value"] { return v }
        return Variable(Tensor(shape: shape, values: values))
    }

    /// The rows this constant takes from the data: `field(name)` gives a field's row
    /// shape and values. Errors name the field and the problem.
    public func rows(from field: (String) -> (rowShape: [Int], values: [Float])?) throws(SpecError) -> [Float]? {
        guard let source else { return nil }
        guard let data = field(source.field) else { throw SpecError(.invalidField, "the data has no field '\(source.field)'", path: "from_data.field") }
        let rowShape = Array(shape.dropFirst())
        guard data.rowShape == rowShape else {
            throw SpecError(.shapeMismatch, "rows of '\(source.field)' have shape \(data.rowShape), but this constant holds rows of \(rowShape)", path: "from_data.shape")
        }
        let width = data.rowShape.reduce(1, *)
        let count = data.values.count / max(width, 1)
        var picked: [Int] = []
        if let rows = source.rows {
            for r in rows where r >= count { throw SpecError(.invalidField, "row \(r) is past the \(count) rows of '\(source.field)'", path: "from_data.rows") }
            picked = rows
        } else if let label = source.perClass {
            guard let labels = field(label) else { throw SpecError(.invalidField, "the data has no field '\(label)'", path: "from_data.per_class") }
            var first = [Int](repeating: -1, count: source.classes)
            for (i, v) in labels.values.enumerated() {
                let c = Int(v)
                if c >= 0, c < source.classes, first[c] < 0 { first[c] = i }
            }
            if let missing = first.firstIndex(of: -1) {
                throw SpecError(.invalidField, "no training row has class \(missing) in '\(label)'", path: "from_data.per_class")
            }
            picked = first
        }
        var out: [Float] = []
        out.reserveCapacity(picked.count * width)
        for r in picked { out.append(contentsOf: data.values[(r * width)..<((r + 1) * width)]) }
        return out
    }
}

/// The shape and row-major values of nested JSON arrays; ragged arrays are an error.
public func nestedArray(_ json: JSON, path: String, node: String?) throws(SpecError) -> ([Int], [Float]) {
    do {
        let array = try NumberArray.decode(json)
        return (array.shape, array.values)
    } catch {
        throw SpecError(.invalidField, error.message, path: path + error.suffix, node: node)
    }
}

/// Row-major values as nested JSON arrays of `shape` (a number for shape []).
func nestedJSON(_ shape: [Int], _ values: [Float]) -> JSON {
    func build(_ depth: Int, _ offset: Int) -> JSON {
        if depth == shape.count { return JSON(values[offset]) }
        let stride = shape[(depth + 1)...].reduce(1, *)
        return .array((0..<shape[depth]).map { build(depth + 1, offset + $0 * stride) })
    }
    return build(0, 0)
}

// MARK: - elementwise_weights

/// A trainable kernel of the input's per-sample shape, multiplied in element-wise.
public struct ElementwiseWeights: Layer {
    public static let typeName = "elementwise_weights"
    public let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        weights = try WeightOptions(&fields, kernel: .ones)
    }

    public var config: [(String, JSON)] { weights.config }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape { inputs[0] }
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] { [weights.kernel(inputs[0].dims)] }
    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try inputs[0].mul(w["kernel"]!)
    }
}

// MARK: - bias

/// Adds a trainable vector along `axis` (default the last; the batch axis counts as 0).
public struct Bias: Layer {
    public static let typeName = "bias"
    public let axis: Int
    public let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        axis = try fields.int("axis", minimum: Int.min) ?? -1
        weights = try WeightOptions(&fields)
    }

    public var config: [(String, JSON)] { [("axis", JSON(axis))] + weights.config }

    /// The axis among the per-sample dims, or nil if out of range or the batch axis.
    func biasAxis(_ x: NodeShape) -> Int? { KilnGraph.sampleAxis(axis, x) }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard biasAxis(inputs[0]) != nil else {
            throw node.error("axis \(axis) is not a per-sample axis of input \(inputs[0])", field: "axis", code: .invalidField)
        }
        return inputs[0]
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        guard let a = biasAxis(inputs[0]) else { return [] }
        return [weights.bias([inputs[0].dims[a]])]
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = context.inputShapes[0]
        let a = biasAxis(x)!
        let b = w["bias"]!
        // Shape the vector to broadcast along its axis: [d, 1, …, 1].
        let trailing = x.dims.count - a - 1
        let shaped = trailing == 0 ? b : try b.reshape([x.dims[a]] + [Int](repeating: 1, count: trailing))
        return try inputs[0].add(shaped)
    }
}

// MARK: - taylor

/// A Taylor-expansion layer. Mode `dense`: y = b + Σₖ₌₁..order Wₖ·xᵏ on the last axis
/// (weights `kernel_k` [in, units], `bias` [units]). Mode `elementwise`:
/// y = Σₖ₌₀..order aₖ⊙xᵏ with coefficients `coefficient_k` of the input's shape.
public struct Taylor: Layer {
    public static let typeName = "taylor"
    public enum Mode: String, Sendable { case dense, elementwise }
    public let order: Int
    public let units: Int?
    public let mode: Mode
    public let activation: Activation
    public let weights: WeightOptions

    public init(_ fields: inout FieldReader) throws(SpecError) {
        mode = Mode(rawValue: try fields.string("mode", oneOf: ["dense", "elementwise"], default: "dense")!)!
        guard let order = try fields.positiveInt("order") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("order"), node: fields.node)
        }
        guard order <= 16 else { throw SpecError(.invalidField, "at most 16, got \(order)", path: fields.fieldPath("order"), node: fields.node) }
        self.order = order
        units = try fields.positiveInt("units")
        if mode == .dense && units == nil {
            throw SpecError(.missingField, "is required in dense mode", path: fields.fieldPath("units"), node: fields.node)
        }
        if mode == .elementwise && units != nil {
            throw SpecError(.invalidField, "elementwise mode keeps the input's shape; remove 'units'", path: fields.fieldPath("units"), node: fields.node)
        }
        activation = try Activation.read(&fields)
        weights = try WeightOptions(&fields, kernel: mode == .dense ? .glorotUniform : .ones)
    }

    public var config: [(String, JSON)] {
        [("mode", .string(mode.rawValue)), ("order", JSON(order))] + (units.map { [("units", JSON($0))] } ?? [])
            + [("activation", activation.json)] + weights.config
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard mode == .dense else { return inputs[0] }
        guard !inputs[0].dims.isEmpty else { throw node.error("taylor needs an input with at least one axis, got \(inputs[0])") }
        return NodeShape(inputs[0].dims.dropLast() + [units!], batched: inputs[0].batched)
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        switch mode {
        case .dense:
            let fanIn = inputs[0].dims.last ?? 1
            return (1...order).map { weights.kernel([fanIn, units!], name: "kernel_\($0)") } + [weights.bias([units!])]
        case .elementwise:
            // a₀ starts at zero; higher coefficients from the kernel initializer.
            return (0...order).map { k in
                var p = weights.kernel(inputs[0].dims, name: "coefficient_\(k)")
                if k == 0 { p.initializer = weights.biasInitializer }
                return p
            }
        }
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        let x = inputs[0]
        var power = x
        var y: Variable
        switch mode {
        case .dense:
            y = w["bias"]!
            for k in 1...order {
                if k > 1 { power = try power.mul(x) }
                y = try power.matmul(w["kernel_\(k)"]!).add(y)
            }
        case .elementwise:
            y = try x.mul(w["coefficient_1"]!).add(w["coefficient_0"]!)
            for k in stride(from: 2, through: order, by: 1) {
                power = try power.mul(x)
                y = try y.add(power.mul(w["coefficient_\(k)"]!))
            }
        }
        return try activation.apply(y)
    }
}
