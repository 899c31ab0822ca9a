import Foundation
import KilnData
import KilnGraph
import KilnSpec
import KilnHTTP
import KilnJSON
import KilnPostgres
import KilnTensor
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
    /// Dataset uploads are written here as they arrive, then staged here as the arrays
    /// the stores keep (`<data>/spool`, emptied at start).
    let spool: HTTPBodySpool
    let stager: ArrayStager
    var uploadLimits: Upload.Limits { Upload.Limits(maxBodyBytes: config.maxBodyBytes, maxDatasetBytes: config.maxDatasetBytes) }
    public let router = Router()
    private var server: HTTPServer?
    private var retentionTimer: DispatchSourceTimer?
    /// The shared database, when `database_url` is set (docs/cluster.md).
    let database: PostgresDatabase?
    private var listener: PostgresListener?
    private var safetyTimer: DispatchSourceTimer?

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        if let name = config.kernels, let policy = KernelPolicy(name: name) { Kernels.policy = policy }
        limits = ModelLimits(maxParameters: config.maxParameters)
        let spoolDirectory = "\(config.dataDirectory)/spool"
        // Bodies and arrays a killed process left there belong to no request any more.
        try? FileManager.default.removeItem(atPath: spoolDirectory)
        stager = try ArrayStager(directory: spoolDirectory)
        spool = HTTPBodySpool(directory: spoolDirectory, maxFiles: config.maxConcurrentUploads)
        let jobs: JobStore, artifacts: ArtifactStore, datasets: DatasetStore
        if let url = config.databaseURL {
            let database = try PostgresDatabase(url: url)
            jobs = PostgresJobStore(database: database, node: config.nodeName, lease: config.leaseSeconds)
            artifacts = PostgresArtifactStore(database: database)
            datasets = PostgresDatasetStore(database: database)
            self.database = database
        } else {
            jobs = try DirectoryJobStore(directory: config.dataDirectory)
            artifacts = try DirectoryArtifactStore(directory: config.dataDirectory)
            datasets = try DirectoryDatasetStore(directory: "\(config.dataDirectory)/uploads")
            database = nil
        }
        self.jobs = jobs
        self.artifacts = artifacts
        self.datasets = datasets
        let catalog = DatasetCatalog(cacheDirectory: "\(config.dataDirectory)/datasets", mirror: config.datasetMirror, checksums: config.datasetChecksums)
        scheduler = Scheduler(jobs: jobs, artifacts: artifacts, datasets: datasets, decoder: SpecDecoder(limits: limits, datasets: datasets),
                              catalog: catalog, node: config.nodeName,
                              maxConcurrent: config.maxConcurrentJobs, maxQueued: config.maxQueuedJobs, limits: limits,
                              trains: config.role != .api, lease: config.databaseURL == nil ? .infinity : config.leaseSeconds,
                              trainingNice: config.trainingNice)
        predictor = Predictor(jobs: jobs, artifacts: artifacts, limits: limits, maxBatch: config.maxPredictBatch)
        scheduler.onEpoch = { [metrics] samples, seconds in metrics.recordTraining(samples: samples, seconds: seconds) }
        scheduler.onChange = { [predictor] id in predictor.forget(id) }
        if let directory = artifacts as? DirectoryArtifactStore {
            let decoder = SpecDecoder(limits: limits, datasets: datasets)
            directory.addMissingGraphs(jobs: jobs) { json in ModelArtifactGraph.json(try decoder.decode(json)) }
        }
        routes()
    }

    /// Starts serving and resumes jobs an earlier process left unfinished.
    public func start() throws {
        var http = HTTPServerConfiguration()
        http.host = config.host
        http.port = config.port
        http.maxBodyBytes = config.maxBodyBytes
        http.spool = spool
        let maxUpload = config.maxDatasetBytes
        http.spooledBodyLimit = { method, path in DatasetsController.takesLargeBody(method, path) ? maxUpload : nil }
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
        if let database { try listen(database) }
        scheduler.recover()
        if config.keepJobsDays != nil || config.keepLastPerName != nil {
            applyRetention()
            let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
            timer.schedule(deadline: .now() + 3600, repeating: 3600)
            timer.setEventHandler { [weak self] in self?.applyRetention() }
            timer.resume()
            retentionTimer = timer
        }
        Log.info("listening", [("host", .string(config.host)), ("port", JSON(server.port)), ("data_dir", .string(config.dataDirectory)),
                                 ("role", .string(config.role.rawValue)), ("node", .string(config.nodeName)),
                                 ("database", config.databaseURL.map { .string(Redact.url($0)) } ?? .null),
                                 ("kernels", .string(Kernels.summary))])
    }

    public var port: Int { server?.port ?? config.port }

    /// Stops accepting connections and interrupts training; interrupted jobs stay
    /// queued and resume from their last checkpoint at the next start.
    public func stop() {
        retentionTimer?.cancel()
        safetyTimer?.cancel()
        server?.stop()
        scheduler.shutdown()
        listener?.stop()
        database?.shutdown()
    }

    /// What other nodes announce: a queued job wakes this worker; a cancellation of a
    /// job running here stops it; an epoch or a model that landed drops the cached
    /// model. After the listener reconnects (announcements may have been missed) the
    /// worker tries a claim and cached models are dropped. A timer tries a claim every
    /// few seconds as well, which also takes over jobs whose lease expired.
    private func listen(_ database: PostgresDatabase) throws {
        let scheduler = self.scheduler, predictor = self.predictor, jobs = self.jobs, node = config.nodeName
        listener = try PostgresListener(url: database.pool.url, channels: PostgresJobQueue.Channel.all, onReconnect: {
            Log.info("database_listener_reconnected", [])
            DispatchQueue.global().async {
                scheduler.wake()
                for job in jobs.all() { predictor.forget(job.id) }
            }
        }) { channel, payload in
            guard let message = try? JSON.parse(payload), let id = message["id"]?.stringValue else { return }
            switch channel {
            case PostgresJobQueue.Channel.jobs where message["status"]?.stringValue == "queued":
                DispatchQueue.global().async { scheduler.wake() }
            case PostgresJobQueue.Channel.cancel where message["node"]?.stringValue == node:
                scheduler.stopLocal(id)
            case PostgresJobQueue.Channel.epochs, PostgresJobQueue.Channel.models:
                predictor.forget(id)
            default:
                break
            }
        }
        guard scheduler.trains else { return }
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        let interval = max(1, min(5, config.leaseSeconds / 2))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { scheduler.wake() }
        timer.resume()
        safetyTimer = timer
    }

    /// The database's part of readiness: nil when there is none or it answers, else why not.
    func databaseProblem() -> String? {
        guard let database else { return nil }
        return database.probe() ? nil : (database.unavailableReason ?? "the database does not answer")
    }

    // MARK: - Routes

    func routes() {
        router.renderError = ErrorBody.envelope
        router.onUnexpectedError = { request, route, id, error in
            Log.error("unexpected_error", [("request_id", .string(id)), ("method", .string(String(request.method.prefix(20)))),
                                           ("route", .string(route.label)), ("error", .string(String(describing: error)))])
        }
        router.use(RequestMetricsMiddleware(metrics: metrics))
        if let database { router.use(DatabaseAvailabilityMiddleware(database: database)) }
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
