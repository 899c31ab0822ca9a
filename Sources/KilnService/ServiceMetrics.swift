import Foundation

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
    private struct Latency {
        var buckets = [Int](repeating: 0, count: ServiceMetrics.buckets.count)   // count per bucket
        var sum = 0.0
        var count = 0

        mutating func record(_ seconds: Double) {
            for (i, limit) in ServiceMetrics.buckets.enumerated() where seconds <= limit { buckets[i] += 1 }
            sum += seconds
            count += 1
        }
    }
    private var requests: [RequestKey: Int] = [:]
    private var latency: [String: Latency] = [:]          // by route
    private var trainedSamples = 0
    private var trainingSeconds = 0.0
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// `route` is the pattern the router matched (or its fixed label for no match).
    func record(method: String, route: String, status: Int, seconds: Double) {
        let m = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"].contains(method) ? method : "other"
        lock.lock()
        requests[RequestKey(method: m, route: route, status: status), default: 0] += 1
        // Updated in place (no copy of the buckets per request).
        latency[route, default: Latency()].record(seconds)
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
            out += "kiln_http_requests_total{method=\"\(key.method)\",route=\"\(key.route)\",status=\"\(key.status)\"} \(requests[key]!)\n"
        }
        out += "# HELP kiln_http_request_duration_seconds Request latency by route.\n# TYPE kiln_http_request_duration_seconds histogram\n"
        for route in latency.keys.sorted() {
            let l = latency[route]!
            for (i, limit) in ServiceMetrics.buckets.enumerated() {
                out += "kiln_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"\(limit)\"} \(l.buckets[i])\n"
            }
            out += "kiln_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"+Inf\"} \(l.count)\n"
            out += "kiln_http_request_duration_seconds_sum{route=\"\(route)\"} \(l.sum)\n"
            out += "kiln_http_request_duration_seconds_count{route=\"\(route)\"} \(l.count)\n"
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
