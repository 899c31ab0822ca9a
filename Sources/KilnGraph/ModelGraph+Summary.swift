import KilnJSON
import KilnTensor

extension ModelGraph {
    /// The model summary of `POST /validate` and job creation: every node with its type,
    /// output shape (null for the batch axis), parameter counts, its layer's `config`
    /// (so two layers of one type can be told apart; `configs: false` leaves them out,
    /// e.g. for a model with large constants), and what each output and loss depends on.
    public func summary(lossNodes: [String] = [], configs: Bool = true) -> JSON {
        let (trainable, frozen) = parameterCount
        let nodeList: [JSON] = nodes.map { n in
            let t = n.parameters.filter(\.trainable).reduce(0) { $0 + Shapes.count($1.shape) }
            let f = n.parameters.filter { !$0.trainable }.reduce(0) { $0 + Shapes.count($1.shape) }
            var members: [(String, JSON)] = [
                ("name", .string(n.name)),
                ("type", .string(n.type)),
                ("output_shape", .array((n.shape.batched ? [JSON.null] : []) + n.shape.dims.map { JSON($0) })),
                ("trainable_params", JSON(t)),
                ("frozen_params", JSON(f)),
            ]
            if !n.inputs.isEmpty { members.append(("inputs", JSON(n.inputs))) }
            if configs, let layer = n.layer { members.append(("config", .object(layer.config))) }
            if !n.parameters.isEmpty {
                members.append(("weights", .array(n.parameters.map { p in
                    .object([("name", .string(CheckpointKey.make(node: n.name, parameter: p.name))), ("shape", JSON(p.shape)), ("trainable", .bool(p.trainable))])
                })))
            }
            return .object(members)
        }
        var deps: [(String, JSON)] = outputs.map { ($0, JSON(dependencies(of: [$0]))) }
        for l in lossNodes { deps.append(("loss:\(l)", JSON(dependencies(of: [l])))) }
        return .object([
            ("inputs", .object(inputNames.map { ($0, JSON(node($0)!.shape.dims)) })),
            ("outputs", JSON(outputs)),
            ("nodes", .array(nodeList)),
            ("trainable_params", JSON(trainable)),
            ("frozen_params", JSON(frozen)),
            ("total_params", JSON(trainable + frozen)),
            ("dependencies", .object(deps)),
        ])
    }
}
