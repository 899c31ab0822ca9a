import Foundation
@testable import KilnData
import KilnTestSupport
import XCTest

/// Downloads through libcurl from a loopback mirror serving the real MNIST files.
final class CatalogTests: XCTestCase {
    static let mnist = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/mnist").path
    static let names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    var temp = ""
    var mirror: LoopbackFileServer!

    override func setUpWithError() throws {
        guard FileManager.default.fileExists(atPath: "\(CatalogTests.mnist)/\(CatalogTests.names[0])") else { throw XCTSkip("no MNIST files") }
        temp = NSTemporaryDirectory() + "kiln-catalog-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(temp)/mirror/mnist", withIntermediateDirectories: true)
        for n in CatalogTests.names {
            try FileManager.default.copyItem(atPath: "\(CatalogTests.mnist)/\(n)", toPath: "\(temp)/mirror/mnist/\(n)")
        }
        mirror = try LoopbackFileServer(root: "\(temp)/mirror")
    }

    override func tearDown() {
        mirror?.stop()
        try? FileManager.default.removeItem(atPath: temp)
    }

    func catalog() -> DatasetCatalog { DatasetCatalog(cacheDirectory: "\(temp)/cache", mirror: mirror.baseURL) }

    func testMNISTDownloadsVerifiesParsesAndCaches() throws {
        let splits = try catalog().load(builtIn: "mnist")
        XCTAssertEqual(splits.train.fields["image"]?.shape, [60000, 28, 28, 1])
        XCTAssertEqual(splits.train.fields["label"]?.shape, [60000])
        XCTAssertEqual(splits.test?.rowCount, 10000)
        let pixels = splits.test!.fields["image"]!.values
        XCTAssertEqual(pixels.min(), 0)
        XCTAssertEqual(pixels.max(), 1)
        XCTAssertEqual(Set(splits.train.fields["label"]!.values), Set((0..<10).map(Float.init)))
        XCTAssertEqual(mirror.requestCount, 4)
        // A second catalog on the same cache downloads nothing.
        _ = try catalog().load(builtIn: "mnist")
        XCTAssertEqual(mirror.requestCount, 4)
    }

    func testMissingTruncatedAndCorruptFilesNameTheFile() throws {
        try FileManager.default.removeItem(atPath: "\(temp)/mirror/mnist/t10k-labels-idx1-ubyte.gz")
        XCTAssertThrowsError(try catalog().load(builtIn: "mnist")) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "t10k-labels-idx1-ubyte.gz")
            XCTAssertTrue("\(error)".contains("404"), "\(error)")
        }
        // Truncated: the checksum no longer matches.
        let original = try Data(contentsOf: URL(fileURLWithPath: "\(CatalogTests.mnist)/t10k-labels-idx1-ubyte.gz"))
        try original.prefix(1000).write(to: URL(fileURLWithPath: "\(temp)/mirror/mnist/t10k-labels-idx1-ubyte.gz"))
        XCTAssertThrowsError(try catalog().load(builtIn: "mnist")) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "t10k-labels-idx1-ubyte.gz")
            XCTAssertTrue("\(error)".contains("SHA-256 mismatch"), "\(error)")
        }
        // Corrupt cache: a damaged cached file is discarded and fetched again.
        try original.write(to: URL(fileURLWithPath: "\(temp)/mirror/mnist/t10k-labels-idx1-ubyte.gz"))
        _ = try catalog().load(builtIn: "mnist")
        var cached = try Data(contentsOf: URL(fileURLWithPath: "\(temp)/cache/mnist/t10k-labels-idx1-ubyte.gz"))
        cached[100] ^= 0xFF
        try cached.write(to: URL(fileURLWithPath: "\(temp)/cache/mnist/t10k-labels-idx1-ubyte.gz"))
        let before = mirror.requestCount
        XCTAssertEqual(try catalog().load(builtIn: "mnist").test?.rowCount, 10000)
        XCTAssertEqual(mirror.requestCount, before + 1)
    }

    func testCIFAR10IsPinnedOnFirstDownload() throws {
        func batch(_ label: UInt8) -> [UInt8] { [label] + [UInt8](repeating: 128, count: 3072) }
        var files: [(String, [UInt8])] = (1...5).map { ("cifar-10-batches-bin/data_batch_\($0).bin", batch(UInt8($0))) }
        files.append(("cifar-10-batches-bin/test_batch.bin", batch(0)))
        try FileManager.default.createDirectory(atPath: "\(temp)/mirror/cifar10", withIntermediateDirectories: true)
        let archive = Data(Fixtures.gzip(Fixtures.tar(files)))
        try archive.write(to: URL(fileURLWithPath: "\(temp)/mirror/cifar10/cifar-10-binary.tar.gz"))
        XCTAssertEqual(try catalog().load(builtIn: "cifar10").train.rowCount, 5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(temp)/cache/cifar10/cifar-10-binary.tar.gz.sha256"))
        // A different file on the mirror later no longer matches the pinned digest.
        var tampered = [UInt8](archive)
        tampered[tampered.count - 20] ^= 0xFF
        try Data(tampered).write(to: URL(fileURLWithPath: "\(temp)/mirror/cifar10/cifar-10-binary.tar.gz"))
        try FileManager.default.removeItem(atPath: "\(temp)/cache/cifar10/cifar-10-binary.tar.gz")
        XCTAssertThrowsError(try catalog().load(builtIn: "cifar10")) { error in
            XCTAssertTrue("\(error)".contains("SHA-256 mismatch"), "\(error)")
        }
    }

    func testDownloaderRefusesOtherSchemesAndOversizedBodies() throws {
        XCTAssertThrowsError(try Downloader(maxBytes: 10, timeoutSeconds: 5).fetch("file:///etc/passwd")) { error in
            XCTAssertTrue("\(error)".contains("only http and https"))
        }
        XCTAssertThrowsError(try Downloader(maxBytes: 100, timeoutSeconds: 5).fetch("\(mirror.baseURL)/mnist/train-labels-idx1-ubyte.gz")) { error in
            XCTAssertTrue("\(error)".contains("exceeds 100 bytes"), "\(error)")
        }
    }
}
