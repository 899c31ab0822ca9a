import KilnHTTP
import KilnJSON

/// Predictions: Kiln's own `/predict` (and its TensorFlow-Serving rows form) and the
/// Open Inference Protocol (KServe v2), whose errors are `{"error": "message"}`.
struct PredictController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/predict", changesState: false) { request in
            .json(200, try service.predictor.predict(try RequestBody.packed(request)))
        }
        let v2 = ErrorBody.openInference
        router.add("GET", "/v2/health/live", renderError: v2) { _ in .json(200, ["live": true]) }
        router.add("GET", "/v2/health/ready", renderError: v2) { _ in .json(200, ["ready": true]) }
        router.add("GET", "/v2", renderError: v2) { _ in .json(200, ["name": "kiln", "version": .string(Kiln.version), "extensions": []]) }
        router.add("GET", "/v2/models/:name", renderError: v2) { request in
            .json(200, try service.predictor.metadata(request.pathParameters["name"] ?? ""))
        }
        router.add("GET", "/v2/models/:name/ready", renderError: v2) { request in
            _ = try service.predictor.model(request.pathParameters["name"] ?? "", path: "name")
            return .json(200, ["ready": true])
        }
        router.add("POST", "/v2/models/:name/infer", changesState: false, renderError: v2) { request in
            .json(200, try service.predictor.infer(request.pathParameters["name"] ?? "", try RequestBody.json(request)))
        }
    }
}
