import KilnGraph
import KilnJSON
import KilnTensor

/// A node that cannot be written as ONNX, or weights that do not fit the graph.
public struct ONNXExportError: Error, CustomStringConvertible {
    public var node: String
    public var type: String
    public var message: String
    public var description: String { "node '\(node)' (\(type)): \(message)" }
}

/// Translates a model's prediction graph into an ONNX model (opset 18): only the nodes
/// the outputs need, weights as initializers named by `CheckpointKey`, the batch axis
/// symbolic (`batch`). Kiln's images are NHWC; ONNX convolutions and pools are NCHW, so
/// each one is wrapped in a pair of Transposes and its kernel is permuted once, here.
/// Training-only behaviour (dropout, noise) is left out, as `/predict` leaves it out.
public struct ONNXExporter {
    /// Node types without an ONNX form, and why (the catalog has none today).
    public static let unsupported: [String: String] = [:]

    let graph: ModelGraph
    let weights: [String: Tensor]
    var onnx: ONNXGraph
    /// Kiln node name → the ONNX value holding its output.
    var values: [String: String] = [:]
    var counter = 0
    /// The node being translated, for names and errors.
    var current: ModelGraph.Node?

    /// Exports `graph` with `weights` (by checkpoint key) computing `outputs` (by
    /// default the graph's own). Inner nodes named in `given` become inputs of the ONNX
    /// model, as `/predict` lets a caller feed them (a decoder fed codes).
    /// - Throws: `ONNXExportError` naming the node that has no ONNX form or whose weight
    ///   is missing or misshapen.
    public static func export(_ graph: ModelGraph, weights: [String: Tensor], outputs: [String]? = nil, given: [String] = [],
                              name: String = "kiln") throws(ONNXExportError) -> ONNXModel {
        var exporter = ONNXExporter(graph: graph, weights: weights, onnx: ONNXGraph(name: name))
        let targets = outputs ?? graph.outputs
        for nodeName in graph.dependencies(of: targets, given: Set(given)) {
            let node = graph.node(nodeName)!
            exporter.current = node
            if node.layer == nil || given.contains(node.name) {
                exporter.onnx.inputs.append(ONNXValueInfo(node.name, dims: ONNXExporter.dimensions(node.shape)))
                exporter.values[node.name] = node.name
                continue
            }
            exporter.values[node.name] = try exporter.translate(node)
        }
        for o in targets {
            let value = exporter.values[o]!
            if value != o { exporter.onnx.nodes.append(ONNXNode("Identity", [value], [o], name: "\(o)/output")) }
            exporter.onnx.outputs.append(ONNXValueInfo(o, dims: ONNXExporter.dimensions(graph.node(o)!.shape)))
        }
        return ONNXModel(graph: exporter.onnx, docString: "Exported by Kiln from its model graph; inputs and outputs are float32, images NHWC.")
    }

    static func dimensions(_ shape: NodeShape) -> [ONNXValueInfo.Dimension] {
        (shape.batched ? [.symbol("batch")] : []) + shape.dims.map { .value($0) }
    }

    // MARK: Building blocks

    func fail(_ message: String) -> ONNXExportError {
        ONNXExportError(node: current?.name ?? "", type: current?.type ?? "", message: message)
    }

    mutating func fresh(_ what: String) -> String {
        counter += 1
        return "\(current?.name ?? "graph")/\(what):\(counter)"
    }

    /// Adds an operator; returns the name of its (first) output.
    @discardableResult
    mutating func op(_ type: String, _ inputs: [String], _ attributes: [ONNXAttribute] = [], outputs count: Int = 1) -> String {
        let outs = (0..<count).map { _ in fresh(type) }
        onnx.nodes.append(ONNXNode(type, inputs, outs, name: fresh("\(type)_node"), attributes))
        return outs[0]
    }

    mutating func constant(_ values: [Float], dims: [Int]) -> String {
        let name = fresh("const")
        onnx.initializers.append(ONNXTensor(name, dims: dims, floats: values))
        return name
    }

    mutating func scalar(_ v: Float) -> String { constant([v], dims: []) }

    mutating func ints(_ values: [Int]) -> String {
        let name = fresh("shape")
        onnx.initializers.append(ONNXTensor(name, dims: [values.count], int64s: values.map(Int64.init)))
        return name
    }

    /// A node's weight as it is stored (`<node>.<param>`), checked against its declared shape.
    func weight(_ node: ModelGraph.Node, _ parameter: String) throws(ONNXExportError) -> Tensor {
        let key = CheckpointKey.make(node: node.name, parameter: parameter)
        guard let spec = node.parameters.first(where: { $0.name == parameter }) else { throw fail("has no weight '\(parameter)'") }
        guard let t = weights[key] else { throw fail("the checkpoint has no weight '\(key)'") }
        guard t.shape == spec.shape else { throw fail("weight '\(key)' has shape \(t.shape), the graph declares \(spec.shape)") }
        return t
    }

    /// Adds a weight as an initializer under its checkpoint key, optionally with its
    /// axes permuted or its shape changed (same values in the same order).
    mutating func initializer(_ node: ModelGraph.Node, _ parameter: String, permute perm: [Int]? = nil, reshape: [Int]? = nil) throws(ONNXExportError) -> String {
        let t = try weight(node, parameter)
        var dims = t.shape
        var values = t.scalars
        if let perm {
            (dims, values) = ONNXExporter.permuted(values, dims, perm)
        }
        if let reshape { dims = reshape }
        let name = CheckpointKey.make(node: node.name, parameter: parameter)
        onnx.initializers.append(ONNXTensor(name, dims: dims, floats: values))
        return name
    }

    /// numpy `transpose(perm)` of a row-major array.
    static func permuted(_ values: [Float], _ dims: [Int], _ perm: [Int]) -> ([Int], [Float]) {
        let outDims = perm.map { dims[$0] }
        var strides = [Int](repeating: 1, count: dims.count)
        for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * dims[i + 1] }
        var out = [Float](repeating: 0, count: values.count)
        var index = [Int](repeating: 0, count: dims.count)
        for o in 0..<values.count {
            var source = 0
            for (k, p) in perm.enumerated() { source += index[k] * strides[p] }
            out[o] = values[source]
            var k = dims.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < outDims[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return (outDims, out)
    }

    static func config(_ node: ModelGraph.Node) -> [String: JSON] {
        Dictionary(node.layer!.config, uniquingKeysWith: { a, _ in a })
    }

    static func pair(_ json: JSON?, default value: (Int, Int)) -> (Int, Int) {
        guard let json else { return value }
        if let n = json.intValue { return (n, n) }
        if let a = json.arrayValue, a.count == 2, let x = a[0].intValue, let y = a[1].intValue { return (x, y) }
        return value
    }

    // MARK: Layout

    /// NHWC → NCHW, the op, NCHW → NHWC.
    mutating func channelsFirst(_ x: String, _ body: (inout ONNXExporter, String) throws(ONNXExportError) -> String) throws(ONNXExportError) -> String {
        let nchw = op("Transpose", [x], [ONNXAttribute("perm", .ints([0, 3, 1, 2]))])
        let y = try body(&self, nchw)
        return op("Transpose", [y], [ONNXAttribute("perm", .ints([0, 2, 3, 1]))])
    }

    /// TensorFlow's padding for a window over `input` (begin, end), as ONNX `pads` wants
    /// them: [top, left, bottom, right].
    static func pads(_ padding: String, input: (Int, Int), kernel: (Int, Int), strides: (Int, Int), dilation: (Int, Int)) -> [Int] {
        guard padding == "same" else { return [0, 0, 0, 0] }
        func split(_ n: Int, _ k: Int, _ s: Int, _ d: Int) -> (Int, Int) {
            let out = (n + s - 1) / s
            let total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            return (total / 2, total - total / 2)
        }
        let h = split(input.0, kernel.0, strides.0, dilation.0), w = split(input.1, kernel.1, strides.1, dilation.1)
        return [h.0, w.0, h.1, w.1]
    }

    /// Reshape keeping the batch axis (symbolic) when the node has one.
    mutating func reshape(_ x: String, to shape: NodeShape) -> String {
        op("Reshape", [x, ints((shape.batched ? [-1] : []) + shape.dims)])
    }
}
