import CDNNL
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// oneDNN behind the kernel seam: `dnnl_sgemm`, a matmul primitive with the bias and
/// relu as post-ops, and direct NHWC convolutions (forward and both backward passes).
///
/// Threads: Debian builds oneDNN on OpenMP, which gives every calling thread a team of
/// one thread per core and lets those threads spin between calls. Kiln owns the cores
/// instead, as it does for OpenBLAS: every oneDNN call runs on one OpenMP thread, in the
/// thread that makes it (`omp_set_num_threads(1)` applies to the calling thread only),
/// and large work is cut over the cores by Dispatch, by rows of a product or by images of
/// a batch. Primitives run with a scratchpad of their caller's (user scratchpad mode)
/// and a stream of their own per call, so two threads can run one primitive at once.
enum OneDNN {
    /// The CPU engine; nil when oneDNN cannot start, and then everything runs on OpenBLAS.
    static let engine: dnnl_engine_t? = {
        var engine: dnnl_engine_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success else { return nil }
        return engine
    }()

    private typealias SetThreads = @convention(c) (Int32) -> Void
    /// `omp_set_num_threads` from the OpenMP runtime oneDNN loaded (looked up rather than
    /// linked, so the build needs no OpenMP headers).
    private static let setOpenMPThreads: SetThreads? = {
        guard let symbol = dlsym(nil, "omp_set_num_threads") else { return nil }
        return unsafeBitCast(symbol, to: SetThreads.self)
    }()

    private typealias GetThreads = @convention(c) () -> Int32
    private static let getOpenMPThreads: GetThreads? = {
        guard let symbol = dlsym(nil, "omp_get_max_threads") else { return nil }
        return unsafeBitCast(symbol, to: GetThreads.self)
    }()

    /// Makes oneDNN calls from this thread run on this thread alone (or, under
    /// `Kernels.oneDNNThreading == .openMP`, on an OpenMP team of one thread per core).
    @inline(__always)
    static func ownThisThread() { setOpenMPThreads?(Int32(threadsPerCall)) }

    /// OpenMP threads per oneDNN call.
    static var threadsPerCall: Int { Kernels.oneDNNThreading == .openMP ? Parallel.cores : 1 }

    /// Whether Kiln cuts oneDNN work over the cores itself.
    static var splits: Bool { Kernels.oneDNNThreading == .kiln }

    /// The OpenMP threads a oneDNN call from this thread would use (for tests).
    static func threadsForThisThread() -> Int { Int(getOpenMPThreads?() ?? 1) }

    // MARK: sgemm

    /// C = alpha·op(A)·op(B) + beta·C, row-major, on the calling thread.
    @inline(__always)
    static func sgemm(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, threads: Int? = nil
    ) {
        if let threads { setOpenMPThreads?(Int32(threads)) } else { ownThisThread() }
        defer { if threads != nil { ownThisThread() } }
        let status = dnnl_sgemm(transposeA ? 84 : 78, transposeB ? 84 : 78, Int64(m), Int64(n), Int64(k), alpha,
                                a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
        precondition(status == dnnl_success, "dnnl_sgemm failed (\(status.rawValue)) for \(m)×\(n)×\(k)")
    }

    // MARK: Primitives

    /// A created primitive, run on the caller's thread.
    final class Primitive: @unchecked Sendable {
        let handle: dnnl_primitive_t
        let scratchpadBytes: Int

        /// Creates the primitive of an op descriptor (nil when oneDNN has no
        /// implementation for it), with a user-managed scratchpad.
        convenience init?(descriptor: UnsafeRawPointer, postOps: dnnl_post_ops_t? = nil, hint: const_dnnl_primitive_desc_t? = nil) {
            guard let engine = OneDNN.engine else { return nil }
            var attr: dnnl_primitive_attr_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success else { return nil }
            defer { dnnl_primitive_attr_destroy(attr) }
            dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)
            if let postOps { dnnl_primitive_attr_set_post_ops(attr, postOps) }
            var pd: dnnl_primitive_desc_t?
            OneDNN.ownThisThread()
            guard dnnl_primitive_desc_create(&pd, descriptor, attr, engine, hint) == dnnl_success else { return nil }
            defer { dnnl_primitive_desc_destroy(pd) }
            self.init(pd)
        }

        /// A reorder from one memory layout to another.
        convenience init?(reorder from: UnsafePointer<dnnl_memory_desc_t>, to: UnsafePointer<dnnl_memory_desc_t>) {
            guard let engine = OneDNN.engine else { return nil }
            var attr: dnnl_primitive_attr_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success else { return nil }
            defer { dnnl_primitive_attr_destroy(attr) }
            dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)
            var pd: dnnl_primitive_desc_t?
            guard dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr) == dnnl_success else { return nil }
            defer { dnnl_primitive_desc_destroy(pd) }
            self.init(pd)
        }

        private init?(_ pd: dnnl_primitive_desc_t?) {
            var primitive: dnnl_primitive_t?
            guard dnnl_primitive_create(&primitive, pd) == dnnl_success, let primitive else { return nil }
            handle = primitive
            let scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)
            scratchpadBytes = scratch.map { dnnl_memory_desc_get_size($0) } ?? 0
        }

        deinit { dnnl_primitive_destroy(handle) }

        var descriptor: const_dnnl_primitive_desc_t? {
            var pd: const_dnnl_primitive_desc_t?
            dnnl_primitive_get_primitive_desc(handle, &pd)
            return pd
        }

        /// The memory layout of an execute argument (`DNNL_ARG_…`).
        func layout(_ argument: Int32) -> dnnl_memory_desc_t {
            dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, argument).pointee
        }

        /// The implementation oneDNN chose (e.g. `brgconv:avx512_core`).
        var implementation: String {
            var name: UnsafePointer<CChar>?
            dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &name)
            return name.map { String(cString: $0) } ?? "?"
        }

        /// Runs the primitive on this thread with `arguments` (`DNNL_ARG_…`, buffer).
        func execute(_ arguments: [(Int32, UnsafeRawPointer)]) {
            guard let engine = OneDNN.engine else { preconditionFailure("oneDNN primitive without an engine") }
            OneDNN.ownThisThread()
            let pd = descriptor
            var args: [dnnl_exec_arg_t] = []
            args.reserveCapacity(arguments.count + 1)
            func add(_ argument: Int32, _ md: UnsafePointer<dnnl_memory_desc_t>, _ pointer: UnsafeRawPointer) {
                var memory: dnnl_memory_t?
                let status = dnnl_memory_create(&memory, md, engine, UnsafeMutableRawPointer(mutating: pointer))
                precondition(status == dnnl_success, "dnnl_memory_create failed (\(status.rawValue))")
                args.append(dnnl_exec_arg_t(arg: argument, memory: memory))
            }
            for (argument, pointer) in arguments {
                add(argument, dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, argument), pointer)
            }
            var scratch: Tensor?
            if scratchpadBytes > 0 {
                let buffer = Tensor(uninitializedShape: [(scratchpadBytes + 3) / 4])
                add(DNNL_ARG_SCRATCHPAD, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), UnsafeRawPointer(buffer.storage.pointer))
                scratch = buffer
            }
            var stream: dnnl_stream_t?
            precondition(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, "dnnl_stream_create failed")
            let status = dnnl_primitive_execute(handle, stream, Int32(args.count), args)
            precondition(status == dnnl_success, "oneDNN \(implementation) failed (\(status.rawValue))")
            dnnl_stream_wait(stream)
            dnnl_stream_destroy(stream)
            for arg in args { dnnl_memory_destroy(arg.memory) }
            withExtendedLifetime(scratch) {}
        }
    }

    /// Primitives by shape, created once. Bounded: a process that sees many shapes
    /// (predictions of every batch size) empties it and starts again.
    static let cache = Mutex<[[Int]: AnyObject]>([:])
    static let cacheLimit = 256

    static func cached<T: AnyObject>(_ key: [Int], _ make: () -> T?) -> T? {
        if let hit = cache.withLock({ $0[key] }) { return hit as? T }
        guard let made = make() else { return nil }
        cache.withLock { c in
            if c.count >= cacheLimit { c.removeAll() }
            c[key] = made
        }
        return made
    }

    static func plainLayout(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map(Int64.init)
        let status = dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag)
        precondition(status == dnnl_success, "dnnl_memory_desc_init_by_tag failed for \(dims)")
        return md
    }

    static func sameLayout(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    /// Post-ops holding one relu, or nil.
    static func reluPostOps(_ relu: Bool) -> dnnl_post_ops_t? {
        guard relu else { return nil }
        var ops: dnnl_post_ops_t?
        guard dnnl_post_ops_create(&ops) == dnnl_success else { return nil }
        dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0)
        return ops
    }

    // MARK: Matmul with bias and relu post-ops

    /// Multiply-adds below which the dense forward pass calls `dnnl_sgemm` and applies
    /// the bias and relu itself rather than run a matmul primitive: one MNIST image
    /// through 784→32→10 took 2.1 µs per product on dnnl_sgemm, and a primitive call's
    /// memory objects and stream cost more than that from 16 threads at once.
    static let primitiveThreshold = 1 << 20

    /// y[m×n] = relu?(x[m×k]·w[k×n] + bias), row-major, on this thread.
    static func matmulPrimitive(m: Int, k: Int, n: Int, bias: Bool, relu: Bool) -> Primitive? {
        cached([0, m, k, n, bias ? 1 : 0, relu ? 1 : 0, threadsPerCall]) { () -> Primitive? in
            var src = plainLayout([m, k], dnnl_ab), weights = plainLayout([k, n], dnnl_ab)
            var biasLayout = plainLayout([1, n], dnnl_ab), dst = plainLayout([m, n], dnnl_ab)
            var desc = dnnl_matmul_desc_t()
            let status = bias ? dnnl_matmul_desc_init(&desc, &src, &weights, &biasLayout, &dst)
                              : dnnl_matmul_desc_init(&desc, &src, &weights, nil, &dst)
            guard status == dnnl_success else { return nil }
            let ops = reluPostOps(relu)
            defer { if let ops { dnnl_post_ops_destroy(ops) } }
            return withUnsafePointer(to: &desc) { Primitive(descriptor: UnsafeRawPointer($0), postOps: ops) }
        }
    }

    /// The dense forward pass: y = relu?(x·w + bias) in one primitive per block of rows,
    /// the blocks run on the cores. Returns false when oneDNN has no primitive for it.
    static func dense(
        x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
        rows m: Int, k: Int, n: Int, relu: Bool
    ) -> Bool {
        let cores = Parallel.cores
        var size = m
        if splits && cores > 1 && m * n * k >= BLAS.splitThreshold && m >= 32 * cores {
            size = ((m + cores - 1) / cores + 15) / 16 * 16
        }
        let parts = (m + size - 1) / size
        var primitives: [Primitive] = []
        for p in 0..<parts {
            let rows = Swift.min(m, (p + 1) * size) - p * size
            guard let primitive = matmulPrimitive(m: rows, k: k, n: n, bias: bias != nil, relu: relu) else { return false }
            primitives.append(primitive)
        }
        func run(_ p: Int) {
            let start = p * size
            var args: [(Int32, UnsafeRawPointer)] = [
                (DNNL_ARG_SRC, UnsafeRawPointer(x + start * k)), (DNNL_ARG_WEIGHTS, UnsafeRawPointer(w)),
                (DNNL_ARG_DST, UnsafeRawPointer(y + start * n))]
            if let bias { args.append((DNNL_ARG_BIAS, UnsafeRawPointer(bias))) }
            primitives[p].execute(args)
        }
        Parallel.run(parts, run)
        return true
    }
}
