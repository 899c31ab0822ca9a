import Foundation
import KilnHTTP

/// Counters and latency histograms for `GET /metrics`, in the Prometheus text format.
final class ServiceMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private struct RequestKey: Hashable, Comparable {
        var method: String, route: String, status: Int
        static func < (a: RequestKey, b: RequestKey) -> Bool {
            a.text < b.text   // the order of "method|route|status"
        }
        var text: String { "\(method)|\(route)|\(status)" }
    }
    private var requests: [RequestKey: Int] = [:]
    private var latency: [String: LatencyHistogram] = [:]          // by route
    private var trainedSamples = 0
    private var epochsTrained = 0
    /// Per-model inference counts and latency (also `/v2/models/stats`).
    let inference = InferenceStatistics()
    private var trainingSeconds = 0.0
    /// The HTTP server's connection counters, set when it starts.
    var httpStatistics: () -> HTTPServerStatistics? = { nil }
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// `route` is the pattern the router matched (or its fixed label for no match).
    func record(method: String, route: String, status: Int, seconds: Double) {
        let m = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"].contains(method) ? method : "other"
        lock.lock()
        requests[RequestKey(method: m, route: route, status: status), default: 0] += 1
        // Updated in place (no copy of the buckets per request).
        latency[route, default: LatencyHistogram()].record(seconds)
        lock.unlock()
    }

    func recordTraining(samples: Int, seconds: Double) {
        lock.lock()
        trainedSamples += samples
        epochsTrained += 1
        trainingSeconds += seconds
        lock.unlock()
    }

    func render(queueDepth: Int, running: Int, jobsByStatus: [String: Int]) -> String {
        lock.lock()
        defer { lock.unlock() }
        var out = "# HELP kiln_http_requests_total HTTP requests by method, route and status.\n# TYPE kiln_http_requests_total counter\n"
        for key in requests.keys.sorted() {
            out += "kiln_http_requests_total{method=\"\(key.method)\",route=\"\(key.route)\",status=\"\(key.status)\"} \(requests[key]!)\n"
        }
        out += "# HELP kiln_http_request_duration_seconds Request latency by route.\n# TYPE kiln_http_request_duration_seconds histogram\n"
        for route in latency.keys.sorted() {
            out += latency[route]!.lines("kiln_http_request_duration_seconds", label: "route=\"\(route)\"")
        }
        out += "# HELP kiln_queue_depth Jobs waiting to run.\n# TYPE kiln_queue_depth gauge\nkiln_queue_depth \(queueDepth)\n"
        out += "# HELP kiln_running_jobs Jobs training now.\n# TYPE kiln_running_jobs gauge\nkiln_running_jobs \(running)\n"
        out += "# HELP kiln_jobs Jobs by status.\n# TYPE kiln_jobs gauge\n"
        for s in jobsByStatus.keys.sorted() { out += "kiln_jobs{status=\"\(s)\"} \(jobsByStatus[s]!)\n" }
        out += "# HELP kiln_trained_samples_total Samples trained on since start.\n# TYPE kiln_trained_samples_total counter\nkiln_trained_samples_total \(trainedSamples)\n"
        let rate = trainingSeconds > 0 ? Double(trainedSamples) / trainingSeconds : 0
        out += "# HELP kiln_training_samples_per_second Mean training throughput since start.\n# TYPE kiln_training_samples_per_second gauge\nkiln_training_samples_per_second \(rate)\n"
        out += "# HELP kiln_epochs_trained_total Epochs finished since start.\n# TYPE kiln_epochs_trained_total counter\nkiln_epochs_trained_total \(epochsTrained)\n"
        if let http = httpStatistics() { out += ServiceMetrics.render(http) }
        return out
    }

    /// A label value as the exposition format writes it (backslash, quote and newline escaped).
    static func escape(_ value: String) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// Connection counters of the HTTP server: what is open, what was refused or cut off.
    static func render(_ http: HTTPServerStatistics) -> String {
        var out = "# HELP kiln_http_open_connections Client connections open now.\n# TYPE kiln_http_open_connections gauge\nkiln_http_open_connections \(http.openConnections)\n"
        out += "# HELP kiln_http_open_streams Streamed responses (?follow=1) open now.\n# TYPE kiln_http_open_streams gauge\nkiln_http_open_streams \(http.openStreams)\n"
        out += "# HELP kiln_http_connections_accepted_total Connections accepted.\n# TYPE kiln_http_connections_accepted_total counter\nkiln_http_connections_accepted_total \(http.acceptedConnections)\n"
        out += "# HELP kiln_http_connections_rejected_total Connections refused with a 503, by reason.\n# TYPE kiln_http_connections_rejected_total counter\n"
        out += "kiln_http_connections_rejected_total{reason=\"capacity\"} \(http.rejectedConnections)\n"
        out += "kiln_http_connections_rejected_total{reason=\"per_address\"} \(http.rejectedPerAddress)\n"
        out += "kiln_http_connections_rejected_total{reason=\"accept_error\"} \(http.acceptErrors)\n"
        out += "kiln_http_connections_rejected_total{reason=\"uploads\"} \(http.rejectedUploads)\n"
        out += "# HELP kiln_http_idle_evictions_total Idle keep-alive connections closed to make room.\n# TYPE kiln_http_idle_evictions_total counter\nkiln_http_idle_evictions_total \(http.evictedIdleConnections)\n"
        out += "# HELP kiln_http_timeouts_total Connections closed at a deadline, by phase.\n# TYPE kiln_http_timeouts_total counter\n"
        for (phase, value) in [("header", http.headerTimeouts), ("body", http.bodyTimeouts), ("write", http.writeTimeouts), ("idle", http.idleTimeouts)] {
            out += "kiln_http_timeouts_total{phase=\"\(phase)\"} \(value)\n"
        }
        out += "# HELP kiln_http_parse_errors_total Requests rejected by the HTTP parser.\n# TYPE kiln_http_parse_errors_total counter\nkiln_http_parse_errors_total \(http.parseErrors)\n"
        out += "# HELP kiln_http_spooled_uploads Dataset uploads being written to disk or read now.\n# TYPE kiln_http_spooled_uploads gauge\nkiln_http_spooled_uploads \(http.spooledBodies)\n"
        out += "# HELP kiln_http_uploads_not_stored_total Dataset uploads answered 507: the disk refused their body.\n# TYPE kiln_http_uploads_not_stored_total counter\nkiln_http_uploads_not_stored_total \(http.uploadsNotStored)\n"
        return out
    }
}

/// A Prometheus histogram of seconds over `ServiceMetrics.buckets` (cumulative counts),
/// updated in place.
struct LatencyHistogram {
    var buckets = [Int](repeating: 0, count: ServiceMetrics.buckets.count)
    var sum = 0.0
    var count = 0

    mutating func record(_ seconds: Double) {
        for (i, limit) in ServiceMetrics.buckets.enumerated() where seconds <= limit { buckets[i] += 1 }
        sum += seconds
        count += 1
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` for one label set (`route="/x"`).
    func lines(_ name: String, label: String) -> String {
        var out = ""
        for (i, limit) in ServiceMetrics.buckets.enumerated() { out += "\(name)_bucket{\(label),le=\"\(limit)\"} \(buckets[i])\n" }
        out += "\(name)_bucket{\(label),le=\"+Inf\"} \(count)\n"
        out += "\(name)_sum{\(label)} \(sum)\n"
        out += "\(name)_count{\(label)} \(count)\n"
        return out
    }
}
