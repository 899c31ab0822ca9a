#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What the dataset code needs of an array without its values: its shape and dtype.
public protocol ShapedArray {
    var shape: [Int] { get }
    var dtype: DType { get }
}

extension ShapedArray {
    public var rowCount: Int { shape[0] }
    public var rowShape: [Int] { Array(shape.dropFirst()) }
}

extension DataArray: ShapedArray {}

/// An uploaded array written to disk in the form the dataset stores keep (a version 1.0
/// `.npy` of `<f4`, `<i4` or `|u1`, fsynced), checked and waiting to be stored. The
/// store moves or copies the file; whatever is left at `path` is removed with the last
/// reference.
public final class StagedArray: ShapedArray, @unchecked Sendable {
    public let path: String
    public let shape: [Int]
    public let dtype: DType

    init(path: String, shape: [Int], dtype: DType) {
        self.path = path
        self.shape = shape
        self.dtype = dtype
    }

    deinit { unlink(path) }
}

/// A spool that cannot be created, or a spooled body that cannot be mapped: the server's
/// fault, not the upload's. (A write the disk refuses is an `AtomicFile.WriteError`.)
public struct StagingError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Writes uploaded arrays into one directory as `StagedArray`s: parsed arrays, `.npy`
/// files and `.npz` members, the last two streamed so an upload's values are never held
/// whole in memory.
public final class ArrayStager: @unchecked Sendable {
    public let directory: String
    private let lock = Lock()
    private var serial = 0

    public init(directory: String) throws(StagingError) {
        self.directory = directory
        do { try FileIO.makeDirectories(directory) } catch { throw StagingError(description: error.description) }
    }

    func newPath() -> String {
        let n = lock.locked { serial += 1; return serial }
        return "\(directory)/array-\(getpid())-\(n).npy"
    }

    /// A parsed array, written as the stores keep it.
    /// - Throws: `AtomicFile.WriteError`.
    public func stage(_ array: DataArray) throws -> StagedArray {
        let out = try OutputFile(path: newPath())
        try out.write(NPY.encodedHeader(shape: array.shape, dtype: array.dtype))
        let chunk = 1 << 18
        var scratch = [UInt8](repeating: 0, count: chunk * NPY.elementSize(array.dtype))
        var start = 0
        while start < array.values.count {
            let n = min(chunk, array.values.count - start)
            array.values.withUnsafeBufferPointer { src in
                scratch.withUnsafeMutableBytes { NPY.encodeValues(UnsafeBufferPointer(rebasing: src[start..<(start + n)]), as: array.dtype, into: $0.baseAddress!) }
            }
            try out.write(scratch, count: n * NPY.elementSize(array.dtype))
            start += n
        }
        try out.finish()
        return StagedArray(path: out.path, shape: array.shape, dtype: array.dtype)
    }

    /// A `.npy` file's array, read in windows and converted as it goes; `release` is told
    /// each window once it is read (`MappedFile.release`).
    /// - Throws: `DatasetError` for a malformed array, `AtomicFile.WriteError` for the disk.
    public func stageNPY(_ bytes: UnsafeRawBufferPointer, release: (Range<Int>) -> Void = { _ in }, name: String) throws -> StagedArray {
        var stream = try NPYStream(name: name, output: OutputFile(path: newPath()))
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + ArrayStager.window)
            try stream.feed(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            release(offset..<end)
            offset = end
        }
        return try stream.finish()
    }

    /// The span of an upload read (and released) at a time.
    static let window = 4 << 20

    /// The members of an `.npz` file, each inflated and converted as it goes; fields are
    /// named as `NPZ.parse` names them. `reshape` may give a member's array another shape
    /// of the same size, knowing all the field names (Keras's images gain a channel axis).
    /// - Throws: `DatasetError` for a malformed archive or member (`tooLarge` past the
    ///   bounds of `Zip.read`), `AtomicFile.WriteError` for the disk.
    public func stageNPZ(_ bytes: UnsafeRawBufferPointer, release: @escaping (Range<Int>) -> Void = { _ in }, maxOutputBytes: Int,
                         reshape: @escaping (_ fields: Set<String>, _ field: String, _ shape: [Int]) -> [Int] = { $2 }) throws -> [String: StagedArray] {
        let archive = "npz archive"
        let entries = try NPZ.arrayMembers(try Zip.entries(bytes, archive: archive), archive: archive)
        let names = Set(entries.map(\.field))
        var fields = [String: StagedArray]()
        var totalOut = 0
        for (field, entry) in entries {
            var stream = try NPYStream(name: field, output: OutputFile(path: newPath()), reshape: { reshape(names, field, $0) })
            try Zip.stream(bytes, entry, field: field, archive: archive, totalOut: &totalOut, maxOutputBytes: maxOutputBytes,
                           release: release) { piece in try stream.feed(piece) }
            fields[field] = try stream.finish()
        }
        return fields
    }
}

/// A read-only mapping of a whole file. Pages come in as they are read; `release` hands
/// read ones back, so walking a large file once keeps little of it resident (a mapped
/// page that is resident counts in the process's RSS).
public final class MappedFile: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public var count: Int { bytes.count }
    private let base: UnsafeMutableRawPointer?
    public init(path: String) throws(StagingError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StagingError(description: "cannot open \(path): \(FileIO.errorText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StagingError(description: "cannot stat \(path): \(FileIO.errorText())") }
        let size = Int(info.st_size)
        guard size > 0 else {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw StagingError(description: "cannot map \(path): \(FileIO.errorText())")
        }
        base = map
        bytes = UnsafeRawBufferPointer(start: map, count: size)
    }

    /// Drops the whole pages inside `range` from memory (they are read again if touched).
    public func release(_ range: Range<Int>) {
        guard let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (range.lowerBound + page - 1) / page * page
        let hi = range.upperBound == count ? count : range.upperBound / page * page
        guard hi > lo else { return }
        _ = madvise(base + lo, hi - lo, MADV_DONTNEED)
    }

    deinit {
        if let base { munmap(base, count) }
    }
}

/// A `.npy` array fed in pieces of any size and written out as the stores keep it: the
/// header is checked as soon as it is complete, each value converted (and checked) as it
/// arrives, and the length checked at the end.
struct NPYStream {
    let name: String
    let output: OutputFile
    let reshape: ([Int]) -> [Int]
    private var headerBytes: [UInt8] = []
    private var header: NPY.Header?
    private var shape: [Int] = []
    /// The bytes of an element split across two pieces.
    private var carry: [UInt8] = []
    private var elements = 0
    private var values: [Float] = []
    private var encoded: [UInt8] = []
    private static let block = 1 << 18

    init(name: String, output: OutputFile, reshape: @escaping ([Int]) -> [Int] = { $0 }) {
        self.name = name
        self.output = output
        self.reshape = reshape
    }

    mutating func feed(_ piece: UnsafeRawBufferPointer) throws {
        guard let header else {
            headerBytes.append(contentsOf: piece)
            let parsed = try headerBytes.withUnsafeBytes { raw throws(DatasetError) in try NPY.Header.parse(raw, name: name) }
            guard let parsed else {
                if headerBytes.count > NPY.Header.maxHeaderBytes + 12 { throw DatasetError(field: name, ".npy header is truncated") }
                return
            }
            try begin(parsed)
            let rest = Array(headerBytes[parsed.dataStart...])
            headerBytes = []
            try rest.withUnsafeBytes { try feed($0) }
            return
        }
        var data = piece
        if !carry.isEmpty {
            let need = header.kind.size - carry.count
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: data.prefix(need)))
            data = UnsafeRawBufferPointer(rebasing: data.dropFirst(need))
            guard carry.count == header.kind.size else { return }
            try carry.withUnsafeBytes { try convert($0, count: 1) }
            carry = []
        }
        let whole = data.count / header.kind.size
        var done = 0
        while done < whole {
            let n = min(NPYStream.block, whole - done)
            try convert(UnsafeRawBufferPointer(rebasing: data[(done * header.kind.size)..<((done + n) * header.kind.size)]), count: n)
            done += n
        }
        carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[(whole * header.kind.size)...]))
    }

    private mutating func begin(_ parsed: NPY.Header) throws {
        shape = reshape(parsed.shape)
        precondition(shape.reduce(1, *) == parsed.count, "a reshape keeps the size")
        header = parsed
        values = [Float](repeating: 0, count: NPYStream.block)
        encoded = [UInt8](repeating: 0, count: NPYStream.block * NPY.elementSize(parsed.dtype))
        try output.write(NPY.encodedHeader(shape: shape, dtype: parsed.dtype))
    }

    private mutating func convert(_ data: UnsafeRawBufferPointer, count: Int) throws {
        guard let header else { return }
        guard elements + count <= header.count else {
            throw DatasetError(field: name, "shape \(header.shape) of \(header.descr) needs \(header.dataBytes) bytes of data but the file holds more")
        }
        let first = elements
        let failure = values.withUnsafeMutableBufferPointer { header.kind.convert(data, count: count, into: $0.baseAddress!, name: name, first: first) }
        if let failure { throw failure }
        let size = NPY.elementSize(header.dtype)
        values.withUnsafeBufferPointer { src in
            encoded.withUnsafeMutableBytes { NPY.encodeValues(UnsafeBufferPointer(rebasing: src[0..<count]), as: header.dtype, into: $0.baseAddress!) }
        }
        try output.write(encoded, count: count * size)
        elements += count
    }

    mutating func finish() throws -> StagedArray {
        guard let header else {
            if headerBytes.count < 10 { throw DatasetError(field: name, "not a .npy array (missing \\x93NUMPY magic)") }
            throw DatasetError(field: name, ".npy header is truncated")
        }
        guard elements == header.count, carry.isEmpty else {
            let held = elements * header.kind.size + carry.count
            throw DatasetError(field: name, "shape \(header.shape) of \(header.descr) needs \(header.dataBytes) bytes of data but the file holds \(held)")
        }
        try output.finish()
        return StagedArray(path: output.path, shape: shape, dtype: header.dtype)
    }
}
