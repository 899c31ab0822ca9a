import Foundation
import KilnJSON
import XCTest

/// `kiln validate` and `kiln train` run as a user would, on the built binary.
final class CommandLineTests: XCTestCase {
    func run(_ arguments: [String], in directory: String) throws -> (Int32, String) {
        let binary = KilnBinary.path
        guard !binary.isEmpty else { throw XCTSkip("kiln binary not built") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
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
