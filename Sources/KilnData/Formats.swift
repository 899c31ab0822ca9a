import CZlib
import Foundation
import KilnJSON

/// SHA-256 (FIPS 180-4), fed incrementally so large data need not be copied into one
/// buffer to be hashed.
public struct SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var w = [UInt32](repeating: 0, count: 64)
    /// Bytes not yet forming a whole 64-byte block.
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        length += UInt64(bytes.count)
        var offset = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(start: base, count: take))
            offset = take
            if pending.count == 64 {
                let block = pending
                block.withUnsafeBytes { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while offset + 64 <= bytes.count {
            compress(base + offset)
            offset += 64
        }
        if offset < bytes.count { pending.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: bytes.count - offset)) }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public mutating func finalize() -> [UInt8] {
        var tail = pending
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        let bits = length &* 8
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        tail.withUnsafeBytes { t in var o = 0; while o < t.count { compress(t.baseAddress! + o); o += 64 } }
        return h.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
    }

    public mutating func finalizeHex() -> String { finalize().map { String(format: "%02x", $0) }.joined() }

    private mutating func compress(_ p: UnsafeRawPointer) {
        for i in 0..<16 { w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
        for i in 16..<64 {
            let s0 = (w[i - 15] >> 7 | w[i - 15] << 25) ^ (w[i - 15] >> 18 | w[i - 15] << 14) ^ (w[i - 15] >> 3)
            let s1 = (w[i - 2] >> 17 | w[i - 2] << 15) ^ (w[i - 2] >> 19 | w[i - 2] << 13) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for i in 0..<64 {
            let s1 = (e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)
            let t1 = hh &+ s1 &+ ((e & f) ^ (~e & g)) &+ SHA256.k[i] &+ w[i]
            let s0 = (a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)
            let t2 = s0 &+ ((a & b) ^ (a & c) ^ (b & c))
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
    }

    public static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }
}

public enum Gzip {
    /// Inflates a gzip (or zlib) stream; a truncated or corrupt stream is an error.
    public static func decompress(_ bytes: [UInt8], name: String = "data", maxOutputBytes: Int = 1 << 31) throws(DatasetError) -> [UInt8] {
        var stream = z_stream()
        guard kiln_inflateInit2(&stream, 47) == Z_OK else { throw DatasetError(field: name, message: "zlib could not start") }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        var input = bytes
        let inputCount = input.count
        try input.withUnsafeMutableBufferPointer { (inp) throws(DatasetError) in
            stream.next_in = inp.baseAddress
            stream.avail_in = uInt(inputCount)
            repeat {
                try chunk.withUnsafeMutableBufferPointer { (c) throws(DatasetError) in
                    stream.next_out = c.baseAddress
                    stream.avail_out = uInt(c.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    guard status == Z_OK || status == Z_STREAM_END else {
                        throw DatasetError(field: name, message: status == Z_BUF_ERROR ? "truncated gzip stream" : "corrupt gzip stream (zlib error \(status))")
                    }
                    out.append(contentsOf: c[0..<(c.count - Int(stream.avail_out))])
                }
                if out.count > maxOutputBytes { throw DatasetError(field: name, message: "decompresses to more than \(maxOutputBytes) bytes") }
                if status != Z_STREAM_END && stream.avail_in == 0 && stream.avail_out != 0 {
                    throw DatasetError(field: name, message: "truncated gzip stream")
                }
            } while status != Z_STREAM_END
        }
        return out
    }
}

/// The IDX format of MNIST: magic (0, 0, type, rank), big-endian u32 dimensions, data.
public enum IDX {
    public static func parse(_ bytes: [UInt8], name: String) throws(DatasetError) -> DataArray {
        guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else { throw DatasetError(field: name, message: "not an IDX file (bad magic number)") }
        guard bytes[2] == 0x08 else { throw DatasetError(field: name, message: "IDX type 0x\(String(bytes[2], radix: 16)) is not supported (only unsigned bytes)") }
        let rank = Int(bytes[3])
        guard rank >= 1, rank <= 4, bytes.count >= 4 + 4 * rank else { throw DatasetError(field: name, message: "IDX header is truncated") }
        var shape: [Int] = []
        for i in 0..<rank {
            let o = 4 + 4 * i
            shape.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
        }
        let count = shape.reduce(1, *)
        let start = 4 + 4 * rank
        guard bytes.count - start == count else {
            throw DatasetError(field: name, message: "IDX header says \(shape[0]) items of shape \(Array(shape.dropFirst())) (\(count) bytes) but the file holds \(bytes.count - start) bytes")
        }
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, n in
            bytes.withUnsafeBufferPointer { src in for i in 0..<count { buffer[i] = Float(src[start + i]) } }
            n = count
        }
        return DataArray(shape: shape, dtype: .int32, values: values)
    }
}

/// Nested JSON arrays as fields; integers only → int32, else float32.
public enum JSONFields {
    public static func parse(_ fields: JSON, path: String) throws(DatasetError) -> [String: DataArray] {
        guard let members = fields.objectMembers else { throw DatasetError(field: nil, message: "\(path): expected an object of field name → array") }
        var out: [String: DataArray] = [:]
        for (name, value) in members {
            var shape: [Int] = []
            var probe = value
            while let items = probe.arrayValue { shape.append(items.count); guard let f = items.first else { break }; probe = f }
            var values: [Float] = []
            var integral = true
            func walk(_ j: JSON, _ depth: Int) throws(DatasetError) {
                if depth == shape.count {
                    guard let n = j.doubleValue else { throw DatasetError(field: name, message: "\(path).\(name): expected numbers, got \(j.kindName)") }
                    guard abs(n) <= Double(Float.greatestFiniteMagnitude) else { throw DatasetError(field: name, message: "\(path).\(name): \(n) does not fit in float32") }
                    if n.rounded() != n { integral = false }
                    values.append(Float(n))
                    return
                }
                guard let items = j.arrayValue, items.count == shape[depth] else {
                    throw DatasetError(field: name, message: "\(path).\(name): ragged array (expected \(shape[depth]) items at depth \(depth))")
                }
                for item in items { try walk(item, depth + 1) }
            }
            try walk(value, 0)
            if shape.isEmpty { throw DatasetError(field: name, message: "\(path).\(name): expected an array with one row per sample") }
            out[name] = DataArray(shape: shape, dtype: integral && shape.count == 1 ? .int32 : .float32, values: values)
        }
        return out
    }
}

/// NumPy .npy (version 1–3, C order): float32/64, int32/64, uint8, bool.
public enum NPY {
    public static func parse(_ bytes: [UInt8], name: String) throws(DatasetError) -> DataArray {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { throw DatasetError(field: name, message: "not a .npy file") }
        let major = bytes[6]
        let headerLength = major == 1 ? Int(bytes[8]) | Int(bytes[9]) << 8 : (bytes.count >= 12 ? Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24 : -1)
        let start = (major == 1 ? 10 : 12) + headerLength
        guard headerLength >= 0, start <= bytes.count else { throw DatasetError(field: name, message: "truncated .npy header") }
        let header = String(decoding: bytes[(major == 1 ? 10 : 12)..<start], as: UTF8.self)
        func value(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descr = value("descr").flatMap({ $0.split(separator: "'").first.map(String.init) }) else { throw DatasetError(field: name, message: "no dtype in .npy header") }
        if value("fortran_order")?.hasPrefix("True") == true { throw DatasetError(field: name, message: "Fortran-ordered arrays are not supported; save with np.ascontiguousarray") }
        guard let shapeText = value("shape"), let open = shapeText.firstIndex(of: "("), let close = shapeText.firstIndex(of: ")") else { throw DatasetError(field: name, message: "no shape in .npy header") }
        let shape = shapeText[shapeText.index(after: open)..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let sizes: [String: Int] = ["<f4": 4, "<f8": 8, "<i4": 4, "<i8": 8, "|u1": 1, "|b1": 1, "<u1": 1, "|i1": 1]
        guard let size = sizes[descr] else { throw DatasetError(field: name, message: "dtype \(descr) is not supported (use float32, float64, int32, int64, uint8 or bool)") }
        guard bytes.count - start == count * size else { throw DatasetError(field: name, message: "shape \(shape) needs \(count * size) bytes but the file holds \(bytes.count - start)") }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + start
            for i in 0..<count {
                switch descr {
                case "<f4": values[i] = p.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                case "<f8": values[i] = Float(p.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
                case "<i4": values[i] = Float(p.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                case "<i8": values[i] = Float(p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                case "|i1": values[i] = Float(p.loadUnaligned(fromByteOffset: i, as: Int8.self))
                default: values[i] = Float(p.load(fromByteOffset: i, as: UInt8.self))
                }
            }
        }
        let isFloat = descr.contains("f")
        if isFloat, let bad = values.firstIndex(where: { !$0.isFinite }) { throw DatasetError(field: name, message: "value at index \(bad) is not finite") }
        return DataArray(shape: shape, dtype: isFloat ? .float32 : .int32, values: values)
    }

    public static func encode(_ array: DataArray) -> [UInt8] {
        let descr = array.dtype == .float32 ? "<f4" : "<i4"
        let shape = array.shape.count == 1 ? "(\(array.shape[0]),)" : "(\(array.shape.map(String.init).joined(separator: ", ")))"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        out += Array(header.utf8)
        if array.dtype == .float32 {
            array.values.withUnsafeBytes { out += $0 }
        } else {
            let ints = array.values.map { Int32($0) }
            ints.withUnsafeBytes { out += $0 }
        }
        return out
    }
}
