import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnHTTP
import KilnJSON
import KilnTrain

/// The Kiln service: the stores, the scheduler and the predictor behind the HTTP
/// routes of DESIGN.md §3. Routes are declared by controller (jobs, models, predict,
/// datasets, ops); middleware does auth and request metrics; errors are rendered here,
/// at the edge.
public final class Service: @unchecked Sendable {
    public let config: Config
    let jobs: JobStore
    let artifacts: ArtifactStore
    let datasets: DatasetStore
    let scheduler: Scheduler
    let predictor: Predictor
    let metrics = ServiceMetrics()
    let limits: ModelLimits
    public let router = Router()
    private var server: HTTPServer?
    private var retentionTimer: DispatchSourceTimer?

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        limits = ModelLimits(maxParameters: config.maxParameters)
        let jobs = try DirectoryJobStore(directory: config.dataDirectory)
        let artifacts = try DirectoryArtifactStore(directory: config.dataDirectory)
        let datasets = try DirectoryDatasetStore(directory: "\(config.dataDirectory)/uploads")
        self.jobs = jobs
        self.artifacts = artifacts
        self.datasets = datasets
        let catalog = DatasetCatalog(cacheDirectory: "\(config.dataDirectory)/datasets", mirror: config.datasetMirror, checksums: config.datasetChecksums)
        scheduler = Scheduler(jobs: jobs, artifacts: artifacts, datasets: datasets, decoder: SpecDecoder(limits: limits, datasets: datasets),
                              catalog: catalog, node: config.nodeName,
                              maxConcurrent: config.maxConcurrentJobs, maxQueued: config.maxQueuedJobs, limits: limits)
        predictor = Predictor(jobs: jobs, artifacts: artifacts, limits: limits, maxBatch: config.maxPredictBatch)
        scheduler.onEpoch = { [metrics] samples, seconds in metrics.recordTraining(samples: samples, seconds: seconds) }
        scheduler.onChange = { [predictor] id in predictor.forget(id) }
        let decoder = SpecDecoder(limits: limits, datasets: datasets)
        artifacts.addMissingGraphs(jobs: jobs) { json in ModelArtifactGraph.json(try decoder.decode(json)) }
        routes()
    }

    /// Starts serving and resumes jobs an earlier process left unfinished.
    public func start() throws {
        var http = HTTPServerConfiguration()
        http.host = config.host
        http.port = config.port
        http.maxBodyBytes = config.maxBodyBytes
        http.maxConnections = config.maxConnections
        http.maxConnectionsPerAddress = config.maxConnectionsPerAddress
        http.headerTimeout = config.headerTimeout
        http.bodyTimeout = config.bodyTimeout
        http.idleTimeout = config.idleTimeout
        http.writeTimeout = config.writeTimeout
        http.workerThreads = config.workerThreads
        Log.level = Log.Level(name: config.logLevel) ?? .info
        http.logLevel = Log.level
        let server = HTTPServer(configuration: http) { [router] request in router.handle(request) }
        server.log = { level, event, fields in Log.write(level, event, fields) }
        metrics.httpStatistics = { [weak server] in server?.statistics }
        try server.start()
        self.server = server
        scheduler.recover()
        if config.keepJobsDays != nil || config.keepLastPerName != nil {
            applyRetention()
            let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
            timer.schedule(deadline: .now() + 3600, repeating: 3600)
            timer.setEventHandler { [weak self] in self?.applyRetention() }
            timer.resume()
            retentionTimer = timer
        }
        Log.info("listening", [("host", .string(config.host)), ("port", JSON(server.port)), ("data_dir", .string(config.dataDirectory))])
    }

    public var port: Int { server?.port ?? config.port }

    /// Stops accepting connections and interrupts training; interrupted jobs stay
    /// queued and resume from their last checkpoint at the next start.
    public func stop() {
        retentionTimer?.cancel()
        server?.stop()
        scheduler.shutdown()
    }

    // MARK: - Routes

    func routes() {
        router.renderError = ErrorBody.envelope
        router.onUnexpectedError = { request, route, id, error in
            Log.error("unexpected_error", [("request_id", .string(id)), ("method", .string(String(request.method.prefix(20)))),
                                           ("route", .string(route.label)), ("error", .string(String(describing: error)))])
        }
        router.use(RequestMetricsMiddleware(metrics: metrics))
        if let token = config.authToken { router.use(AuthMiddleware(token: token, scope: config.authScope)) }
        OpsController(service: self).register(router)
        JobsController(service: self).register(router)
        ModelsController(service: self).register(router)
        PredictController(service: self).register(router)
        TFServingController(service: self).register(router)
        DatasetsController(service: self).register(router)
        registerDashboardRoutes()
    }

    /// The one way a stored or posted spec is decoded: with the service's limits and,
    /// for a spec that reads an uploaded dataset, that dataset's schema.
    func decodeSpec(_ json: JSON, for purpose: JobSpec.Purpose = .training) throws(SpecError) -> JobSpec {
        try SpecDecoder(limits: limits, datasets: datasets).decode(json, for: purpose)
    }

    /// The job a request's `:id` names.
    func job(_ request: HTTPRequest) throws -> Job {
        let id = request.pathParameters["id"] ?? ""
        guard StoredName.isValid(id), let job = jobs.job(id) else {
            throw ServiceError(.notFound, code: "job_not_found", "no job with id '\(id.prefix(64))'")
        }
        return job
    }

    /// Server-sent events: each new epoch as an `epoch` event, step progress as
    /// `progress`, and a final `end` event with the job's status.
    func followMetrics(_ id: String) -> HTTPResponse {
        let store = self.jobs
        final class Cursor: @unchecked Sendable { var sent = 0, lastProgress = "" }
        let cursor = Cursor()
        // Sampled on the server's shared stream clock; no thread waits on the stream.
        return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]), body: .stream(.refreshing { stream in
            let epochs = store.metrics(id)["epochs"]?.arrayValue ?? []
            while cursor.sent < epochs.count {
                guard stream.send(Array("event: epoch\ndata: \(epochs[cursor.sent].serialized())\n\n".utf8)) else { return }
                cursor.sent += 1
            }
            guard let job = store.job(id) else { return stream.finish() }
            if job.isFinished {
                return stream.finish(Array("event: end\ndata: \(job.json.serialized())\n\n".utf8))
            }
            let progress = job.json["progress"]?.serialized() ?? ""
            if progress != cursor.lastProgress {
                guard stream.send(Array("event: progress\ndata: \(progress)\n\n".utf8)) else { return }
                cursor.lastProgress = progress
            }
        }))
    }
}
