import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnJSON
import KilnTrain

/// `kiln validate` and `kiln train`: the same checks and training as the service,
/// without a server.
public enum CommandLineTools {
    public static func run(_ command: String, specPath: String, config: Config) -> Int32 {
        guard let bytes = FileManager.default.contents(atPath: specPath) else {
            print(JSON.object([("error", .object([("code", "not_found"), ("message", .string("cannot read \(specPath)"))]))]).serialized())
            return 2
        }
        let spec: JobSpec
        do {
            spec = try JobSpec(json: try JSON.parse([UInt8](bytes)), limits: ModelLimits(maxParameters: config.maxParameters),
                               purpose: command == "validate" ? .validation : .training)
        } catch let e as SpecError {
            print(JSON.object([("error", .object([("code", .string(e.code.rawValue)), ("message", .string(e.description)), ("path", .string(e.path))]))]).serialized(pretty: true))
            return 1
        } catch {
            print(JSON.object([("error", .object([("code", "invalid_json"), ("message", .string("\(error)"))]))]).serialized(pretty: true))
            return 1
        }
        if command == "validate" {
            print(spec.validation.serialized(pretty: true))
            return 0
        }
        do {
            let catalog = DatasetCatalog(cacheDirectory: "\(config.dataDirectory)/datasets", mirror: config.datasetMirror, checksums: config.datasetChecksums)
            let data = try TrainingData.resolve(spec, catalog: catalog)
            let model = CompiledModel(graph: spec.model, seed: spec.train.seed)
            let trainer = Trainer(spec: spec, model: model, data: data)
            let terminal = isatty(STDERR_FILENO) != 0
            trainer.onStep = { epoch, step, steps in
                guard terminal else { return }
                let width = 30, filled = width * step / max(steps, 1)
                let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
                FileHandle.standardError.write(Data("\repoch \(epoch)/\(spec.train.epochs) [\(bar)] \(step)/\(steps)".utf8))
            }
            var epochs: [JSON] = []
            try trainer.fit { metrics in
                epochs.append(metrics.json)
                let line = metrics.values.keys.sorted().map { "\($0)=\(String(format: "%.4f", metrics.values[$0]!))" }.joined(separator: " ")
                FileHandle.standardError.write(Data("\(terminal ? "\r" : "")epoch \(metrics.epoch)/\(spec.train.epochs) \(line) (\(String(format: "%.1f", metrics.seconds)) s)\n".utf8))
            }
            print(JSON.object([("epochs", .array(epochs)), ("final", epochs.last ?? .null)]).serialized(pretty: true))
            return 0
        } catch {
            print(JSON.object([("error", .object([("code", "training_failed"), ("message", .string("\(error)"))]))]).serialized(pretty: true))
            return 1
        }
    }
}
