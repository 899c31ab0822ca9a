// swift-tools-version:6.0
import PackageDescription

// Module layout follows the data flow of the design: HTTP → service → graph compiler
// → trainer → tensor engine. Lower modules never import higher ones.
let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kiln", targets: ["kiln"]),
    ],
    dependencies: [
        // The command line's subcommands, options and help.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),

        // Libraries, bottom to top.
        .target(name: "KilnJSON"),
        .target(name: "KilnTensor", dependencies: ["COpenBLAS", "CDNNL"]),
        .target(name: "KilnData", dependencies: ["CCurl", "CZlib", "CPNG", "CJPEG", "KilnJSON"]),
        .target(name: "KilnGraph", dependencies: ["KilnTensor", "KilnJSON"]),
        // The job spec (model + data + train sections), decoded once into typed values.
        .target(name: "KilnSpec", dependencies: ["KilnGraph", "KilnJSON"]),
        // Vector loops for the optimizer updates (C for vector square roots).
        .target(name: "CKilnKernels"),
        // Model export: a protobuf writer of its own and the ONNX translation of a graph.
        .target(name: "KilnExport", dependencies: ["KilnGraph", "KilnTensor", "KilnJSON"]),
        .target(name: "KilnTrain", dependencies: ["CKilnKernels", "KilnTensor", "KilnGraph", "KilnSpec", "KilnData", "KilnJSON"]),
        // epoll, eventfd and accept4 for the HTTP event loop (empty off Linux).
        .target(name: "CKilnPoll"),
        .target(name: "KilnHTTP", dependencies: ["CKilnPoll", "KilnJSON"]),
        // PostgreSQL client, pool, notifications, chunked blobs, migrations and the job
        // queue that several nodes share (docs/cluster.md).
        .target(name: "KilnPostgres", dependencies: ["CLibPQ", "KilnJSON"]),
        .target(name: "KilnService", dependencies: ["KilnHTTP", "KilnPostgres", "KilnTrain", "KilnExport", "KilnSpec", "KilnGraph", "KilnData", "KilnTensor", "KilnJSON"]),
        .executableTarget(name: "kiln", dependencies: ["KilnService", "KilnJSON", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "kiln-bench", dependencies: ["KilnService", "KilnTrain", "KilnSpec", "KilnGraph", "KilnTensor", "KilnData", "KilnJSON", "KilnPostgres", "COpenBLAS"], path: "bench/Sources/kiln-bench"),

        // Tests.
        .target(name: "KilnTestSupport", dependencies: ["KilnJSON", "KilnData", "CZlib"], path: "Tests/KilnTestSupport"),
        .testTarget(name: "KilnJSONTests", dependencies: ["KilnJSON"]),
        .testTarget(name: "KilnTensorTests", dependencies: ["KilnTensor"]),
        .testTarget(name: "KilnGraphTests", dependencies: ["KilnGraph", "KilnSpec", "KilnTensor", "KilnJSON"], exclude: ["Fixtures"]),
        .testTarget(name: "KilnExportTests", dependencies: ["KilnExport", "KilnGraph", "KilnTensor", "KilnJSON"]),
        .testTarget(name: "KilnDataTests", dependencies: ["KilnData", "KilnTestSupport"]),
        .testTarget(name: "KilnTrainTests", dependencies: ["KilnTrain", "KilnSpec", "KilnGraph", "KilnTensor", "KilnData", "KilnJSON"]),
        .testTarget(name: "KilnHTTPTests", dependencies: ["KilnHTTP", "KilnTestSupport"]),
        .testTarget(name: "KilnPostgresTests", dependencies: ["KilnPostgres", "KilnTestSupport", "KilnJSON"]),
        .testTarget(name: "KilnServiceTests", dependencies: ["KilnService", "KilnHTTP", "KilnPostgres", "KilnTestSupport", "KilnJSON"]),
    ],
    swiftLanguageModes: [.v5]
)
