import KilnGraph
import KilnJSON
import KilnTensor

// Each layer type of the catalog as ONNX operators (docs/onnx.md has the table).
extension ONNXExporter {
    mutating func translate(_ node: ModelGraph.Node) throws(ONNXExportError) -> String {
        if let why = ONNXExporter.unsupported[node.type] { throw fail(why) }
        let c = ONNXExporter.config(node)
        let xs = node.inputs.map { values[$0]! }
        let inShapes = node.inputs.map { graph.node($0)!.shape }
        let x = xs.first ?? ""
        switch node.type {
        case "dense":
            var y = op("MatMul", [x, try initializer(node, "kernel")])
            if node.parameters.contains(where: { $0.name == "bias" }) { y = op("Add", [y, try initializer(node, "bias")]) }
            return try activation(c["activation"]?.stringValue ?? "linear", y)

        case "activation":
            return try activation(c["activation"]?.stringValue ?? "linear", x)

        case "softmax":
            return op("Softmax", [x], [ONNXAttribute("axis", .int(c["axis"]?.intValue ?? -1))])

        case "flatten", "reshape":
            return reshape(x, to: node.shape)

        case "permute":
            let dims = c["dims"]?.arrayValue?.compactMap(\.intValue) ?? []
            return op("Transpose", [x], [ONNXAttribute("perm", .ints([0] + dims))])

        case "transpose":
            let rank = inShapes[0].dims.count + (inShapes[0].batched ? 1 : 0)
            var perm = Array(0..<rank)
            if let given = c["perm"]?.arrayValue?.compactMap(\.intValue) { perm = given } else if rank >= 2 { perm.swapAt(rank - 1, rank - 2) }
            return op("Transpose", [x], [ONNXAttribute("perm", .ints(perm))])

        case "concatenate":
            return op("Concat", xs, [ONNXAttribute("axis", .int(c["axis"]?.intValue ?? -1))])

        case "slice":
            let s = inShapes[0]
            let rank = s.dims.count + (s.batched ? 1 : 0)
            let raw = c["axis"]?.intValue ?? -1
            let axis = raw < 0 ? raw + rank : raw
            let n = s.dims[axis - (s.batched ? 1 : 0)]
            let start = c["start"]?.intValue ?? 0
            let begin = start < 0 ? start + n : start
            let end = c["end"]?.intValue.map { $0 < 0 ? $0 + n : $0 } ?? n
            return op("Slice", [x, ints([begin]), ints([end]), ints([axis])])

        case "embedding":
            let ids = op("Cast", [x], [ONNXAttribute("to", .int(Int(ONNXDataType.int64.rawValue)))])
            return op("Gather", [try initializer(node, "embeddings"), ids], [ONNXAttribute("axis", .int(0))])

        case "one_hot":
            var ids = x
            if inShapes[0].dims.last == 1 { ids = op("Squeeze", [ids, ints([-1])]) }
            ids = op("Cast", [ids], [ONNXAttribute("to", .int(Int(ONNXDataType.int64.rawValue)))])
            let depth = ints([c["classes"]?.intValue ?? 1])
            return op("OneHot", [ids, depth, constant([0, 1], dims: [2])], [ONNXAttribute("axis", .int(-1))])

        case "add", "subtract", "multiply", "average":
            let onnxOp = ["add": "Add", "subtract": "Sub", "multiply": "Mul", "average": "Add"][node.type]!
            var y = xs[0]
            for other in xs.dropFirst() { y = op(onnxOp, [y, other]) }
            if node.type == "average" { y = op("Mul", [y, scalar(1 / Float(xs.count))]) }
            return y

        case "matmul":
            func swapLast(_ e: inout ONNXExporter, _ v: String, _ s: NodeShape) -> String {
                let rank = s.dims.count + (s.batched ? 1 : 0)
                var perm = Array(0..<rank)
                perm.swapAt(rank - 1, rank - 2)
                return e.op("Transpose", [v], [ONNXAttribute("perm", .ints(perm))])
            }
            let a = c["transpose_a"]?.boolValue == true ? swapLast(&self, xs[0], inShapes[0]) : xs[0]
            let b = c["transpose_b"]?.boolValue == true ? swapLast(&self, xs[1], inShapes[1]) : xs[1]
            return op("MatMul", [a, b])

        case "sum", "mean", "max":
            let s = inShapes[0]
            let rank = s.dims.count + (s.batched ? 1 : 0)
            var axes: [Int]
            if let list = c["axis"]?.arrayValue { axes = list.compactMap(\.intValue) } else if let one = c["axis"]?.intValue { axes = [one] } else {
                axes = Array((s.batched ? 1 : 0)..<rank)
            }
            axes = axes.map { $0 < 0 ? $0 + rank : $0 }
            let keep = c["keepdims"]?.boolValue == true
            let onnxOp = ["sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"][node.type]!
            if axes.isEmpty { return op("Identity", [x]) }
            return op(onnxOp, [x, ints(axes)], [ONNXAttribute("keepdims", .int(keep ? 1 : 0))])

        case "weight":
            return try initializer(node, "kernel")

        case "constant":
            if node.parameters.contains(where: { $0.name == "value" }) { return try initializer(node, "value") }
            guard let constant = node.layer as? Constant else { throw fail("is not a constant") }
            return self.constant(constant.values, dims: constant.shape)

        case "elementwise_weights":
            return op("Mul", [x, try initializer(node, "kernel")])

        case "bias":
            let s = inShapes[0]
            let rank = s.dims.count + (s.batched ? 1 : 0)
            let raw = c["axis"]?.intValue ?? -1
            let a = (raw < 0 ? raw + rank : raw) - (s.batched ? 1 : 0)
            let trailing = s.dims.count - a - 1
            return op("Add", [x, try initializer(node, "bias", reshape: [s.dims[a]] + [Int](repeating: 1, count: trailing))])

        case "taylor":
            let order = c["order"]?.intValue ?? 1
            var power = x
            var y: String
            if c["mode"]?.stringValue == "elementwise" {
                y = op("Add", [op("Mul", [x, try initializer(node, "coefficient_1")]), try initializer(node, "coefficient_0")])
                if order >= 2 {
                    for k in 2...order {
                        power = op("Mul", [power, x])
                        y = op("Add", [y, op("Mul", [power, try initializer(node, "coefficient_\(k)")])])
                    }
                }
            } else {
                y = try initializer(node, "bias")
                for k in 1...order {
                    if k > 1 { power = op("Mul", [power, x]) }
                    y = op("Add", [op("MatMul", [power, try initializer(node, "kernel_\(k)")]), y])
                }
            }
            return try activation(c["activation"]?.stringValue ?? "linear", y)

        case "expression":
            guard let layer = node.layer as? Expression else { throw fail("is not an expression") }
            var scope: [String: String] = [:]
            for (alias, value) in zip(layer.aliases, xs) { scope[alias] = value }
            for p in layer.params { scope[p.name] = try initializer(node, p.name) }
            return expression(layer.formula, scope)

        case "conv2d", "conv2d_transpose", "conditional_conv2d":
            return try convolution(node, c, x, inShapes[0], label: xs.count > 1 ? xs[1] : nil)

        case "max_pool2d", "avg_pool2d":
            let pool = ONNXExporter.pair(c["pool_size"], default: (2, 2))
            let strides = ONNXExporter.pair(c["strides"], default: pool)
            let s = inShapes[0]
            let pads = ONNXExporter.pads(c["padding"]?.stringValue ?? "valid", input: (s.dims[0], s.dims[1]), kernel: pool, strides: strides, dilation: (1, 1))
            let onnxOp = node.type == "max_pool2d" ? "MaxPool" : "AveragePool"
            return try channelsFirst(x) { (e, v) throws(ONNXExportError) in
                // AveragePool's count_include_pad defaults to 0: only pixels inside count, as in Kiln.
                e.op(onnxOp, [v], [ONNXAttribute("kernel_shape", .ints([pool.0, pool.1])), ONNXAttribute("strides", .ints([strides.0, strides.1])),
                                   ONNXAttribute("pads", .ints(pads))])
            }

        case "global_avg_pool2d":
            return op("ReduceMean", [x, ints([1, 2])], [ONNXAttribute("keepdims", .int(0))])

        case "upsampling2d":
            // Nearest neighbour: [B,H,1,W,1,C] broadcast to [B,H,sh,W,sw,C], then merged.
            let size = ONNXExporter.pair(c["size"], default: (2, 2))
            let s = inShapes[0].dims
            let split = op("Reshape", [x, ints([-1, s[0], 1, s[1], 1, s[2]])])
            let wide = op("Expand", [split, ints([1, s[0], size.0, s[1], size.1, s[2]])])
            return reshape(wide, to: node.shape)

        case "batch_norm":
            // Inference: (x − moving_mean)/√(moving_variance + ε)·γ + β on the last axis.
            let eps = Float(c["epsilon"]?.doubleValue ?? 1e-3)
            let centred = op("Sub", [x, try initializer(node, "moving_mean")])
            let scale = op("Sqrt", [op("Add", [try initializer(node, "moving_variance"), scalar(eps)])])
            let normed = op("Div", [centred, scale])
            return op("Add", [op("Mul", [normed, try initializer(node, "gamma")]), try initializer(node, "beta")])

        case "layer_norm":
            let eps = Float(c["epsilon"]?.doubleValue ?? 1e-3)
            return op("LayerNormalization", [x, try initializer(node, "gamma"), try initializer(node, "beta")],
                      [ONNXAttribute("axis", .int(-1)), ONNXAttribute("epsilon", .float(eps))])

        case "dropout", "gaussian_noise":
            return x

        case "sample_normal":
            // A draw like Kiln's: mu + exp(½·log_var)·ε, ε from the runtime's generator.
            let noise = op("RandomNormalLike", [xs[0]], [ONNXAttribute("dtype", .int(Int(ONNXDataType.float.rawValue)))])
            return op("Add", [xs[0], op("Mul", [op("Exp", [op("Mul", [xs[1], scalar(0.5)])]), noise])])

        case "lstm", "gru":
            return try recurrent(node, c, x)

        default:
            throw fail("has no ONNX form")
        }
    }

    mutating func convolution(_ node: ModelGraph.Node, _ c: [String: JSON], _ x: String, _ s: NodeShape, label: String?) throws(ONNXExportError) -> String {
        let kernel = ONNXExporter.pair(c["kernel_size"], default: (1, 1))
        let strides = ONNXExporter.pair(c["strides"], default: (1, 1))
        let dilation = ONNXExporter.pair(c["dilation_rate"], default: (1, 1))
        let padding = c["padding"]?.stringValue ?? "valid"
        let filters = c["filters"]?.intValue ?? 1
        let hasBias = node.parameters.contains { $0.name == "bias" }
        var attributes = [ONNXAttribute("kernel_shape", .ints([kernel.0, kernel.1])), ONNXAttribute("strides", .ints([strides.0, strides.1])),
                          ONNXAttribute("dilations", .ints([dilation.0, dilation.1]))]
        var y: String
        switch node.type {
        case "conv2d":
            // HWIO → OIHW.
            let w = try initializer(node, "kernel", permute: [3, 2, 0, 1])
            let b = hasBias ? [try initializer(node, "bias")] : []
            attributes.append(ONNXAttribute("pads", .ints(ONNXExporter.pads(padding, input: (s.dims[0], s.dims[1]), kernel: kernel, strides: strides, dilation: dilation))))
            y = try channelsFirst(x) { (e, v) throws(ONNXExportError) in e.op("Conv", [v, w] + b, attributes) }
        case "conv2d_transpose":
            // [kh, kw, out, in] → [in, out, kh, kw]. The output size Kiln infers, spelled
            // as ONNX's crop (pads) and extra rows at the end (output_padding).
            let w = try initializer(node, "kernel", permute: [3, 2, 0, 1])
            let b = hasBias ? [try initializer(node, "bias")] : []
            let outputPadding: (Int, Int)? = c["output_padding"].map { ONNXExporter.pair($0, default: (0, 0)) }
            func geometry(_ n: Int, _ k: Int, _ st: Int, _ d: Int, _ extra: Int?) -> (begin: Int, end: Int, extra: Int) {
                let effective = (k - 1) * d + 1
                if let extra {
                    let p = padding == "same" ? effective / 2 : 0
                    return (p, p, extra)
                }
                let out = padding == "same" ? n * st : n * st + max(effective - st, 0)
                let natural = (n - 1) * st + effective
                if out >= natural { return (0, 0, out - natural) }
                let total = natural - out
                return (total / 2, total - total / 2, 0)
            }
            let gh = geometry(s.dims[0], kernel.0, strides.0, dilation.0, outputPadding?.0)
            let gw = geometry(s.dims[1], kernel.1, strides.1, dilation.1, outputPadding?.1)
            attributes.append(ONNXAttribute("pads", .ints([gh.begin, gw.begin, gh.end, gw.end])))
            attributes.append(ONNXAttribute("output_padding", .ints([gh.extra, gw.extra])))
            y = try channelsFirst(x) { (e, v) throws(ONNXExportError) in e.op("ConvTranspose", [v, w] + b, attributes) }
        default:
            // conditional_conv2d: the per-sample kernel is labels·kernels, and convolution
            // is linear in its kernel, so one convolution with every class's filters
            // stacked, weighted by the labels and summed over classes, is the same map.
            let classes = c["classes"]?.intValue ?? 1
            let k = try weight(node, "kernel")  // [classes, kh, kw, in, filters]
            let (_, stacked) = ONNXExporter.permuted(k.scalars, k.shape, [0, 4, 3, 1, 2])  // [classes, filters, in, kh, kw]
            let wName = CheckpointKey.make(node: node.name, parameter: "kernel")
            onnx.initializers.append(ONNXTensor(wName, dims: [classes * filters, k.shape[3], kernel.0, kernel.1], floats: stacked))
            attributes.append(ONNXAttribute("pads", .ints(ONNXExporter.pads(padding, input: (s.dims[0], s.dims[1]), kernel: kernel, strides: strides, dilation: dilation))))
            let all = try channelsFirst(x) { (e, v) throws(ONNXExportError) in e.op("Conv", [v, wName], attributes) }
            let out = node.shape.dims
            let perClass = op("Reshape", [all, ints([-1, out[0], out[1], classes, filters])])
            let weightsByClass = op("Reshape", [label!, ints([-1, 1, 1, classes, 1])])
            y = op("ReduceSum", [op("Mul", [perClass, weightsByClass]), ints([3])], [ONNXAttribute("keepdims", .int(0))])
            if hasBias { y = op("Add", [y, try initializer(node, "bias")]) }
        }
        return try activation(c["activation"]?.stringValue ?? "linear", y)
    }

    /// Kiln's LSTM (Keras gates i, f, c, o) and GRU (z, r, h, reset after) as ONNX's
    /// LSTM (gates i, o, f, c) and GRU (z, r, h, linear_before_reset), sequence-major.
    mutating func recurrent(_ node: ModelGraph.Node, _ c: [String: JSON], _ x: String) throws(ONNXExportError) -> String {
        let units = c["units"]?.intValue ?? 1
        let lstm = node.type == "lstm"
        let gates = lstm ? 4 : 3
        // ONNX gate position → Kiln gate position.
        let order = lstm ? [0, 3, 1, 2] : [0, 1, 2]
        func regate(_ t: Tensor) -> [Float] {
            // [rows, gates·units] → [gates·units (ONNX order), rows].
            let rows = t.shape[0]
            let v = t.scalars
            var out = [Float](repeating: 0, count: v.count)
            for (g, source) in order.enumerated() {
                for u in 0..<units {
                    for r in 0..<rows { out[(g * units + u) * rows + r] = v[r * gates * units + source * units + u] }
                }
            }
            return out
        }
        let kernel = try weight(node, "kernel"), recurrentKernel = try weight(node, "recurrent_kernel")
        let wName = CheckpointKey.make(node: node.name, parameter: "kernel")
        let rName = CheckpointKey.make(node: node.name, parameter: "recurrent_kernel")
        onnx.initializers.append(ONNXTensor(wName, dims: [1, gates * units, kernel.shape[0]], floats: regate(kernel)))
        onnx.initializers.append(ONNXTensor(rName, dims: [1, gates * units, units], floats: regate(recurrentKernel)))
        var biasValues = [Float](repeating: 0, count: 2 * gates * units)
        if let bias = weights[CheckpointKey.make(node: node.name, parameter: "bias")] {
            let b = bias.scalars
            if lstm {
                for (g, source) in order.enumerated() { for u in 0..<units { biasValues[g * units + u] = b[source * units + u] } }
            } else {
                // [2, 3·units]: input bias then recurrent bias, ONNX's Wb then Rb.
                guard b.count == 2 * gates * units else { throw fail("bias has \(b.count) values, expected \(2 * gates * units)") }
                biasValues = b
            }
        }
        let bName = CheckpointKey.make(node: node.name, parameter: "bias")
        onnx.initializers.append(ONNXTensor(bName, dims: [1, 2 * gates * units], floats: biasValues))
        let timeMajor = op("Transpose", [x], [ONNXAttribute("perm", .ints([1, 0, 2]))])
        var attributes = [ONNXAttribute("hidden_size", .int(units))]
        if !lstm { attributes.append(ONNXAttribute("linear_before_reset", .int(1))) }
        let outs = [fresh("Y"), fresh("Y_h")]
        onnx.nodes.append(ONNXNode(lstm ? "LSTM" : "GRU", [timeMajor, wName, rName, bName], outs, name: fresh(lstm ? "LSTM_node" : "GRU_node"), attributes))
        if c["return_sequences"]?.boolValue == true {
            // Y: [time, 1, batch, units] → [batch, time, units].
            let y = op("Squeeze", [outs[0], ints([1])])
            return op("Transpose", [y], [ONNXAttribute("perm", .ints([1, 0, 2]))])
        }
        return op("Squeeze", [outs[1], ints([0])])
    }
}
