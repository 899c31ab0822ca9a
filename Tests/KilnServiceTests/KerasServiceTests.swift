import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// Keras's own JSON posted to a running service: the summary's shapes and parameter
/// counts are Keras's, and what Kiln cannot run is a 422 naming the layer.
final class KerasServiceTests: ServiceTestCase {
    override func setUpWithError() throws {
        try start()
    }

    func fixture(_ name: String) throws -> JSON {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../KilnGraphTests/Fixtures/keras/\(name).json")
        return try JSON.parse(Array(try Data(contentsOf: url)))
    }

    func testValidateSummaryMatchesKerasShapesAndParameterCounts() throws {
        for (name, source, output) in [("mlp", "mnist", "probs"), ("mnist_convnet", "mnist", "dense_1"), ("w1_trunk", "cifar10", "probs")] {
            let f = try fixture(name)
            let spec: JSON = [
                "name": .string(name),
                "model": ["keras": f["keras"]!],
                "data": ["source": .string(source)],
                "train": ["losses": [["node": .string(output), "type": "SparseCategoricalCrossentropy", "target": "label"]],
                          "metrics": ["sparse_categorical_accuracy", "AUC"]],
            ]
            let r = try client.json("POST", "/validate", spec)
            XCTAssertEqual(r.status, 200, "\(name): \(String(decoding: r.body, as: UTF8.self).prefix(300))")
            let nodes = try XCTUnwrap(r.json?["summary"]?["nodes"]?.arrayValue, name)
            var total = 0
            for node in nodes {
                let params = node["trainable_params"]!.intValue! + node["frozen_params"]!.intValue!
                total += params
                guard let keras = f["layers"]?[node["name"]!.stringValue!] else { continue }
                XCTAssertEqual(node["output_shape"]?.arrayValue?.dropFirst().map { $0.intValue! }, keras["output_shape"]?.arrayValue?.map { $0.intValue! },
                               "\(name): \(node["name"]!)")
                XCTAssertEqual(params, keras["count_params"]?.intValue, "\(name): \(node["name"]!)")
            }
            XCTAssertEqual(total, f["count_params"]?.intValue, name)
            // Keras's model.layers of a Sequential model leaves the InputLayer out.
            XCTAssertEqual(nodes.filter { $0["type"] != "input" }.count, f["layers"]?.objectMembers?.count, "\(name): one node per Keras layer")
        }
    }

    func testLambdaIs422WithTheLayerAndPath() throws {
        let spec: JSON = ["model": ["keras": try fixture("lambda_model")["keras"]!], "data": ["source": "none"]]
        for path in ["/validate", "/jobs"] {
            let r = try client.json("POST", path, spec)
            XCTAssertEqual(r.status, 422, path)
            let error = try XCTUnwrap(r.json?["error"], path)
            XCTAssertEqual(error["code"], "unsupported_layer")
            XCTAssertEqual(error["path"], "model.keras.config.layers[2]")
            XCTAssertTrue(error["message"]?.stringValue?.contains("double_it") == true)
        }
        let jobs = try client.json("GET", "/jobs")
        XCTAssertEqual(jobs.json?["jobs"]?.arrayValue?.count ?? 0, 0, "nothing queued")
    }
}
