import CZlib
import Foundation

/// NumPy `.npz`: a zip of `.npy` members, stored or deflated. Each member becomes a
/// field named after the member without `.npy`.
public enum NPZ {
    public static func parse(_ bytes: [UInt8]) throws(DatasetError) -> [String: DataArray] {
        var out: [String: DataArray] = [:]
        for (name, data) in try Zip.members(bytes) {
            let field = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            out[field] = try NPY.parse(data, name: field)
        }
        if out.isEmpty { throw DatasetError(field: nil, message: "the .npz archive holds no arrays") }
        return out
    }
}

/// Just enough of the zip format for `.npz`: the central directory, stored and deflated
/// members, CRC-32 checked. Zip64 and encryption are refused.
enum Zip {
    static func u16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
    static func u32(_ b: [UInt8], _ o: Int) -> Int { u16(b, o) | u16(b, o + 2) << 16 }

    static func members(_ b: [UInt8]) throws(DatasetError) -> [(String, [UInt8])] {
        // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 22 - 65_535) {
            if b[i] == 0x50, b[i + 1] == 0x4B, b[i + 2] == 0x05, b[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw DatasetError(field: nil, message: "not a zip archive (no end of central directory)") }
        let count = u16(b, eocd + 10)
        var offset = u32(b, eocd + 16)
        guard count != 0xFFFF, offset != 0xFFFF_FFFF else { throw DatasetError(field: nil, message: "zip64 archives are not supported") }
        var result: [(String, [UInt8])] = []
        for _ in 0..<count {
            guard offset + 46 <= b.count, u32(b, offset) == 0x0201_4B50 else { throw DatasetError(field: nil, message: "corrupt zip central directory") }
            let flags = u16(b, offset + 8), method = u16(b, offset + 10)
            let crc = UInt32(u32(b, offset + 16)), compressed = u32(b, offset + 20), size = u32(b, offset + 24)
            let nameLength = u16(b, offset + 28), extraLength = u16(b, offset + 30), commentLength = u16(b, offset + 32)
            let local = u32(b, offset + 42)
            guard offset + 46 + nameLength <= b.count else { throw DatasetError(field: nil, message: "corrupt zip central directory") }
            let name = String(decoding: b[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
            offset += 46 + nameLength + extraLength + commentLength
            guard flags & 1 == 0 else { throw DatasetError(field: name, message: "encrypted zip members are not supported") }
            guard compressed != 0xFFFF_FFFF, size != 0xFFFF_FFFF else { throw DatasetError(field: name, message: "zip64 members are not supported") }
            guard local + 30 <= b.count, u32(b, local) == 0x0403_4B50 else { throw DatasetError(field: name, message: "corrupt zip local header") }
            let start = local + 30 + u16(b, local + 26) + u16(b, local + 28)
            guard start + compressed <= b.count else { throw DatasetError(field: name, message: "zip member is truncated") }
            let raw = Array(b[start..<(start + compressed)])
            let data: [UInt8]
            switch method {
            case 0: data = raw
            case 8: data = try inflateRaw(raw, expected: size, name: name)
            default: throw DatasetError(field: name, message: "zip compression method \(method) is not supported (use stored or deflated)")
            }
            guard data.count == size else { throw DatasetError(field: name, message: "zip member has \(data.count) bytes, expected \(size)") }
            let actual = data.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
            guard actual == crc else { throw DatasetError(field: name, message: "zip member fails its CRC-32 check") }
            result.append((name, data))
        }
        return result
    }

    /// Inflates a raw deflate stream (no zlib or gzip header).
    static func inflateRaw(_ input: [UInt8], expected: Int, name: String) throws(DatasetError) -> [UInt8] {
        var stream = z_stream()
        guard kiln_inflateInit2(&stream, -15) == Z_OK else { throw DatasetError(field: name, message: "zlib could not start") }
        defer { inflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: max(expected, 1))
        var source = input
        let status: Int32 = source.withUnsafeMutableBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                stream.next_in = src.baseAddress
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = uInt(dst.count)
                return inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw DatasetError(field: name, message: "corrupt or truncated deflate data") }
        return Array(out[0..<Int(stream.total_out)])
    }
}

/// CIFAR-10's binary release (`cifar-10-binary.tar.gz`): a tar of `data_batch_1.bin` …
/// `data_batch_5.bin` and `test_batch.bin`, each record one label byte and a 32×32×3
/// image stored channel by channel. Parsed without shelling out.
public enum CIFAR10 {
    static let recordSize = 1 + 32 * 32 * 3

    public static func parse(tarGz bytes: [UInt8]) throws(DatasetError) -> DatasetSplits {
        let file = "cifar-10-binary.tar.gz"
        let files = try Tar.files(try Gzip.decompress(bytes, name: file), archive: file)
        var train: [[UInt8]] = []
        for i in 1...5 {
            guard let batch = files.first(where: { $0.0.hasSuffix("data_batch_\(i).bin") })?.1 else {
                throw DatasetError(field: file, message: "the archive lacks data_batch_\(i).bin")
            }
            train.append(batch)
        }
        guard let test = files.first(where: { $0.0.hasSuffix("test_batch.bin") })?.1 else {
            throw DatasetError(field: file, message: "the archive lacks test_batch.bin")
        }
        return DatasetSplits(train: try records(train, name: "data_batch"), test: try records([test], name: "test_batch.bin"))
    }

    /// Records → image [N, 32, 32, 3] in [0, 1] (NHWC) and label [N].
    static func records(_ batches: [[UInt8]], name: String) throws(DatasetError) -> Dataset {
        for b in batches where b.count % recordSize != 0 {
            throw DatasetError(field: name, message: "\(b.count) bytes is not a whole number of \(recordSize)-byte records")
        }
        let n = batches.reduce(0) { $0 + $1.count / recordSize }
        var images = [Float](repeating: 0, count: n * 3072)
        var labels = [Float](repeating: 0, count: n)
        var row = 0
        for b in batches {
            b.withUnsafeBufferPointer { p in
                images.withUnsafeMutableBufferPointer { img in
                    for r in 0..<(b.count / recordSize) {
                        let base = r * recordSize
                        labels[row] = Float(p[base])
                        let dst = img.baseAddress! + row * 3072
                        for c in 0..<3 { for i in 0..<1024 { dst[i * 3 + c] = Float(p[base + 1 + c * 1024 + i]) / 255 } }
                        row += 1
                    }
                }
            }
        }
        if let bad = labels.firstIndex(where: { $0 > 9 }) {
            throw DatasetError(field: name, message: "record \(bad) has label \(Int(labels[bad])), outside 0–9")
        }
        return try Dataset(fields: [
            "image": DataArray(shape: [n, 32, 32, 3], dtype: .float32, values: images),
            "label": DataArray(shape: [n], dtype: .int32, values: labels),
        ])
    }
}

/// Regular files of a (ustar or v7) tar archive.
enum Tar {
    static func files(_ b: [UInt8], archive: String) throws(DatasetError) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        var offset = 0
        while offset + 512 <= b.count {
            let header = b[offset..<(offset + 512)]
            if header.allSatisfy({ $0 == 0 }) { break }
            func text(_ start: Int, _ length: Int) -> String {
                String(decoding: b[(offset + start)..<(offset + start + length)].prefix { $0 != 0 }, as: UTF8.self)
            }
            let sizeText = text(124, 12).trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeText, radix: 8), size >= 0 else {
                throw DatasetError(field: archive, message: "corrupt tar header at byte \(offset)")
            }
            let prefix = text(257, 6).hasPrefix("ustar") ? text(345, 155) : ""
            let name = prefix.isEmpty ? text(0, 100) : "\(prefix)/\(text(0, 100))"
            let type = b[offset + 156]
            let start = offset + 512
            guard start + size <= b.count else { throw DatasetError(field: archive, message: "\(name) is truncated") }
            if type == 0x30 || type == 0 { out.append((name, Array(b[start..<(start + size)]))) }
            offset = start + (size + 511) / 512 * 512
        }
        return out
    }
}
