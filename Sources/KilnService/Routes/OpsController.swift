import KilnHTTP
import KilnJSON

/// What operators and browsers use: health, Prometheus metrics, the dashboard and the
/// API description.
struct OpsController {
    let service: Service

    func register(_ router: Router) {
        router.add("GET", "/healthz") { _ in
            guard service.database != nil else { return .json(200, ["status": "ok", "version": .string(Kiln.version)]) }
            // With a shared database, readiness includes reaching it.
            let problem = service.databaseProblem()
            let database: JSON = problem.map { .object([("status", "unavailable"), ("error", .string($0))]) } ?? .object([("status", "ok")])
            return .json(problem == nil ? 200 : 503, .object([
                ("status", .string(problem == nil ? "ok" : "unavailable")), ("version", .string(Kiln.version)),
                ("role", .string(service.config.role.rawValue)), ("node", .string(service.config.nodeName)), ("database", database),
            ]))
        }
        router.add("GET", "/metrics") { request in
            let jobs = service.jobs.all()
            let counts = Dictionary(grouping: jobs, by: { $0.status.rawValue }).mapValues(\.count)
            let text = ServiceMetrics.renderProcess() + ServiceMetrics.renderBuildInfo()
                + service.metrics.render(queueDepth: service.scheduler.queueDepth, running: service.scheduler.runningCount, jobsByStatus: counts)
                + ServiceMetrics.renderJobs(jobs) + service.metrics.inference.render()
            if ServiceMetrics.wantsOpenMetrics(request.headers["Accept"]) {
                return .text(200, ServiceMetrics.openMetrics(text), contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8")
            }
            return .text(200, text, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.add("GET", "/") { request in service.jobsPage(request) }
        router.add("GET", "/openapi.yaml") { _ in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/yaml")]), body: .bytes(Array(OpenAPIDocument.text.utf8)))
        }
    }
}
