import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
@testable import KilnTrain
import XCTest

/// Integer images are scaled to [0, 1] when batches are built, as `data.scale` says.
final class ScalingTests: XCTestCase {
    /// 96 rows of 4 "pixels" 0–255 and a uint8 label: 1 when the first two pixels
    /// outweigh the last two.
    func pixels(dtype: DType, scale: Float = 1) -> DatasetSplits {
        var g = SeededGenerator(seed: 7)
        var x: [Float] = [], y: [Float] = []
        for _ in 0..<96 {
            let row = (0..<4).map { _ in Float(g.next() % 256) }
            x += row.map { $0 * scale }
            y.append(row[0] + row[1] > row[2] + row[3] ? 1 : 0)
        }
        let train = try! Dataset(fields: [
            "x": DataArray(shape: [96, 4], dtype: dtype, values: x),
            "y": DataArray(shape: [96], dtype: .uint8, values: y),
        ])
        return DatasetSplits(train: train, test: nil)
    }

    func spec(scale: JSON? = nil, extraLayers: [JSON] = []) -> JSON {
        var data: JSON = ["dataset": "pixels"]
        if let scale { data = data.setting("scale", to: scale) }
        return [
            "name": "pixels",
            "model": [
                "inputs": ["x": [4]],
                "layers": .array(extraLayers + [
                    ["type": "dense", "units": 8, "activation": "tanh", "input": "x"],
                    ["type": "dense", "units": 2, "activation": "softmax", "name": "p"],
                ]),
            ],
            "data": data,
            "train": [
                "epochs": 3, "batch_size": 16, "seed": 5, "optimizer": ["type": "adam", "learning_rate": 0.05],
                "losses": [["node": "p", "type": "sparse_categorical_crossentropy", "target": "y"]],
                "metrics": ["accuracy"], "validation": ["fraction": 0.25],
            ],
        ]
    }

    func trainer(_ json: JSON, _ splits: DatasetSplits) throws -> Trainer {
        let schema = DataSchema(fields: splits.train.fields.mapValues(\.rowShape), known: true)
        let spec = try JobSpec(json: json, schema: schema)
        let data = try TrainingData.resolve(spec, catalog: nil, uploaded: { _ in splits })
        return Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: spec.train.seed), data: data)
    }

    func history(_ json: JSON, _ splits: DatasetSplits) throws -> (history: [[String: Double]], warnings: [String]) {
        let t = try trainer(json, splits)
        var out: [[String: Double]] = []
        try t.fit { out.append($0.values) }
        return (out, t.warnings)
    }

    func testUInt8InputsTrainExactlyAsFloatsDividedBy255() throws {
        let asUInt8 = try history(spec(), pixels(dtype: .uint8))
        let asFloats = try history(spec(), pixels(dtype: .float32, scale: 1 / 255))
        XCTAssertEqual(asUInt8.history, asFloats.history)
        XCTAssertEqual(asUInt8.history.count, 3)
        // The uint8 label stays a class index: sparse cross-entropy accepted it and learned.
        XCTAssertGreaterThan(asUInt8.history.last!["val_accuracy"]!, 0.6)
        XCTAssertFalse(asUInt8.warnings.contains { $0.contains("far outside") }, "\(asUInt8.warnings)")
        let t = try trainer(spec(), pixels(dtype: .uint8))
        XCTAssertEqual(t.fieldScales, ["x": 1 / 255])
    }

    func testScaleFalseUsesStoredValuesAndWarnsAboutTheRange() throws {
        let unscaled = try history(spec(scale: false), pixels(dtype: .uint8))
        let rawFloats = try history(spec(), pixels(dtype: .float32))
        XCTAssertEqual(unscaled.history, rawFloats.history)
        XCTAssertNotEqual(unscaled.history, try history(spec(), pixels(dtype: .uint8)).history)
        let warning = try XCTUnwrap(unscaled.warnings.first { $0.contains("far outside [-10, 10]") }, "\(unscaled.warnings)")
        XCTAssertTrue(warning.contains("input 'x'"), warning)
        XCTAssertTrue(warning.contains("ranges over [1.0, 255.0]"), warning)
        XCTAssertTrue(warning.contains("\"scale\""), warning)
    }

    func testScaleObjectDividesTheNamedFieldsWhateverTheirDtype() throws {
        let divided = try history(spec(scale: ["x": 255]), pixels(dtype: .float32))
        XCTAssertEqual(divided.history, try history(spec(), pixels(dtype: .uint8)).history)
        XCTAssertFalse(divided.warnings.contains { $0.contains("far outside") }, "\(divided.warnings)")
        // Naming a field the data lacks is an error naming it.
        XCTAssertThrowsError(try trainer(spec(scale: ["pixels": 255]), pixels(dtype: .float32))) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "pixels", "\(error)")
        }
    }

    func testScaleFieldIsCheckedWithItsPath() {
        for (bad, path) in [(JSON("yes"), "data.scale"), (["x": 0], "data.scale.x"), (["x": "255"], "data.scale.x"), (["x": -1], "data.scale.x")] as [(JSON, String)] {
            XCTAssertThrowsError(try JobSpec(json: spec(scale: bad))) { error in
                XCTAssertEqual((error as? SpecError)?.path, path, "\(bad.serialized()): \(error)")
            }
        }
        XCTAssertEqual(try JobSpec(json: spec()).data.scale, .uint8)
        XCTAssertEqual(try JobSpec(json: spec(scale: true)).data.scale, .uint8)
        XCTAssertEqual(try JobSpec(json: spec(scale: false)).data.scale, DataSpec.Scaling.none)
        XCTAssertEqual(try JobSpec(json: spec(scale: ["x": 255])).data.scale, .divide(["x": 255]))
    }

    func testDataBoundConstantsAreScaledLikeTheirField() throws {
        let protos: JSON = ["type": "constant", "from_data": ["field": "x", "rows": 2], "name": "protos"]
        let splits = pixels(dtype: .uint8)
        for (scale, factor) in [(JSON?.none, Float(1) / 255), (JSON.bool(false), Float(1))] {
            let t = try trainer(spec(scale: scale, extraLayers: [protos]).setting("train", to: spec()["train"]!.setting("epochs", to: 1)), splits)
            try t.fit { _ in }
            let bound = t.model.weights["protos.value"]!.value.scalars
            let rows = Array(t.data.train.fields["x"]!.values[0..<8]).map { $0 * factor }
            XCTAssertEqual(bound, rows)
        }
    }

    func testBatchesScaleOnlyWhenAsked() {
        let a = DataArray(shape: [3, 2], dtype: .uint8, values: [0, 255, 51, 102, 3, 4])
        XCTAssertEqual(a.batch([2, 0][...]).scalars, [3, 4, 0, 255])
        XCTAssertEqual(a.batch([1][...], scale: 1 / 255).scalars, [51 * (1 / 255), 102 * (1 / 255)])
    }
}
