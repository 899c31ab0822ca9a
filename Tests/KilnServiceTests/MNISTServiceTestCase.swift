import Foundation
import KilnData
import KilnJSON
@testable import KilnService
import KilnTestSupport
import XCTest

/// A loopback dataset mirror over the real MNIST files and a service on a free port
/// that downloads from it, fresh for every test.
class MNISTServiceTestCase: XCTestCase {
    static let mnistDirectory = MNISTFiles.directory()

    /// The request body limit the service runs with.
    var maxBodyBytes: Int { 4 << 20 }

    var temp = ""
    var mirror: LoopbackFileServer!
    var service: Service!
    var client: HTTPTestClient!

    override func setUpWithError() throws {
        let mnist = MNISTServiceTestCase.mnistDirectory
        temp = NSTemporaryDirectory() + "kiln-mnist-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(temp)/mirror/mnist", withIntermediateDirectories: true)
        for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            try FileManager.default.createSymbolicLink(atPath: "\(temp)/mirror/mnist/\(name)", withDestinationPath: "\(mnist)/\(name)")
        }
        mirror = try LoopbackFileServer(root: "\(temp)/mirror")
        var config = Config()
        config.port = 0
        config.dataDirectory = "\(temp)/data"
        config.datasetMirror = mirror.baseURL
        config.datasetChecksums = try MNISTFiles.checksums()
        config.maxBodyBytes = maxBodyBytes
        service = try Service(config: config)
        try service.start()
        client = HTTPTestClient(port: service.port)
    }

    override func tearDown() {
        service?.stop()
        mirror?.stop()
        try? FileManager.default.removeItem(atPath: temp)
    }

    /// The job once it has ended (succeeded, failed or cancelled).
    func waitForJob(_ id: String, timeout: TimeInterval = 600) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try client.json("GET", "/jobs/\(id)").json!
            if ["succeeded", "failed", "cancelled"].contains(job["status"]?.stringValue ?? "") { return job }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTFail("job \(id) did not finish in time")
        return .null
    }

    /// MNIST test images (as [28, 28, 1] nested arrays in [0, 1]) and their labels,
    /// read straight from the IDX files.
    func mnistTest(_ count: Int) throws -> (images: [JSON], labels: [Int]) {
        let dir = MNISTServiceTestCase.mnistDirectory
        let images = try IDX.parse(try Gzip.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/t10k-images-idx3-ubyte.gz")))), name: "images")
        let labels = try IDX.parse(try Gzip.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/t10k-labels-idx1-ubyte.gz")))), name: "labels")
        var rows: [JSON] = []
        for i in 0..<count {
            let pixels = images.values[(i * 784)..<((i + 1) * 784)].map { $0 > 1 ? $0 / 255 : $0 }
            rows.append(.array((0..<28).map { r in .array((0..<28).map { c in [JSON(pixels[r * 28 + c])] }) }))
        }
        return (rows, (0..<count).map { Int(labels.values[$0]) })
    }
}
