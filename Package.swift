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
    targets: [
        // System libraries.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),

        // Libraries, bottom to top.
        .target(name: "KilnJSON"),
        .target(name: "KilnTensor", dependencies: ["COpenBLAS", "CDNNL"]),
        .target(name: "KilnData", dependencies: ["CCurl", "CZlib", "KilnJSON"]),
        .target(name: "KilnGraph", dependencies: ["KilnTensor", "KilnJSON"]),
        // Vector loops for the optimizer updates (C for vector square roots).
        .target(name: "CKilnKernels"),
        .target(name: "KilnTrain", dependencies: ["CKilnKernels", "KilnTensor", "KilnGraph", "KilnData", "KilnJSON"]),
        .target(name: "KilnHTTP", dependencies: ["KilnJSON"]),
        .target(name: "KilnService", dependencies: ["KilnHTTP", "KilnTrain", "KilnGraph", "KilnData", "KilnTensor", "KilnJSON"]),
        .executableTarget(name: "kiln", dependencies: ["KilnService"]),
        .executableTarget(name: "kiln-bench", dependencies: ["KilnService", "KilnTrain", "KilnGraph", "KilnTensor", "KilnData", "KilnJSON", "COpenBLAS"], path: "bench/Sources/kiln-bench"),

        // Tests.
        .target(name: "KilnTestSupport", dependencies: ["KilnJSON", "CZlib"], path: "Tests/KilnTestSupport"),
        .testTarget(name: "KilnJSONTests", dependencies: ["KilnJSON"]),
        .testTarget(name: "KilnTensorTests", dependencies: ["KilnTensor"]),
        .testTarget(name: "KilnGraphTests", dependencies: ["KilnGraph", "KilnTensor", "KilnJSON"]),
        .testTarget(name: "KilnDataTests", dependencies: ["KilnData", "KilnTestSupport"]),
        .testTarget(name: "KilnTrainTests", dependencies: ["KilnTrain", "KilnGraph", "KilnTensor", "KilnData", "KilnJSON"]),
        .testTarget(name: "KilnHTTPTests", dependencies: ["KilnHTTP", "KilnTestSupport"]),
        .testTarget(name: "KilnServiceTests", dependencies: ["KilnService", "KilnHTTP", "KilnTestSupport", "KilnJSON"]),
    ],
    swiftLanguageModes: [.v5]
)
