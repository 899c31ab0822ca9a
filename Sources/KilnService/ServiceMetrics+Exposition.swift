import Foundation

/// The parts of `GET /metrics` read at scrape time: the process (from /proc, as the
/// Prometheus client libraries name them), the build, and the job records (durations,
/// queue waits); and the OpenMetrics form of the whole text.
extension ServiceMetrics {
    /// `process_*`: CPU seconds, resident and virtual memory, open and maximum file
    /// descriptors, start time. Linux only; elsewhere nothing.
    static func renderProcess() -> String {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return "" }
        // Fields after the command name, which may hold spaces: state is field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ").map(String.init)
        func field(_ n: Int) -> Double { fields.count > n - 3 ? Double(fields[n - 3]) ?? 0 : 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        let cpu = (field(14) + field(15)) / ticks
        let virtualBytes = field(23)
        let residentBytes = field(24) * page
        var bootTime = 0.0
        if let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }) {
            bootTime = Double(line.split(separator: " ").last ?? "") ?? 0
        }
        let start = bootTime + field(22) / ticks
        let openFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var limit = rlimit()
        let maxFDs = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Double(limit.rlim_cur) : 0
        var out = ""
        func gauge(_ name: String, _ help: String, _ type: String, _ value: Double) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(format(value))\n"
        }
        gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", cpu)
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", virtualBytes)
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", residentBytes)
        gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", start)
        gauge("process_open_fds", "Number of open file descriptors.", "gauge", Double(openFDs))
        gauge("process_max_fds", "Maximum number of open file descriptors.", "gauge", maxFDs)
        return out
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// `kiln_build_info{version}` 1.
    static func renderBuildInfo() -> String {
        "# HELP kiln_build_info The Kiln build serving: its version.\n# TYPE kiln_build_info gauge\nkiln_build_info{version=\"\(escape(Kiln.version))\"} 1\n"
    }

    static let jobBuckets: [Double] = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400]

    /// Histograms over the job records: how long finished jobs ran (by final status) and
    /// how long started jobs waited in the queue.
    static func renderJobs(_ jobs: [Job]) -> String {
        var out = ""
        func histogram(_ name: String, _ help: String, _ series: [(label: String, values: [Double])]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for (label, values) in series {
                let sep = label.isEmpty ? "" : ","
                for limit in jobBuckets {
                    out += "\(name)_bucket{\(label)\(sep)le=\"\(format(limit))\"} \(values.filter { $0 <= limit }.count)\n"
                }
                out += "\(name)_bucket{\(label)\(sep)le=\"+Inf\"} \(values.count)\n"
                let braces = label.isEmpty ? "" : "{\(label)}"
                out += "\(name)_sum\(braces) \(values.reduce(0, +))\n\(name)_count\(braces) \(values.count)\n"
            }
        }
        var durations: [String: [Double]] = [:]
        for job in jobs where job.isFinished {
            guard let started = job.startedAt, let finished = job.finishedAt else { continue }
            durations[job.status.rawValue, default: []].append(max(0, finished.timeIntervalSince(started)))
        }
        histogram("kiln_job_duration_seconds", "Run time of finished jobs, by final status.",
                  durations.keys.sorted().map { ("status=\"\($0)\"", durations[$0]!) })
        let waits = jobs.compactMap { job in job.startedAt.map { max(0, $0.timeIntervalSince(job.createdAt)) } }
        histogram("kiln_job_queue_wait_seconds", "Time jobs waited in the queue before they started.", [("", waits)])
        return out
    }

    /// Whether a scrape's `Accept` asks for OpenMetrics.
    static func wantsOpenMetrics(_ accept: String?) -> Bool {
        accept?.lowercased().contains("application/openmetrics-text") ?? false
    }

    /// The Prometheus text as OpenMetrics 1.0: counter families are named without their
    /// `_total` suffix (the samples keep it), bucket bounds are floats, and the text
    /// ends with `# EOF`.
    static func openMetrics(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count + 8)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE "), line.hasSuffix("_total counter") {
                out += line.dropLast("_total counter".count) + " counter\n"
            } else if line.hasPrefix("# HELP "), let name = line.dropFirst(7).split(separator: " ").first, name.hasSuffix("_total") {
                out += "# HELP \(name.dropLast(6))" + line.dropFirst(7 + name.count) + "\n"
            } else if let range = line.range(of: "le=\""), let end = line[range.upperBound...].firstIndex(of: "\""),
                      line[range.upperBound..<end].allSatisfy(\.isNumber) {
                // Bucket bounds in canonical float form: le="1" is le="1.0".
                out += line[..<end] + ".0" + line[end...] + "\n"
            } else {
                out += line + "\n"
            }
        }
        return out + "# EOF\n"
    }
}
