import Foundation

/// Counters and latency histograms for `GET /metrics`, in the Prometheus text format.
final class ServiceMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [String: Int] = [:]            // "method|route|status"
    private var latencyBuckets: [String: [Int]] = [:]    // route → count per bucket
    private var latencySum: [String: Double] = [:]
    private var latencyCount: [String: Int] = [:]
    private var trainedSamples = 0
    private var trainingSeconds = 0.0
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// The route pattern for a path, so ids do not explode the label space.
    static func route(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let first = parts.first else { return "/" }
        switch (first, parts.count) {
        case ("jobs", 2), ("models", 2), ("v2", _):
            return "/\(first)/:id" + (parts.count > 2 && first != "v2" ? "/" + parts[2...].joined(separator: "/") : "")
        case ("jobs", 3), ("models", 3):
            return "/\(first)/:id/\(parts[2])"
        case (_, 1) where ["healthz", "metrics", "jobs", "models", "predict", "validate", "datasets", "openapi.yaml"].contains(first):
            return "/\(first)"
        default:
            return "other"
        }
    }

    func record(method: String, path: String, status: Int, seconds: Double) {
        let route = ServiceMetrics.route(path)
        let m = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"].contains(method) ? method : "other"
        lock.lock()
        requests["\(m)|\(route)|\(status)", default: 0] += 1
        var b = latencyBuckets[route] ?? [Int](repeating: 0, count: ServiceMetrics.buckets.count)
        for (i, limit) in ServiceMetrics.buckets.enumerated() where seconds <= limit { b[i] += 1 }
        latencyBuckets[route] = b
        latencySum[route, default: 0] += seconds
        latencyCount[route, default: 0] += 1
        lock.unlock()
    }

    func recordTraining(samples: Int, seconds: Double) {
        lock.lock()
        trainedSamples += samples
        trainingSeconds += seconds
        lock.unlock()
    }

    func render(queueDepth: Int, running: Int, jobsByStatus: [String: Int]) -> String {
        lock.lock()
        defer { lock.unlock() }
        var out = "# HELP kiln_http_requests_total HTTP requests by method, route and status.\n# TYPE kiln_http_requests_total counter\n"
        for key in requests.keys.sorted() {
            let p = key.split(separator: "|", omittingEmptySubsequences: false)
            out += "kiln_http_requests_total{method=\"\(p[0])\",route=\"\(p[1])\",status=\"\(p[2])\"} \(requests[key]!)\n"
        }
        out += "# HELP kiln_http_request_duration_seconds Request latency by route.\n# TYPE kiln_http_request_duration_seconds histogram\n"
        for route in latencyBuckets.keys.sorted() {
            for (i, limit) in ServiceMetrics.buckets.enumerated() {
                out += "kiln_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"\(limit)\"} \(latencyBuckets[route]![i])\n"
            }
            out += "kiln_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"+Inf\"} \(latencyCount[route]!)\n"
            out += "kiln_http_request_duration_seconds_sum{route=\"\(route)\"} \(latencySum[route]!)\n"
            out += "kiln_http_request_duration_seconds_count{route=\"\(route)\"} \(latencyCount[route]!)\n"
        }
        out += "# HELP kiln_queue_depth Jobs waiting to run.\n# TYPE kiln_queue_depth gauge\nkiln_queue_depth \(queueDepth)\n"
        out += "# HELP kiln_running_jobs Jobs training now.\n# TYPE kiln_running_jobs gauge\nkiln_running_jobs \(running)\n"
        out += "# HELP kiln_jobs Jobs by status.\n# TYPE kiln_jobs gauge\n"
        for s in jobsByStatus.keys.sorted() { out += "kiln_jobs{status=\"\(s)\"} \(jobsByStatus[s]!)\n" }
        out += "# HELP kiln_trained_samples_total Samples trained on since start.\n# TYPE kiln_trained_samples_total counter\nkiln_trained_samples_total \(trainedSamples)\n"
        let rate = trainingSeconds > 0 ? Double(trainedSamples) / trainingSeconds : 0
        out += "# HELP kiln_training_samples_per_second Mean training throughput since start.\n# TYPE kiln_training_samples_per_second gauge\nkiln_training_samples_per_second \(rate)\n"
        return out
    }
}
