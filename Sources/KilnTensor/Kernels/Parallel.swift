import Dispatch

/// Splits `0..<count` into contiguous chunks run concurrently on the cores when the work
/// is large enough to pay for it; small work runs inline.
@inline(__always)
func parallelChunks(_ count: Int, minimumChunk: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    Parallel.forEachChunk(count, minimumChunk: minimumChunk) { _, range in body(range) }
}

public enum Parallel {
    /// Cores used for element-wise work (the BLAS library manages its own threads).
    public static let cores: Int = max(1, sysconfCores())

    /// Calls `body(i)` for every i in `0..<count`, concurrently when there is more than
    /// one (one call per core: the blocks of a split product or batch).
    @inline(__always)
    public static func run(_ count: Int, _ body: (Int) -> Void) {
        if count == 1 { body(0); return }
        perform(count, body)
    }

    /// Calls `body(i)` for every i in `0..<count` concurrently, on the caller and Kiln's
    /// workers (`WorkerPool`), or on Dispatch's when those are busy.
    public static func perform(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if WorkerPool.shared.perform(count, body) { return }
        withoutActuallyEscaping(body) { body in DispatchQueue.concurrentPerform(iterations: count, execute: body) }
    }

    /// The sum of `body` over the chunks of `0..<count` (see `forEachChunk`), added in
    /// chunk order, so the result does not depend on which core finishes first.
    public static func sum(_ count: Int, minimumChunk: Int = 1 << 15, _ body: (Range<Int>) -> Double) -> Double {
        var sums = [Double](repeating: 0, count: chunkCount(count, minimumChunk: minimumChunk))
        sums.withUnsafeMutableBufferPointer { sp in
            forEachChunk(count, minimumChunk: minimumChunk) { c, range in sp[c] = body(range) }
        }
        return sums.reduce(0, +)
    }

    /// How many chunks `forEachChunk` cuts `count` items into.
    public static func chunkCount(_ count: Int, minimumChunk: Int = 1 << 15) -> Int {
        count < 2 * minimumChunk || cores == 1 ? 1 : min(cores, count / minimumChunk)
    }

    /// Calls `body(chunk, range)` for each of `chunkCount(count, minimumChunk:)`
    /// contiguous ranges covering `0..<count`, concurrently when there is more than one.
    @inline(__always)
    public static func forEachChunk(_ count: Int, minimumChunk: Int = 1 << 15, _ body: (Int, Range<Int>) -> Void) {
        let chunks = chunkCount(count, minimumChunk: minimumChunk)
        if chunks == 1 {
            body(0, 0..<count)
            return
        }
        let size = (count + chunks - 1) / chunks
        perform(chunks) { c in
            let start = c * size
            let end = min(count, start + size)
            body(c, start..<max(start, end))
        }
    }
}

#if canImport(Glibc)
import Glibc
private func sysconfCores() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
#else
import Darwin
private func sysconfCores() -> Int { Int(sysconf(_SC_NPROCESSORS_ONLN)) }
#endif
