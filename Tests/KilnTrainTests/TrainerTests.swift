import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTensor
@testable import KilnTrain
import XCTest

final class TrainerTests: XCTestCase {
    /// Two Gaussian blobs in 2-D, labelled 0 and 1.
    func blobs(_ n: Int, seed: UInt64) -> JSON {
        var g = SeededGenerator(seed: seed)
        var xs: [JSON] = [], ys: [JSON] = []
        for i in 0..<n {
            let label = i % 2
            let cx: Float = label == 0 ? -1 : 1
            xs.append(JSON([cx + 0.5 * g.nextNormal(), cx + 0.5 * g.nextNormal()]))
            ys.append(JSON(label))
        }
        return ["x": .array(xs), "y": .array(ys)]
    }

    func spec(epochs: Int = 5, seed: Int = 3, optimizer: JSON = ["type": "adam", "learning_rate": 0.05]) -> JSON {
        [
            "name": "blobs",
            "model": [
                "inputs": ["x": [2]],
                "layers": [["type": "dense", "units": 8, "activation": "tanh"], ["type": "dense", "units": 2, "activation": "softmax", "name": "p"]],
            ],
            "data": ["fields": blobs(200, seed: 11)],
            "train": [
                "epochs": JSON(epochs), "batch_size": 16, "seed": JSON(seed), "optimizer": optimizer,
                "losses": [["node": "p", "type": "categorical_crossentropy", "target": "y"]],
                "metrics": ["accuracy"], "validation": ["fraction": 0.2],
            ],
        ]
    }

    func train(_ json: JSON) throws -> [EpochMetrics] {
        let spec = try JobSpec(json: json)
        let data = try TrainingData.resolve(spec, catalog: nil)
        let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
        var history: [EpochMetrics] = []
        try Trainer(spec: spec, model: model, data: data).fit { history.append($0) }
        return history
    }

    func testLearnsSeparableBlobsAndReportsKerasKeys() throws {
        let history = try train(spec())
        XCTAssertEqual(history.count, 5)
        let last = history.last!
        XCTAssertLessThan(last.values["loss"]!, history.first!.values["loss"]!)
        XCTAssertGreaterThan(last.values["val_accuracy"]!, 0.9)
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] { XCTAssertNotNil(last.values[key], key) }
        XCTAssertEqual(Set(last.gradNorms.keys), ["dense_1.kernel", "dense_1.bias", "p.kernel", "p.bias"])
        XCTAssertTrue(last.gradNorms.values.allSatisfy { $0 > 0 && $0.isFinite })
    }

    func testSameSeedSameMetricsDifferentSeedDifferentMetrics() throws {
        let a = try train(spec(epochs: 2)), b = try train(spec(epochs: 2)), c = try train(spec(epochs: 2, seed: 4))
        XCTAssertEqual(a.map { $0.values["loss"]! }, b.map { $0.values["loss"]! })
        XCTAssertNotEqual(a.map { $0.values["loss"]! }, c.map { $0.values["loss"]! })
    }

    func testDivergingLossFailsWithEpochAndStep() {
        // A linear regression with a far too large learning rate overflows within steps.
        let diverging: JSON = [
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 1, "name": "out"]]],
            "data": ["fields": blobs(64, seed: 5)],
            "train": ["epochs": 20, "batch_size": 8, "optimizer": ["type": "sgd", "learning_rate": 10],
                      "losses": [["node": "out", "type": "mse", "target": "y"]]],
        ]
        XCTAssertThrowsError(try train(diverging.setting("data", to: ["fields": ["x": blobs(64, seed: 5)["x"]!, "y": .array((0..<64).map { JSON([$0 % 2]) })]]))) { error in
            guard case let TrainError.nonFinite(epoch, step, loss) = error else { return XCTFail("\(error)") }
            XCTAssertGreaterThanOrEqual(epoch, 1)
            XCTAssertGreaterThanOrEqual(step, 1)
            XCTAssertFalse(loss.isFinite)
            XCTAssertTrue("\(error)".contains("epoch \(epoch), step \(step)"))
        }
    }

    func testMissingFieldIsNamed() throws {
        // Known before the data loads (inline fields): a spec error with the path.
        let bad = spec().setting("train", to: spec()["train"]!.setting("losses", to: [["node": "p", "type": "categorical_crossentropy", "target": "label"]]))
        XCTAssertThrowsError(try JobSpec(json: bad)) { error in
            XCTAssertEqual((error as? SpecError)?.path, "train.losses[0].target")
        }
        // Found only when the data loads (an uploaded dataset without a schema): a data error naming the field.
        let parsed = try JobSpec(json: bad, schema: DataSchema())
        XCTAssertThrowsError(try TrainingData.resolve(parsed, catalog: nil)) { error in
            XCTAssertEqual((error as? DatasetError)?.field, "label")
        }
    }

    func testClassIndicesOutOfRangeAreFoundBeforeTraining() throws {
        // The blobs' labels are 0 and 1 for a 2-class prediction; break one row at a time.
        for (bad, expected) in [(Float(2), "row 5: 2.0 is not a class index in 0..<2"), (-1, "row 5: -1.0 is not"), (0.5, "row 5: 0.5 is not")] {
            var json = spec()
            var ys = json["data"]!["fields"]!["y"]!.arrayValue!
            ys[5] = .number(Double(bad))
            json = json.setting("data", to: json["data"]!.setting("fields", to: json["data"]!["fields"]!.setting("y", to: .array(ys))))
            let parsed = try JobSpec(json: json)
            XCTAssertThrowsError(try TrainingData.resolve(parsed, catalog: nil)) { error in
                let e = error as? DatasetError
                XCTAssertEqual(e?.field, "y")
                XCTAssertTrue(e?.message.contains(expected) ?? false, e?.message ?? "\(error)")
                XCTAssertTrue(e?.message.contains("'p' predicts 2 classes") ?? false, e?.message ?? "")
            }
        }
    }

    /// W2: find X with X·Xᵀ = C from a weight node alone, with no data.
    func testFreeMatrixRecoversC() throws {
        let c: [[Float]] = [[4, 2, 0.6], [2, 2, 0.5], [0.6, 0.5, 3]]
        let spec: JSON = [
            "name": "xxt",
            "model": ["layers": [
                ["type": "weight", "shape": [3, 3], "name": "X", "initializer": ["type": "normal", "stddev": 0.5]],
                ["type": "matmul", "inputs": ["X", "X"], "transpose_b": true, "name": "C"],
            ]],
            "data": ["source": "none", "steps_per_epoch": 200],
            "train": ["epochs": 10, "seed": 1, "optimizer": ["type": "adam", "learning_rate": 0.02],
                      "losses": [["node": "C", "type": "mse", "target": ["value": .array(c.map { JSON($0) })]]]],
        ]
        let parsed = try JobSpec(json: spec)
        let model = CompiledModel(graph: parsed.model, seed: 1)
        let data = try TrainingData.resolve(parsed, catalog: nil)
        try Trainer(spec: parsed, model: model, data: data).fit { _ in }
        let product = try model.run([:], targets: ["C"], training: false)["C"]!.value.scalars
        for (i, v) in product.enumerated() { XCTAssertEqual(v, c[i / 3][i % 3], accuracy: 1e-2, "entry \(i)") }
    }

    func testEarlyStoppingAndConstantInputWarning() throws {
        // Labels that do not depend on a constant input: val_loss stops improving soon.
        var json = spec(epochs: 30)
        let xs = JSON.array((0..<100).map { _ in JSON([0, 0]) })
        let ys = JSON.array((0..<100).map { JSON($0 % 2) })
        json = json.setting("data", to: ["fields": ["x": xs, "y": ys]])
        json = json.setting("train", to: json["train"]!.setting("early_stopping", to: ["monitor": "val_loss", "patience": 2]))
        let parsed = try JobSpec(json: json)
        let trainer = Trainer(spec: parsed, model: CompiledModel(graph: parsed.model, seed: 1), data: try TrainingData.resolve(parsed, catalog: nil))
        var epochs = 0
        try trainer.fit { _ in epochs += 1 }
        XCTAssertLessThan(epochs, 30)
        XCTAssertNotNil(trainer.stoppedEarly)
        XCTAssertTrue(trainer.warnings.contains { $0.contains("input 'x' is all zeros") && $0.contains("255") }, "\(trainer.warnings)")
    }

    func testLearningRateSchedules() throws {
        let step = OptimizerSpec.Schedule.step(everyEpochs: 2, factor: 0.5)
        XCTAssertEqual(step.rate(base: 1, epoch: 0), 1)
        XCTAssertEqual(step.rate(base: 1, epoch: 2.5), 0.5)
        XCTAssertEqual(step.rate(base: 1, epoch: 4), 0.25)
        let cosine = OptimizerSpec.Schedule.cosine(epochs: 10, alpha: 0.1)
        XCTAssertEqual(cosine.rate(base: 1, epoch: 0), 1, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(base: 1, epoch: 5), 0.55, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(base: 1, epoch: 20), 0.1, accuracy: 1e-6)
        // The trainer reports the rate it used at the end of each epoch.
        var json = spec(epochs: 2)
        json = json.setting("train", to: json["train"]!.setting("optimizer", to: ["type": "sgd", "learning_rate": 0.1, "schedule": ["type": "cosine"]]))
        let history = try train(json)
        // 160 training rows in batches of 16: the last step of epoch 1 is at 0.9 of 2 epochs.
        XCTAssertEqual(history[0].learningRate, 0.1 * 0.5 * (1 + cos(Double.pi * 0.45)), accuracy: 1e-6)
        XCTAssertLessThan(history[1].learningRate, history[0].learningRate)
    }

    /// W8 in small: one prototype row per class from the data, a Gaussian kernel
    /// against each, trainable weights, a bias and softmax.
    func testKernelNetworkWithPrototypesFromData() throws {
        let json: JSON = [
            "name": "kernel-net",
            "model": [
                "inputs": ["x": [2]],
                "layers": [
                    ["type": "constant", "from_data": ["field": "x", "per_class": "y", "classes": 2], "name": "protos"],
                    ["type": "reshape", "input": "x", "shape": [1, 2], "name": "x1"],
                    ["type": "expression", "inputs": ["x": "x1", "p": "protos"], "expr": "exp(-(x - p)^2 / c)",
                     "params": ["c": ["shape": [], "init": 2.0, "trainable": false]], "name": "k"],
                    ["type": "elementwise_weights", "name": "a"],
                    ["type": "sum", "axis": -1, "name": "s"],
                    ["type": "bias", "name": "b"],
                    ["type": "softmax", "name": "probs"],
                ],
            ],
            "data": ["fields": blobs(200, seed: 11)],
            "train": ["epochs": 5, "batch_size": 16, "optimizer": ["type": "adam", "learning_rate": 0.05],
                      "losses": [["node": "probs", "type": "categorical_crossentropy", "target": "y"]],
                      "metrics": ["accuracy"], "validation": ["fraction": 0.2]],
        ]
        let spec = try JobSpec(json: json)
        XCTAssertEqual(spec.model.node("protos")?.shape, NodeShape([2, 2], batched: false))
        XCTAssertEqual(spec.model.node("k")?.shape, NodeShape([2, 2]))
        let model = CompiledModel(graph: spec.model, seed: 1)
        let data = try TrainingData.resolve(spec, catalog: nil)
        var history: [EpochMetrics] = []
        try Trainer(spec: spec, model: model, data: data).fit { history.append($0) }
        // The prototypes are the first row of each class, unchanged by training.
        let x = data.train.fields["x"]!, y = data.train.fields["y"]!
        let first0 = y.values.firstIndex(of: 0)!, first1 = y.values.firstIndex(of: 1)!
        XCTAssertEqual(model.weights["protos.value"]!.value.scalars, Array(x.values[(first0 * 2)..<(first0 * 2 + 2)] + x.values[(first1 * 2)..<(first1 * 2 + 2)]))
        XCTAssertGreaterThan(history.last!.values["val_accuracy"]!, 0.9)
        // A field the data lacks is an error with the path.
        let bad = json.setting("model", to: json["model"]!.setting("layers", to: [["type": "constant", "from_data": ["field": "z", "rows": 3]]]))
        XCTAssertThrowsError(try JobSpec(json: bad)) { error in
            XCTAssertEqual((error as! SpecError).path, "model.layers[0].from_data.field")
        }
    }

    /// W3's diagnosis: mod applied to a weight node reports how many values wrap.
    func testModOnWeightsReportsWrapsAndLostSigns() throws {
        let stats = try XCTUnwrap(Trainer.modWrapStats(value: Tensor(shape: [5], values: [-0.05, 0.02, 0.15, 0.0999, 0.5]), modulus: Tensor(scalar: 0.1)))
        XCTAssertEqual(stats.wrapped, 0.6, accuracy: 1e-9)
        XCTAssertEqual(stats.signLost, 0.2, accuracy: 1e-9)
        XCTAssertEqual(stats.nearWrap, 0.4, accuracy: 1e-9)
        XCTAssertEqual(stats.count, 5)

        let json: JSON = [
            "model": [
                "inputs": ["x": [2]],
                "layers": [
                    ["type": "weight", "shape": [2, 2], "name": "w", "initializer": ["value": [-0.3, 0.05, 0.2, -0.01]]],
                    ["type": "expression", "inputs": ["w": "w"], "expr": "mod(w, m)", "name": "wm",
                     "params": ["m": ["shape": [], "init": 0.1]]],
                    ["type": "matmul", "inputs": ["x", "wm"], "name": "h"],
                    ["type": "softmax", "name": "p"],
                ],
            ],
            "data": ["fields": blobs(64, seed: 3)],
            "train": ["epochs": 1, "batch_size": 16, "optimizer": ["type": "sgd", "learning_rate": 0.0],
                      "losses": [["node": "p", "type": "categorical_crossentropy", "target": "y"]]],
        ]
        let spec = try JobSpec(json: json)
        let trainer = Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: 1), data: try TrainingData.resolve(spec, catalog: nil))
        var history: [EpochMetrics] = []
        try trainer.fit { history.append($0) }
        XCTAssertEqual(history[0].values["wm_mod_wrapped"]!, 0.75, accuracy: 1e-9)
        XCTAssertEqual(history[0].values["wm_mod_sign_lost"]!, 0.5, accuracy: 1e-9)
        XCTAssertEqual(history[0].values["wm_mod_near_wrap"]!, 0.5, accuracy: 1e-9, "-0.3 and 0.2 are multiples of m")
        XCTAssertTrue(trainer.warnings.contains { $0.contains("mod in wm wraps 75.0%") && $0.contains("m = 0.1") && $0.contains("50.0% lost their sign") }, "\(trainer.warnings)")
        // A negative modulus turns the positive values negative.
        XCTAssertEqual(Trainer.modWrapStats(value: Tensor(shape: [2], values: [0.05, -0.05]), modulus: Tensor(scalar: -0.1))?.signLost, 0.5)
    }

    /// Keras' activity_regularizer: l2 · Σ out² / batch, added only while training.
    func testActivityRegularizerPenalisesTheOutput() throws {
        let json: JSON = [
            "model": [
                "inputs": ["x": [2]],
                "layers": [["type": "dense", "units": 2, "name": "z", "kernel_initializer": ["value": [1, 0, 0, 1]],
                            "activity_regularizer": ["l2": 0.5]]],
            ],
            "data": ["fields": blobs(8, seed: 3)],
            "train": ["epochs": 1, "batch_size": 8, "optimizer": ["type": "sgd", "learning_rate": 0.0],
                      "losses": [["node": "z", "type": "mse", "target": ["value": [0, 0]]]]],
        ]
        let spec = try JobSpec(json: json)
        XCTAssertEqual(spec.model.node("z")?.activityRegularizer?.l2, 0.5)
        let data = try TrainingData.resolve(spec, catalog: nil)
        let trainer = Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: 1), data: data)
        let rows = Array(0..<8)[...]
        let (trained, _) = try trainer.evaluate(rows, in: data.train, training: true, seed: 0)
        let (plain, _) = try trainer.evaluate(rows, in: data.train, training: false, seed: 0)
        let x = data.train.fields["x"]!.values
        let expected = 0.5 * x.reduce(0) { $0 + Double($1 * $1) } / 8
        XCTAssertEqual(Double(trained.value.scalar - plain.value.scalar), expected, accuracy: 1e-4)
        // Any layer takes it; one without a batch axis is refused.
        let bad = json.setting("model", to: ["layers": [["type": "weight", "shape": [2], "activity_regularizer": ["l2": 1]]]])
        XCTAssertThrowsError(try JobSpec(json: bad)) { XCTAssertEqual(($0 as! SpecError).path, "model.layers[0].activity_regularizer") }
    }

    func testGradientWarningsAreSaidOnceAndNotForAPerfectFit() throws {
        let parsed = try JobSpec(json: spec())
        let trainer = Trainer(spec: parsed, model: CompiledModel(graph: parsed.model, seed: 1), data: try TrainingData.resolve(parsed, catalog: nil))
        trainer.inspectGradients(["w": 0], loss: 0, epoch: 1)
        XCTAssertEqual(trainer.warnings, [], "a zero loss explains a zero gradient")
        trainer.inspectGradients(["w": 0, "v": 1e6], loss: 0.5, epoch: 2)
        trainer.inspectGradients(["w": 0, "v": 1e6], loss: 0.5, epoch: 3)
        XCTAssertEqual(trainer.warnings.count, 2, "\(trainer.warnings)")
        XCTAssertTrue(trainer.warnings.contains { $0.contains("w vanishes from epoch 2") })
        XCTAssertTrue(trainer.warnings.contains { $0.contains("v explodes from epoch 2") })
    }

    /// Buffers are allocated for the first steps of a batch shape and reused after:
    /// later steps take nothing from the system allocator.
    func testStepsAfterTheFirstAllocateNoNewBuffers() throws {
        var generator = SeededGenerator(seed: 9)
        let rows = 64 * 12
        let x = (0..<rows).map { _ in JSON((0..<96).map { _ in generator.nextNormal() }) }
        let y = (0..<rows).map { JSON($0 % 4) }
        let json: JSON = [
            "name": "reuse",
            "model": [
                "inputs": ["x": [96]],
                "layers": [["type": "dense", "units": 128, "activation": "relu"],
                           ["type": "dense", "units": 64, "activation": "tanh"],
                           ["type": "dense", "units": 4, "activation": "softmax", "name": "p"]],
            ],
            "data": ["fields": ["x": .array(x), "y": .array(y)]],
            "train": ["epochs": 1, "batch_size": 64, "seed": 1, "optimizer": ["type": "adam"],
                      "losses": [["node": "p", "type": "sparse_categorical_crossentropy", "target": "y"]]],
        ]
        let spec = try JobSpec(json: json)
        let data = try TrainingData.resolve(spec, catalog: nil)
        func allocationsPerStep() throws -> [Int] {
            let trainer = Trainer(spec: spec, model: CompiledModel(graph: spec.model, seed: 1), data: data)
            var allocations: [Int] = []
            trainer.onStep = { _, _, _ in allocations.append(BufferPool.statistics.systemAllocations) }
            try trainer.fit { _ in }
            return allocations
        }
        let pooled = try allocationsPerStep()
        XCTAssertEqual(pooled.count, 12)
        XCTAssertEqual(Set(pooled.dropFirst(2)).count, 1, "allocations after each step: \(pooled)")
        // Without a pool, every step allocates again.
        let capacity = BufferPool.capacityBytes
        BufferPool.drain()
        BufferPool.capacityBytes = 0
        defer { BufferPool.capacityBytes = capacity }
        let unpooled = try allocationsPerStep()
        XCTAssertEqual(Set(unpooled.dropFirst(2)).count, 10, "allocations after each step: \(unpooled)")
    }
}
