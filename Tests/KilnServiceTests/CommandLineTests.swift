import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// `kiln validate` and `kiln train` run as a user would, on the built binary.
final class CommandLineTests: XCTestCase {
    func run(_ arguments: [String], in directory: String) throws -> (Int32, String) {
        let (status, out, _) = try runCapturing(arguments, in: directory)
        return (status, out)
    }

    func runCapturing(_ arguments: [String], in directory: String) throws -> (Int32, String, String) {
        let binary = KilnBinary.path
        guard !binary.isEmpty else { throw XCTSkip("kiln binary not built") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Stderr is read on the side so neither pipe fills while the other is drained.
        final class Box: @unchecked Sendable { var data = Data() }
        let errors = Box()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { errors.data = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errors.data, as: UTF8.self))
    }

    func testHelpAndVersionOnStdoutWithExitZero() throws {
        let dir = NSTemporaryDirectory()
        for arguments in [["--help"], ["-h"], ["help"], ["serve", "--help"], ["help", "train"], ["jobs", "-h"], ["jobs", "metrics", "--help"], ["predict", "--help"]] {
            let (status, out, err) = try runCapturing(arguments, in: dir)
            XCTAssertEqual(status, 0, "\(arguments)")
            let command = (["kiln"] + arguments.filter { !$0.hasPrefix("-") && $0 != "help" }).joined(separator: " ")
            XCTAssertTrue(out.contains("USAGE: \(command)"), "\(arguments): \(out)")
            XCTAssertEqual(err, "", "\(arguments)")
        }
        XCTAssertTrue(try runCapturing(["serve", "--help"], in: dir).1.contains("--data-dir"))
        let (status, out, _) = try runCapturing(["--version"], in: dir)
        XCTAssertEqual(status, 0)
        XCTAssertEqual(out, "kiln \(Kiln.version)\n")
        let (badStatus, badOut, badErr) = try runCapturing(["train", "--bogus", "1", "spec.json"], in: dir)
        XCTAssertEqual(badStatus, 64, "EX_USAGE")
        XCTAssertEqual(badOut, "")
        XCTAssertTrue(badErr.contains("Unknown option '--bogus'"), badErr)
    }

    /// `train --output` keeps the artifact a server job keeps; `predict --model DIR` runs
    /// it, and `--data-dir` stores it as a job a server serves under the spec's name.
    func testTrainKeepsTheArtifactForPredictAndServe() throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec: JSON = [
            "name": "kept",
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 3, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"]]],
            "data": ["fields": ["x": [[0, 1], [1, 0], [1, 1], [0, 0]], "y": [[1], [1], [0], [0]]]],
            "train": ["epochs": 2, "batch_size": 2, "losses": [["node": "y", "type": "mse", "target": "y"]]],
        ]
        try spec.serialized().write(toFile: "\(dir)/spec.json", atomically: true, encoding: .utf8)
        let input: JSON = ["inputs": ["x": [[0.5, 0.25], [1, 0]]]]
        try input.serialized().write(toFile: "\(dir)/input.json", atomically: true, encoding: .utf8)
        let (status, out) = try run(["train", "spec.json", "--output", "artifact", "--data-dir", "data"], in: dir)
        XCTAssertEqual(status, 0, out)
        let job = try JSON.parse(out)["job"]?.stringValue ?? ""
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/artifact").sorted(), ["checkpoint.safetensors", "model.json", "spec.json"])
        let (s1, fromDirectory) = try run(["predict", "--model", "artifact", "input.json"], in: dir)
        XCTAssertEqual(s1, 0, fromDirectory)
        let (s2, byName) = try run(["predict", "--model", "kept", "--data-dir", "data", "input.json"], in: dir)
        XCTAssertEqual(s2, 0, byName)
        let y = try JSON.parse(fromDirectory)["outputs"]?["y"]
        XCTAssertEqual(y?.arrayValue?.count, 2)
        XCTAssertEqual(y, try JSON.parse(byName)["outputs"]?["y"])

        // A server on that data directory serves the model by name, with the same answers.
        var config = Config()
        config.port = 0
        config.dataDirectory = "\(dir)/data"
        let service = try Service(config: config)
        try service.start()
        defer { service.stop() }
        let client = HTTPTestClient(port: service.port)
        let served = try client.json("POST", "/predict", ["model": "kept", "inputs": input["inputs"]!["x"].map { ["x": $0] }!]).json
        XCTAssertEqual(served?["model"]?.stringValue, job)
        XCTAssertEqual(served?["outputs"]?["y"], y)
        XCTAssertEqual(try client.json("GET", "/jobs/\(job)").json?["status"]?.stringValue, "succeeded")
    }

    func testValidateAndTrainFromTheCommandLine() throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let points = ServiceTests.grid(64, side: 8)
        let spec: JSON = [
            "name": "cli",
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 4, "activation": "tanh"], ["type": "dense", "units": 1, "name": "y"]]],
            "data": ["fields": ["x": .array(points.map { JSON([$0.0, $0.1]) }), "y": .array(points.map { JSON([$0.0 * $0.1]) })]],
            "train": ["epochs": 2, "batch_size": 8, "losses": [["node": "y", "type": "mse", "target": "y"]]],
        ]
        try spec.serialized(pretty: true).write(toFile: "\(dir)/spec.json", atomically: true, encoding: .utf8)
        let (validateStatus, validateOut) = try run(["validate", "spec.json"], in: dir)
        XCTAssertEqual(validateStatus, 0)
        XCTAssertEqual(try JSON.parse(validateOut)["summary"]?["total_params"]?.intValue, 2 * 4 + 4 + 4 + 1)
        let (trainStatus, trainOut) = try run(["train", "spec.json", "--data-dir", "\(dir)/data"], in: dir)
        XCTAssertEqual(trainStatus, 0, trainOut)
        let result = try JSON.parse(trainOut)
        XCTAssertEqual(result["epochs"]?.arrayValue?.count, 2)
        XCTAssertNotNil(result["final"]?["loss"]?.doubleValue)

        let bad = spec.setting("model", to: spec["model"]!.setting("layers", to: [["type": "dense", "units": 4, "activaton": "tanh"]]))
        try bad.serialized().write(toFile: "\(dir)/bad.json", atomically: true, encoding: .utf8)
        let (badStatus, badOut) = try run(["validate", "bad.json"], in: dir)
        XCTAssertEqual(badStatus, 1)
        XCTAssertEqual(try JSON.parse(badOut)["error"]?["path"]?.stringValue, "model.layers[0].activaton")
    }
}
