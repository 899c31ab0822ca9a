import Foundation
import KilnHTTP
import KilnJSON

extension Service {
    /// At most this many runs are compared on one page.
    static let maxComparedRuns = 8

    /// `GET /compare?jobs=a,b,c` (or `jobs=a&jobs=b`, as a plain form sends it): the
    /// runs side by side: their status and final metrics, each metric with every run
    /// overlaid (training solid, validation dashed, a colour per run), the learning
    /// rate, and the spec fields whose values differ.
    func comparePage(_ request: HTTPRequest) -> HTTPResponse {
        let authRequired = config.authToken != nil
        let requested = Dashboard.comparedIDs(request.target)
        let jobs = requested.prefix(Service.maxComparedRuns).compactMap { StoredName.isValid($0) ? self.jobs.job($0) : nil }
        let missing = requested.prefix(Service.maxComparedRuns).filter { id in !jobs.contains { $0.id == id } }
        guard !jobs.isEmpty else {
            return Dashboard.notFoundPage(requested.isEmpty ? "Name the runs to compare: /compare?jobs=<id>,<id>." : "No job with the ids given.", authRequired: authRequired)
        }
        let colors = jobs.indices.map { DashboardChart.palette[$0 % DashboardChart.palette.count] }
        let epochs = jobs.map { self.jobs.metrics($0.id)["epochs"]?.arrayValue ?? [] }
        let specs = jobs.map { self.jobs.spec($0.id) ?? .null }

        var notes = ""
        if !missing.isEmpty { notes += "<p class=\"error\">Unknown: \(missing.map { Dashboard.escape(String($0.prefix(64))) }.joined(separator: ", "))</p>" }
        if requested.count > Service.maxComparedRuns { notes += "<p class=\"muted\">Only the first \(Service.maxComparedRuns) runs are shown.</p>" }

        // The runs.
        var runs = "<div class=\"scroll\"><table class=\"data runs cards\"><thead><tr><th>run</th><th>status</th><th>progress</th><th>final metrics</th><th>spec hash</th><th>seed</th></tr></thead><tbody>"
        for (i, job) in jobs.enumerated() {
            let id = Dashboard.escape(job.id)
            let metricText = Dashboard.metricList(epochs[i])
            runs += "<tr\(job.isFinished ? "" : " data-follow=\"\(id)\" data-epochs=\"\(epochs[i].count)\"")>"
            runs += "<td><span class=\"swatch\" style=\"background:\(colors[i])\"></span><a href=\"/jobs/\(id)\">\(Dashboard.escape(job.name))</a><div class=\"muted mono small\">\(id)</div></td>"
            runs += "<td>\(Dashboard.badge(job.status))</td><td>\(Dashboard.progress(job))</td><td>\(metricText)</td>"
            runs += "<td class=\"mono small\" data-label=\"spec hash\">\(Dashboard.escape(String(job.specHash.prefix(12))))</td><td data-label=\"seed\">\(job.seed)</td></tr>"
        }
        runs += "</tbody></table></div>"

        // Overlaid curves.
        var names: [String] = []
        for e in epochs { for name in Dashboard.metricNames(e) where !names.contains(name) { names.append(name) } }
        let labels = Dashboard.runLabels(jobs)
        var charts: [DashboardChart] = names.map { name in
            var series: [DashboardChart.Series] = []
            for (i, _) in jobs.enumerated() {
                let train = Dashboard.points(epochs[i], name), validation = Dashboard.points(epochs[i], "val_\(name)")
                if !train.isEmpty { series.append(.init(label: labels[i], color: colors[i], points: train)) }
                if !validation.isEmpty { series.append(.init(label: "\(labels[i]) val", color: colors[i], dashed: true, points: validation)) }
            }
            var legend = jobs.indices.map { DashboardChart.Series(label: labels[$0], color: colors[$0], points: []) }
            if series.contains(where: \.dashed) { legend.append(.init(label: "validation (dashed)", color: "#59636e", dashed: true, points: [])) }
            return DashboardChart(title: name, series: series, legend: legend)
        }
        charts.append(DashboardChart(title: "learning rate", series: jobs.indices.map { i in
            .init(label: labels[i], color: colors[i], points: Dashboard.points(epochs[i], "learning_rate"))
        }))
        let curves = epochs.allSatisfy(\.isEmpty) ? "<p class=\"muted\">No epoch has finished yet.</p>"
            : "<p class=\"muted small\">A colour per run; solid lines are training, dashed lines validation.</p><div class=\"charts\">\(charts.map { $0.html() }.joined())</div>"

        // Spec fields that differ.
        let differences = Dashboard.specDifferences(specs)
        var diff = "<h2 id=\"differences\">Spec fields that differ</h2>"
        if differences.rows.isEmpty {
            diff += "<p class=\"muted\">The specs are identical (\(differences.same) fields).</p>"
        } else {
            diff += "<div class=\"scroll\"><table class=\"data diff\"><thead><tr><th>field</th>"
            diff += jobs.indices.map { "<th><span class=\"swatch\" style=\"background:\(colors[$0])\"></span>\(Dashboard.escape(labels[$0]))</th>" }.joined()
            diff += "</tr></thead><tbody>"
            for row in differences.rows {
                diff += "<tr><td class=\"mono\">\(Dashboard.escape(row.path))</td>"
                diff += row.values.map { "<td class=\"mono small\">\($0.map { Dashboard.escape(Dashboard.clipped($0)) } ?? "<span class=\"muted\">(absent)</span>")</td>" }.joined()
                diff += "</tr>"
            }
            diff += "</tbody></table></div><p class=\"muted small\">\(differences.same) other fields are the same in every spec.</p>"
        }

        let body = """
            <h1>Comparing \(jobs.count) run\(jobs.count == 1 ? "" : "s")</h1>\(notes)
            <section id="compare-runs" data-live>\(runs)</section>
            <h2>Curves</h2>
            <section id="compare-curves" data-live>\(curves)</section>
            \(diff)
            """
        return Dashboard.htmlResponse(200, Dashboard.page(title: "Compare", kind: "compare", body: body, authRequired: authRequired))
    }
}

extension Dashboard {
    /// The job ids of every `jobs` parameter of a request target, comma-separated or
    /// repeated, in order and without duplicates.
    static func comparedIDs(_ target: String) -> [String] {
        guard let mark = target.firstIndex(of: "?") else { return [] }
        func decode(_ text: Substring) -> String {
            let spaced = text.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        var ids: [String] = []
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, decode(parts[0]) == "jobs" else { continue }
            for id in decode(parts[1]).split(separator: ",") {
                let id = RequestBody.trimmedWhitespace(id)
                if !id.isEmpty && !ids.contains(id) { ids.append(id) }
            }
        }
        return ids
    }

    /// Names that tell runs apart: the name, with the id's tail when names repeat.
    static func runLabels(_ jobs: [Job]) -> [String] {
        jobs.map { job in
            jobs.filter { $0.name == job.name }.count > 1 ? "\(job.name) #\(job.id.suffix(5))" : job.name
        }
    }

    /// The spec flattened to `path = value` (strings without quotes; arrays of values kept whole).
    static func flatten(_ json: JSON, _ path: String = "", into out: inout [(String, String)]) {
        switch json {
        case let .object(members):
            for (key, value) in members { flatten(value, path.isEmpty ? key : "\(path).\(key)", into: &out) }
        case let .array(items) where items.contains { if case .object = $0 { return true } else { return false } }:
            for (i, item) in items.enumerated() { flatten(item, "\(path)[\(i)]", into: &out) }
        case let .string(text):
            out.append((path, text))
        default:
            out.append((path, json.serialized(sortedKeys: true)))
        }
    }

    /// The fields whose values are not the same in every spec, in first-seen order,
    /// and how many are.
    static func specDifferences(_ specs: [JSON]) -> (rows: [(path: String, values: [String?])], same: Int) {
        let flat: [[String: String]] = specs.map { spec in
            var pairs: [(String, String)] = []
            flatten(spec, into: &pairs)
            return Dictionary(pairs, uniquingKeysWith: { first, _ in first })
        }
        var order: [String] = []
        var seen = Set<String>()
        for spec in specs {
            var pairs: [(String, String)] = []
            flatten(spec, into: &pairs)
            for (path, _) in pairs where seen.insert(path).inserted { order.append(path) }
        }
        // Grouped by section (in first-seen order), then by layer (numerically), then
        // in the order the specs give the fields.
        let firstSeen = Dictionary(order.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        func section(_ path: String) -> String { String(path.prefix { $0 != "." && $0 != "[" }) }
        func layer(_ path: String) -> String { path.lastIndex(of: "]").map { String(path[...$0]) } ?? "" }
        var sections: [String] = []
        for path in order where !sections.contains(section(path)) { sections.append(section(path)) }
        order.sort { a, b in
            let (sa, sb) = (sections.firstIndex(of: section(a))!, sections.firstIndex(of: section(b))!)
            if sa != sb { return sa < sb }
            let comparison = layer(a).compare(layer(b), options: .numeric)
            if comparison != .orderedSame { return comparison == .orderedAscending }
            return firstSeen[a]! < firstSeen[b]!
        }
        var rows: [(String, [String?])] = []
        var same = 0
        for path in order {
            let values = flat.map { $0[path] }
            if Set(values.map { $0 ?? "\u{0}absent" }).count > 1 { rows.append((path, values)) } else { same += 1 }
        }
        return (rows, same)
    }

    /// A long value cut for display (inline data arrays can be megabytes).
    static func clipped(_ value: String, limit: Int = 120) -> String {
        value.count > limit ? String(value.prefix(limit)) + "… (\(value.count) characters)" : value
    }
}
