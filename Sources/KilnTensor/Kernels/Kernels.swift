import COpenBLAS
import Foundation
import Synchronization

/// A kernel library behind the kernel seam.
public enum KernelLibrary: String, CaseIterable, Sendable {
    /// OpenBLAS `cblas_sgemm`, im2col + sgemm for convolutions (plain and transposed),
    /// and Kiln's own loop for max pooling. Its kernels are the ones the environment
    /// selects (`OPENBLAS_CORETYPE`), which Kiln never overrides.
    case openblas
    /// oneDNN (Debian's `libdnnl`): `dnnl_sgemm`, matmul primitives with the bias and
    /// relu as post-ops, direct NHWC convolutions (which also run the transposed ones)
    /// and NHWC max pooling. It picks AVX-512 or AVX2 code by CPUID, whatever the
    /// environment says about OpenBLAS.
    case onednn
}

/// The ops that have more than one implementation.
public enum KernelOp: String, CaseIterable, Sendable {
    /// Every matrix product (matmul, dense, recurrent layers, im2col products).
    case matmul
    /// conv2d forward and both backward passes (direct, or im2col + sgemm).
    case convolution
    /// conv2d_transpose forward and both backward passes: oneDNN's direct convolution
    /// primitives with the roles of image and output swapped, or Kiln's im2col products
    /// on the chosen sgemm.
    case transposedConvolution
    /// Max pooling forward and backward: oneDNN's pooling primitives, or Kiln's own loop
    /// (which is what `.openblas` means for this op: no BLAS is involved).
    case pooling
}

/// How the engine chooses a library per op.
public enum KernelPolicy: Equatable, Sendable, CustomStringConvertible {
    /// The fastest library per op, from `Kernels.table`.
    case auto
    /// One library for every op (for comparisons and for bit-for-bit repeatability
    /// against a run that used it).
    case only(KernelLibrary)

    /// `auto`, `openblas` or `onednn` (case-insensitive); nil for anything else.
    public init?(name: String) {
        let lowered = name.trimmingCharacters(in: .whitespaces).lowercased()
        if lowered == "auto" { self = .auto; return }
        guard let library = KernelLibrary(rawValue: lowered) else { return nil }
        self = .only(library)
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .only(let library): return library.rawValue
        }
    }
}

/// The kernel seam: which library runs each op. Process-wide, set from `KILN_KERNELS`
/// (`auto`, `openblas`, `onednn`; default auto) at first use, or by assigning `policy`.
///
/// Under `.auto` the choice is a fixed table (`table`) measured with `kiln-bench
/// kernels` (bench/README.md, docs/engine.md), not a timing taken at start-up: the same
/// build on the same machine then always runs the same kernels, so a seeded run
/// repeats bit for bit. Where oneDNN cannot start (no engine), everything falls back to
/// OpenBLAS.
public enum Kernels {
    /// The library per op under `.auto`, when oneDNN is available. On this project's
    /// machines (AVX-512, `OPENBLAS_CORETYPE=Haswell`), oneDNN's sgemm runs at about
    /// twice OpenBLAS's rate on every training shape measured, its direct NHWC
    /// convolutions beat im2col + sgemm on both conv layers of the MNIST convnet and on
    /// a decoder's stride-2 transposed convolution, and its pooling primitives take
    /// about half the time of Kiln's loop on both of the convnet's pooling layers
    /// (docs/engine.md has the figures).
    public static let table: [KernelOp: KernelLibrary] = [.matmul: .onednn, .convolution: .onednn, .transposedConvolution: .onednn, .pooling: .onednn]

    static let state: Mutex<KernelPolicy> = {
        let raw = ProcessInfo.processInfo.environment["KILN_KERNELS"]
        var policy = KernelPolicy.auto
        if let raw, !raw.isEmpty {
            if let parsed = KernelPolicy(name: raw) {
                policy = parsed
            } else {
                FileHandle.standardError.write(Data("kiln: KILN_KERNELS=\(raw) is not auto, openblas or onednn; using auto\n".utf8))
            }
        }
        return Mutex(policy)
    }()

    /// The policy in force. Setting it takes effect for ops started afterwards.
    public static var policy: KernelPolicy {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }

    /// Who runs oneDNN's work on the cores.
    public enum OneDNNThreading: Sendable {
        /// Kiln: one OpenMP thread per call, large work cut over the cores by Dispatch
        /// (the default; see docs/engine.md for the measurement).
        case kiln
        /// oneDNN's own OpenMP team, one thread per core, on every call; no split (for
        /// comparison only: its threads spin between calls against Kiln's workers).
        case openMP
    }

    private static let threading = Mutex(OneDNNThreading.kiln)

    /// Who runs oneDNN's work on the cores; `.kiln` unless set.
    public static var oneDNNThreading: OneDNNThreading {
        get { threading.withLock { $0 } }
        set { threading.withLock { $0 = newValue } }
    }

    /// For benchmarks: C[m×n] = A[m×k]·B[k×n] (row-major) on `library` as it runs on its
    /// own, with its own threads (OpenBLAS's pool, oneDNN's OpenMP team) on every core,
    /// without Kiln's split. Kiln's own calls run single-threaded (see `BLAS`).
    public static func sgemmOnLibraryThreads(
        _ library: KernelLibrary, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>
    ) {
        switch library {
        case .openblas:
            _ = BLAS.singleThreaded
            openblas_set_num_threads(Int32(Parallel.cores))
            BLAS.call(.openblas, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
            openblas_set_num_threads(1)
        case .onednn:
            OneDNN.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n, threads: Parallel.cores)
        }
    }

    /// Whether oneDNN started (a CPU engine could be created).
    public static var oneDNNAvailable: Bool { OneDNN.engine != nil }

    /// The libraries that can run here: OpenBLAS always, oneDNN when it started.
    public static var availableLibraries: [KernelLibrary] {
        oneDNNAvailable ? [.openblas, .onednn] : [.openblas]
    }

    /// The library that runs `op` under the current policy.
    @inline(__always)
    public static func library(for op: KernelOp) -> KernelLibrary {
        let wanted: KernelLibrary
        switch policy {
        case .auto: wanted = table[op] ?? .openblas
        case .only(let library): wanted = library
        }
        return wanted == .onednn && !oneDNNAvailable ? .openblas : wanted
    }

    /// Runs `body` with `policy` in force, then restores the previous one (for tests
    /// and benchmarks that compare the libraries).
    public static func with<T>(_ policy: KernelPolicy, _ body: () throws -> T) rethrows -> T {
        let saved = Kernels.policy
        Kernels.policy = policy
        defer { Kernels.policy = saved }
        return try body()
    }

    /// One line for logs: the policy and the library each op runs on.
    public static var summary: String {
        let ops = KernelOp.allCases.map { "\($0.rawValue)=\(library(for: $0).rawValue)" }.joined(separator: " ")
        return "kernels \(policy) (\(ops))\(oneDNNAvailable ? "" : "; oneDNN unavailable")"
    }
}
