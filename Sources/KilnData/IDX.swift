// IDX files (the MNIST format): 0x00 0x00, a type code, the number of dimensions, then
// one big-endian UInt32 per dimension, then the data in row-major order, big-endian.

public enum IDX {
    /// Parses an IDX file. Integer types give an `int32` array and floating types a
    /// `float32` array, with the values unchanged. `name` is used in error messages.
    public static func parse(_ bytes: [UInt8], name: String) throws(DatasetError) -> DataArray {
        try parse(bytes, name: name, scale: nil)
    }

    /// As `parse`, but when `scale` is given each value is multiplied by it and the
    /// result is `float32` (MNIST images: unsigned bytes × 1/255). `trailingShape` is
    /// appended to the shape (MNIST images get a channel axis of 1).
    static func parse(_ bytes: [UInt8], name: String, scale: Float?, trailingShape: [Int] = []) throws(DatasetError) -> DataArray {
        guard bytes.count >= 4 else {
            throw DatasetError(field: name, "IDX file too short for its header (\(bytes.count) bytes)")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(field: name, "not an IDX file (first two bytes must be zero; is it still compressed?)")
        }
        let typeCode = bytes[2]
        let elementSize: Int
        let isFloat: Bool
        switch typeCode {
        case 0x08, 0x09: elementSize = 1; isFloat = false
        case 0x0B: elementSize = 2; isFloat = false
        case 0x0C: elementSize = 4; isFloat = false
        case 0x0D: elementSize = 4; isFloat = true
        case 0x0E: elementSize = 8; isFloat = true
        default:
            throw DatasetError(field: name, "unknown IDX element type code 0x\(String(typeCode, radix: 16))")
        }
        let rank = Int(bytes[3])
        guard rank >= 1 else { throw DatasetError(field: name, "IDX header declares 0 dimensions") }
        let headerSize = 4 + 4 * rank
        guard bytes.count >= headerSize else {
            throw DatasetError(field: name, "IDX file too short for its header: \(rank) dimensions need \(headerSize) bytes, file has \(bytes.count)")
        }
        var shape = [Int]()
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
        }
        // Row size with overflow checks (dimensions are < 2^32 each, but their product need not fit).
        var rowElements = 1
        for d in shape.dropFirst() {
            let (p, o) = rowElements.multipliedReportingOverflow(by: d)
            guard !o, p <= Int(Int32.max) else {
                throw DatasetError(field: name, "IDX header declares an impossibly large shape \(shape)")
            }
            rowElements = p
        }
        let rowBytes = rowElements * elementSize
        let payload = bytes.count - headerSize
        let items = shape[0]
        let (needed, overflow) = items.multipliedReportingOverflow(by: rowBytes)
        if overflow || needed != payload {
            let held = rowBytes > 0 ? payload / rowBytes : 0
            if rowBytes > 0 && held != items {
                throw DatasetError(field: name, "IDX header says \(items) items but file holds \(held)"
                                   + (payload % rowBytes != 0 ? " and \(payload % rowBytes) extra bytes" : ""))
            }
            throw DatasetError(field: name, "IDX header says \(items) items of \(rowBytes) bytes (\(needed) bytes) but the file holds \(payload) bytes of data")
        }
        let count = items * rowElements
        let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
            bytes.withUnsafeBufferPointer { raw in
                let src = raw.baseAddress! + headerSize
                let dst = out.baseAddress!
                let s = scale ?? 1
                switch typeCode {
                case 0x08:
                    if scale != nil {
                        // Table lookup: one load per byte.
                        var table = [Float](repeating: 0, count: 256)
                        for i in 0..<256 { table[i] = Float(i) * s }
                        table.withUnsafeBufferPointer { t in
                            for i in 0..<count { dst[i] = t[Int(src[i])] }
                        }
                    } else {
                        for i in 0..<count { dst[i] = Float(src[i]) }
                    }
                case 0x09:
                    for i in 0..<count { dst[i] = Float(Int8(bitPattern: src[i])) * s }
                case 0x0B:
                    for i in 0..<count {
                        let v = Int16(bitPattern: UInt16(src[2 * i]) << 8 | UInt16(src[2 * i + 1]))
                        dst[i] = Float(v) * s
                    }
                case 0x0C, 0x0D:
                    let p = UnsafeRawPointer(src)
                    for i in 0..<count {
                        let bits = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                        dst[i] = (typeCode == 0x0C ? Float(Int32(bitPattern: bits)) : Float(bitPattern: bits)) * s
                    }
                default: // 0x0E
                    let p = UnsafeRawPointer(src)
                    for i in 0..<count {
                        let bits = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                        dst[i] = Float(Double(bitPattern: bits)) * s
                    }
                }
            }
            initialized = count
        }
        if isFloat, let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw DatasetError(field: name, "IDX data holds a non-finite value (NaN or infinity) at element \(bad)")
        }
        let dtype: DType = (isFloat || scale != nil) ? .float32 : .int32
        return DataArray(shape: shape + trailingShape, dtype: dtype, values: values)
    }
}
