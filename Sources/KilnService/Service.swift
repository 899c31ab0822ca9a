import Foundation
import KilnData
import KilnGraph
import KilnHTTP
import KilnJSON
import KilnTrain

/// The Kiln service: the job store, the scheduler and the predictor behind the HTTP
/// routes of DESIGN.md §3. All routes are declared in `routes()`.
public final class Service: @unchecked Sendable {
    public let config: Config
    public let store: JobStore
    let scheduler: Scheduler
    let predictor: Predictor
    let datasets: DatasetStore
    let metrics = ServiceMetrics()
    let limits: ModelLimits
    public let router = Router()
    private var server: HTTPServer?

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        store = try JobStore(directory: config.dataDirectory)
        limits = ModelLimits(maxParameters: config.maxParameters)
        let catalog = DatasetCatalog(cacheDirectory: "\(config.dataDirectory)/datasets", mirror: config.datasetMirror)
        scheduler = Scheduler(store: store, catalog: catalog, maxConcurrent: config.maxConcurrentJobs, maxQueued: config.maxQueuedJobs, limits: limits)
        predictor = Predictor(store: store, limits: limits, maxBatch: config.maxPredictBatch)
        datasets = try DatasetStore(directory: "\(config.dataDirectory)/uploads")
        scheduler.uploaded = { [datasets] name in datasets.load(name) }
        scheduler.uploadedSchema = { [datasets] name in datasets.schema(name) }
        predictor.schema = { [datasets] name in datasets.schema(name) }
        scheduler.onEpoch = { [metrics] samples, seconds in metrics.recordTraining(samples: samples, seconds: seconds) }
        scheduler.onChange = { [predictor] id in predictor.forget(id) }
        routes()
    }

    /// Starts serving and resumes jobs an earlier process left unfinished.
    public func start() throws {
        var http = HTTPServerConfiguration()
        http.host = config.host
        http.port = config.port
        http.maxBodyBytes = config.maxBodyBytes
        let server = HTTPServer(configuration: http) { [router] request in router.handle(request) }
        server.onRequestCompleted = { [metrics] request, status, seconds in
            metrics.record(method: request.method, path: request.path, status: status, seconds: seconds)
            Log.info("request", [("method", .string(request.method)), ("path", .string(String(request.path.prefix(200)))), ("status", JSON(status)), ("ms", .number((seconds * 1e4).rounded() / 10))])
        }
        try server.start()
        self.server = server
        scheduler.recover()
        Log.info("listening", [("host", .string(config.host)), ("port", JSON(server.port)), ("data_dir", .string(config.dataDirectory))])
    }

    public var port: Int { server?.port ?? config.port }

    /// Stops accepting connections and interrupts training; interrupted jobs stay
    /// queued and resume from their last checkpoint at the next start.
    public func stop() {
        server?.stop()
        scheduler.shutdown()
    }

    // MARK: - Routes

    func routes() {
        router.add("GET", "/healthz") { _ in .json(200, ["status": "ok", "version": .string(Kiln.version)]) }
        router.add("GET", "/metrics") { [self] _ in
            let counts = Dictionary(grouping: store.all(), by: { $0.status.rawValue }).mapValues(\.count)
            return .text(200, metrics.render(queueDepth: scheduler.queueDepth, running: scheduler.runningCount, jobsByStatus: counts),
                         contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.add("GET", "/") { [self] request in jobsPage(request) }
        router.add("POST", "/validate") { [self] request in
            let spec = try decodeSpec(request)
            return .json(200, ["valid": true, "summary": spec.model.summary(losses: spec.train.losses)])
        }
        router.add("POST", "/jobs") { [self] request in try createJob(request) }
        router.add("GET", "/jobs") { [self] _ in .json(200, ["jobs": .array(store.all().reversed().map(\.json))]) }
        router.add("GET", "/jobs/:id") { [self] request in try jobResource(request) }
        router.add("DELETE", "/jobs/:id") { [self] request in
            try authorize(request)
            let job = try job(request)
            guard !job.isFinished else {
                throw HTTPError(409, code: "job_finished", message: "job \(job.id) is already \(job.status.rawValue)")
            }
            _ = scheduler.cancel(job.id)
            return .json(202, store.job(job.id)!.json)
        }
        router.add("GET", "/jobs/:id/metrics") { [self] request in
            let job = try job(request)
            if let follow = request.query["follow"], follow == "1" || follow == "true" { return followMetrics(job.id) }
            return .json(200, store.metricsJSON(job.id))
        }
        router.add("GET", "/models") { [self] _ in
            let models = Dictionary(grouping: store.all().filter { $0.status == .succeeded }, by: \.name)
                .compactMap { _, jobs in jobs.max { ($0.finishedAt ?? $0.createdAt) < ($1.finishedAt ?? $1.createdAt) } }
                .sorted { $0.name < $1.name }
            return .json(200, ["models": .array(models.map { .object([("name", .string($0.name)), ("job", .string($0.id)), ("finished_at", $0.json["finished_at"] ?? .null)]) })])
        }
        router.add("GET", "/models/:name") { [self] request in
            let (job, model) = try predictor.model(request.pathParameters["name"] ?? "", path: "name")
            let specJSON = store.spec(job.id) ?? .null
            let spec = try? JobSpec(json: specJSON, limits: limits, schema: uploadedSchema(specJSON))
            return .json(200, .object([
                ("name", .string(job.name)), ("job", job.json),
                ("summary", model.graph.summary(losses: spec?.train.losses ?? [])),
                ("metrics", store.metricsJSON(job.id)),
            ]))
        }
        router.add("GET", "/models/:name/weights") { [self] request in
            let (job, _) = try predictor.model(request.pathParameters["name"] ?? "", path: "name")
            guard let bytes = AtomicFile.read(store.checkpointPath(job.id)) else {
                throw HTTPError(404, code: "no_checkpoint", message: "job \(job.id) has no checkpoint")
            }
            return HTTPResponse(status: 200, headers: HTTPHeaders([
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", "attachment; filename=\"\(job.name).safetensors\""),
            ]), body: .bytes(bytes))
        }
        router.add("GET", "/openapi.yaml") { _ in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/yaml")]), body: .bytes(Array(OpenAPIDocument.text.utf8)))
        }
        router.add("POST", "/datasets") { [self] request in
            try authorize(request)
            return .json(201, try datasets.upload(request))
        }
        router.add("GET", "/datasets") { [self] _ in .json(200, ["datasets": .array(datasets.all)]) }
        // Open Inference Protocol (KServe v2); its errors are {"error": "message"}.
        router.add("GET", "/v2/health/live") { _ in .json(200, ["live": true]) }
        router.add("GET", "/v2/health/ready") { _ in .json(200, ["ready": true]) }
        router.add("GET", "/v2") { _ in .json(200, ["name": "kiln", "version": .string(Kiln.version), "extensions": []]) }
        router.add("GET", "/v2/models/:name") { [self] request in
            try openInference { try predictor.metadata(request.pathParameters["name"] ?? "") }
        }
        router.add("GET", "/v2/models/:name/ready") { [self] request in
            try openInference { _ = try predictor.model(request.pathParameters["name"] ?? "", path: "name"); return ["ready": true] }
        }
        router.add("POST", "/v2/models/:name/infer") { [self] request in
            try openInference { try predictor.infer(request.pathParameters["name"] ?? "", try jsonBody(request)) }
        }
        router.add("POST", "/predict") { [self] request in .json(200, try predictor.predict(try jsonBody(request, parse: JSON.parsePacked))) }
        registerDashboardRoutes()
    }

    func job(_ request: HTTPRequest) throws -> Job {
        let id = request.pathParameters["id"] ?? ""
        guard JobStore.isValidID(id), let job = store.job(id) else {
            throw HTTPError(404, code: "job_not_found", message: "no job with id '\(id.prefix(64))'")
        }
        return job
    }

    /// Runs a v2 handler, rendering errors in the protocol's `{"error": "..."}` form.
    func openInference(_ body: () throws -> JSON) throws -> HTTPResponse {
        do {
            return .json(200, try body())
        } catch let e as HTTPError {
            return .json(e.status, ["error": .string(e.path.map { "\($0): \(e.message)" } ?? e.message)], headers: e.headers)
        }
    }

    /// With a token configured, state-changing calls need `Authorization: Bearer <token>`.
    func authorize(_ request: HTTPRequest) throws {
        guard let token = config.authToken else { return }
        let given = request.headers["Authorization"] ?? ""
        let expected = "Bearer \(token)"
        // Constant-time comparison: the time taken does not depend on where they differ.
        let a = Array(given.utf8), b = Array(expected.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<b.count { difference |= (i < a.count ? a[i] : 0) ^ b[i] }
        guard difference == 0 else {
            throw HTTPError(401, code: "unauthorized", message: "this call needs 'Authorization: Bearer <token>'",
                            headers: HTTPHeaders([("WWW-Authenticate", "Bearer realm=\"kiln\"")]))
        }
    }

    func jsonBody(_ request: HTTPRequest) throws -> JSON {
        try jsonBody(request, parse: JSON.parse)
    }

    /// Checks the content type and parses the body with `parse`; both failures are the
    /// client's (415, 400).
    func jsonBody<Value>(_ request: HTTPRequest, parse: ([UInt8]) throws(JSONParseError) -> Value) throws -> Value {
        if let type = request.headers["Content-Type"]?.lowercased() {
            let media = type.split(separator: ";").first.map(Service.trimmedWhitespace) ?? ""
            guard media == "application/json" || media.hasSuffix("+json") else {
                throw HTTPError(415, code: "unsupported_media_type", message: "expected Content-Type: application/json, got '\(media.prefix(100))'")
            }
        }
        do {
            return try parse(request.body)
        } catch {
            throw HTTPError(400, code: "invalid_json", message: error.description)
        }
    }

    /// `text` without leading and trailing `.whitespaces` (the ASCII case without Foundation).
    static func trimmedWhitespace(_ text: Substring) -> String {
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else { return text.trimmingCharacters(in: .whitespaces) }
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !blank($0) }), let last = text.lastIndex(where: { !blank($0) }) else { return "" }
        return String(text[first...last])
    }

    func decodeSpec(_ request: HTTPRequest) throws -> JobSpec {
        let json = try jsonBody(request)
        do {
            return try JobSpec(json: json, limits: limits, schema: uploadedSchema(json))
        } catch {
            throw HTTPError(error.status, code: error.code.rawValue, message: error.description, path: error.path)
        }
    }

    /// The schema of an uploaded dataset a spec names in `data.dataset`.
    func uploadedSchema(_ spec: JSON) -> DataSchema? {
        spec["data"]?["dataset"]?.stringValue.flatMap { datasets.schema($0) }
    }

    func createJob(_ request: HTTPRequest) throws -> HTTPResponse {
        try authorize(request)
        let spec = try decodeSpec(request)
        // Inline data travels with the spec: check it now, so bad data is a 400, not a failed job.
        if spec.data.fields != nil {
            do {
                _ = try TrainingData.resolve(spec, catalog: nil)
            } catch {
                throw HTTPError(400, code: "invalid_data", message: error.description, path: error.field.map { "data.fields.\($0)" } ?? "data")
            }
        }
        guard scheduler.hasRoom else {
            throw HTTPError(503, code: "queue_full", message: "the job queue is full; try again later",
                            headers: HTTPHeaders([("Retry-After", "30")]))
        }
        let canonical = spec.json.serialized(sortedKeys: true)
        var job = Job(id: store.newID(), name: spec.name, epochs: spec.train.epochs, specHash: SHA256.hex(Array(canonical.utf8)), seed: spec.train.seed)
        job.steps = 0
        do {
            try store.create(job, spec: spec.json)
        } catch {
            throw HTTPError(507, code: "storage_error", message: "could not store the job: \(error)")
        }
        guard scheduler.enqueue(job.id) else {
            _ = try? store.update(job.id) { $0.status = .failed; $0.error = "the queue was full"; $0.finishedAt = Date() }
            throw HTTPError(503, code: "queue_full", message: "the job queue is full; try again later",
                            headers: HTTPHeaders([("Retry-After", "30")]))
        }
        Log.info("job_created", [("id", .string(job.id)), ("name", .string(job.name))])
        var body = store.job(job.id)?.json ?? job.json
        body = body.setting("summary", to: spec.model.summary(losses: spec.train.losses))
        return .json(201, body, headers: HTTPHeaders([("Location", "/jobs/\(job.id)")]))
    }

    /// Server-sent events: each new epoch as an `epoch` event, step progress as
    /// `progress`, and a final `end` event with the job's status.
    func followMetrics(_ id: String) -> HTTPResponse {
        let store = self.store
        return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]), body: .stream { writer in
            var sent = 0
            var lastProgress = ""
            while true {
                let epochs = store.metricsJSON(id)["epochs"]?.arrayValue ?? []
                while sent < epochs.count {
                    guard writer.write(Array("event: epoch\ndata: \(epochs[sent].serialized())\n\n".utf8)) else { return }
                    sent += 1
                }
                guard let job = store.job(id) else { return }
                if job.isFinished {
                    _ = writer.write(Array("event: end\ndata: \(job.json.serialized())\n\n".utf8))
                    return
                }
                let progress = job.json["progress"]?.serialized() ?? ""
                if progress != lastProgress {
                    guard writer.write(Array("event: progress\ndata: \(progress)\n\n".utf8)) else { return }
                    lastProgress = progress
                }
                Thread.sleep(forTimeInterval: 0.25)
            }
        })
    }
}
