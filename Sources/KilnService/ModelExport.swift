import Foundation
import KilnExport
import KilnGraph
import KilnJSON
import KilnTensor

/// Trained models in formats other runtimes read: `GET /models/{name}/export?format=`
/// and `kiln export`. Both start from a model artifact (graph and weights).
public enum ModelExport {
    /// What `format` may name.
    public static let formats = ["onnx"]

    /// `format` checked: nil and unknown names are a 400 listing the supported ones.
    static func checkFormat(_ format: String?, supported: [String] = formats) throws -> String {
        guard let format, supported.contains(format) else {
            let given = format.map { "unknown format '\($0.prefix(40))'" } ?? "a format is required"
            throw ServiceError(.invalid, code: "unsupported_format", "\(given); supported: \(supported.joined(separator: ", "))", path: "format")
        }
        return format
    }

    /// The model as a serialized ONNX `ModelProto`. `outputs` (default: the model's)
    /// and `given` (inner nodes fed as inputs) are node names, checked here.
    /// - Throws: `ServiceError(.invalid)` (400) naming an unknown node by its position;
    ///   `ServiceError(.unprocessable)` (422) naming a node with no ONNX form.
    static func onnx(_ model: CompiledModel, name: String, outputs: [String]? = nil, given: [String] = []) throws -> [UInt8] {
        for (field, names) in [("outputs", outputs ?? []), ("inputs", given)] {
            for (i, n) in names.enumerated() where model.graph.node(n) == nil {
                throw ServiceError(.invalid, code: "unknown_node", "the model has no node '\(n.prefix(64))'", path: "\(field)[\(i)]")
            }
        }
        if outputs?.isEmpty == true { throw ServiceError(.invalid, code: "invalid_field", "at least one output is needed", path: "outputs") }
        do {
            return try ONNXExporter.export(model.graph, weights: model.weights.mapValues(\.value), outputs: outputs, given: given, name: name).serialized()
        } catch {
            throw ServiceError(.unprocessable, code: "not_exportable", "cannot export to ONNX: \(error.description)",
                               path: model.graph.node(error.node).map { $0.path })
        }
    }

    /// The bytes of `artifact` in `format`.
    public static func export(_ artifact: ModelArtifact, format: String, name: String) throws -> [UInt8] {
        _ = try checkFormat(format)
        let model = try Predictor.load(artifact, limits: ModelLimits())
        return try onnx(model, name: name)
    }

    /// `kiln export PATH --model NAME --output FILE [--format onnx]`: PATH is a data
    /// directory (the model is a job id, or the newest succeeded job of that name) or
    /// one job's directory holding `model.json` and `checkpoint.safetensors`. Reads
    /// files only, so it is safe beside a running server. Returns the exit status.
    public static func command(path: String?, model: String?, output: String?, format: String?) -> Int32 {
        func fail(_ message: String, status: Int32 = 1) -> Int32 {
            FileHandle.standardError.write(Data("kiln export: \(message)\n".utf8))
            return status
        }
        guard let path, let output else {
            return fail("usage: kiln export DATA-DIR --model NAME --output FILE [--format onnx]\n       kiln export DATA-DIR/jobs/ID --output FILE", status: 2)
        }
        do {
            let format = try checkFormat(format ?? "onnx")
            let artifact: ModelArtifact
            var name = model
            let fm = FileManager.default
            if fm.fileExists(atPath: "\(path)/model.json") {
                if let bytes = fm.contents(atPath: "\(path)/job.json"), let json = try? JSON.parse([UInt8](bytes)), let job = Job(json: json) {
                    name = job.name
                }
                let jobs = (path as NSString).deletingLastPathComponent
                let id = (path as NSString).lastPathComponent
                guard let a = try DirectoryArtifactStore(directory: (jobs as NSString).deletingLastPathComponent).latest(id) else {
                    return fail("\(path) has no checkpoint.safetensors")
                }
                artifact = a
            } else {
                guard let model, StoredName.isValid(model) else { return fail("--model NAME (a model name or job id) is required with a data directory") }
                var best: Job?
                for id in (try? fm.contentsOfDirectory(atPath: "\(path)/jobs")) ?? [] where StoredName.isValid(id) {
                    guard let bytes = fm.contents(atPath: "\(path)/jobs/\(id)/job.json"), let json = try? JSON.parse([UInt8](bytes)), let job = Job(json: json) else { continue }
                    if job.id == model { best = job; break }
                    guard job.name == model, job.status == .succeeded else { continue }
                    if best.map({ ($0.finishedAt ?? $0.createdAt) < (job.finishedAt ?? job.createdAt) }) ?? true { best = job }
                }
                guard let job = best else { return fail("no trained model or job named '\(model)' in \(path)") }
                guard let a = try DirectoryArtifactStore(directory: path).latest(job.id) else { return fail("job \(job.id) has no checkpoint yet") }
                artifact = a
                name = job.name
            }
            let bytes = try export(artifact, format: format, name: name ?? artifact.jobID)
            try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic)
            FileHandle.standardError.write(Data("kiln export: wrote \(bytes.count) bytes to \(output)\n".utf8))
            return 0
        } catch let e as ServiceError {
            return fail(e.description)
        } catch {
            return fail("\(error)")
        }
    }
}
