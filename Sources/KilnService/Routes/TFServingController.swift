import KilnHTTP
import KilnJSON

/// TensorFlow Serving's REST API (`/v1/models/…`): model status, metadata and predict,
/// for the latest version, a version number or the label `stable`. Errors are TF
/// Serving's `{"error": "…"}` on every `/v1` path unknown ones included.
struct TFServingController {
    let service: Service

    func register(_ router: Router) {
        let tf = ErrorBody.openInference
        router.renderErrors(under: "/v1", tf)
        let selectors: [(suffix: String, version: (HTTPRequest) -> String?, label: (HTTPRequest) -> String?)] = [
            ("", { _ in nil }, { _ in nil }),
            ("/versions/:version", { $0.pathParameters["version"] }, { _ in nil }),
            ("/labels/:label", { _ in nil }, { $0.pathParameters["label"] }),
        ]
        for (suffix, version, label) in selectors {
            let base = "/v1/models/:name\(suffix)"
            func name(_ request: HTTPRequest) -> String { request.pathParameters["name"] ?? "" }
            router.add("GET", base, renderError: tf) { request in
                .json(200, try service.predictor.tfStatus(name(request), version: version(request), label: label(request)))
            }
            router.add("GET", "\(base)/metadata", renderError: tf) { request in
                .json(200, try service.predictor.tfMetadata(name(request), version: version(request), label: label(request)))
            }
            router.add("POST", "\(base):predict", changesState: false, renderError: tf) { request in
                let body = try RequestBody.packed(request, maxBytes: service.config.maxBodyBytes)
                return .json(200, try service.inference(name(request)) {
                    try service.predictor.tfPredict(name(request), version: version(request), label: label(request), body)
                })
            }
        }
    }
}
