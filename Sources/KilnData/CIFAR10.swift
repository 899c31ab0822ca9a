// CIFAR-10, binary version: cifar-10-binary.tar.gz holds cifar-10-batches-bin/
// data_batch_1.bin … data_batch_5.bin and test_batch.bin; each record is one label byte
// followed by 3072 bytes of image in channel-major order (1024 red, 1024 green, 1024 blue,
// each 32×32 row-major).

public enum CIFAR10 {
    public static let recordSize = 1 + 3072
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"

    /// Parses the archive into `image` [N,32,32,3] float32 in [0,1] (NHWC) and `label` [N]
    /// int32 in 0…9. `name` is the archive name used in error messages.
    public static func parse(tarGz bytes: [UInt8], name: String = "cifar-10-binary.tar.gz") throws(DatasetError) -> DatasetSplits {
        let tar = try Gzip.decompress(bytes, name: name)
        let members = try Tar.regularFiles(tar, name: name)
        // Files are matched by base name, wherever they sit in the archive.
        var byName = [String: Range<Int>]()
        for m in members {
            let base = m.path.split(separator: "/").last.map(String.init) ?? m.path
            if trainFiles.contains(base) || base == testFile {
                guard byName[base] == nil else { throw DatasetError(field: name, "archive holds \(base) twice") }
                byName[base] = m.data
            }
        }
        func ranges(_ files: [String]) throws(DatasetError) -> [(String, Range<Int>)] {
            var out = [(String, Range<Int>)]()
            for f in files {
                guard let r = byName[f] else { throw DatasetError(field: name, "archive lacks \(f)") }
                out.append((f, r))
            }
            return out
        }
        let train = try decode(tar, ranges(trainFiles))
        let test = try decode(tar, ranges([testFile]))
        return DatasetSplits(train: train, test: test)
    }

    static func decode(_ tar: [UInt8], _ files: [(String, Range<Int>)]) throws(DatasetError) -> Dataset {
        var rows = 0
        for (f, r) in files {
            guard r.count % recordSize == 0 else {
                throw DatasetError(field: f, "size \(r.count) bytes is not a whole number of \(recordSize)-byte records (truncated?)")
            }
            rows += r.count / recordSize
        }
        var badLabel: (String, Int, UInt8)?
        var labels = [Float](repeating: 0, count: rows)
        let image = [Float](unsafeUninitializedCapacity: rows * 3072) { out, initialized in
            var table = [Float](repeating: 0, count: 256)
            for i in 0..<256 { table[i] = Float(i) / 255 }
            tar.withUnsafeBufferPointer { src in
                table.withUnsafeBufferPointer { t in
                    labels.withUnsafeMutableBufferPointer { lab in
                        var row = 0
                        for (f, r) in files {
                            let n = r.count / recordSize
                            for k in 0..<n {
                                let rec = src.baseAddress! + r.lowerBound + k * recordSize
                                if rec[0] > 9, badLabel == nil { badLabel = (f, k, rec[0]) }
                                lab[row] = Float(rec[0])
                                let px = rec + 1
                                let dst = out.baseAddress! + row * 3072
                                // CHW → HWC.
                                for i in 0..<1024 {
                                    dst[3 * i] = t[Int(px[i])]
                                    dst[3 * i + 1] = t[Int(px[1024 + i])]
                                    dst[3 * i + 2] = t[Int(px[2048 + i])]
                                }
                                row += 1
                            }
                        }
                    }
                }
            }
            initialized = rows * 3072
        }
        if let (f, k, v) = badLabel {
            throw DatasetError(field: f, "record \(k) has label \(v); CIFAR-10 labels are 0…9")
        }
        return try Dataset(fields: [
            "image": DataArray(shape: [rows, 32, 32, 3], dtype: .float32, values: image),
            "label": DataArray(shape: [rows], dtype: .int32, values: labels),
        ])
    }
}

/// A minimal tar reader: ustar/GNU/pax headers, regular files only.
enum Tar {
    struct Member {
        var path: String
        var data: Range<Int>
    }

    static func regularFiles(_ tar: [UInt8], name: String) throws(DatasetError) -> [Member] {
        var members = [Member]()
        var offset = 0
        var longName: String?
        var paxPath: String?
        func fail(_ why: String) -> DatasetError { DatasetError(field: name, why) }
        while true {
            guard offset + 512 <= tar.count else {
                // Archives end with two zero blocks, but some writers stop after the last file.
                if offset == tar.count && !members.isEmpty { break }
                throw fail("truncated tar archive (header at byte \(offset) is incomplete)")
            }
            let h = tar[offset..<(offset + 512)]
            if h.allSatisfy({ $0 == 0 }) { break }
            // Header checksum: sum of all header bytes with the checksum field taken as spaces.
            var sum = 0
            for (i, b) in h.enumerated() { sum += (i >= 148 && i < 156) ? 0x20 : Int(b) }
            guard let stored = octal(tar, offset + 148, 8), stored == sum else {
                throw fail("corrupt tar header at byte \(offset) (checksum mismatch)")
            }
            guard let size = number(tar, offset + 124, 12), size >= 0 else {
                throw fail("corrupt tar header at byte \(offset) (bad size field)")
            }
            let dataStart = offset + 512
            guard size <= tar.count - dataStart else {
                throw fail("truncated tar archive (member at byte \(offset) declares \(size) bytes)")
            }
            let type = tar[offset + 156]
            var path = cString(tar, offset, 100)
            let magic = cString(tar, offset + 257, 6)
            if magic == "ustar" {
                let prefix = cString(tar, offset + 345, 155)
                if !prefix.isEmpty { path = prefix + "/" + path }
            }
            let data = dataStart..<(dataStart + size)
            switch type {
            case UInt8(ascii: "L"): // GNU long name for the next member
                longName = String(decoding: tar[data].prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"): // pax extended header for the next member
                paxPath = paxValue(tar[data], key: "path")
            case UInt8(ascii: "0"), 0:
                members.append(Member(path: paxPath ?? longName ?? path, data: data))
                longName = nil; paxPath = nil
            default: // directories, links, global pax headers, …: skipped
                if type != UInt8(ascii: "g") { longName = nil; paxPath = nil }
            }
            let padded = (size + 511) / 512 * 512
            offset = dataStart + min(padded, tar.count - dataStart)
        }
        return members
    }

    static func cString(_ b: [UInt8], _ o: Int, _ n: Int) -> String {
        String(decoding: b[o..<(o + n)].prefix { $0 != 0 }, as: UTF8.self)
    }

    static func octal(_ b: [UInt8], _ o: Int, _ n: Int) -> Int? {
        var v = 0
        var seen = false
        for c in b[o..<(o + n)] {
            if c == 0 || c == 0x20 { if seen { break } else { continue } }
            guard c >= 0x30, c <= 0x37, v < (1 << 60) else { return nil }
            v = v * 8 + Int(c - 0x30)
            seen = true
        }
        return seen ? v : nil
    }

    /// Octal, or GNU base-256 when the high bit of the first byte is set.
    static func number(_ b: [UInt8], _ o: Int, _ n: Int) -> Int? {
        if b[o] & 0x80 != 0 {
            var v = Int(b[o] & 0x7f)
            for c in b[(o + 1)..<(o + n)] {
                guard v < (1 << 54) else { return nil }
                v = v << 8 | Int(c)
            }
            return v
        }
        return octal(b, o, n)
    }

    /// Records are "<length> <key>=<value>\n".
    static func paxValue(_ data: ArraySlice<UInt8>, key: String) -> String? {
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            let record = line[line.index(after: space)...]
            if let eq = record.firstIndex(of: "="), record[..<eq] == key {
                return String(record[record.index(after: eq)...])
            }
        }
        return nil
    }
}
