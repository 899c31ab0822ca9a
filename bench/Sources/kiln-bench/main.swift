// Benchmarks: see bench/README.md.
//
// `kiln-bench [kernels|mlp|conv|all]` prints one JSON line per figure:
//   {"impl":"kiln","figure":"…","value":…,"unit":"…", …}
// Each training run is a separate process (bench/run.sh) so that its peak resident
// memory is its own.
import COpenBLAS
import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
import KilnTrain

// MARK: - Output

func emit(_ figure: String, _ value: Double, _ unit: String, _ extra: [(String, JSON)] = []) {
    var members: [(String, JSON)] = [("impl", "kiln"), ("figure", .string(figure)), ("value", .number((value * 10000).rounded() / 10000)), ("unit", .string(unit))]
    members += extra
    print(JSON.object(members).serialized())
    fflush(stdout)
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Peak resident memory of this process so far, in MiB.
func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Best time of `repeats` runs of `body` (after one warm-up run).
func best(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var fastest = Double.infinity
    for _ in 0..<repeats {
        let t0 = now()
        try body()
        fastest = min(fastest, now() - t0)
    }
    return fastest
}

func random(_ shape: [Int], seed: UInt64) -> Tensor {
    var g = SeededGenerator(seed: seed)
    var t = Tensor(uninitializedShape: shape)
    t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = g.nextNormal() * 0.1 } }
    return t
}

// MARK: - Kernels: machine peaks and op efficiencies

/// The fastest correct sgemm on this machine, 1024³ (best of several runs each): each
/// library on its own threads on every core (OpenBLAS's pool as the environment sets its
/// kernels; oneDNN's OpenMP team), and Kiln's own split of single-threaded calls on each
/// library. A candidate counts only if its product matches a Double reference on
/// sampled entries. Every GEMM efficiency figure is a share of this peak.
func sgemmPeak(verbose: Bool = false) -> (gflops: Double, kernel: String) {
    let n = 1024
    let a = random([n, n], seed: 1), b = random([n, n], seed: 2), c = Tensor(shape: [n, n])
    let pa = a.storage.pointer, pb = b.storage.pointer, pc = c.storage.pointer
    func correct() -> Bool {
        var g = SeededGenerator(seed: 3)
        for _ in 0..<64 {
            let i = Int(g.next() % UInt64(n)), j = Int(g.next() % UInt64(n))
            var sum = 0.0
            for p in 0..<n { sum += Double(pa[i * n + p]) * Double(pb[p * n + j]) }
            if abs(Double(pc[i * n + j]) - sum) > 1e-3 * max(1, abs(sum)) { return false }
        }
        return true
    }
    var candidates: [(String, () -> Void)] = [
        ("openblas", { Kernels.sgemmOnLibraryThreads(.openblas, m: n, n: n, k: n, a: pa, b: pb, c: pc) }),
        ("kiln-split openblas", { Kernels.with(.only(.openblas)) { BLAS.sgemm(transposeA: false, transposeB: false, m: n, n: n, k: n, a: pa, lda: n, b: pb, ldb: n, c: pc, ldc: n) } }),
    ]
    if Kernels.oneDNNAvailable {
        candidates += [
            ("onednn", { Kernels.sgemmOnLibraryThreads(.onednn, m: n, n: n, k: n, a: pa, b: pb, c: pc) }),
            ("kiln-split onednn", { Kernels.with(.only(.onednn)) { BLAS.sgemm(transposeA: false, transposeB: false, m: n, n: n, k: n, a: pa, lda: n, b: pb, ldb: n, c: pc, ldc: n) } }),
        ]
    }
    var bestRate = 0.0, bestName = "none"
    for (name, body) in candidates {
        pc.initialize(repeating: .nan, count: n * n)
        // More runs than the peers' 8: on a shared machine the best of many is the one
        // that ran undisturbed.
        let t = best(20, body)
        let rate = 2 * Double(n * n * n) / t / 1e9
        let ok = correct()
        if verbose {
            emit("sgemm_1024 \(name)", rate, "GFLOP/s", [("correct", .bool(ok)), ("threads", JSON(Parallel.cores))])
        }
        if ok && rate > bestRate { (bestRate, bestName) = (rate, name) }
    }
    return (bestRate, bestName)
}

/// memcpy bandwidth in GB/s, counting bytes read plus bytes written (64 MiB buffers).
func memcpyBandwidth() -> Double {
    let count = 16 << 20
    let a = Tensor(shape: [count], repeating: 1), b = Tensor(shape: [count], repeating: 0)
    let t = best(8) { memcpy(b.storage.pointer, a.storage.pointer, count * 4) }
    return 2 * Double(count * 4) / t / 1e9
}

/// Best time of `body` under each kernel library, as extra JSON fields ("openblas_ms", …).
func perLibrary(_ repeats: Int, _ body: () throws -> Void) rethrows -> [(String, JSON)] {
    var fields: [(String, JSON)] = []
    for library in Kernels.availableLibraries {
        let t = try Kernels.with(.only(library)) { try best(repeats, body) }
        fields.append(("\(library.rawValue)_ms", .number((t * 1e5).rounded() / 100)))
    }
    return fields
}

func kernels() throws {
    let (peak, peakKernel) = sgemmPeak(verbose: true)
    emit("sgemm_peak_1024", peak, "GFLOP/s", [("threads", JSON(Parallel.cores)), ("kernel", .string(peakKernel)),
                                              ("note", "the fastest correct 1024³ sgemm on this machine (all candidates above)")])
    let bandwidth = memcpyBandwidth()
    emit("memcpy_bandwidth", bandwidth, "GB/s", [("note", "bytes read + written, 64 MiB")])

    // Dense 784→512, batch 128: the fused dense op (matmul + bias + relu) forward, all
    // three gradients back.
    do {
        let x = Variable(random([128, 784], seed: 3), requiresGrad: true)
        let w = Variable(random([784, 512], seed: 4), requiresGrad: true)
        let b = Variable(random([512], seed: 5), requiresGrad: true)
        let seed = Tensor(shape: [128, 512], repeating: 1)
        let step = {
            let y = try x.dense(kernel: w, bias: b, relu: true)
            y.backward(seed: seed)
            x.grad = nil; w.grad = nil; b.grad = nil
        }
        let t = try best(50, step)
        let flops = 3 * 2 * Double(128 * 784 * 512)
        let gflops = flops / t / 1e9
        emit("dense_784x512_b128_fwd_bwd", gflops / peak * 100, "% sgemm peak",
             [("gflops", .number((gflops * 10).rounded() / 10)), ("ms", .number((t * 1e5).rounded() / 100)),
              ("kernels", .string(Kernels.library(for: .matmul).rawValue))] + (try perLibrary(50, step)))
    }
    // The convnet's second conv: 13×13×32 → 11×11×64, 3×3 valid, batch 128.
    do {
        let x = Variable(random([128, 13, 13, 32], seed: 6), requiresGrad: true)
        let k = Variable(random([3, 3, 32, 64], seed: 7), requiresGrad: true)
        let seed = Tensor(shape: [128, 11, 11, 64], repeating: 1)
        let step = {
            let y = try x.conv2d(kernel: k)
            y.backward(seed: seed)
            x.grad = nil; k.grad = nil
        }
        let t = try best(10, step)
        let flops = 3 * 2 * Double(128 * 121 * 288 * 64)
        let gflops = flops / t / 1e9
        emit("conv_32to64_3x3_b128_fwd_bwd", gflops / peak * 100, "% sgemm peak",
             [("gflops", .number((gflops * 10).rounded() / 10)), ("ms", .number((t * 1e5).rounded() / 100)),
              ("kernels", .string(Kernels.library(for: .convolution).rawValue))] + (try perLibrary(10, step)))
    }
    // A decoder's upsampling layer: conv2d_transpose 7×7×64 → 14×14×32, 3×3, stride 2,
    // same, batch 128, forward and both gradients.
    do {
        let x = Variable(random([128, 7, 7, 64], seed: 11), requiresGrad: true)
        let k = Variable(random([3, 3, 32, 64], seed: 12), requiresGrad: true)
        let seed = Tensor(shape: [128, 14, 14, 32], repeating: 1)
        let step = {
            let y = try x.conv2dTranspose(kernel: k, strides: (2, 2), padding: .same)
            y.backward(seed: seed)
            x.grad = nil; k.grad = nil
        }
        let t = try best(20, step)
        let flops = 3 * 2 * Double(128 * 49 * 9 * 32 * 64)
        let gflops = flops / t / 1e9
        emit("conv_transpose_64to32_3x3_s2_b128_fwd_bwd", gflops / peak * 100, "% sgemm peak",
             [("gflops", .number((gflops * 10).rounded() / 10)), ("ms", .number((t * 1e5).rounded() / 100)),
              ("kernels", .string(Kernels.library(for: .transposedConvolution).rawValue))] + (try perLibrary(20, step)))
    }
    // The convnet's two max-pooling layers (2×2, batch 128), forward and backward:
    // oneDNN's pooling primitives against Kiln's own loop (the "openblas" time: pooling
    // runs no BLAS).
    for (name, shape) in [("maxpool_26x26x32_b128_fwd_bwd", [128, 26, 26, 32]), ("maxpool_11x11x64_b128_fwd_bwd", [128, 11, 11, 64])] {
        let x = Variable(random(shape, seed: 10), requiresGrad: true)
        let seed = Tensor(shape: [shape[0], shape[1] / 2, shape[2] / 2, shape[3]], repeating: 1)
        let step = {
            let y = try x.maxPool2d(poolSize: (2, 2))
            y.backward(seed: seed)
            x.grad = nil
        }
        let t = try best(50, step)
        emit(name, t * 1e3, "ms", [("ms", .number((t * 1e5).rounded() / 100)), ("kernels", .string(Kernels.library(for: .pooling).rawValue)),
                                   ("note", "openblas_ms is Kiln's own loop (no BLAS)")] + (try perLibrary(50, step)))
    }
    // A large element-wise op: relu over 16M floats (64 MiB in, 64 MiB out).
    do {
        let count = 16 << 20
        let x = Variable(random([count], seed: 8))
        var keep: Variable?
        let t = best(8) { keep = x.relu() }
        _ = keep
        let gbs = 2 * Double(count * 4) / t / 1e9
        emit("relu_16M", gbs / bandwidth * 100, "% memcpy bandwidth", [("gbs", .number((gbs * 10).rounded() / 10))])
        let y = Variable(random([count], seed: 9))
        let t2 = try best(8) { keep = try x.add(y) }
        let gbs2 = 3 * Double(count * 4) / t2 / 1e9
        emit("add_16M", gbs2 / bandwidth * 100, "% memcpy bandwidth", [("gbs", .number((gbs2 * 10).rounded() / 10))])
    }
}

// MARK: - MNIST training

// `$KILN_MNIST`, else the copy beside the repository (bench/run.sh runs from its root).
let mnistDirectory = ProcessInfo.processInfo.environment["KILN_MNIST"] ?? "../shared/data/mnist"

func loadMNIST(_ prefix: String) throws -> Dataset {
    func idx(_ name: String) throws -> DataArray {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(mnistDirectory)/\(name)")))
        return try IDX.parse(try Gzip.decompress(bytes, name: name), name: name)
    }
    var images = try idx("\(prefix)-images-idx3-ubyte.gz")
    let labels = try idx("\(prefix)-labels-idx1-ubyte.gz")
    images.shape += [1]
    images.dtype = .float32
    images.values.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] /= 255 } }
    return try Dataset(fields: ["image": images, "label": labels])
}

func mnistSpec(layers: JSON, epochs: Int) -> JSON {
    [
        "name": "bench",
        "model": ["inputs": ["image": [28, 28, 1]], "layers": layers],
        "data": ["source": "mnist"],
        "train": [
            "epochs": JSON(epochs), "batch_size": 128, "seed": 1,
            "optimizer": ["type": "adam", "learning_rate": 0.001],
            "losses": [["node": "probs", "type": "sparse_categorical_crossentropy", "target": "label"]],
            "metrics": ["accuracy"],
            "validation": ["split": "test"],
        ],
    ]
}

let mlpLayers: JSON = [
    ["type": "flatten"],
    ["type": "dense", "units": 512, "activation": "relu"],
    ["type": "dense", "units": 512, "activation": "relu"],
    ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"],
]

let convLayers: JSON = [
    ["type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"],
    ["type": "max_pool2d", "pool_size": 2],
    ["type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"],
    ["type": "max_pool2d", "pool_size": 2],
    ["type": "flatten"],
    ["type": "dropout", "rate": 0.5],
    ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"],
]

/// Trains a warm-up epoch and then `measured` epochs, each with its validation pass over
/// the test images; returns the fastest measured epoch in seconds, the final loss, and how many tensor buffers the measured epochs took
/// from the system allocator (not from the buffer pool).
func trainEpochs(_ layers: JSON, rows: Int, measured: Int) throws -> (seconds: Double, loss: Double, allocations: Int) {
    let spec = try JobSpec(json: mnistSpec(layers: layers, epochs: 1 + measured))
    var train = try loadMNIST("train"), test = try loadMNIST("t10k")
    // A subset of the training rows validates on the same share of the test images.
    if rows < train.rowCount {
        train = train.take(rows)
        test = test.take(Swift.max(1, test.rowCount * rows / 60000))
    }
    let data = TrainingData(train: train, validation: test)
    let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
    var epochs: [EpochMetrics] = []
    var allocated: [Int] = []
    try Trainer(spec: spec, model: model, data: data).fit {
        epochs.append($0)
        allocated.append(BufferPool.statistics.systemAllocations)
    }
    let timed = epochs.dropFirst()
    return (timed.map(\.seconds).min()!, timed.last!.values["loss"] ?? .nan, allocated.last! - allocated.first!)
}

func emitAllocations(_ prefix: String, _ allocations: Int, measured: Int) {
    emit("\(prefix)_buffer_allocations_per_epoch", Double(allocations) / Double(measured), "buffers",
         [("note", "tensor buffers ≥ 16 KiB taken from the system allocator in an epoch after the first (the rest come from the buffer pool)")])
}

func mlp() throws {
    let rows = Int(ProcessInfo.processInfo.environment["KILN_BENCH_MLP_ROWS"] ?? "") ?? 60000
    let (seconds, loss, allocations) = try trainEpochs(mlpLayers, rows: rows, measured: 2)
    let scaled = seconds * 60000 / Double(rows)
    emit("mlp_epoch_seconds", scaled, "s", [("rows", JSON(rows)), ("note", "784-512-512-10, batch 128, Adam, validation on the test images included, the faster of two epochs after a warm-up epoch"),
                                            ("loss", .number(loss)), ("kernels", .string(Kernels.summary))])
    // Matmul work per sample: forward 2·MACs, backward 2·MACs for weights and for
    // every layer input except the image.
    let macs = Double(784 * 512 + 512 * 512 + 512 * 10)
    let flops = 60000 * 2 * (3 * macs - Double(784 * 512))
    let achieved = flops / scaled / 1e9
    let (peak, peakKernel) = sgemmPeak()
    emit("mlp_gflops_share_of_peak", achieved / peak * 100, "% sgemm peak", [("gflops", .number((achieved * 10).rounded() / 10)), ("peak_gflops", .number((peak * 10).rounded() / 10)),
                                                                             ("peak_kernel", .string(peakKernel)), ("note", "training matmul work only, over the whole epoch time")])
    emit("mlp_peak_rss", peakRSSMiB(), "MiB")
    emitAllocations("mlp", allocations, measured: 2)
}

func conv() throws {
    let rows = Int(ProcessInfo.processInfo.environment["KILN_BENCH_CONV_ROWS"] ?? "") ?? 60000
    let (seconds, loss, allocations) = try trainEpochs(convLayers, rows: rows, measured: 2)
    emit("conv_epoch_seconds", seconds * 60000 / Double(rows), "s",
         [("rows", JSON(rows)), ("note", .string("the Keras MNIST convnet, batch 128, Adam, validation on the test images included, the faster of two epochs after a warm-up epoch\(rows < 60000 ? ", on the first \(rows) training images (and the same share of the test images), scaled to 60000" : "")")),
          ("loss", .number(loss)), ("kernels", .string(Kernels.summary))])
    emit("conv_peak_rss", peakRSSMiB(), "MiB")
    emitAllocations("conv", allocations, measured: 2)
}

// MARK: - Main

let command = CommandLine.arguments.dropFirst().first ?? "all"
// KILN_BENCH_NO_SPLIT=1: run every sgemm on one core (for comparisons).
if ProcessInfo.processInfo.environment["KILN_BENCH_NO_SPLIT"] == "1" { BLAS.splitThreshold = .max }
// KILN_BENCH_ONEDNN_OPENMP=1: oneDNN on its own OpenMP team per call instead of Kiln's split (for comparisons).
if ProcessInfo.processInfo.environment["KILN_BENCH_ONEDNN_OPENMP"] == "1" { Kernels.oneDNNThreading = .openMP }
do {
    switch command {
    case "kernels": try kernels()
    case "mlp": try mlp()
    case "conv": try conv()
    case "predict":
        let a = Array(CommandLine.arguments.dropFirst(2))
        guard a.count >= 3, let port = Int(a[0]) else { throw BenchError("usage: kiln-bench predict PORT MODEL LABEL [REQUESTS]") }
        try predictLatency(port: port, model: a[1], label: a[2], requests: a.count > 3 ? Int(a[3]) ?? 2000 : 2000)
    case "pg-queue":
        let a = Array(CommandLine.arguments.dropFirst(2))
        guard let url = a.first else { throw BenchError("usage: kiln-bench pg-queue URL [JOBS] [WORKERS] [SAMPLES]") }
        try postgresQueue(url: url, jobs: a.count > 1 ? Int(a[1]) ?? 2000 : 2000, workers: a.count > 2 ? Int(a[2]) ?? 4 : 4,
                          samples: a.count > 3 ? Int(a[3]) ?? 200 : 200)
    case "pg-commit":
        let a = Array(CommandLine.arguments.dropFirst(2))
        guard a.count >= 2 else { throw BenchError("usage: kiln-bench pg-commit URL DIR [COMMITS] [EPOCH_SECONDS]") }
        try postgresCommit(url: a[0], directory: a[1], commits: a.count > 2 ? Int(a[2]) ?? 20 : 20, epochSeconds: a.count > 3 ? Double(a[3]) : nil)
    case "all":
        // One process per run so each peak resident memory is its own.
        for sub in ["kernels", "mlp", "conv"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            p.arguments = [sub]
            try p.run()
            p.waitUntilExit()
        }
    default:
        FileHandle.standardError.write(Data("usage: kiln-bench [kernels|mlp|conv|all] | predict PORT MODEL LABEL [REQUESTS] | pg-queue URL [JOBS] [WORKERS] [SAMPLES] | pg-commit URL DIR [COMMITS] [EPOCH_SECONDS]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("kiln-bench: \(error)\n".utf8))
    exit(1)
}
