import KilnJSON
import KilnTensor

/// A node's output shape per sample, and whether it carries the batch axis in front.
/// Weights, constants and nodes computed only from them have no batch axis.
public struct NodeShape: Equatable, Sendable, CustomStringConvertible {
    public var dims: [Int]
    public var batched: Bool

    public init(_ dims: [Int], batched: Bool = true) {
        self.dims = dims
        self.batched = batched
    }

    public var description: String { batched ? "(batch, \(dims.map(String.init).joined(separator: ", ")))" : "\(dims)" }
    /// The shape as a tensor has it at run time.
    public func runtime(batch: Int) -> [Int] { batched ? [batch] + dims : dims }
}

/// How checkpoints, summaries and the trainer name a node's weight: `<node>.<parameter>`
/// (`dense_1.kernel`). The one place that spells the key.
public enum CheckpointKey {
    public static func make(node: String, parameter: String) -> String { "\(node).\(parameter)" }
}

/// A weight a layer owns, named `<node>.<name>` in checkpoints (`CheckpointKey`).
public struct ParameterSpec: Sendable {
    public var name: String
    public var shape: [Int]
    public var initializer: Initializer
    public var trainable: Bool
    public var regularizer: Regularizer?

    public init(_ name: String, shape: [Int], initializer: Initializer, trainable: Bool = true, regularizer: Regularizer? = nil) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
        self.trainable = trainable
        self.regularizer = regularizer
    }
}

/// What a layer's forward pass may need besides its inputs and weights.
public struct ForwardContext {
    public var training: Bool
    public var generator: SeededGenerator
    /// The checked shapes of the current node's inputs (batched or not).
    public var inputShapes: [NodeShape] = []
    public init(training: Bool, seed: UInt64) {
        self.training = training
        generator = SeededGenerator(seed: seed)
    }
}

/// A layer type of the catalog. Like a Keras layer: `init` only reads and checks
/// hyperparameters; `outputShape` is pure shape inference; `parameters` declares the
/// weights by name; `forward` computes.
public protocol Layer: Sendable {
    /// The JSON `type`.
    static var typeName: String { get }
    /// How many inputs the layer takes.
    static var arity: ClosedRange<Int> { get }
    init(_ fields: inout FieldReader) throws(SpecError)
    /// The layer's fields as a spec states them, defaults filled in (Keras `get_config`):
    /// `init` reading these gives the same layer. No default implementation, so a layer
    /// that forgets its config does not compile.
    var config: [(String, JSON)] { get }
    func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape
    func parameters(_ inputs: [NodeShape]) -> [ParameterSpec]
    func forward(_ inputs: [Variable], _ weights: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable
}

extension Layer {
    public static var arity: ClosedRange<Int> { 1...1 }
    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] { [] }
}

/// Who a layer is, for its error messages.
public struct NodeInfo: Sendable {
    public var name: String
    public var path: String
    public func error(_ message: String, field: String? = nil, code: SpecError.Code = .shapeMismatch) -> SpecError {
        SpecError(code, message, path: field.map { "\(path).\($0)" } ?? path, node: name)
    }
}

/// Maps each JSON `type` to its layer.
public enum LayerRegistry {
    public static let types: [any Layer.Type] = coreLayers + mergeLayers + parameterLayers + shapeLayers + convolutionLayers + poolingNormalizationLayers + recurrentLayers
    static let byName: [String: any Layer.Type] = Dictionary(uniqueKeysWithValues: types.map { ($0.typeName, $0) })

    public static func layerType(_ name: String) -> (any Layer.Type)? { byName[name] }
    public static var names: [String] { types.map { $0.typeName }.sorted() }
}
