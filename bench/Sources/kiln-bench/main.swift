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

/// cblas_sgemm GFLOP/s on 1024³ (best of several), the reference for every GEMM figure.
func sgemmPeak() -> Double {
    // OpenBLAS with its own threads on every core (the engine itself runs OpenBLAS
    // single-threaded and splits products over the cores).
    let n = 1024
    let a = random([n, n], seed: 1), b = random([n, n], seed: 2), c = Tensor(shape: [n, n])
    let saved = openblas_get_num_threads()
    openblas_set_num_threads(Int32(Parallel.cores))
    defer { openblas_set_num_threads(saved) }
    let t = best(8) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.storage.pointer, Int32(n),
                    b.storage.pointer, Int32(n), 0, c.storage.pointer, Int32(n))
    }
    return 2 * Double(n * n * n) / t / 1e9
}

/// memcpy bandwidth in GB/s, counting bytes read plus bytes written (64 MiB buffers).
func memcpyBandwidth() -> Double {
    let count = 16 << 20
    let a = Tensor(shape: [count], repeating: 1), b = Tensor(shape: [count], repeating: 0)
    let t = best(8) { memcpy(b.storage.pointer, a.storage.pointer, count * 4) }
    return 2 * Double(count * 4) / t / 1e9
}

func kernels() throws {
    let peak = sgemmPeak()
    emit("sgemm_peak_1024", peak, "GFLOP/s", [("threads", JSON(Parallel.cores)), ("note", "cblas_sgemm 1024³, OpenBLAS threads on every core")])
    let bandwidth = memcpyBandwidth()
    emit("memcpy_bandwidth", bandwidth, "GB/s", [("note", "bytes read + written, 64 MiB")])

    // Dense 784→512, batch 128: matmul + bias + relu forward, all three gradients back.
    do {
        let x = Variable(random([128, 784], seed: 3), requiresGrad: true)
        let w = Variable(random([784, 512], seed: 4), requiresGrad: true)
        let b = Variable(random([512], seed: 5), requiresGrad: true)
        let seed = Tensor(shape: [128, 512], repeating: 1)
        let t = try best(50) {
            let y = try x.matmul(w).add(b).relu()
            y.backward(seed: seed)
            x.grad = nil; w.grad = nil; b.grad = nil
        }
        let flops = 3 * 2 * Double(128 * 784 * 512)
        let gflops = flops / t / 1e9
        emit("dense_784x512_b128_fwd_bwd", gflops / peak * 100, "% sgemm peak",
             [("gflops", .number((gflops * 10).rounded() / 10)), ("ms", .number((t * 1e5).rounded() / 100))])
    }
    // The convnet's second conv: 13×13×32 → 11×11×64, 3×3 valid, batch 128.
    do {
        let x = Variable(random([128, 13, 13, 32], seed: 6), requiresGrad: true)
        let k = Variable(random([3, 3, 32, 64], seed: 7), requiresGrad: true)
        let seed = Tensor(shape: [128, 11, 11, 64], repeating: 1)
        let t = try best(10) {
            let y = try x.conv2d(kernel: k)
            y.backward(seed: seed)
            x.grad = nil; k.grad = nil
        }
        let flops = 3 * 2 * Double(128 * 121 * 288 * 64)
        let gflops = flops / t / 1e9
        emit("conv_32to64_3x3_b128_fwd_bwd", gflops / peak * 100, "% sgemm peak",
             [("gflops", .number((gflops * 10).rounded() / 10)), ("ms", .number((t * 1e5).rounded() / 100))])
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

let mnistDirectory = ProcessInfo.processInfo.environment["KILN_MNIST"] ?? "/work/shared/data/mnist"

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

/// Trains a warm-up epoch and then `measured` epochs; returns the fastest measured epoch
/// in seconds, the final loss, and how many tensor buffers the measured epochs took
/// from the system allocator (not from the buffer pool).
func trainEpochs(_ layers: JSON, rows: Int, measured: Int) throws -> (seconds: Double, loss: Double, allocations: Int) {
    let spec = try JobSpec(json: mnistSpec(layers: layers, epochs: 1 + measured))
    var train = try loadMNIST("train")
    if rows < train.rowCount { train = train.take(rows) }
    let data = TrainingData(train: train, validation: nil)
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
    emit("mlp_epoch_seconds", scaled, "s", [("rows", JSON(rows)), ("note", "784-512-512-10, batch 128, Adam, the faster of two epochs after a warm-up epoch"), ("loss", .number(loss))])
    // Matmul work per sample: forward 2·MACs, backward 2·MACs for weights and for
    // every layer input except the image.
    let macs = Double(784 * 512 + 512 * 512 + 512 * 10)
    let flops = 60000 * 2 * (3 * macs - Double(784 * 512))
    let achieved = flops / scaled / 1e9
    let peak = sgemmPeak()
    emit("mlp_gflops_share_of_peak", achieved / peak * 100, "% sgemm peak", [("gflops", .number((achieved * 10).rounded() / 10)), ("peak_gflops", .number((peak * 10).rounded() / 10))])
    emit("mlp_peak_rss", peakRSSMiB(), "MiB")
    emitAllocations("mlp", allocations, measured: 2)
}

func conv() throws {
    let rows = Int(ProcessInfo.processInfo.environment["KILN_BENCH_CONV_ROWS"] ?? "") ?? 12800
    let (seconds, loss, allocations) = try trainEpochs(convLayers, rows: rows, measured: 2)
    emit("conv_epoch_seconds", seconds * 60000 / Double(rows), "s",
         [("rows", JSON(rows)), ("note", .string("measured on the first \(rows) training images the faster of two epochs after a warm-up pass over them, scaled to 60000")), ("loss", .number(loss))])
    emit("conv_peak_rss", peakRSSMiB(), "MiB")
    emitAllocations("conv", allocations, measured: 2)
}

// MARK: - Main

let command = CommandLine.arguments.dropFirst().first ?? "all"
// KILN_BENCH_NO_SPLIT=1: run every sgemm on one core (for comparisons).
if ProcessInfo.processInfo.environment["KILN_BENCH_NO_SPLIT"] == "1" { BLAS.splitThreshold = .max }
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
