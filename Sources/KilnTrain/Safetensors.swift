import KilnJSON
import KilnTensor

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// each tensor name to dtype, shape and byte offsets, then the raw little-endian data.
/// Kiln stores F32 tensors named `<node>.<weight>`, loadable by name in Keras or PyTorch.
public enum Safetensors {
    public struct FormatError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "invalid safetensors file: \(message)" }
    }

    public static func encode(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) -> [UInt8] {
        var header: [(String, JSON)] = []
        if !metadata.isEmpty {
            header.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })))
        }
        var offset = 0
        for (name, t) in tensors {
            let bytes = t.count * 4
            header.append((name, .object([("dtype", "F32"), ("shape", JSON(t.shape)), ("data_offsets", JSON([offset, offset + bytes]))])))
            offset += bytes
        }
        var headerBytes = Array(JSON.object(header).serialized().utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for (_, t) in tensors {
            t.withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: UInt8.self) { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> (tensors: [(String, Tensor)], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw FormatError(message: "shorter than its 8-byte header length") }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(bytes.count - 8) else { throw FormatError(message: "header length \(length) exceeds the file") }
        let dataStart = 8 + Int(length)
        let header: JSON
        do { header = try JSON.parse(Array(bytes[8..<dataStart])) } catch { throw FormatError(message: "header is not JSON: \(error)") }
        guard let members = header.objectMembers else { throw FormatError(message: "header is not an object") }
        var tensors: [(String, Tensor)] = []
        var metadata: [String: String] = [:]
        for (name, info) in members {
            if name == "__metadata__" {
                for (k, v) in info.objectMembers ?? [] { metadata[k] = v.stringValue ?? v.serialized() }
                continue
            }
            guard info["dtype"]?.stringValue == "F32" else { throw FormatError(message: "\(name): only F32 tensors are supported") }
            guard let shapeItems = info["shape"]?.arrayValue, let offsets = info["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].intValue, let end = offsets[1].intValue else {
                throw FormatError(message: "\(name): missing shape or data_offsets")
            }
            let shape = shapeItems.compactMap(\.intValue)
            guard shape.count == shapeItems.count, shape.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }) else { throw FormatError(message: "\(name): invalid shape") }
            var count = 1
            for d in shape {
                let (r, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError(message: "\(name): shape too large") }
                count = r
            }
            guard begin >= 0, end >= begin, end - begin == count * 4, dataStart + end <= bytes.count else {
                throw FormatError(message: "\(name): data_offsets [\(begin), \(end)] do not match shape \(shape) within the file")
            }
            let t = Tensor(uninitializedShape: shape)
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(t.storage.pointer).copyMemory(from: raw.baseAddress! + dataStart + begin, byteCount: end - begin)
            }
            tensors.append((name, t))
        }
        return (tensors, metadata)
    }
}
