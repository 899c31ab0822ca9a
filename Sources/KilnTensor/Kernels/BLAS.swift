import COpenBLAS
import Dispatch

/// Matrix products in row-major terms, on the library `Kernels` picks for `.matmul`
/// (OpenBLAS's `cblas_sgemm` or oneDNN's `dnnl_sgemm`), both run single-threaded and
/// split over the cores here.
public enum BLAS {
    /// OpenBLAS runs single-threaded: its worker threads spin (sched_yield) between
    /// calls and fight the Dispatch workers of the element-wise kernels for the cores.
    /// Large products are split over the cores here instead (see `sgemm`).
    static let singleThreaded: Void = openblas_set_num_threads(1)

    /// Products below this many multiply-adds run on one core.
    public static var splitThreshold = 1 << 20

    /// C[m×n] = alpha·op(A)·op(B) + beta·C, with op(A) m×k and op(B) k×n, all row-major.
    /// Large products are cut into row (or column) blocks of C, one per core, each a
    /// single-threaded sgemm.
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = singleThreaded
        let library = Kernels.library(for: .matmul)
        // Under oneDNN's own OpenMP threading, one call takes every core.
        let cores = library == .onednn && !OneDNN.splits ? 1 : Parallel.cores
        if cores > 1 && m * n * k >= splitThreshold && Swift.max(m, n) < 32 * cores && k >= 256 * cores {
            // A small result over a long inner axis (a kernel gradient summed over every
            // image position): each core multiplies a slice of k into its own C, then
            // the partial results are added.
            let size = (k + cores - 1) / cores
            let parts = (k + size - 1) / size
            let partial = Tensor(uninitializedShape: [parts - 1, m * n])
            let pp = partial.storage.pointer
            Parallel.perform(parts) { p in
                let start = p * size, depth = Swift.min(k, start + size) - start
                let a0 = transposeA ? a + start * lda : a + start
                let b0 = transposeB ? b + start : b + start * ldb
                if p == 0 {
                    call(library, transposeA, transposeB, m, n, depth, alpha, a0, lda, b0, ldb, beta, c, ldc)
                } else {
                    call(library, transposeA, transposeB, m, n, depth, alpha, a0, lda, b0, ldb, 0, pp + (p - 1) * m * n, n)
                }
            }
            for p in 1..<parts {
                let src = pp + (p - 1) * m * n
                for i in 0..<m { for j in 0..<n { c[i * ldc + j] += src[i * n + j] } }
            }
            withExtendedLifetime(partial) {}
            return
        }
        if cores > 1 && m * n * k >= splitThreshold && Swift.max(m, n) >= 32 * cores {
            if m >= n {
                let size = ((m + cores - 1) / cores + 15) / 16 * 16
                let parts = (m + size - 1) / size
                Parallel.perform(parts) { p in
                    let start = p * size, rows = Swift.min(m, start + size) - start
                    call(library, transposeA, transposeB, rows, n, k, alpha, transposeA ? a + start : a + start * lda, lda, b, ldb, beta, c + start * ldc, ldc)
                }
            } else {
                let size = ((n + cores - 1) / cores + 15) / 16 * 16
                let parts = (n + size - 1) / size
                Parallel.perform(parts) { p in
                    let start = p * size, cols = Swift.min(n, start + size) - start
                    call(library, transposeA, transposeB, m, cols, k, alpha, a, lda, transposeB ? b + start * ldb : b + start, ldb, beta, c + start, ldc)
                }
            }
            return
        }
        call(library, transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    @inline(__always)
    static func call(
        _ library: KernelLibrary, _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        if library == .onednn {
            OneDNN.sgemm(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y += alpha·x
    @inline(__always)
    public static func saxpy(_ n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }
}
