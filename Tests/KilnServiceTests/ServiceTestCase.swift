import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// A service over real sockets on a fresh data directory, and small jobs on inline
/// data (no downloads).
class ServiceTestCase: XCTestCase {
    var temp = ""
    var service: Service!
    var client: HTTPTestClient!

    func start(token: String? = nil, maxQueued: Int = 100, scope: AuthMiddleware.Scope = .writes, directory: String? = nil,
               configure: (inout Config) -> Void = { _ in }) throws {
        temp = directory ?? NSTemporaryDirectory() + "kiln-service-\(UUID().uuidString)"
        var config = Config()
        config.authScope = scope
        config.port = 0
        config.dataDirectory = temp
        config.authToken = token
        config.maxQueuedJobs = maxQueued
        configure(&config)
        service = try Service(config: config)
        try service.start()
        client = HTTPTestClient(port: service.port)
    }

    override func tearDown() {
        service?.stop()
        try? FileManager.default.removeItem(atPath: temp)
    }

    /// Points on a side×side grid in [0, 1).
    static func grid(_ count: Int, side: Int) -> [(Float, Float)] {
        var out: [(Float, Float)] = []
        let scale = Float(side)
        for i in 0..<count {
            let x = Float(i % side) / scale
            let y = Float(i / side) / scale
            out.append((x, y))
        }
        return out
    }

    /// A small regression on inline fields.
    func spec(epochs: Int = 3, name: String = "tiny", data: JSON? = nil) -> JSON {
        let coordinates = ServiceTests.grid(64, side: 8)
        let xs = JSON.array(coordinates.map { JSON([$0.0, $0.1]) })
        let ys = JSON.array(coordinates.map { JSON([$0.0 + $0.1]) })
        return [
            "name": .string(name),
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 8, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"]]],
            "data": data ?? ["fields": ["x": xs, "y": ys]],
            "train": ["epochs": JSON(epochs), "batch_size": 8, "optimizer": ["type": "adam", "learning_rate": 0.01],
                      "losses": [["node": "y", "type": "mse", "target": "y"]], "metrics": ["mae"]],
        ]
    }

    func wait(_ id: String) throws -> JSON {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let job = try client.json("GET", "/jobs/\(id)").json!
            if ["succeeded", "failed", "cancelled"].contains(job["status"]!.stringValue!) { return job }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("job \(id) did not finish")
        return .null
    }
}
