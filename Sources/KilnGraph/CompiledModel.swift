import KilnTensor

/// A checked graph with its weights, ready to run. `run` computes only the nodes the
/// requested outputs need, so prediction skips training-only transforms and training
/// skips nodes no loss needs.
public final class CompiledModel {
    public let graph: ModelGraph
    /// Weights by checkpoint name, `<node>.<weight>`.
    public private(set) var weights: [String: Variable] = [:]
    /// Checkpoint names in graph order.
    public private(set) var weightNames: [String] = []

    /// Creates the weights with their initializers, drawing from `seed`. With
    /// `inference`, no weight records gradients, so running builds no backward graph.
    public init(graph: ModelGraph, seed: UInt64, inference: Bool = false) {
        self.graph = graph
        var generator = SeededGenerator(seed: seed ^ 0x5EED_0F_C0FFEE)
        for node in graph.nodes {
            for p in node.parameters {
                let name = CheckpointKey.make(node: node.name, parameter: p.name)
                weights[name] = Variable(p.initializer.make(p.shape, generator: &generator), requiresGrad: p.trainable && !inference)
                weightNames.append(name)
            }
        }
    }

    /// Weights an optimizer updates, in graph order.
    public var trainableWeights: [(name: String, variable: Variable)] {
        weightNames.compactMap { n in weights[n]!.requiresGrad ? (n, weights[n]!) : nil }
    }

    /// Fills constants taken from the data (`constant` with `from_data`).
    public func bindData(_ field: (String) -> (rowShape: [Int], values: [Float])?) throws(SpecError) {
        for node in graph.nodes {
            guard let constant = node.layer as? Constant else { continue }
            do {
                if let values = try constant.rows(from: field) {
                    _ = load(CheckpointKey.make(node: node.name, parameter: "value"), Tensor(shape: constant.shape, values: values))
                }
            } catch {
                throw SpecError(error.code, error.message, path: "\(node.path).\(error.path)", node: node.name)
            }
        }
    }

    /// Replaces a weight's value (from a checkpoint). The shape must match.
    public func load(_ name: String, _ value: Tensor) -> Bool {
        guard let w = weights[name], w.value.shape == value.shape else { return false }
        w.value = value
        return true
    }

    public struct RunError: Error, CustomStringConvertible {
        public var node: String
        public var message: String
        public var description: String { "node '\(node)': \(message)" }
    }

    /// Computes `targets` from `feeds` (one tensor per model input the targets need,
    /// with the batch axis first). A feed may also name an inner node: its value is
    /// used as given and the nodes before it are not computed.
    public func run(_ feeds: [String: Tensor], targets: [String], training: Bool, seed: UInt64 = 0) throws(RunError) -> [String: Variable] {
        var context = ForwardContext(training: training, seed: seed)
        var values: [String: Variable] = [:]
        for name in graph.dependencies(of: targets, given: Set(feeds.keys)) {
            let node = graph.node(name)!
            if node.layer != nil, let t = feeds[name] {
                // An inner node given a value (e.g. a decoder fed codes drawn from a prior).
                let expected = node.shape.runtime(batch: t.shape.first ?? 0)
                guard t.shape == expected else { throw RunError(node: name, message: "expected shape \(node.shape), got \(t.shape)") }
                values[name] = Variable(t)
                continue
            }
            guard let layer = node.layer else {
                guard let t = feeds[name] else { throw RunError(node: name, message: "no data given for this input") }
                let expected = node.shape.dims
                guard t.rank == expected.count + 1, Array(t.shape.dropFirst()) == expected else {
                    throw RunError(node: name, message: "expected shape \(node.shape), got \(t.shape)")
                }
                values[name] = Variable(t)
                continue
            }
            let inputs = node.inputs.map { values[$0]! }
            var own: [String: Variable] = [:]
            for p in node.parameters { own[p.name] = weights[CheckpointKey.make(node: name, parameter: p.name)] }
            context.inputShapes = node.inputs.map { graph.node($0)!.shape }
            do {
                values[name] = try layer.forward(inputs, own, &context)
            } catch {
                throw RunError(node: name, message: error.description)
            }
        }
        return values
    }
}
