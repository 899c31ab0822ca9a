/// A node of the autodiff graph: a value, its gradient once `backward` has run, and a
/// closure that sends an upstream gradient to the node's parents.
///
/// Every op builds its output with its backward rule right beside the forward code
/// (see the `Ops+*.swift` files). Nodes that do not depend on a parameter carry no
/// backward closure, so inference builds no graph.
public final class Variable {
    public var value: Tensor
    public var grad: Tensor?
    public let requiresGrad: Bool
    public let op: String
    let parents: [Variable]
    let backwardRule: ((Tensor) -> Void)?

    /// A leaf: an input (no gradient) or a parameter (`requiresGrad: true`).
    public init(_ value: Tensor, requiresGrad: Bool = false, op: String = "leaf") {
        self.value = value
        self.requiresGrad = requiresGrad
        self.op = op
        parents = []
        backwardRule = nil
    }

    /// An op's output. The backward rule is kept only when a parent needs a gradient.
    public init(_ value: Tensor, op: String, parents: [Variable], backward: @escaping (Tensor) -> Void) {
        self.value = value
        self.op = op
        let needs = parents.contains { $0.requiresGrad }
        requiresGrad = needs
        self.parents = needs ? parents : []
        backwardRule = needs ? backward : nil
    }

    public var shape: [Int] { value.shape }

    /// Adds `gradient` into this node's gradient.
    public func accumulate(_ gradient: Tensor) {
        precondition(gradient.shape == value.shape, "\(op): gradient shape \(gradient.shape) differs from value shape \(value.shape)")
        guard requiresGrad else { return }
        if grad == nil {
            grad = gradient
        } else {
            grad!.withUnsafeMutableBufferPointer { g in
                gradient.withUnsafeBufferPointer { d in
                    BLAS.saxpy(g.count, alpha: 1, x: d.baseAddress!, y: g.baseAddress!)
                }
            }
        }
    }

    /// Runs reverse-mode differentiation from this node. The seed defaults to ones
    /// (d self / d self) and must have this node's shape.
    public func backward(seed: Tensor? = nil) {
        let order = topologicalOrder()
        accumulate(seed ?? Tensor(shape: shape, repeating: 1))
        for node in order.reversed() {
            guard let rule = node.backwardRule, let g = node.grad else { continue }
            rule(g)
            // Intermediate gradients are no longer needed once passed on.
            if !node.parents.isEmpty { node.grad = nil }
        }
    }

    /// Nodes reachable from self through parents, each after all of its parents.
    func topologicalOrder() -> [Variable] {
        var order: [Variable] = []
        var visited = Set<ObjectIdentifier>()
        // Iterative depth-first search: graphs from long sequences are deep.
        var stack: [(Variable, Bool)] = [(self, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded { order.append(node); continue }
            guard visited.insert(ObjectIdentifier(node)).inserted else { continue }
            stack.append((node, true))
            for p in node.parents where p.requiresGrad && !visited.contains(ObjectIdentifier(p)) {
                stack.append((p, false))
            }
        }
        return order
    }
}
