import KilnHTTP
import KilnJSON

/// Predictions: Kiln's own `/predict` (and its TensorFlow-Serving rows form) and the
/// Open Inference Protocol (KServe v2), whose errors are `{"error": "message"}` on every
/// `/v2` path, unknown ones included.
struct PredictController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/predict", changesState: false) { request in
            let body = try RequestBody.packed(request, maxBytes: service.config.maxBodyBytes)
            let name = body["model"]?.stringValue ?? ""
            return .json(200, try service.inference(name) {
                let answer = try service.predictor.predict(body)
                guard let job = service.jobs.job(answer["model"]?.stringValue ?? "") else {
                    throw ServiceError(.notFound, code: "model_not_found", "model '\(name.prefix(64))' was removed while it answered", path: "model")
                }
                return (answer, job, Predictor.batchSize(answer))
            })
        }
        let v2 = ErrorBody.openInference
        router.renderErrors(under: "/v2", v2)
        router.add("GET", "/v2/health/live", renderError: v2) { _ in .json(200, ["live": true]) }
        router.add("GET", "/v2/health/ready", renderError: v2) { _ in .json(200, ["ready": true]) }
        router.add("GET", "/v2", renderError: v2) { _ in
            .json(200, ["name": "kiln", "version": .string(Kiln.version),
                        "extensions": ["binary_tensor_data", "classification", "model_repository", "statistics"]])
        }
        router.add("POST", "/v2/repository/index", changesState: false, renderError: v2) { request in
            let body = request.body.isEmpty ? JSON.object([]) : try RequestBody.json(request, maxBytes: service.config.maxBodyBytes)
            let readyOnly = body["ready"]?.boolValue ?? false
            return .json(200, service.predictor.repositoryIndex(readyOnly: readyOnly))
        }
        router.add("GET", "/v2/models/stats", renderError: v2) { _ in
            .json(200, service.metrics.inference.json(service.metrics.inference.calledVersions))
        }
        // Each model route, for the latest version and for one version (a job id).
        for (prefix, versioned) in [("/v2/models/:name", false), ("/v2/models/:name/versions/:version", true)] {
            func version(_ request: HTTPRequest) -> String? { versioned ? request.pathParameters["version"] : nil }
            func name(_ request: HTTPRequest) -> String { request.pathParameters["name"] ?? "" }
            router.add("GET", prefix, renderError: v2) { request in
                .json(200, try service.predictor.metadata(name(request), version: version(request)))
            }
            router.add("GET", "\(prefix)/ready", renderError: v2) { request in
                _ = try service.predictor.model(name(request), version: version(request))
                return .json(200, ["ready": true])
            }
            router.add("GET", "\(prefix)/config", renderError: v2) { request in
                .json(200, try service.predictor.config(name(request), version: version(request)))
            }
            router.add("GET", "\(prefix)/stats", renderError: v2) { request in
                let (job, _) = try service.predictor.model(name(request), version: version(request))
                var versions = versioned ? [job] : service.predictor.versions(job.name)
                if versions.isEmpty { versions = [job] }
                return .json(200, service.metrics.inference.json(versions.map { ($0.name, $0.id) }))
            }
            router.add("POST", "\(prefix)/infer", changesState: false, renderError: v2) { request in
                try infer(request, name: name(request), version: version(request))
            }
        }
    }

    /// An inference call, with its body in JSON or in the binary tensor data extension
    /// (`Inference-Header-Content-Length` bytes of JSON, then the tensors' bytes), and
    /// its outputs in JSON or binary as asked.
    func infer(_ request: HTTPRequest, name: String, version: String?) throws -> HTTPResponse {
        let header: JSON
        var binary: [UInt8] = []
        if let lengthText = request.headers["Inference-Header-Content-Length"] {
            let body = try RequestBody.decoded(request, maxBytes: service.config.maxBodyBytes)
            guard let length = Int(RequestBody.trimmedWhitespace(Substring(lengthText))), length >= 0, length <= body.count else {
                throw ServiceError(.invalid, code: "invalid_header", "Inference-Header-Content-Length must be a byte count of at most the body's \(body.count) bytes, got '\(lengthText.prefix(20))'")
            }
            header = try JSON.parse(Array(body[0..<length]))
            binary = Array(body[length...])
        } else {
            header = try RequestBody.json(request, maxBytes: service.config.maxBodyBytes)
        }
        let result = try service.inference(name, version: version) {
            let r = try service.predictor.infer(name, version: version, header, binary: binary)
            return (r, r.job, r.batch)
        }
        let json = Array(result.header.serialized().utf8)
        guard !result.binary.isEmpty || result.header["outputs"]?.arrayValue?.contains(where: { $0["parameters"]?["binary_data_size"] != nil }) == true else {
            return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]), body: .bytes(json))
        }
        return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", String(json.count))]),
                            body: .bytes(json + result.binary))
    }
}

extension Predictor {
    /// The number of rows a `/predict` answer holds (its first output's first dimension).
    static func batchSize(_ answer: JSON) -> Int {
        if let rows = answer["predictions"]?.arrayValue { return rows.count }
        if let first = answer["outputs"]?.objectMembers?.first?.1, let rows = first.arrayValue { return rows.count }
        return 1
    }
}
