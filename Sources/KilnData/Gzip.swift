// Decompression through zlib: gzip files (MNIST, CIFAR-10) and raw deflate (zip members).
import CZlib

public enum Gzip {
    /// Default cap on decompressed size: 1 GiB (CIFAR-10 is about 185 MB decompressed).
    public static let defaultMaxOutputBytes = 1 << 30

    /// Decompresses a gzip file (all members, if several are concatenated). `name` is the
    /// file name used in error messages. Fails on a bad header, corrupt data, a CRC
    /// mismatch, a truncated stream, or output larger than `maxOutputBytes`.
    public static func decompress(_ bytes: [UInt8], name: String? = nil,
                                  maxOutputBytes: Int = defaultMaxOutputBytes) throws(DatasetError) -> [UInt8] {
        guard bytes.count >= 18 else {
            throw DatasetError(field: name, bytes.isEmpty ? "empty file, expected gzip data"
                               : "truncated gzip stream (\(bytes.count) bytes)")
        }
        guard bytes[0] == 0x1f, bytes[1] == 0x8b else {
            throw DatasetError(field: name, "not a gzip file (bad magic bytes)")
        }
        // ISIZE (last 4 bytes) is the size modulo 2^32 of the last member: a good first guess.
        let n = bytes.count
        let isize = Int(bytes[n - 4]) | Int(bytes[n - 3]) << 8 | Int(bytes[n - 2]) << 16 | Int(bytes[n - 1]) << 24
        let hint = min(maxOutputBytes, max(isize, bytes.count * 2, 1 << 16))
        return try inflate(bytes, windowBits: 16 + 15, name: name, format: "gzip",
                           maxOutputBytes: maxOutputBytes, sizeHint: hint, multiMember: true)
    }

    /// Inflates an HTTP `Content-Encoding: deflate` body: zlib-wrapped deflate as RFC
    /// 9110 defines it, or raw deflate as some clients send it. Fails on corrupt data or
    /// output larger than `maxOutputBytes`.
    public static func inflateZlib(_ bytes: [UInt8], maxOutputBytes: Int) throws(DatasetError) -> [UInt8] {
        let hint = min(maxOutputBytes, max(bytes.count * 4, 1 << 12))
        // A zlib header is two bytes whose big-endian value is a multiple of 31, method 8.
        let wrapped = bytes.count >= 2 && bytes[0] & 0x0f == 8 && (Int(bytes[0]) << 8 | Int(bytes[1])) % 31 == 0
        return try inflate(bytes, windowBits: wrapped ? 15 : -15, name: nil, format: "deflate",
                           maxOutputBytes: maxOutputBytes, sizeHint: hint, multiMember: false)
    }

    static func inflate(_ input: [UInt8], windowBits: Int32, name: String?, format: String,
                        maxOutputBytes: Int, sizeHint: Int, multiMember: Bool) throws(DatasetError) -> [UInt8] {
        let r: Result<[UInt8], DatasetError> = input.withUnsafeBytes { buf in
            do throws(DatasetError) {
                return .success(try inflate(buf, windowBits: windowBits, name: name, format: format,
                                            maxOutputBytes: maxOutputBytes, sizeHint: sizeHint, multiMember: multiMember))
            } catch { return .failure(error) }
        }
        return try r.get()
    }

    static func inflate(_ input: UnsafeRawBufferPointer, windowBits: Int32, name: String?, format: String,
                        maxOutputBytes: Int, sizeHint: Int, multiMember: Bool) throws(DatasetError) -> [UInt8] {
        var stream = z_stream()
        guard kiln_inflateInit2(&stream, windowBits) == Z_OK else {
            throw DatasetError(field: name, "could not initialise zlib")
        }
        defer { inflateEnd(&stream) }

        // Sizes declared in headers are only hints: never allocate more up front than
        // deflate could produce from this input (its ratio is at most about 1032:1).
        let (bound, o) = input.count.multipliedReportingOverflow(by: 1032)
        let sizeHint = min(sizeHint, o ? Int.max : bound + 1024)
        // One byte of room past the limit tells "exactly at the limit" from "over it".
        let hardCap = maxOutputBytes + 1
        var out = [UInt8](repeating: 0, count: max(1, min(sizeHint + 1, hardCap)))
        var produced = 0
        var consumed = 0
        let total = input.count
        guard let inBase = input.baseAddress, total > 0 else {
            throw DatasetError(field: name, "truncated \(format) stream (no data)")
        }

        loop: while true {
            if produced > maxOutputBytes {
                throw DatasetError.overLimit(name, "decompressed data exceeds the limit of \(maxOutputBytes) bytes")
            }
            if produced == out.count {
                let grown = min(hardCap, max(out.count * 2, 1 << 16))
                out.append(contentsOf: repeatElement(0, count: grown - out.count))
            }
            let chunkIn = min(total - consumed, Int(UInt32.max))
            let chunkOut = min(out.count - produced, Int(UInt32.max))
            let status: Int32 = out.withUnsafeMutableBytes { outBuf in
                stream.next_in = UnsafeMutablePointer(mutating: inBase.assumingMemoryBound(to: UInt8.self) + consumed)
                stream.avail_in = uInt(chunkIn)
                stream.next_out = outBuf.baseAddress!.assumingMemoryBound(to: UInt8.self) + produced
                stream.avail_out = uInt(chunkOut)
                let s = CZlib.inflate(&stream, Z_NO_FLUSH)
                consumed += chunkIn - Int(stream.avail_in)
                produced += chunkOut - Int(stream.avail_out)
                return s
            }
            switch status {
            case Z_STREAM_END:
                // Concatenated gzip members are one file; skip trailing zero padding.
                if multiMember, consumed < total {
                    var rest = consumed
                    while rest < total && input[rest] == 0 { rest += 1 }
                    if rest == total { break loop }
                    guard total - rest >= 2, input[rest] == 0x1f, input[rest + 1] == 0x8b else {
                        throw DatasetError(field: name, "unexpected data after the end of the \(format) stream")
                    }
                    consumed = rest
                    inflateReset(&stream)
                    continue
                }
                if !multiMember, consumed < total {
                    // Raw members carry their compressed size; extra bytes mean a corrupt archive.
                    throw DatasetError(field: name, "unexpected data after the end of the \(format) stream")
                }
                break loop
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress possible: out of input (truncated) unless we merely need room.
                if produced == out.count { continue }
                throw DatasetError(field: name, "truncated \(format) stream")
            default:
                throw DatasetError.zlib(status, stream, name: name, format: format)
            }
        }
        if produced > maxOutputBytes {
            throw DatasetError.overLimit(name, "decompressed data exceeds the limit of \(maxOutputBytes) bytes")
        }
        out.removeLast(out.count - produced)
        return out
    }
}

extension DatasetError {
    /// Data refused for its size: the decompression bounds.
    static func overLimit(_ field: String?, _ message: String) -> DatasetError {
        var e = DatasetError(field: field, message)
        e.tooLarge = true
        return e
    }

    /// What a zlib status other than progress, end or "need more" means for the reader.
    static func zlib(_ status: Int32, _ stream: z_stream, name: String?, format: String) -> DatasetError {
        switch status {
        case Z_MEM_ERROR:
            return DatasetError(field: name, "out of memory while decompressing")
        default:
            let why = stream.msg.map { String(cString: $0) } ?? (status == Z_DATA_ERROR ? "invalid data" : "zlib error \(status)")
            return DatasetError(field: name, "corrupt \(format) stream (\(why))")
        }
    }
}
