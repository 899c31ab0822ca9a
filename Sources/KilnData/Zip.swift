// Zip archives (PKWARE APPNOTE): the central directory is authoritative for names and
// sizes, since writers such as numpy may put zip64 placeholders or data descriptors in
// local headers. Members are stored (method 0) or deflated (method 8); CRC-32s are
// verified. Used by the .npz reader and the image-folder reader.
import CZlib

enum Zip {
    /// A member may inflate to at most this many times its compressed size…
    static let maxRatio = 200
    /// …once it is larger than this (small members of zeros compress further).
    static let ratioFloorBytes = 16 << 20
    struct Entry {
        var name: String
        var method: Int
        var flags: Int
        var crc: UInt32
        var compressedSize: Int
        var size: Int
        var localOffset: Int
    }

    /// The archive's entries, from its central directory. `archive` names the file in
    /// errors ("npz archive", "zip archive").
    static func entries(_ z: UnsafeRawBufferPointer, archive file: String) throws(DatasetError) -> [Entry] {
        func fail(_ why: String) -> DatasetError { DatasetError(field: file, why) }
        func u16(_ o: Int) -> Int { Int(z[o]) | Int(z[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int? {
            let v = UInt64(u32(o)) | UInt64(u32(o + 4)) << 32
            return v <= UInt64(Int.max) ? Int(v) : nil
        }

        // End of central directory: 22 bytes plus a comment of up to 65535 bytes.
        guard z.count >= 22 else { throw fail("not a zip archive (\(z.count) bytes)") }
        var eocd = -1
        var o = z.count - 22
        let lowest = max(0, z.count - 22 - 65535)
        while o >= lowest {
            if z[o] == 0x50, z[o + 1] == 0x4b, z[o + 2] == 0x05, z[o + 3] == 0x06 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else {
            if z.count >= 4, z[0] == 0x50, z[1] == 0x4b {
                throw fail("truncated zip archive (no end of central directory record)")
            }
            throw fail("not a zip archive (no end of central directory record)")
        }
        var entryCount = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        // Zip64: a locator right before the EOCD points at the zip64 EOCD record.
        if (entryCount == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF), eocd >= 20,
           u32(eocd - 20) == 0x0706_4b50 {
            guard let rec = u64(eocd - 20 + 8), rec >= 0, rec + 56 <= z.count, u32(rec) == 0x0606_4b50,
                  let n = u64(rec + 32), let size = u64(rec + 40), let off = u64(rec + 48) else {
                throw fail("corrupt zip64 end of central directory record")
            }
            entryCount = n; cdSize = size; cdOffset = off
        }
        guard cdOffset <= z.count, cdSize <= z.count - cdOffset else {
            throw fail("central directory lies outside the file (truncated archive?)")
        }
        guard entryCount <= cdSize / 46 else { throw fail("central directory declares \(entryCount) entries, which do not fit") }

        var entries = [Entry]()
        var p = cdOffset
        for _ in 0..<entryCount {
            guard p + 46 <= cdOffset + cdSize, u32(p) == 0x0201_4b50 else { throw fail("corrupt central directory entry") }
            let flags = u16(p + 8)
            let method = u16(p + 10)
            let crc = UInt32(u32(p + 16))
            var compressed = u32(p + 20)
            var size = u32(p + 24)
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            var localOffset = u32(p + 42)
            let end = p + 46 + nameLength + extraLength + commentLength
            guard end <= cdOffset + cdSize else { throw fail("corrupt central directory entry") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: z[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
            // Zip64 extended information: 64-bit values for whichever fields are 0xFFFFFFFF, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                guard e + 4 + len <= extraEnd else { throw fail("corrupt extra field for member '\(name)'") }
                if id == 0x0001 {
                    var q = e + 4
                    func next() throws(DatasetError) -> Int {
                        guard q + 8 <= e + 4 + len, let v = u64(q) else { throw fail("corrupt zip64 field for member '\(name)'") }
                        q += 8
                        return v
                    }
                    if size == 0xFFFF_FFFF { size = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                }
                e += 4 + len
            }
            entries.append(Entry(name: name, method: method, flags: flags, crc: crc,
                                 compressedSize: compressed, size: size, localOffset: localOffset))
            p = end
        }
        return entries
    }

    /// One member's bytes, inflated and checked against its CRC-32; `totalOut` counts the
    /// bytes read so far against `maxOutputBytes`. Errors name `field`.
    static func read(_ z: UnsafeRawBufferPointer, _ entry: Entry, field fieldName: String, archive file: String,
                     totalOut: inout Int, maxOutputBytes: Int) throws(DatasetError) -> [UInt8] {
        var member = [UInt8]()
        member.reserveCapacity(entry.size)
        do {
            try stream(z, entry, field: fieldName, archive: file, totalOut: &totalOut, maxOutputBytes: maxOutputBytes) { member.append(contentsOf: $0) }
        } catch let error as DatasetError {
            throw error
        } catch {
            preconditionFailure("appending to an array does not throw")
        }
        return member
    }

    /// One member's bytes handed to `sink` in pieces as they are inflated (never the
    /// whole member at once), then checked against its size and CRC-32. The bounds are
    /// checked from the central directory before anything is inflated: `totalOut` counts
    /// the bytes of the members so far against `maxOutputBytes`, and a member past
    /// `maxRatio` of its compressed size is refused; a member that inflates past its
    /// declared size is cut off there. `release` is told which spans of `z` were read.
    static func stream(_ z: UnsafeRawBufferPointer, _ entry: Entry, field fieldName: String, archive file: String,
                       totalOut: inout Int, maxOutputBytes: Int, release: (Range<Int>) -> Void = { _ in },
                       sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        func u16(_ o: Int) -> Int { Int(z[o]) | Int(z[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        if entry.flags & 1 != 0 { throw DatasetError(field: fieldName, "member is encrypted") }
        let lo = entry.localOffset
        guard lo <= z.count - 30, u32(lo) == 0x0403_4b50 else {
            throw DatasetError(field: fieldName, "local header of member '\(entry.name)' is missing (truncated or corrupt archive)")
        }
        let dataStart = lo + 30 + u16(lo + 26) + u16(lo + 28)
        guard dataStart <= z.count, entry.compressedSize <= z.count - dataStart else {
            throw DatasetError(field: fieldName, "member '\(entry.name)' extends past the end of the archive (truncated?)")
        }
        let (sum, overflow) = totalOut.addingReportingOverflow(entry.size)
        guard !overflow, sum <= maxOutputBytes else {
            throw DatasetError.overLimit(file, "members decompress to more than the limit of \(maxOutputBytes) bytes (member '\(entry.name)')")
        }
        // No real array compresses this well: a member past the ratio is a decompression bomb.
        if entry.size > Zip.ratioFloorBytes && entry.size / Swift.max(entry.compressedSize, 1) > Zip.maxRatio {
            throw DatasetError.overLimit(fieldName, "member '\(entry.name)' would inflate \(entry.compressedSize) bytes to \(entry.size), more than \(Zip.maxRatio)× (refused as a decompression bomb)")
        }
        totalOut = sum
        let raw = dataStart..<(dataStart + entry.compressedSize)
        var crc = crc32(0, nil, 0)
        var produced = 0
        func emit(_ piece: UnsafeRawBufferPointer) throws {
            guard !piece.isEmpty else { return }
            crc = crc32(crc, piece.baseAddress!.assumingMemoryBound(to: UInt8.self), uInt(piece.count))
            produced += piece.count
            try sink(piece)
        }
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.size else {
                throw DatasetError(field: fieldName, "stored member sizes disagree (\(entry.compressedSize) vs \(entry.size))")
            }
            var at = raw.lowerBound
            while at < raw.upperBound {
                let end = Swift.min(raw.upperBound, at + pieceBytes)
                try emit(UnsafeRawBufferPointer(rebasing: z[at..<end]))
                release(at..<end)
                at = end
            }
        case 8:
            try inflate(UnsafeRawBufferPointer(rebasing: z[raw]), name: fieldName, limit: entry.size, release: { release(($0.lowerBound + raw.lowerBound)..<($0.upperBound + raw.lowerBound)) }, sink: emit)
            guard produced == entry.size else {
                throw DatasetError(field: fieldName, "member inflates to \(produced) bytes, archive says \(entry.size)")
            }
        default:
            throw DatasetError(field: fieldName, "unsupported zip compression method \(entry.method) (only stored and deflated)")
        }
        guard UInt32(crc) == entry.crc else {
            throw DatasetError(field: fieldName, "CRC-32 mismatch (archive is corrupt)")
        }
    }

    /// Bytes handed to a sink at a time.
    static let pieceBytes = 1 << 20

    /// Inflates a raw deflate stream into pieces of at most `pieceBytes`; more than
    /// `limit` bytes of output is an error (the member's declared size).
    private static func inflate(_ input: UnsafeRawBufferPointer, name: String, limit: Int, release: (Range<Int>) -> Void,
                                sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var stream = z_stream()
        guard kiln_inflateInit2(&stream, -15) == Z_OK else { throw DatasetError(field: name, "could not initialise zlib") }
        defer { inflateEnd(&stream) }
        guard let inBase = input.baseAddress, !input.isEmpty else { throw DatasetError(field: name, "truncated deflate stream (no data)") }
        var out = [UInt8](repeating: 0, count: pieceBytes)
        var consumed = 0, released = 0, produced = 0
        while true {
            let chunkIn = Swift.min(input.count - consumed, pieceBytes)
            stream.next_in = UnsafeMutablePointer(mutating: inBase.assumingMemoryBound(to: UInt8.self) + consumed)
            stream.avail_in = uInt(chunkIn)
            let (status, made): (Int32, Int) = out.withUnsafeMutableBytes { buf in
                stream.next_out = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
                stream.avail_out = uInt(buf.count)
                let s = CZlib.inflate(&stream, Z_NO_FLUSH)
                return (s, buf.count - Int(stream.avail_out))
            }
            consumed += chunkIn - Int(stream.avail_in)
            produced += made
            guard produced <= limit else {
                throw DatasetError(field: name, "member inflates to more than the \(limit) bytes the archive says")
            }
            if made > 0 { try out.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<made])) } }
            if consumed - released >= 4 * pieceBytes {
                release(released..<consumed)
                released = consumed
            }
            switch status {
            case Z_STREAM_END:
                // Raw members carry their compressed size; extra bytes mean a corrupt archive.
                guard consumed == input.count else { throw DatasetError(field: name, "unexpected data after the end of the deflate stream") }
                release(released..<consumed)
                return
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                if consumed < input.count || made > 0 { continue }
                throw DatasetError(field: name, "truncated deflate stream")
            default:
                throw DatasetError.zlib(status, stream, name: name, format: "deflate")
            }
        }
    }
}
