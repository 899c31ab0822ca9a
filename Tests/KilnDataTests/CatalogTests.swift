import Foundation
import KilnTestSupport
import XCTest
@testable import KilnData

final class DownloaderTests: XCTestCase {
    var root = ""
    var server: LoopbackFileServer!

    override func setUpWithError() throws {
        root = Fixtures.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: true)
        Fixtures.writeFile(root + "/d/file.bin", (0..<5000).map { UInt8($0 % 251) })
        Fixtures.writeFile(root + "/secret.txt", Array("top".utf8))
        server = try LoopbackFileServer(root: root + "/d")
    }

    override func tearDown() {
        server?.stop()
        Fixtures.removeTree(root)
    }

    func testFetch() throws {
        let d = Downloader(maxBytes: 1 << 20, timeoutSeconds: 10)
        XCTAssertEqual(try d.fetch(server.baseURL + "/file.bin"), (0..<5000).map { UInt8($0 % 251) })
        XCTAssertEqual(server.requestCount, 1)
        XCTAssertEqual(server.requestedPaths, ["/file.bin"])
    }

    func testErrors() throws {
        let d = Downloader(maxBytes: 1 << 20, timeoutSeconds: 10)
        let missing = server.baseURL + "/missing.bin"
        assertDatasetError(try d.fetch(missing), contains: ["missing.bin", missing, "HTTP status 404"])
        assertDatasetError(try Downloader(maxBytes: 100, timeoutSeconds: 10).fetch(server.baseURL + "/file.bin"),
                           contains: ["file.bin", "larger than the limit of 100 bytes"])
        assertDatasetError(try d.fetch("file:///etc/passwd"), contains: ["only http and https"])
        assertDatasetError(try d.fetch("ftp://127.0.0.1/x"), contains: ["only http and https"])
        assertDatasetError(try d.fetch("gopher://127.0.0.1/x"), contains: ["only http and https"])
        // The fixture itself refuses paths that leave its root.
        assertDatasetError(try d.fetch(server.baseURL + "/a/../../secret.txt"), contains: ["HTTP status"])
        let port = server.port
        server.stop()
        assertDatasetError(try d.fetch("http://127.0.0.1:\(port)/file.bin"), contains: ["http://127.0.0.1:\(port)/file.bin", "failed"])
    }

    func testDroppingTheServerStopsIt() throws {
        var other: LoopbackFileServer? = try LoopbackFileServer(root: root + "/d")
        let url = other!.baseURL + "/file.bin"
        XCTAssertEqual(try Downloader(maxBytes: 1 << 20, timeoutSeconds: 5).fetch(url).count, 5000)
        other = nil
        assertDatasetError(try Downloader(maxBytes: 1 << 20, timeoutSeconds: 5).fetch(url), contains: [url])
    }

    func testTimeout() throws {
        // A listening socket that never answers: the handshake completes, no response comes.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(listen(fd, 4), 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let url = "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))/slow.bin"
        let start = Date()
        assertDatasetError(try Downloader(maxBytes: 1 << 20, timeoutSeconds: 1).fetch(url), contains: [url, "timed out"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }
}

final class CatalogTests: XCTestCase {
    static let mnistFiles = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    var root = ""
    var server: LoopbackFileServer!

    override func setUpWithError() throws {
        root = Fixtures.temporaryDirectory()
        for d in ["/mirror/mnist", "/mirror/cifar10", "/cache"] {
            try FileManager.default.createDirectory(atPath: root + d, withIntermediateDirectories: true)
        }
        server = try LoopbackFileServer(root: root + "/mirror")
    }

    override func tearDown() {
        server?.stop()
        Fixtures.removeTree(root)
    }

    func linkMNIST(except skipped: Set<String> = []) throws {
        let source = try Fixtures.mnistDirectory()
        for f in CatalogTests.mnistFiles where !skipped.contains(f) {
            try FileManager.default.createSymbolicLink(atPath: "\(root)/mirror/mnist/\(f)", withDestinationPath: "\(source)/\(f)")
        }
    }

    func catalog() -> DatasetCatalog {
        DatasetCatalog(cacheDirectory: root + "/cache", mirror: server.baseURL + "/", checksums: (try? MNISTFiles.checksums()) ?? [:],
                       maxDownloadBytes: 64 << 20, timeoutSeconds: 30)
    }

    /// Rows in the served training and test files: full MNIST, or the fixture.
    var rows: (train: Int, test: Int) { MNISTFiles.isFull ? (60000, 10000) : (10000, 2000) }

    /// The digest the catalog expects for a file.
    func expectedDigest(_ name: String) throws -> String {
        try XCTUnwrap(try catalog().knownChecksums["mnist/\(name)"] ?? nil)
    }

    func testMNISTEndToEndAndCache() throws {
        try linkMNIST()
        let start = Date()
        let splits = try catalog().load(builtIn: "mnist")
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(server.requestCount, 4)
        let train = splits.train
        XCTAssertEqual(train.fields["image"]?.shape, [rows.train, 28, 28, 1])
        XCTAssertEqual(train.fields["image"]?.dtype, .float32)
        XCTAssertEqual(train.fields["label"]?.shape, [rows.train])
        XCTAssertEqual(train.fields["label"]?.dtype, .int32)
        let test = try XCTUnwrap(splits.test)
        XCTAssertEqual(test.fields["image"]?.shape, [rows.test, 28, 28, 1])
        XCTAssertEqual(test.fields["label"]?.shape, [rows.test])
        let pixels = train.fields["image"]!.values
        XCTAssertEqual(pixels.min(), 0)
        XCTAssertEqual(pixels.max(), 1)
        let labels = train.fields["label"]!.values
        XCTAssertEqual(Set(labels), Set((0...9).map(Float.init)))
        // The well-known first training labels: 5 0 4 1 9 2 1 3 1 4.
        XCTAssertEqual(Array(labels.prefix(10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
        XCTAssertEqual(Array(test.fields["label"]!.values.prefix(5)), [7, 2, 1, 0, 4])
        print("MNIST download + parse: \(elapsed) s")

        // Second load (new catalog, same cache): no request.
        let again = try catalog().load(builtIn: "mnist")
        XCTAssertEqual(server.requestCount, 4)
        XCTAssertEqual(again.train.rowCount, rows.train)
        for f in CatalogTests.mnistFiles {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(root)/cache/mnist/\(f)"))
        }

        // A cached file that fails its checksum is discarded and downloaded again.
        let cachedLabels = "\(root)/cache/mnist/t10k-labels-idx1-ubyte.gz"
        var bytes = Fixtures.readFile(cachedLabels)
        bytes[100] ^= 0xff
        Fixtures.writeFile(cachedLabels, bytes)
        _ = try catalog().load(builtIn: "mnist")
        XCTAssertEqual(server.requestCount, 5)
        XCTAssertEqual(server.requestedPaths.last, "/mnist/t10k-labels-idx1-ubyte.gz")
        XCTAssertEqual(SHA256.hex(Fixtures.readFile(cachedLabels)), try expectedDigest("t10k-labels-idx1-ubyte.gz"))
        // No temp files are left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: "\(root)/cache/mnist")
        XCTAssertEqual(Set(names), Set(CatalogTests.mnistFiles))
    }

    func testMissingFile() throws {
        try linkMNIST(except: ["train-labels-idx1-ubyte.gz"])
        assertDatasetError(try catalog().load(builtIn: "mnist"),
                           contains: ["train-labels-idx1-ubyte.gz: ", "/mnist/train-labels-idx1-ubyte.gz", "HTTP status 404"])
    }

    func testTruncatedAndCorruptFiles() throws {
        let source = try Fixtures.mnistDirectory()
        let name = "train-labels-idx1-ubyte.gz"
        try linkMNIST(except: [name])
        let original = Fixtures.readFile("\(source)/\(name)")
        let expected = try expectedDigest(name)

        // Truncated: the checksum catches it.
        let truncated = Array(original.prefix(original.count - 1000))
        Fixtures.writeFile("\(root)/mirror/mnist/\(name)", truncated)
        assertDatasetError(try catalog().load(builtIn: "mnist"),
                           contains: ["\(name): SHA-256 mismatch (expected \(expected), got \(SHA256.hex(truncated)))"])
        // Nothing invalid was cached.
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(root)/cache/mnist/\(name)"))

        // Without a known checksum the structure check catches it.
        let unchecked = catalog()
        unchecked.knownChecksums["mnist/\(name)"] = .some(nil)
        assertDatasetError(try unchecked.load(builtIn: "mnist"), contains: ["\(name): truncated gzip stream"])

        // Corrupted in the middle.
        var corrupt = original
        corrupt[original.count / 2] ^= 0x5a
        Fixtures.writeFile("\(root)/mirror/mnist/\(name)", corrupt)
        assertDatasetError(try catalog().load(builtIn: "mnist"), contains: ["\(name): SHA-256 mismatch", "got \(SHA256.hex(corrupt))"])
        assertDatasetError(try unchecked.load(builtIn: "mnist"), contains: ["\(name): corrupt gzip stream"])

        // A well-formed gzip of a short IDX file.
        let raw = try Gzip.decompress(original)
        let short = ArchiveFixtures.gzip(Array(raw.prefix(8 + rows.train - 1000)))
        Fixtures.writeFile("\(root)/mirror/mnist/\(name)", short)
        assertDatasetError(try unchecked.load(builtIn: "mnist"), contains: ["\(name): IDX header says \(rows.train) items but file holds \(rows.train - 1000)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(root)/cache/mnist/\(name)"))
    }

    func testUnknownDatasetAndBadMirror() {
        assertDatasetError(try catalog().load(builtIn: "imagenet"), contains: ["unknown built-in dataset 'imagenet'", "mnist, cifar10"])
        let bad = DatasetCatalog(cacheDirectory: root + "/cache", mirror: "file:///etc")
        assertDatasetError(try bad.load(builtIn: "mnist"), contains: ["not an http or https URL"])
        XCTAssertEqual(server.requestCount, 0)
    }

    func testCIFAR10TrustOnFirstUse() throws {
        let archive = CIFAR10Tests.archive(CIFAR10Tests.standardFiles())
        Fixtures.writeFile("\(root)/mirror/cifar10/cifar-10-binary.tar.gz", archive)
        let splits = try catalog().load(builtIn: "cifar10")
        XCTAssertEqual(splits.train.fields["image"]?.shape, [15, 32, 32, 3])
        XCTAssertEqual(splits.test?.rowCount, 2)
        XCTAssertEqual(server.requestCount, 1)
        let cached = "\(root)/cache/cifar10/cifar-10-binary.tar.gz"
        let record = String(decoding: Fixtures.readFile(cached + ".sha256"), as: UTF8.self)
        XCTAssertEqual(record, SHA256.hex(archive))

        _ = try catalog().load(builtIn: "cifar10")
        XCTAssertEqual(server.requestCount, 1)

        // Corruption on disk is caught by the recorded digest and the file is fetched again.
        var bytes = Fixtures.readFile(cached)
        bytes[bytes.count / 2] ^= 0x01
        Fixtures.writeFile(cached, bytes)
        _ = try catalog().load(builtIn: "cifar10")
        XCTAssertEqual(server.requestCount, 2)
        XCTAssertEqual(Fixtures.readFile(cached), archive)

        // A corrupt mirror file is rejected by the structure check and not cached.
        Fixtures.removeTree(root + "/cache/cifar10")
        Fixtures.writeFile("\(root)/mirror/cifar10/cifar-10-binary.tar.gz", Array(archive.prefix(archive.count - 50)))
        assertDatasetError(try catalog().load(builtIn: "cifar10"), contains: ["cifar-10-binary.tar.gz: truncated gzip stream"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: cached))
    }
}

/// A server that answers one connection with a fixed response, then closes.
final class OneShotServer {
    let fd: Int32
    let port: Int
    let done = DispatchSemaphore(value: 0)

    init(response: [UInt8]) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let listener = fd
        let done = self.done
        Thread {
            let client = accept(listener, nil, nil)
            if client >= 0 {
                var buf = [UInt8](repeating: 0, count: 4096)
                _ = recv(client, &buf, buf.count, 0)
                _ = response.withUnsafeBytes { send(client, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
            done.signal()
        }.start()
    }

    func finish() {
        done.wait()
        close(fd)
    }
}

final class DownloaderResponseTests: XCTestCase {
    func fetch(_ response: String) -> (url: String, result: Result<[UInt8], DatasetError>) {
        let server = OneShotServer(response: Array(response.utf8))
        defer { server.finish() }
        let url = "http://127.0.0.1:\(server.port)/mnist/file.gz"
        do throws(DatasetError) {
            return (url, .success(try Downloader(maxBytes: 1 << 20, timeoutSeconds: 5).fetch(url)))
        } catch {
            return (url, .failure(error))
        }
    }

    func testRedirectIsNotFollowed() {
        let (url, result) = fetch("HTTP/1.1 301 Moved Permanently\r\nLocation: http://example.com/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assertDatasetError(try result.get(), contains: [url, "HTTP status 301", "redirects are not followed"])
    }

    func testTruncatedTransfer() {
        let (url, result) = fetch("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nonly a few bytes")
        assertDatasetError(try result.get(), contains: ["file.gz", url, "truncated transfer"])
    }

    func testServerError() {
        let (url, result) = fetch("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
        assertDatasetError(try result.get(), contains: [url, "HTTP status 503"])
    }

    func testOversizedDeclaredLength() {
        let (_, result) = fetch("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\nabc")
        assertDatasetError(try result.get(), contains: ["larger than the limit"])
    }

    func testBodyWithoutLength() throws {
        let (_, result) = fetch("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
        XCTAssertEqual(try result.get(), Array("hello".utf8))
    }
}
