// NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// Accepted dtypes, little- or big-endian: f4, f8 → float32; u1 → uint8; i1, i2, i4, i8,
// u2, u4, u8, b1 → int32. Integer values must fit in Int32 (they are stored as Float, so values
// beyond ±2^24 lose precision). Floating values must be finite. Arrays must be in C order
// and have at least one axis (axis 0 is the row axis).

public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] // "\x93NUMPY"

    public static func parse(_ bytes: [UInt8], name: String) throws(DatasetError) -> DataArray {
        let r: Result<DataArray, DatasetError> = bytes.withUnsafeBytes { buf in
            do throws(DatasetError) { return .success(try parse(buf, name: name)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, name: String) throws(DatasetError) -> DataArray {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw DatasetError(field: name, "not a .npy array (missing \\x93NUMPY magic)")
        }
        guard let header = try Header.parse(bytes, name: name) else {
            throw DatasetError(field: name, ".npy header is truncated")
        }
        let available = bytes.count - header.dataStart
        guard available == header.dataBytes else {
            throw DatasetError(field: name, "shape \(header.shape) of \(header.descr) needs \(header.dataBytes) bytes of data but the file holds \(available)")
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[header.dataStart...])
        let count = header.count
        var failure: DatasetError?
        let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
            failure = header.kind.convert(data, count: count, into: out.baseAddress!, name: name)
            initialized = count
        }
        if let failure { throw failure }
        return DataArray(shape: header.shape, dtype: header.dtype, values: values)
    }

    /// A .npy header, checked: C order, a row axis, a supported dtype, a size that fits.
    struct Header {
        var descr: String
        var kind: ElementKind
        var shape: [Int]
        /// Where the data starts, counted from the magic.
        var dataStart: Int
        var count: Int
        var dataBytes: Int { count * kind.size }
        /// The dtype the values are kept as.
        var dtype: DType { kind.isFloat ? .float32 : kind.base == .unsigned && kind.size == 1 ? .uint8 : .int32 }

        /// The header at the start of `bytes`, or nil when more bytes are needed to read it.
        static func parse(_ bytes: UnsafeRawBufferPointer, name: String) throws(DatasetError) -> Header? {
            guard bytes.count >= 10 else { return nil }
            guard Array(bytes[0..<6]) == NPY.magic else {
                throw DatasetError(field: name, "not a .npy array (missing \\x93NUMPY magic)")
            }
            let major = bytes[6]
            let headerLength: Int
            let headerStart: Int
            switch major {
            case 1:
                headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
                headerStart = 10
            case 2, 3:
                guard bytes.count >= 12 else { return nil }
                headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
                headerStart = 12
            default:
                throw DatasetError(field: name, "unsupported .npy format version \(major).\(bytes[7])")
            }
            guard headerLength <= maxHeaderBytes else {
                throw DatasetError(field: name, ".npy header is truncated (declares \(headerLength) bytes)")
            }
            guard bytes.count >= headerStart + headerLength else { return nil }
            let headerText = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[headerStart..<(headerStart + headerLength)]),
                                    as: UTF8.self)
            var headerParser = HeaderParser(text: headerText, name: name)
            let header = try headerParser.parseDict()

            guard case let .string(descr)? = header["descr"] else {
                throw DatasetError(field: name, ".npy header lacks a 'descr' string (structured dtypes are not supported)")
            }
            guard case let .bool(fortran)? = header["fortran_order"] else {
                throw DatasetError(field: name, ".npy header lacks 'fortran_order'")
            }
            guard case let .tuple(shape)? = header["shape"] else {
                throw DatasetError(field: name, ".npy header lacks a 'shape' tuple")
            }
            if fortran {
                throw DatasetError(field: name, "Fortran-order arrays are not supported; save a C-order array (np.ascontiguousarray)")
            }
            guard !shape.isEmpty else {
                throw DatasetError(field: name, "0-dimensional array; a field needs a row axis")
            }
            guard let kind = ElementKind(descr: descr) else {
                throw DatasetError(field: name, "unsupported dtype '\(descr)' (supported: float32, float64, int8/16/32/64, uint8/16/32/64, bool)")
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= Int(Int32.max) else {
                    throw DatasetError(field: name, "shape \(shape) is too large")
                }
                count = p
            }
            return Header(descr: descr, kind: kind, shape: shape, dataStart: headerStart + headerLength, count: count)
        }

        /// The longest header read (a real one is a few hundred bytes).
        static let maxHeaderBytes = 1 << 20
    }

    /// Encodes `array` as a version 1.0 .npy file: '<f4' for float32, '<i4' for int32,
    /// '|u1' for uint8.
    public static func encode(_ array: DataArray) -> [UInt8] {
        var out = encodedHeader(shape: array.shape, dtype: array.dtype)
        let dataStart = out.count
        out += [UInt8](repeating: 0, count: array.values.count * elementSize(array.dtype))
        out.withUnsafeMutableBytes { raw in
            array.values.withUnsafeBufferPointer { encodeValues($0, as: array.dtype, into: raw.baseAddress! + dataStart) }
        }
        return out
    }

    /// The bytes of one element as `encode` writes them.
    static func elementSize(_ dtype: DType) -> Int { dtype == .uint8 ? 1 : 4 }

    /// A version 1.0 header for `encode`'s dtypes, padded so the data starts at a multiple of 64.
    static func encodedHeader(shape: [Int], dtype: DType) -> [UInt8] {
        let descr = dtype == .float32 ? "<f4" : dtype == .uint8 ? "|u1" : "<i4"
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let n = header.utf8.count
        return magic + [1, 0, UInt8(n & 0xff), UInt8(n >> 8)] + Array(header.utf8)
    }

    /// Values in `dtype`'s little-endian form at `dst` (uint8 rounded and clamped; int32
    /// rounded, saturating).
    static func encodeValues(_ src: UnsafeBufferPointer<Float>, as dtype: DType, into dst: UnsafeMutableRawPointer) {
        if dtype == .uint8 {
            for i in 0..<src.count { dst.storeBytes(of: UInt8(Swift.min(Swift.max(src[i].rounded(), 0), 255)), toByteOffset: i, as: UInt8.self) }
        } else if dtype == .float32 {
            for i in 0..<src.count { dst.storeBytes(of: src[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        } else {
            for i in 0..<src.count {
                let v = Int32(exactly: src[i].rounded()) ?? (src[i] < 0 ? Int32.min : Int32.max)
                dst.storeBytes(of: v.littleEndian, toByteOffset: 4 * i, as: Int32.self)
            }
        }
    }
}

// MARK: - Element types

struct ElementKind {
    enum Base { case float, signed, unsigned, bool }
    var base: Base
    var size: Int
    var bigEndian: Bool
    var isFloat: Bool { base == .float }

    init?(descr: String) {
        let chars = Array(descr)
        guard chars.count >= 3 else { return nil }
        switch chars[0] {
        case "<", "|", "=": bigEndian = false
        case ">": bigEndian = true
        default: return nil
        }
        guard let size = Int(String(chars[2...])) else { return nil }
        self.size = size
        switch (chars[1], size) {
        case ("f", 4), ("f", 8): base = .float
        case ("i", 1), ("i", 2), ("i", 4), ("i", 8): base = .signed
        case ("u", 1), ("u", 2), ("u", 4), ("u", 8): base = .unsigned
        case ("b", 1): base = .bool
        default: return nil
        }
    }

    /// Converts `count` elements; returns an error for out-of-range or non-finite values.
    /// `first` is the index of the first element in the whole array, for error messages.
    func convert(_ data: UnsafeRawBufferPointer, count: Int, into dst: UnsafeMutablePointer<Float>, name: String, first: Int = 0) -> DatasetError? {
        let p = data.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        let be = bigEndian
        @inline(__always) func u16(_ i: Int) -> UInt16 { let v = p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self); return be ? UInt16(bigEndian: v) : UInt16(littleEndian: v) }
        @inline(__always) func u32(_ i: Int) -> UInt32 { let v = p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self); return be ? UInt32(bigEndian: v) : UInt32(littleEndian: v) }
        @inline(__always) func u64(_ i: Int) -> UInt64 { let v = p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self); return be ? UInt64(bigEndian: v) : UInt64(littleEndian: v) }
        func outOfRange(_ i: Int, _ v: String) -> DatasetError {
            DatasetError(field: name, "integer value \(v) at element \(first + i) does not fit in int32")
        }
        switch (base, size) {
        case (.float, 4):
            var bad = -1
            for i in 0..<count {
                let f = Float(bitPattern: u32(i))
                dst[i] = f
                if bad < 0 && !f.isFinite { bad = i }
            }
            if bad >= 0 { return DatasetError(field: name, "non-finite value (NaN or infinity) at element \(first + bad)") }
        case (.float, 8):
            var bad = -1
            for i in 0..<count {
                let f = Float(Double(bitPattern: u64(i)))
                dst[i] = f
                if bad < 0 && !f.isFinite { bad = i }
            }
            if bad >= 0 { return DatasetError(field: name, "non-finite value (NaN, infinity, or beyond float32 range) at element \(first + bad)") }
        case (.signed, 1):
            let b = p.assumingMemoryBound(to: Int8.self)
            for i in 0..<count { dst[i] = Float(b[i]) }
        case (.unsigned, 1):
            let b = p.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = Float(b[i]) }
        case (.bool, 1):
            let b = p.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count {
                guard b[i] <= 1 else { return DatasetError(field: name, "bool element \(first + i) is neither 0 nor 1") }
                dst[i] = Float(b[i])
            }
        case (.signed, 2):
            for i in 0..<count { dst[i] = Float(Int16(bitPattern: u16(i))) }
        case (.unsigned, 2):
            for i in 0..<count { dst[i] = Float(u16(i)) }
        case (.signed, 4):
            for i in 0..<count { dst[i] = Float(Int32(bitPattern: u32(i))) }
        case (.unsigned, 4):
            for i in 0..<count {
                let v = u32(i)
                if v > UInt32(Int32.max) { return outOfRange(i, String(v)) }
                dst[i] = Float(v)
            }
        case (.signed, 8):
            for i in 0..<count {
                let v = Int64(bitPattern: u64(i))
                if v < Int64(Int32.min) || v > Int64(Int32.max) { return outOfRange(i, String(v)) }
                dst[i] = Float(v)
            }
        default: // unsigned 8
            for i in 0..<count {
                let v = u64(i)
                if v > UInt64(Int32.max) { return outOfRange(i, String(v)) }
                dst[i] = Float(v)
            }
        }
        return nil
    }
}

// MARK: - Header (a Python dict literal)

enum HeaderValue: Equatable {
    case string(String)
    case bool(Bool)
    case tuple([Int])
}

/// Parses the subset of Python literal syntax that .npy headers use:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct HeaderParser {
    let chars: [UInt8]
    var i = 0
    let name: String

    init(text: String, name: String) {
        chars = Array(text.utf8)
        self.name = name
    }

    func fail(_ why: String) -> DatasetError {
        DatasetError(field: name, "malformed .npy header (\(why))")
    }

    mutating func skipSpace() {
        while i < chars.count, chars[i] == 0x20 || chars[i] == 0x0A || chars[i] == 0x09 || chars[i] == 0x0D { i += 1 }
    }

    mutating func expect(_ c: Character) throws(DatasetError) {
        skipSpace()
        guard i < chars.count, chars[i] == c.asciiValue! else { throw fail("expected '\(c)'") }
        i += 1
    }

    mutating func peek(_ c: Character) -> Bool {
        skipSpace()
        return i < chars.count && chars[i] == c.asciiValue!
    }

    mutating func parseDict() throws(DatasetError) -> [String: HeaderValue] {
        try expect("{")
        var out = [String: HeaderValue]()
        while !peek("}") {
            let key = try parseString()
            try expect(":")
            let value = try parseValue()
            guard out[key] == nil else { throw fail("duplicate key '\(key)'") }
            out[key] = value
            if peek(",") { i += 1 } else { break }
        }
        try expect("}")
        skipSpace()
        guard i == chars.count else { throw fail("unexpected text after the dictionary") }
        return out
    }

    mutating func parseString() throws(DatasetError) -> String {
        skipSpace()
        guard i < chars.count, chars[i] == 0x27 || chars[i] == 0x22 else { throw fail("expected a quoted string") }
        let quote = chars[i]
        i += 1
        let start = i
        while i < chars.count, chars[i] != quote {
            if chars[i] == 0x5C { throw fail("escapes in strings are not supported") }
            i += 1
        }
        guard i < chars.count else { throw fail("unterminated string") }
        let s = String(decoding: chars[start..<i], as: UTF8.self)
        i += 1
        return s
    }

    mutating func parseValue() throws(DatasetError) -> HeaderValue {
        skipSpace()
        guard i < chars.count else { throw fail("unexpected end") }
        switch chars[i] {
        case 0x27, 0x22: return .string(try parseString())
        case 0x28: // (
            i += 1
            var dims = [Int]()
            while !peek(")") {
                let start = i
                while i < chars.count, chars[i] >= 0x30 && chars[i] <= 0x39 { i += 1 }
                guard i > start, i - start <= 18, let d = Int(String(decoding: chars[start..<i], as: UTF8.self)) else {
                    throw fail("shape must be a tuple of non-negative integers")
                }
                // Python 2 era headers may write 3L.
                if i < chars.count, chars[i] == 0x4C { i += 1 }
                dims.append(d)
                if peek(",") { i += 1 } else { break }
            }
            try expect(")")
            return .tuple(dims)
        case 0x5B: // [ : structured dtype descriptions
            throw fail("structured dtypes are not supported")
        default:
            if chars[i...].starts(with: Array("True".utf8)) { i += 4; return .bool(true) }
            if chars[i...].starts(with: Array("False".utf8)) { i += 5; return .bool(false) }
            throw fail("unexpected value")
        }
    }
}
