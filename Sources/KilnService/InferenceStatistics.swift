import Foundation
import KilnJSON

/// Counts and times of inference calls per model version: what the Open Inference
/// Protocol's statistics extension reports (`/v2/models/stats`) and what `/metrics`
/// exports per model. Every prediction route (`/predict`, `/v1`, `/v2`) records here.
final class InferenceStatistics: @unchecked Sendable {
    struct Key: Hashable, Comparable {
        var name: String, version: String
        static func < (a: Key, b: Key) -> Bool { (a.name, a.version) < (b.name, b.version) }
    }

    struct Entry {
        var successCount = 0, successNanoseconds: UInt64 = 0
        var failureCount = 0, failureNanoseconds: UInt64 = 0
        /// Samples inferred (a batch of 8 counts 8) and calls that ran the model.
        var inferenceCount = 0, executionCount = 0
        /// Milliseconds since the epoch of the last call.
        var lastInference: UInt64 = 0
    }

    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    /// Latency by model name, bounded by the model names.
    private var latency: [String: LatencyHistogram] = [:]
    /// Per-name totals for `/metrics`: counters that never go down, even when a version
    /// is removed.
    private var totals: [String: (success: Int, failure: Int, samples: Int)] = [:]

    func record(name: String, version: String, batch: Int, seconds: Double, success: Bool) {
        let ns = UInt64(max(seconds, 0) * 1e9)
        lock.lock()
        defer { lock.unlock() }
        var e = entries[Key(name: name, version: version)] ?? Entry()
        if success {
            e.successCount += 1
            e.successNanoseconds += ns
            e.inferenceCount += batch
            e.executionCount += 1
        } else {
            e.failureCount += 1
            e.failureNanoseconds += ns
        }
        e.lastInference = UInt64(Date().timeIntervalSince1970 * 1000)
        entries[Key(name: name, version: version)] = e
        var t = totals[name] ?? (0, 0, 0)
        if success { t.success += 1; t.samples += batch } else { t.failure += 1 }
        totals[name] = t
        latency[name, default: LatencyHistogram()].record(seconds)
    }

    /// Forgets a removed model version's statistics (the `/metrics` totals stay).
    func forget(version: String) {
        lock.lock()
        entries = entries.filter { $0.key.version != version }
        lock.unlock()
    }

    /// `model_stats` entries as `/v2/models/stats` defines them, for the given versions
    /// (each with zeros when it has not been called yet).
    func json(_ versions: [(name: String, version: String)]) -> JSON {
        lock.lock()
        defer { lock.unlock() }
        func duration(_ count: Int, _ ns: UInt64) -> JSON { .object([("count", JSON(count)), ("ns", JSON(Int(ns)))]) }
        return .object([("model_stats", .array(versions.map { v in
            let e = entries[Key(name: v.name, version: v.version)] ?? Entry()
            return .object([
                ("name", .string(v.name)), ("version", .string(v.version)), ("last_inference", JSON(Int(e.lastInference))),
                ("inference_count", JSON(e.inferenceCount)), ("execution_count", JSON(e.executionCount)),
                ("inference_stats", .object([
                    ("success", duration(e.successCount, e.successNanoseconds)), ("fail", duration(e.failureCount, e.failureNanoseconds)),
                    ("queue", duration(e.successCount, 0)), ("compute_input", duration(e.successCount, 0)),
                    ("compute_infer", duration(e.successCount, e.successNanoseconds)), ("compute_output", duration(e.successCount, 0)),
                    ("cache_hit", duration(0, 0)), ("cache_miss", duration(0, 0)),
                ])),
                ("batch_stats", .array([])),
            ])
        }))])
    }

    /// Every version that has been called, in name order.
    var calledVersions: [(name: String, version: String)] {
        lock.lock()
        defer { lock.unlock() }
        return entries.keys.sorted().map { ($0.name, $0.version) }
    }

    /// Per-model request counters (by outcome), samples and latency histograms.
    func render() -> String {
        lock.lock()
        defer { lock.unlock() }
        let byName = totals
        var out = "# HELP kiln_model_inference_requests_total Inference calls by model and outcome.\n# TYPE kiln_model_inference_requests_total counter\n"
        for name in byName.keys.sorted() {
            let label = ServiceMetrics.escape(name)
            out += "kiln_model_inference_requests_total{model=\"\(label)\",outcome=\"success\"} \(byName[name]!.success)\n"
            out += "kiln_model_inference_requests_total{model=\"\(label)\",outcome=\"failure\"} \(byName[name]!.failure)\n"
        }
        out += "# HELP kiln_model_inference_samples_total Samples inferred by model.\n# TYPE kiln_model_inference_samples_total counter\n"
        for name in byName.keys.sorted() { out += "kiln_model_inference_samples_total{model=\"\(ServiceMetrics.escape(name))\"} \(byName[name]!.samples)\n" }
        out += "# HELP kiln_model_inference_duration_seconds Inference latency by model.\n# TYPE kiln_model_inference_duration_seconds histogram\n"
        for name in latency.keys.sorted() {
            out += latency[name]!.lines("kiln_model_inference_duration_seconds", label: "model=\"\(ServiceMetrics.escape(name))\"")
        }
        return out
    }
}

extension Service {
    /// Runs one inference call for the model `name` and records it: on success under the
    /// version that answered, on failure under the version the name resolves to (a call
    /// for a model that does not exist is not a model's statistic).
    func inference<Result>(_ name: String, version: String? = nil, _ body: () throws -> (Result, Job, Int)) throws -> Result {
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        do {
            let (result, job, batch) = try body()
            metrics.inference.record(name: job.name, version: job.id, batch: batch, seconds: elapsed(), success: true)
            return result
        } catch {
            let versionJob = version.flatMap { jobs.job($0) }.flatMap { $0.name == name || $0.id == name ? $0 : nil }
            if let job = version == nil ? jobs.resolveModel(name) : versionJob {
                metrics.inference.record(name: job.name, version: job.id, batch: 0, seconds: elapsed(), success: false)
            }
            throw error
        }
    }
}
