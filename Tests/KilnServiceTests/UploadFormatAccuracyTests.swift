import Foundation
import KilnData
import KilnJSON
@testable import KilnService
import KilnTestSupport
import XCTest

/// The same MNIST digits uploaded as a CSV of pixel columns, a zip of PNG class folders,
/// Keras's `mnist.npz` (uint8) and a plain `.npz` of floats in [0, 1] train one spec to
/// the same test accuracy: uint8 images are scaled as batches are built, and CSV pixels
/// (float numbers, no dtype) are scaled by `"scale": {"features": 255}`.
final class UploadFormatAccuracyTests: MNISTServiceTestCase {
    override var maxBodyBytes: Int { 16 << 20 }

    static let trainRows = 2000, testRows = 500

    /// Images (row-major 28×28 pixels 0–255) and labels from the fixture's IDX files.
    func idx(_ prefix: String, rows: Int) throws -> (pixels: [UInt8], labels: [Int]) {
        func read(_ name: String) throws -> DataArray {
            let path = "\(MNISTServiceTestCase.mnistDirectory)/\(name)"
            return try IDX.parse(try Gzip.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: path)))), name: name)
        }
        let images = try read("\(prefix)-images-idx3-ubyte.gz"), labels = try read("\(prefix)-labels-idx1-ubyte.gz")
        XCTAssertGreaterThanOrEqual(images.rowCount, rows)
        return (images.values[0..<(rows * 784)].map { UInt8($0) }, labels.values[0..<rows].map { Int($0) })
    }

    /// A small MLP; `input` is `image` [28, 28, 1] or, for CSV, `features` [784].
    func spec(_ name: String, dataset: String, input: (String, [Int]), scale: JSON? = nil) -> JSON {
        var data: JSON = ["dataset": .string(dataset)]
        if let scale { data = data.setting("scale", to: scale) }
        return [
            "name": .string(name),
            "model": [
                "inputs": .object([(input.0, JSON(input.1))]),
                "layers": [["type": "flatten"], ["type": "dense", "units": 64, "activation": "relu"],
                           ["type": "dense", "units": 10, "activation": "softmax", "name": "probs"]],
            ],
            "data": data,
            "train": ["epochs": 2, "batch_size": 64, "seed": 7, "optimizer": ["type": "adam", "learning_rate": 0.002],
                      "losses": [["node": "probs", "type": "sparse_categorical_crossentropy", "target": "label"]],
                      "metrics": ["accuracy"]],
        ]
    }

    func upload(_ name: String, _ body: [UInt8], _ contentType: String) throws {
        let r = try client.request("POST", "/datasets?name=\(name)", body: body, headers: ["Content-Type": contentType])
        XCTAssertEqual(r.status, 201, "\(name): \(String(decoding: r.body.prefix(400), as: UTF8.self))")
    }

    /// Trains the spec; returns the job's warnings and its accuracy on the test images
    /// through /predict, whose inputs are floats as sent (pixels ÷ 255).
    func trainAndScore(_ json: JSON, test: (pixels: [UInt8], labels: [Int]), input: String, flat: Bool) throws -> (accuracy: Double, loss: Double, warnings: [String]) {
        let created = try client.json("POST", "/jobs", json)
        XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
        let id = try XCTUnwrap(created.json?["id"]?.stringValue)
        let job = try waitForJob(id)
        XCTAssertEqual(job["status"], "succeeded", "\(job)")
        let metrics = try XCTUnwrap(client.json("GET", "/jobs/\(id)/metrics").json)
        let warnings = metrics["warnings"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let loss = metrics["epochs"]?.arrayValue?.last?["loss"]?.doubleValue ?? .nan
        let rows: [JSON] = (0..<test.labels.count).map { i in
            let pixels = test.pixels[(i * 784)..<((i + 1) * 784)].map { Float($0) / 255 }
            if flat { return JSON(pixels) }
            return .array((0..<28).map { r in .array((0..<28).map { c in [JSON(pixels[r * 28 + c])] }) })
        }
        let predicted = try client.json("POST", "/predict", ["model": .string(id), "inputs": .object([(input, .array(rows))]), "outputs": ["probs"]])
        XCTAssertEqual(predicted.status, 200, String(decoding: predicted.body.prefix(400), as: UTF8.self))
        let probs = try XCTUnwrap(predicted.json?["outputs"]?["probs"]?.arrayValue)
        var correct = 0
        for (row, label) in zip(probs, test.labels) {
            let p = row.arrayValue!.map { $0.doubleValue! }
            if p.firstIndex(of: p.max()!) == label { correct += 1 }
        }
        return (Double(correct) / Double(test.labels.count), loss, warnings)
    }

    func testCSVPNGFoldersAndKerasNPZTrainLikeFloatNPZ() throws {
        let train = try idx("train", rows: Self.trainRows), test = try idx("t10k", rows: Self.testRows)
        let n = Self.trainRows

        // Plain .npz: image float32 in [0, 1] (x / 255, as users scale), label int32.
        let floats = DataArray(shape: [n, 28, 28, 1], dtype: .float32, values: train.pixels.map { Float($0) / 255 })
        try upload("floats", ArchiveFixtures.zip([
            ("image.npy", NPY.encode(floats), false),
            ("label.npy", NPY.encode(DataArray(shape: [n], dtype: .int32, values: train.labels.map(Float.init))), false),
        ]), "application/octet-stream")

        // Keras's mnist.npz: uint8 x_train [n, 28, 28] and uint8 y_train.
        try upload("kerasnpz", ArchiveFixtures.zip([
            ("x_train.npy", NPY.encode(DataArray(shape: [n, 28, 28], dtype: .uint8, values: train.pixels.map(Float.init))), false),
            ("y_train.npy", NPY.encode(DataArray(shape: [n], dtype: .uint8, values: train.labels.map(Float.init))), false),
        ]), "application/octet-stream")

        // PNG class folders in a zip, as image_dataset_from_directory reads them.
        var members: [(name: String, data: [UInt8], deflated: Bool)] = []
        for i in 0..<n {
            let image = DecodedImage(width: 28, height: 28, channels: 1, pixels: Array(train.pixels[(i * 784)..<((i + 1) * 784)]))
            members.append(("mnist/\(train.labels[i])/\(i).png", try XCTUnwrap(ImageCodec.encodePNG(image)), false))
        }
        try upload("pngs", ArchiveFixtures.zip(members), "application/zip")

        // CSV: a label column and 784 pixel columns of whole numbers 0–255.
        var csv = "label," + (0..<784).map { "p\($0)" }.joined(separator: ",") + "\n"
        for i in 0..<n {
            csv += "\(train.labels[i]),"
            csv += train.pixels[(i * 784)..<((i + 1) * 784)].map { String($0) }.joined(separator: ",")
            csv += "\n"
        }
        try upload("csv", Array(csv.utf8), "text/csv")

        let image = ("image", [28, 28, 1]), features = ("features", [784])
        let reference = try trainAndScore(spec("floats", dataset: "floats", input: image), test: test, input: "image", flat: false)
        let keras = try trainAndScore(spec("kerasnpz", dataset: "kerasnpz", input: image), test: test, input: "image", flat: false)
        let png = try trainAndScore(spec("pngs", dataset: "pngs", input: image), test: test, input: "image", flat: false)
        let csvScaled = try trainAndScore(spec("csv", dataset: "csv", input: features, scale: ["features": 255]), test: test, input: "features", flat: true)
        let csvRaw = try trainAndScore(spec("csv-raw", dataset: "csv", input: features), test: test, input: "features", flat: true)

        // The model learned: well above chance (0.1) on digits it never saw.
        XCTAssertGreaterThan(reference.accuracy, 0.8)
        // uint8 × (1/255) and the CSV's float 0–255 × (1/255) are the same numbers in the
        // same row order: the same run. The float upload holds x / 255, which differs
        // from x × (1/255) in the last bit of some pixels: the same accuracy within 1%.
        XCTAssertEqual(keras.accuracy, csvScaled.accuracy)
        XCTAssertEqual(keras.loss, csvScaled.loss)
        XCTAssertEqual(keras.accuracy, reference.accuracy, accuracy: 0.01)
        // Image folders store their rows in a fixed shuffled order (so a validation
        // fraction holds every class), so the batches differ: the same within 3%.
        XCTAssertEqual(png.accuracy, reference.accuracy, accuracy: 0.03)
        for run in [reference, keras, png, csvScaled] {
            XCTAssertFalse(run.warnings.contains { $0.contains("far outside") }, "\(run.warnings)")
        }
        // CSV pixels left unscaled are named in a warning with their range.
        XCTAssertTrue(csvRaw.warnings.contains { $0.contains("input 'features' ranges over [0.0, 255.0]") }, "\(csvRaw.warnings)")
        print("MNIST \(n) train / \(test.labels.count) test, test accuracy: float npz \(reference.accuracy), Keras npz (uint8) \(keras.accuracy), "
              + "PNG folders \(png.accuracy), CSV scaled \(csvScaled.accuracy), CSV unscaled \(csvRaw.accuracy)")
    }
}
