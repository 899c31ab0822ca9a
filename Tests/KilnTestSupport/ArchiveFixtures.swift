// Builders for test archives: gzip and raw deflate through zlib, zip and tar.
import CZlib

public enum ArchiveFixtures {
    /// Compresses with zlib's deflate; windowBits 31 gives gzip, -15 raw deflate.
    public static func deflate(_ input: [UInt8], windowBits: Int32, level: Int32 = 6) -> [UInt8] {
        var stream = z_stream()
        let initStatus = deflateInit2_(&stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY,
                                       zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(initStatus == Z_OK)
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 64)
        var input = input
        let produced: Int = input.withUnsafeMutableBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(outBuf.count)
                let status = CZlib.deflate(&stream, Z_FINISH)
                precondition(status == Z_STREAM_END)
                return outBuf.count - Int(stream.avail_out)
            }
        }
        return Array(out[0..<produced])
    }

    public static func gzip(_ input: [UInt8]) -> [UInt8] { deflate(input, windowBits: 31) }
    public static func rawDeflate(_ input: [UInt8]) -> [UInt8] { deflate(input, windowBits: -15) }

    public static func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    public static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    public static func le32(_ v: Int) -> [UInt8] { le16(v & 0xffff) + le16((v >> 16) & 0xffff) }
    public static func be32(_ v: Int) -> [UInt8] { [UInt8((v >> 24) & 0xff), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

    /// A zip archive (what np.savez / np.savez_compressed write).
    public static func zip(_ members: [(name: String, data: [UInt8], deflated: Bool)]) -> [UInt8] {
        var out = [UInt8]()
        var central = [UInt8]()
        for m in members {
            let payload = m.deflated ? rawDeflate(m.data) : m.data
            let name = Array(m.name.utf8)
            let crc = Int(crc(m.data))
            let method = m.deflated ? 8 : 0
            let offset = out.count
            out += le32(0x0403_4b50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0)
            out += le32(crc) + le32(payload.count) + le32(m.data.count) + le16(name.count) + le16(0)
            out += name + payload
            central += le32(0x0201_4b50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0)
            central += le32(crc) + le32(payload.count) + le32(m.data.count) + le16(name.count) + le16(0) + le16(0)
            central += le16(0) + le16(0) + le32(0) + le32(offset) + name
        }
        let cdOffset = out.count
        out += central
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(members.count) + le16(members.count)
        out += le32(central.count) + le32(cdOffset) + le16(0)
        return out
    }

    /// A ustar archive of regular files.
    public static func tar(_ files: [(path: String, data: [UInt8])]) -> [UInt8] {
        var out = [UInt8]()
        func field(_ s: String, _ width: Int) -> [UInt8] {
            let b = Array(s.utf8)
            return b + [UInt8](repeating: 0, count: width - b.count)
        }
        func octal(_ v: Int, _ width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return field(String(repeating: "0", count: width - 1 - s.count) + s, width)
        }
        for f in files {
            var h = field(f.path, 100) + octal(0o644, 8) + octal(0, 8) + octal(0, 8) + octal(f.data.count, 12)
            h += octal(0, 12) + [UInt8](repeating: 0x20, count: 8) + [UInt8(ascii: "0")] + field("", 100)
            h += Array("ustar".utf8) + [0] + Array("00".utf8) + field("", 32) + field("", 32)
            h += octal(0, 8) + octal(0, 8) + field("", 155) + field("", 12)
            precondition(h.count == 512)
            let sum = h.reduce(0) { $0 + Int($1) }
            let s = String(sum, radix: 8)
            let chk = Array((String(repeating: "0", count: 6 - s.count) + s).utf8) + [0, 0x20]
            h.replaceSubrange(148..<156, with: chk)
            out += h + f.data + [UInt8](repeating: 0, count: (512 - f.data.count % 512) % 512)
        }
        out += [UInt8](repeating: 0, count: 1024)
        return out
    }
}
