// The parts of onnx.proto (proto2, package onnx) that an exported Kiln model uses, and
// their encoding. Field numbers are onnx.proto's; only the fields written are listed.

/// `TensorProto.DataType`.
public enum ONNXDataType: Int64, Sendable {
    case float = 1
    case int64 = 7
}

/// `TensorProto`: an initializer (weights, constants) with its data as raw bytes.
public struct ONNXTensor: Sendable {
    public var name: String
    public var dims: [Int]
    public var type: ONNXDataType
    /// Little-endian values (`raw_data`).
    public var raw: [UInt8]

    public init(_ name: String, dims: [Int], floats: [Float]) {
        precondition(dims.reduce(1, *) == floats.count, "tensor \(name): \(floats.count) values for dims \(dims)")
        self.name = name
        self.dims = dims
        type = .float
        raw = ProtobufWriter.littleEndianBytes(floats)
    }

    public init(_ name: String, dims: [Int], int64s: [Int64]) {
        precondition(dims.reduce(1, *) == int64s.count, "tensor \(name): \(int64s.count) values for dims \(dims)")
        self.name = name
        self.dims = dims
        type = .int64
        raw = []
        raw.reserveCapacity(int64s.count * 8)
        for v in int64s {
            let u = UInt64(bitPattern: v)
            for b in 0..<8 { raw.append(UInt8((u >> (8 * UInt64(b))) & 0xFF)) }
        }
    }

    func encode(_ w: inout ProtobufWriter) {
        w.packedInts(1, dims.map(Int64.init))  // dims
        w.int(2, type.rawValue)                // data_type
        w.string(8, name)                      // name
        w.lengthDelimited(9, raw)              // raw_data
    }
}

/// `AttributeProto`: a named operator attribute of one type.
public struct ONNXAttribute: Sendable {
    public enum Value: Sendable {
        case float(Float)
        case int(Int)
        case string(String)
        case tensor(ONNXTensor)
        case floats([Float])
        case ints([Int])
    }

    public var name: String
    public var value: Value

    public init(_ name: String, _ value: Value) {
        self.name = name
        self.value = value
    }

    func encode(_ w: inout ProtobufWriter) {
        w.string(1, name)
        // `type` (field 20) is AttributeProto.AttributeType.
        switch value {
        case let .float(f): w.float(2, f); w.int(20, 1)
        case let .int(i): w.int(3, Int64(i)); w.int(20, 2)
        case let .string(s): w.string(4, s); w.int(20, 3)
        case let .tensor(t): w.message(5) { t.encode(&$0) }; w.int(20, 4)
        case let .floats(fs): w.packedFloats(7, fs); w.int(20, 6)
        case let .ints(is_): w.packedInts(8, is_.map(Int64.init)); w.int(20, 7)
        }
    }
}

/// `NodeProto`: one operator call.
public struct ONNXNode: Sendable {
    public var op: String
    public var inputs: [String]
    public var outputs: [String]
    public var name: String
    public var attributes: [ONNXAttribute]

    public init(_ op: String, _ inputs: [String], _ outputs: [String], name: String, _ attributes: [ONNXAttribute] = []) {
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.name = name
        self.attributes = attributes
    }

    func encode(_ w: inout ProtobufWriter) {
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.string(3, name)
        w.string(4, op)
        for a in attributes { w.message(5) { a.encode(&$0) } }
    }
}

/// `ValueInfoProto` of a float tensor: a graph input or output with its shape, where
/// a dimension is a number or a symbolic name (`batch`).
public struct ONNXValueInfo: Sendable {
    public enum Dimension: Sendable, Equatable {
        case value(Int)
        case symbol(String)
    }

    public var name: String
    public var dims: [Dimension]

    public init(_ name: String, dims: [Dimension]) {
        self.name = name
        self.dims = dims
    }

    func encode(_ w: inout ProtobufWriter) {
        w.string(1, name)
        w.message(2) { type in                      // TypeProto.type
            type.message(1) { tensor in             // TypeProto.tensor_type
                tensor.int(1, ONNXDataType.float.rawValue)  // elem_type
                tensor.message(2) { shape in        // shape: TensorShapeProto
                    for d in dims {
                        shape.message(1) { dim in   // dim
                            switch d {
                            case let .value(n): dim.int(1, Int64(n))     // dim_value
                            case let .symbol(s): dim.string(2, s)        // dim_param
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GraphProto`.
public struct ONNXGraph: Sendable {
    public var name: String
    public var nodes: [ONNXNode] = []
    public var initializers: [ONNXTensor] = []
    public var inputs: [ONNXValueInfo] = []
    public var outputs: [ONNXValueInfo] = []

    public init(name: String) { self.name = name }

    func encode(_ w: inout ProtobufWriter) {
        for n in nodes { w.message(1) { n.encode(&$0) } }
        w.string(2, name)
        for t in initializers { w.message(5) { t.encode(&$0) } }
        for i in inputs { w.message(11) { i.encode(&$0) } }
        for o in outputs { w.message(12) { o.encode(&$0) } }
    }
}

/// `ModelProto` with one opset import of the default domain.
public struct ONNXModel: Sendable {
    /// IR version 8 (2021-07-30) covers opset 18 and is read by every current runtime.
    public static let irVersion: Int64 = 8
    public static let opset: Int64 = 18

    public var graph: ONNXGraph
    public var producerVersion: String
    public var docString: String

    public init(graph: ONNXGraph, producerVersion: String = "1", docString: String = "") {
        self.graph = graph
        self.producerVersion = producerVersion
        self.docString = docString
    }

    /// The serialized `ModelProto`: what a `.onnx` file holds.
    public func serialized() -> [UInt8] {
        var w = ProtobufWriter()
        w.int(1, ONNXModel.irVersion)               // ir_version
        w.string(2, "kiln")                         // producer_name
        w.string(3, producerVersion)                // producer_version
        if !docString.isEmpty { w.string(6, docString) }  // doc_string
        w.message(7) { graph.encode(&$0) }          // graph
        w.message(8) { opset in                     // opset_import: OperatorSetIdProto
            opset.string(1, "")                     // domain: the default ONNX domain
            opset.int(2, ONNXModel.opset)           // version
        }
        return w.bytes
    }
}
