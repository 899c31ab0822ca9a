import Foundation
import KilnData
import KilnHTTP
import KilnJSON

extension Service {
    /// The page of one job: status, progress and ETA, a cancel button, the final
    /// metrics, one chart per metric (training and validation), the learning rate,
    /// gradient norms per weight, warnings in full, the hashes, the model summary and
    /// the spec. Sections marked `data-live` are swapped in again as epochs arrive.
    func jobPage(_ job: Job) -> HTTPResponse {
        let id = Dashboard.escape(job.id)
        let metrics = jobs.metrics(job.id)
        let epochs = metrics["epochs"]?.arrayValue ?? []
        let warnings = metrics["warnings"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let spec = jobs.spec(job.id)
        let authRequired = config.authToken != nil

        // Header, progress and the cancel control.
        var head = "<div class=\"title\"><h1>\(Dashboard.escape(job.name))</h1>\(Dashboard.badge(job.status))</div>"
        head += "<div class=\"muted mono small\">\(id)</div>"
        var times = ["created \(Dashboard.time(job.createdAt))"]
        if let started = job.startedAt { times.append("started \(Dashboard.time(started))") }
        if let finished = job.finishedAt { times.append("finished \(Dashboard.time(finished))") }
        head += "<div class=\"muted small\">\(times.joined(separator: " · "))</div>"
        head += Dashboard.progress(job)
        if let error = job.error { head += "<pre class=\"error\">\(Dashboard.escape(error))</pre>" }
        if !job.isFinished {
            head += "<div class=\"cancel\"><button type=\"button\" class=\"danger\" id=\"cancel\" data-job=\"\(id)\">Cancel job</button>"
            if authRequired {
                head += "<label class=\"small\">token <input type=\"password\" id=\"token\" autocomplete=\"off\" placeholder=\"paste the API token\" size=\"22\"></label>"
            }
            head += "<span id=\"cancel-message\" class=\"small\"></span></div>"
        }
        var links = ["<a href=\"/jobs/\(id)/metrics\">metrics JSON</a>", "<a href=\"/jobs/\(id)/spec\">spec JSON</a>"]
        if job.status == .succeeded {
            links += ["<a href=\"/models/\(id)\">model</a>", "<a href=\"/models/\(id)/weights\">weights (safetensors)</a>"]
        }
        let siblings = jobs.all().filter { $0.name == job.name }.suffix(4).map(\.id)
        if siblings.count > 1 {
            links.append("<a href=\"/compare?jobs=\(siblings.joined(separator: ","))\">compare the last \(siblings.count) runs of \(Dashboard.escape(job.name))</a>")
        }
        head += "<p class=\"links\">\(links.joined(separator: " · "))</p>"
        let follow = job.isFinished ? "" : " data-follow=\"\(id)\" data-epochs=\"\(epochs.count)\""
        var body = "<section id=\"job-head\" data-live\(follow)>\(head)</section>"

        // Final metrics and setup side by side, then the charts and warnings (on a
        // phone the setup moves below them).
        var results = "<div class=\"final-block\"><h2>Final metrics"
        results += epochs.isEmpty ? "</h2><p class=\"muted\">\(job.isFinished ? "None." : "None yet.")</p>"
            : " <span class=\"muted small\">epoch \(epochs.last?["epoch"]?.intValue ?? epochs.count)</span></h2>" + Dashboard.metricList(epochs, big: true)
        results += "</div><div class=\"setup-block\"><h2>Setup</h2><ul class=\"setup\">"
        results += Dashboard.setup(spec).map { "<li><span>\(Dashboard.escape($0.0))</span> \(Dashboard.escape(Dashboard.clipped($0.1)))</li>" }.joined()
        results += "</ul></div><div class=\"wide\"><h2>Curves</h2>"
        results += epochs.isEmpty ? "<p class=\"muted\">\(job.isFinished ? "No epoch finished." : "No epoch has finished yet.")</p>"
            : "<div class=\"charts\">\(Dashboard.charts(epochs).map { $0.html() }.joined())</div>"
        results += "</div><div class=\"wide warnings-block\"><h2>Warnings</h2>"
        results += warnings.isEmpty ? "<p class=\"muted\">None.</p>"
            : "<ul class=\"warnings\">\(warnings.map { "<li>\(Dashboard.escape($0))</li>" }.joined())</ul>"
        results += "</div>"
        body += "<section id=\"job-results\" class=\"overview\" data-live>\(results)</section>"

        // Provenance, summary, spec.
        var details = "<h2>Run</h2><dl class=\"kv\">"
        var facts: [(String, String)] = [("spec hash", job.specHash), ("data hash", job.dataHash ?? "(set when training starts)"), ("seed", String(job.seed)), ("Kiln version", job.version)]
        if let initFrom = spec?["init_from"]?.stringValue { facts.append(("init from", initFrom)) }
        details += facts.map { "<dt>\(Dashboard.escape($0.0))</dt><dd class=\"mono\">\(Dashboard.escape($0.1))</dd>" }.joined() + "</dl>"
        let (summary, problem) = dashboardSummary(job, spec)
        details += "<h2>Model</h2>"
        if let summary { details += Dashboard.summaryTable(summary) } else { details += "<p class=\"muted\">No summary: \(Dashboard.escape(problem ?? ""))</p>" }
        details += "<h2>Spec</h2>"
        if let spec {
            var text = spec.serialized(pretty: true)
            let limit = 60_000
            if text.utf8.count > limit {
                text = String(decoding: Array(text.utf8.prefix(limit)), as: UTF8.self)
                text += "\n… (cut here; the whole spec is at /jobs/\(job.id)/spec)"
            }
            details += "<pre class=\"spec\">\(Dashboard.escape(text))</pre>"
        }
        body += "<section id=\"job-details\">\(details)</section>"
        return Dashboard.htmlResponse(200, Dashboard.page(title: job.name, kind: "job", body: body, authRequired: authRequired))
    }
}

extension Dashboard {
    /// The training and data settings of a spec, as `path value` (inline data arrays
    /// summarised by their field names and row count).
    static func setup(_ spec: JSON?) -> [(String, String)] {
        guard let spec else { return [] }
        var facts: [(String, String)] = []
        for section in ["train", "data"] {
            guard let value = spec[section] else { continue }
            if section == "data", let fields = value["fields"]?.objectMembers {
                let rows = fields.first?.1.arrayValue?.count ?? 0
                facts.append(("data.fields", "inline: \(fields.map(\.0).joined(separator: ", ")) (\(rows) rows)"))
                var rest: [(String, JSON)] = value.objectMembers ?? []
                rest.removeAll { $0.0 == "fields" }
                flatten(.object(rest), section, into: &facts)
            } else {
                flatten(value, section, into: &facts)
            }
        }
        return facts
    }

    /// The model summary of `POST /validate` as a table: one row per node.
    static func summaryTable(_ summary: JSON) -> String {
        func shape(_ json: JSON?) -> String {
            "(" + (json?.arrayValue ?? []).map { $0.isNull ? "batch" : number($0.doubleValue ?? 0) }.joined(separator: ", ") + ")"
        }
        let inputs = (summary["inputs"]?.objectMembers ?? []).map { "\(escape($0.0)) \(shape($0.1))" }.joined(separator: ", ")
        let outputs = (summary["outputs"]?.arrayValue ?? []).compactMap(\.stringValue).map(escape).joined(separator: ", ")
        var out = "<p>inputs \(inputs.isEmpty ? "none" : inputs) · outputs \(outputs) · "
        out += "\(number(summary["trainable_params"]?.doubleValue ?? 0)) trainable and \(number(summary["frozen_params"]?.doubleValue ?? 0)) frozen parameters</p>"
        out += "<div class=\"scroll\"><table class=\"data summary\"><thead><tr><th>node</th><th>type</th><th>inputs</th><th>output shape</th><th class=\"num\">trainable</th><th class=\"num\">frozen</th><th>weights</th></tr></thead><tbody>"
        for node in summary["nodes"]?.arrayValue ?? [] {
            let weights = (node["weights"]?.arrayValue ?? []).map { w in
                "\(escape(w["name"]?.stringValue ?? "")) \(shape(w["shape"]))\(w["trainable"]?.boolValue == false ? " frozen" : "")"
            }.joined(separator: "<br>")
            let nodeInputs = (node["inputs"]?.arrayValue ?? []).compactMap(\.stringValue).map(escape).joined(separator: ", ")
            out += "<tr><td class=\"mono\">\(escape(node["name"]?.stringValue ?? ""))</td><td>\(escape(node["type"]?.stringValue ?? ""))</td>"
            out += "<td class=\"mono small\">\(nodeInputs)</td><td class=\"mono\">\(shape(node["output_shape"]))</td>"
            out += "<td class=\"num\">\(number(node["trainable_params"]?.doubleValue ?? 0))</td><td class=\"num\">\(number(node["frozen_params"]?.doubleValue ?? 0))</td>"
            out += "<td class=\"mono small\">\(weights)</td></tr>"
        }
        return out + "</tbody></table></div>"
    }
}
