import KilnHTTP
import KilnJSON

/// `/models`: trained models (the latest succeeded job of each name), their summaries
/// and weights, all read from model artifacts.
struct ModelsController {
    let service: Service

    func register(_ router: Router) {
        router.add("GET", "/models") { _ in
            let models = Dictionary(grouping: service.jobs.all().filter { $0.status == .succeeded }, by: \.name)
                .compactMap { _, jobs in jobs.max { ($0.finishedAt ?? $0.createdAt) < ($1.finishedAt ?? $1.createdAt) } }
                .sorted { $0.name < $1.name }
            return .json(200, ["models": .array(models.map {
                .object([("name", .string($0.name)), ("job", .string($0.id)), ("finished_at", $0.json["finished_at"] ?? .null)])
            })])
        }
        router.add("GET", "/models/:name") { request in
            let (job, model) = try service.predictor.model(request.pathParameters["name"] ?? "", path: "name")
            return .json(200, .object([
                ("name", .string(job.name)), ("job", job.json),
                ("summary", model.graph.summary()),
                // The artifact's graph: what `ModelGraph(json:)` rebuilds the model from.
                ("graph", model.graph.json),
                ("metrics", service.jobs.metrics(job.id)),
            ]))
        }
        router.add("GET", "/models/:name/weights") { request in
            let name = request.pathParameters["name"] ?? ""
            _ = try ModelExport.checkFormat(request.query["format"] ?? "safetensors", supported: ["safetensors"])
            let (job, _) = try service.predictor.model(name, path: "name")
            guard let artifact = try service.artifacts.latest(job.id) else {
                throw ServiceError(.notFound, code: "no_checkpoint", "job \(job.id) has no checkpoint")
            }
            return HTTPResponse(status: 200, headers: HTTPHeaders([
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", "attachment; filename=\"\(job.name).safetensors\""),
            ]), body: .bytes(artifact.weights))
        }
        router.add("GET", "/models/:name/export") { request in
            let format = try ModelExport.checkFormat(request.query["format"])
            let (job, model) = try service.predictor.model(request.pathParameters["name"] ?? "", path: "name")
            // `outputs` and `inputs` (inner nodes fed from outside) as comma-separated node names.
            func names(_ key: String) -> [String]? { request.query[key].map { $0.split(separator: ",").map(String.init) } }
            let bytes = try ModelExport.onnx(model, name: job.name, outputs: names("outputs"), given: names("inputs") ?? [])
            return HTTPResponse(status: 200, headers: HTTPHeaders([
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", "attachment; filename=\"\(job.name).\(format)\""),
            ]), body: .bytes(bytes))
        }
    }
}
