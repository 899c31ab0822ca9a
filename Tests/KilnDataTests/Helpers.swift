// Helpers that build test inputs: gzip and raw deflate through zlib, zip and tar archives.
import CZlib
import XCTest
@testable import KilnData

enum Fixtures {
    /// Compresses with zlib's deflate; windowBits 31 gives gzip, -15 raw deflate.
    static func deflate(_ input: [UInt8], windowBits: Int32, level: Int32 = 6) -> [UInt8] {
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

    static func gzip(_ input: [UInt8]) -> [UInt8] { deflate(input, windowBits: 31) }
    static func rawDeflate(_ input: [UInt8]) -> [UInt8] { deflate(input, windowBits: -15) }

    static func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    static func le32(_ v: Int) -> [UInt8] { le16(v & 0xffff) + le16((v >> 16) & 0xffff) }
    static func be32(_ v: Int) -> [UInt8] { [UInt8((v >> 24) & 0xff), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

    /// A zip archive (what np.savez / np.savez_compressed write).
    static func zip(_ members: [(name: String, data: [UInt8], deflated: Bool)]) -> [UInt8] {
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
    static func tar(_ files: [(path: String, data: [UInt8])]) -> [UInt8] {
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

    /// An .npy file with the given descr, shape, raw little-endian data and order.
    static func npy(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false, version: UInt8 = 1) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
        let pre = version == 1 ? 10 : 12
        header += String(repeating: " ", count: (64 - (pre + header.utf8.count + 1) % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        out += version == 1 ? le16(header.utf8.count) : le32(header.utf8.count)
        return out + Array(header.utf8) + data
    }

    static func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// The real MNIST files: repoRoot/../shared/data/mnist.
    static func mnistDirectory(file: String = #filePath) throws -> String {
        var parts = file.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        parts.removeLast(3) // Tests/KilnDataTests/X.swift
        let dir = parts.joined(separator: "/") + "/../shared/data/mnist"
        for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            if access(dir + "/" + f, R_OK) != 0 { throw XCTSkip("MNIST files not found in \(dir)") }
        }
        return dir
    }

    static func temporaryDirectory() -> String {
        var template = Array("/tmp/kiln-data-test-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return path
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func readFile(_ path: String) -> [UInt8] {
        (try? KilnData.FileIO.read(path, name: path)) .flatMap { $0 } ?? []
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }
}

/// Asserts that `body` throws a DatasetError whose description contains every fragment.
func assertDatasetError<T>(_ body: @autoclosure () throws -> T, contains fragments: [String],
                           file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a DatasetError containing \(fragments)", file: file, line: line)
    } catch let error as DatasetError {
        for f in fragments where !error.description.contains(f) {
            XCTFail("error '\(error.description)' lacks '\(f)'", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}
