import Foundation
import KilnJSON
import XCTest

/// Kills a real `kiln serve` process with SIGKILL at random moments during training,
/// restarts it on the same data directory, and checks that no job is lost, stuck or
/// duplicated and that the finished model serves predictions.
final class CrashRecoveryTests: XCTestCase {
    var temp = ""
    var process: Process?

    override func tearDown() {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: temp)
    }

    var binary: String { KilnBinary.path }

    func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func launch(port: Int) throws -> HTTPTestClient {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--port", String(port), "--data-dir", temp]
        p.currentDirectoryURL = URL(fileURLWithPath: temp)
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        process = p
        let client = HTTPTestClient(port: port)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = try? client.json("GET", "/healthz"), r.status == 200 { return client }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("server did not start")
        return client
    }

    func testKillNineDuringTrainingLosesNothing() throws {
        guard !binary.isEmpty else { throw XCTSkip("kiln binary not built") }
        temp = NSTemporaryDirectory() + "kiln-crash-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: true)
        let port = freePort()
        var client = try launch(port: port)
        var generator = SystemRandomNumberGenerator()
        let points = ServiceTests.grid(2048, side: 32)
        let xs = JSON.array(points.map { JSON([$0.0, $0.1]) })
        let ys = JSON.array(points.map { JSON([$0.0 - $0.1]) })
        let spec: JSON = [
            "name": "crashy",
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 256, "activation": "tanh"], ["type": "dense", "units": 256, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"]]],
            "data": ["fields": ["x": xs, "y": ys]],
            "train": ["epochs": 30, "batch_size": 4, "optimizer": ["type": "adam", "learning_rate": 0.001],
                      "losses": [["node": "y", "type": "mse", "target": "y"]]],
        ]
        let created = try client.json("POST", "/jobs", spec)
        XCTAssertEqual(created.status, 201)
        let id = created.json!["id"]!.stringValue!
        var lastEpoch = 0
        var interrupted = 0
        for _ in 0..<6 {
            Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.6, using: &generator))
            kill(process!.processIdentifier, SIGKILL)
            process!.waitUntilExit()
            // Nothing half-written survives: every state file parses.
            for file in ["job.json", "spec.json"] {
                let bytes = try XCTUnwrap(FileManager.default.contents(atPath: "\(temp)/jobs/\(id)/\(file)"), file)
                XCTAssertNoThrow(try JSON.parse([UInt8](bytes)), file)
            }
            client = try launch(port: port)
            let jobs = try client.json("GET", "/jobs").json!["jobs"]!.arrayValue!
            XCTAssertEqual(jobs.count, 1, "no job lost or duplicated")
            let status = jobs[0]["status"]!.stringValue!
            XCTAssertTrue(["queued", "running", "succeeded"].contains(status), status)
            if status != "succeeded" { interrupted += 1 }
            let epochs = try client.json("GET", "/jobs/\(id)/metrics").json!["epochs"]!.arrayValue!
            XCTAssertGreaterThanOrEqual(epochs.count, lastEpoch, "metrics never go backwards")
            lastEpoch = epochs.count
            if status == "succeeded" { break }
        }
        let deadline = Date().addingTimeInterval(300)
        var final = JSON.null
        while Date() < deadline {
            final = try client.json("GET", "/jobs/\(id)").json!
            if final["status"]?.stringValue == "succeeded" || final["status"]?.stringValue == "failed" { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertEqual(final["status"]?.stringValue, "succeeded", final.serialized())
        XCTAssertGreaterThan(interrupted, 0, "at least one kill landed during training")
        let epochs = try client.json("GET", "/jobs/\(id)/metrics").json!["epochs"]!.arrayValue!
        XCTAssertEqual(epochs.map { $0["epoch"]!.intValue! }, Array(1...30), "each epoch recorded exactly once")
        XCTAssertEqual(try client.json("POST", "/predict", ["model": "crashy", "instances": [[0.5, 0.25]]]).status, 200)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(temp)/jobs/\(id)").filter { $0.contains("tmp") }
        XCTAssertEqual(leftovers, [])
    }
}

/// The `kiln` binary built next to the test bundle, or "" when it is not there.
enum KilnBinary {
    static let path: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("kiln").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ""
    }()
}
