import Foundation
import KilnGraph
import KilnHTTP
import KilnJSON

/// The web pages of the dashboard: the jobs list (`/`), a page per job (`/jobs/{id}`
/// when the browser prefers HTML) and a comparison of runs (`/compare?jobs=a,b`).
/// The server draws everything, charts included (SVG); one small inline script keeps
/// a page current by following the jobs' `?follow=1` event streams and swapping in
/// the re-rendered parts. Nothing is fetched from anywhere but Kiln itself.
enum Dashboard {
    // MARK: Content negotiation

    /// Whether an `Accept` header prefers HTML over JSON: a browser's
    /// `text/html,…,*/*;q=0.8` does; `*/*`, a missing header or a tie keeps JSON,
    /// the API's default.
    static func prefersHTML(_ accept: String?) -> Bool {
        guard let accept, !accept.isEmpty else { return false }
        var ranges: [(type: String, subtype: String, q: Double)] = []
        for part in accept.split(separator: ",") {
            let pieces = part.split(separator: ";").map { RequestBody.trimmedWhitespace($0).lowercased() }
            guard let media = pieces.first, case let halves = media.split(separator: "/", maxSplits: 1), halves.count == 2 else { continue }
            var q = 1.0
            for parameter in pieces.dropFirst() where parameter.hasPrefix("q=") {
                q = Double(parameter.dropFirst(2)).map { min(max($0, 0), 1) } ?? 1
            }
            ranges.append((String(halves[0]), String(halves[1]), q))
        }
        /// The quality of a media type: that of the most specific range matching it.
        func quality(_ type: String, _ subtype: String) -> Double {
            let matches = ranges.compactMap { r -> (Int, Double)? in
                if r.type == type && r.subtype == subtype { return (2, r.q) }
                if r.type == type && r.subtype == "*" { return (1, r.q) }
                if r.type == "*" && r.subtype == "*" { return (0, r.q) }
                return nil
            }
            return matches.max { $0.0 < $1.0 }?.1 ?? 0
        }
        let html = max(quality("text", "html"), quality("application", "xhtml+xml"))
        return html > 0 && html > quality("application", "json")
    }

    // MARK: Formatting

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Four significant digits, without a trailing exponent for ordinary values.
    static func number(_ v: Double) -> String {
        guard v.isFinite else { return v.isNaN ? "NaN" : (v > 0 ? "∞" : "−∞") }
        if v == v.rounded() && abs(v) < 1e7 { return String(Int(v)) }
        return String(format: "%.4g", v)
    }

    /// 42 s, 3 min 05 s, 2 h 07 min.
    static func duration(_ seconds: Double) -> String {
        let s = Int(max(seconds, 0).rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return String(format: "%d min %02d s", s / 60, s % 60) }
        return String(format: "%d h %02d min", s / 3600, s % 3600 / 60)
    }

    static let timeFormat: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return f
    }()

    static func time(_ date: Date) -> String { timeFormat.string(from: date) }

    static func badge(_ status: Job.Status) -> String {
        "<span class=\"badge \(status.rawValue)\">\(status.rawValue)</span>"
    }

    /// The share of the job done, 0…1.
    static func fraction(_ job: Job) -> Double {
        switch job.status {
        case .succeeded: return 1
        case .queued: return 0
        default:
            guard job.epochs > 0 else { return 0 }
            let done = job.steps > 0 ? Double(max(job.epoch - 1, 0) * job.steps + job.step) / Double(job.epochs * job.steps)
                                     : Double(job.epoch) / Double(job.epochs)
            return min(max(done, 0), 1)
        }
    }

    static func progressText(_ job: Job) -> String {
        switch job.status {
        case .queued: return "waiting to start"
        case .running:
            var text = "epoch \(max(job.epoch, 1))/\(job.epochs)"
            if job.steps > 0 { text += " · step \(job.step)/\(job.steps)" }
            if let eta = job.eta { text += " · ETA \(duration(eta))" }
            return text
        case .succeeded:
            var text = "\(job.epoch) epoch\(job.epoch == 1 ? "" : "s")"
            if job.epoch < job.epochs { text += " of \(job.epochs) (stopped early)" }
            if let start = job.startedAt, let end = job.finishedAt { text += " in \(duration(end.timeIntervalSince(start)))" }
            return text
        case .failed, .cancelled:
            return "stopped in epoch \(max(job.epoch, 1))/\(job.epochs)"
        }
    }

    /// A progress bar and its text; while the job is live the page script updates both
    /// from the job's `progress` events.
    static func progress(_ job: Job) -> String {
        let percent = String(format: "%.1f", fraction(job) * 100)
        return "<div class=\"progress\" data-progress-for=\"\(escape(job.id))\"><div class=\"bar \(job.status.rawValue)\"><span style=\"width:\(percent)%\"></span></div>"
            + "<span class=\"ptext\">\(escape(progressText(job)))</span></div>"
    }

    // MARK: Metrics

    /// Keys of an epoch entry that are not a History metric.
    static let bookkeepingKeys: Set<String> = ["epoch", "seconds", "samples_per_second", "learning_rate", "grad_norms"]
    static let modSuffixes = ["_mod_wrapped", "_mod_sign_lost", "_mod_near_wrap"]

    /// The History metrics of a run in first-seen order, training keys only
    /// (`loss`, `accuracy`, …; each one's `val_` twin is drawn with it).
    static func metricNames(_ epochs: [JSON]) -> [String] {
        var names: [String] = []
        for epoch in epochs {
            for (key, value) in epoch.objectMembers ?? [] where value.doubleValue != nil && !bookkeepingKeys.contains(key) {
                let base = key.hasPrefix("val_") ? String(key.dropFirst(4)) : key
                if !names.contains(base) { names.append(base) }
            }
        }
        // loss first, as in Keras.
        return names.filter { $0 == "loss" } + names.filter { $0 != "loss" }
    }

    static func points(_ epochs: [JSON], _ key: String) -> [(x: Double, y: Double)] {
        epochs.enumerated().compactMap { i, e in
            e[key]?.doubleValue.map { (x: e["epoch"]?.doubleValue ?? Double(i + 1), y: $0) }
        }
    }

    static func gradientNorms(_ epochs: [JSON]) -> [String] {
        var names: [String] = []
        for epoch in epochs {
            for (name, _) in epoch["grad_norms"]?.objectMembers ?? [] where !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Per-job charts: one per metric (training and validation), the share of mod
    /// wraps per node, the learning rate, gradient norms per weight and throughput.
    static func charts(_ epochs: [JSON]) -> [DashboardChart] {
        var charts: [DashboardChart] = []
        let train = DashboardChart.palette[0], validation = DashboardChart.palette[1]
        var modNodes: [String] = []
        for name in metricNames(epochs) {
            if let suffix = modSuffixes.first(where: { name.hasSuffix($0) }) {
                let node = String(name.dropLast(suffix.count))
                if !modNodes.contains(node) { modNodes.append(node) }
                continue
            }
            var series = [DashboardChart.Series(label: "training \(name)", color: train, points: points(epochs, name))]
            let val = points(epochs, "val_\(name)")
            if !val.isEmpty { series.append(.init(label: "validation val_\(name)", color: validation, dashed: true, points: val)) }
            series.removeAll { $0.points.isEmpty }
            charts.append(DashboardChart(title: name, series: series))
        }
        for node in modNodes {
            let series = modSuffixes.enumerated().map { i, suffix in
                DashboardChart.Series(label: String(suffix.dropFirst(5)).replacingOccurrences(of: "_", with: " "), color: DashboardChart.palette[i + 2], points: points(epochs, node + suffix))
            }
            charts.append(DashboardChart(title: "\(node): share of weights through mod", series: series))
        }
        charts.append(DashboardChart(title: "learning rate", series: [.init(label: "learning_rate", color: DashboardChart.palette[3], points: points(epochs, "learning_rate"))]))
        let weights = gradientNorms(epochs)
        if !weights.isEmpty {
            let series = weights.enumerated().map { i, weight in
                DashboardChart.Series(label: weight, color: DashboardChart.palette[i % DashboardChart.palette.count], dashed: i >= DashboardChart.palette.count,
                                      points: epochs.enumerated().compactMap { j, e in
                                          e["grad_norms"]?[weight]?.doubleValue.map { (x: e["epoch"]?.doubleValue ?? Double(j + 1), y: $0) }
                                      })
            }
            charts.append(DashboardChart(title: "gradient norm per weight", series: series))
        }
        charts.append(DashboardChart(title: "samples per second", series: [.init(label: "samples_per_second", color: DashboardChart.palette[8], points: points(epochs, "samples_per_second"))]))
        return charts
    }

    /// A row's small chart of the loss and validation loss, with its value range and
    /// first and last epoch on the axes.
    static func lossCurve(_ epochs: [JSON]) -> String {
        let train = points(epochs, "loss"), validation = points(epochs, "val_loss")
        guard !train.isEmpty || !validation.isEmpty else { return "" }
        var chart = DashboardChart(title: "loss", series: [
            .init(label: "loss", color: DashboardChart.palette[0], points: train),
            .init(label: "val_loss", color: DashboardChart.palette[1], dashed: true, points: validation),
        ])
        chart.layout = .compact
        return "<div class=\"mini\">\(chart.svg())</div>"
    }

    /// The last epoch's History values, each metric with its validation twin when it
    /// has one (mod-wrap shares are left to their chart).
    static func finalMetrics(_ epochs: [JSON]) -> [(name: String, training: Double?, validation: Double?)] {
        guard let last = epochs.last else { return [] }
        let names = metricNames(epochs).filter { name in !modSuffixes.contains { name.hasSuffix($0) } }
        return names.map { ($0, last[$0]?.doubleValue, last["val_\($0)"]?.doubleValue) }
            .filter { $0.1 != nil || $0.2 != nil }
    }

    /// The final metrics as a grid: `loss 0.12  val_loss 0.15` per line.
    static func metricList(_ epochs: [JSON], big: Bool = false) -> String {
        let final = finalMetrics(epochs)
        guard !final.isEmpty else { return "<span class=\"muted\">–</span>" }
        func cell(_ key: String, _ value: Double?) -> String {
            value.map { "<dt>\(escape(key))</dt><dd>\(number($0))</dd>" } ?? "<dt></dt><dd></dd>"
        }
        return "<dl class=\"metrics\(big ? " big" : "")\">" + final.map { cell($0.name, $0.training) + cell("val_\($0.name)", $0.validation) }.joined() + "</dl>"
    }

    // MARK: Page shell

    /// A complete page: header, the body, the shared style and the page script.
    static func page(title: String, kind: String, body: String, authRequired: Bool) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title)) · Kiln</title>
        <style>\(DashboardAssets.style)</style>
        </head><body data-page="\(kind)" data-auth="\(authRequired ? "token" : "none")">
        <header class="top"><a class="brand" href="/">Kiln</a><nav><a href="/">Jobs</a><a href="/openapi.yaml">API</a></nav><span class="live" id="live-state"></span></header>
        <main>
        \(body)
        </main>
        <script>\(DashboardAssets.script)</script>
        </body></html>

        """
    }

    /// The browser may run only the page's own inline script and style and talk only
    /// to this server: nothing on a page can load anything from elsewhere.
    static let contentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

    static func htmlResponse(_ status: Int, _ html: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: HTTPHeaders([
            ("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"), ("Vary", "Accept"),
            ("Content-Security-Policy", contentSecurityPolicy), ("X-Content-Type-Options", "nosniff"),
        ]), body: .bytes(Array(html.utf8)))
    }

    static func notFoundPage(_ message: String, authRequired: Bool) -> HTTPResponse {
        htmlResponse(404, page(title: "Not found", kind: "missing", body: "<h1>Not found</h1><p class=\"error\">\(escape(message))</p><p><a href=\"/\">All jobs</a></p>", authRequired: authRequired))
    }
}

// MARK: - Routes

extension Service {
    /// The dashboard's routes besides `GET /` and the HTML form of `GET /jobs/{id}`,
    /// which `routes()` declares with their JSON siblings.
    func registerDashboardRoutes() {
        router.add("GET", "/compare") { [self] request in comparePage(request) }
    }

    /// `GET /jobs/{id}`: the job page when the client prefers HTML, its JSON otherwise.
    func jobResource(_ request: HTTPRequest) throws -> HTTPResponse {
        guard Dashboard.prefersHTML(request.headers["Accept"]) else {
            return .json(200, try job(request).json, headers: HTTPHeaders([("Vary", "Accept")]))
        }
        guard let job = try? job(request) else {
            return Dashboard.notFoundPage("No job with id '\((request.pathParameters["id"] ?? "").prefix(64))'.", authRequired: config.authToken != nil)
        }
        return jobPage(job)
    }

    /// The job's model summary: from its model artifact once it has one, else from its
    /// stored spec (nil with the reason when that no longer decodes, e.g. its uploaded
    /// dataset is gone).
    func dashboardSummary(_ job: Job, _ spec: JSON?) -> (summary: JSON?, problem: String?) {
        if let artifact = try? artifacts.latest(job.id), let graph = try? ModelGraph(json: artifact.graph, limits: limits) {
            return (graph.summary(), nil)
        }
        guard let spec else { return (nil, "the spec is missing") }
        do {
            return (try decodeSpec(spec, for: .validation).summary, nil)
        } catch {
            return (nil, "\(error)")
        }
    }
}
