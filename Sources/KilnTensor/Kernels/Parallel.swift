import Dispatch

/// Splits `0..<count` into contiguous chunks run concurrently on the cores when the work
/// is large enough to pay for it; small work runs inline.
@inline(__always)
func parallelChunks(_ count: Int, minimumChunk: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    let cores = Parallel.cores
    if count < 2 * minimumChunk || cores == 1 {
        body(0..<count)
        return
    }
    let chunks = min(cores, count / minimumChunk)
    let size = (count + chunks - 1) / chunks
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = c * size
            let end = min(count, start + size)
            if start < end { body(start..<end) }
        }
    }
}

public enum Parallel {
    /// Cores used for element-wise work (the BLAS library manages its own threads).
    public static let cores: Int = max(1, sysconfCores())
}

#if canImport(Glibc)
import Glibc
private func sysconfCores() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
#else
import Darwin
private func sysconfCores() -> Int { Int(sysconf(_SC_NPROCESSORS_ONLN)) }
#endif
