import Foundation
import KilnHTTP
import KilnJSON

extension Service {
    /// `GET /`: every job, newest first, with its status, progress and ETA, final
    /// metrics and links; `?q=` filters by name or id and `?status=` by status (the
    /// page script filters the same way as one types). Ticked rows open `/compare`.
    func jobsPage(_ request: HTTPRequest) -> HTTPResponse {
        let query = RequestBody.trimmedWhitespace(Substring(request.query["q"] ?? "")).lowercased()
        let status = request.query["status"].flatMap(Job.Status.init(rawValue:))
        let all = Array(jobs.all().reversed())
        // Every job is in the table, those the filter leaves out hidden, so the script can
        // change the filter without asking again.
        let matches = { (job: Job) in
            (status == nil || job.status == status) && (query.isEmpty || job.name.lowercased().contains(query) || job.id.lowercased().contains(query))
        }
        let shown = all.filter(matches)
        let counts = Dictionary(grouping: all, by: \.status).mapValues(\.count)
        let options = ["<option value=\"\">any status (\(all.count))</option>"] + [Job.Status.running, .queued, .succeeded, .failed, .cancelled].map { s in
            "<option value=\"\(s.rawValue)\"\(s == status ? " selected" : "")>\(s.rawValue) (\(counts[s] ?? 0))</option>"
        }
        let rows = all.map { jobRow($0, hidden: !matches($0)) }.joined(separator: "\n")
        let empty = all.isEmpty ? "No jobs yet: <code>POST /jobs</code> with a spec (see <code>examples/</code>)." : "No job matches the filter."
        let body = """
            <h1>Jobs</h1>
            <form class="filters" id="filters" action="/" method="get" role="search">
            <input type="search" name="q" id="filter-name" placeholder="filter by name or id" value="\(Dashboard.escape(query))" aria-label="filter by name or id">
            <select name="status" id="filter-status" aria-label="filter by status">\(options.joined())</select>
            <noscript><button type="submit">Filter</button></noscript>
            <span class="muted" id="filter-count">\(shown.count) of \(all.count) shown</span>
            </form>
            <form action="/compare" method="get" id="compare-form">
            <div class="compare-bar"><button type="submit" class="primary" id="compare-button">Compare selected</button>
            <span class="muted">tick two or more runs</span></div>
            <div class="scroll">
            <table class="data jobs cards">
            <thead><tr><th class="select"><span class="sr">select</span></th><th>job</th><th>status</th><th>progress</th><th>loss <span class="muted">(validation dashed)</span></th><th>final metrics</th><th>links</th></tr></thead>
            <tbody id="job-rows" data-live>
            \(rows)<tr class="empty" id="no-match"\(shown.isEmpty ? "" : " hidden")><td colspan="7" class="muted">\(empty)</td></tr>
            </tbody></table></div></form>
            """
        return Dashboard.htmlResponse(200, Dashboard.page(title: "Jobs", kind: "jobs", body: body, authRequired: config.authToken != nil))
    }

    /// One row of the jobs table.
    func jobRow(_ job: Job, hidden: Bool = false) -> String {
        let id = Dashboard.escape(job.id)
        let metrics = jobs.metrics(job.id)
        let epochs = metrics["epochs"]?.arrayValue ?? []
        let metricText = Dashboard.metricList(epochs)
        let warnings = metrics["warnings"]?.arrayValue?.count ?? 0
        var links = ["<a href=\"/jobs/\(id)\">page</a>", "<a href=\"/jobs/\(id)/metrics\">metrics</a>", "<a href=\"/jobs/\(id)/spec\">spec</a>"]
        if job.status == .succeeded { links.append("<a href=\"/models/\(id)\">model</a>") }
        let follow = job.isFinished ? "" : " data-follow=\"\(id)\" data-epochs=\"\(epochs.count)\""
        let error = job.error.map { "<div class=\"row-error\" title=\"\(Dashboard.escape($0))\">\(Dashboard.escape(String($0.prefix(160))))\($0.count > 160 ? "…" : "")</div>" } ?? ""
        return """
            <tr data-name="\(Dashboard.escape(job.name.lowercased()))" data-id="\(id)" data-status="\(job.status.rawValue)"\(follow)\(hidden ? " hidden" : "")>\
            <td class="select"><input type="checkbox" name="jobs" value="\(id)" aria-label="select \(id) to compare"></td>\
            <td class="job"><a class="name" href="/jobs/\(id)">\(Dashboard.escape(job.name))</a><div class="muted mono small">\(id)</div><div class="muted small">\(Dashboard.time(job.createdAt))</div></td>\
            <td class="status">\(Dashboard.badge(job.status))\(warnings > 0 ? "<div class=\"small warn-count\">\(warnings) warning\(warnings == 1 ? "" : "s")</div>" : "")\(error)</td>\
            <td class="progress-cell">\(Dashboard.progress(job))</td>\
            <td class="curve">\(Dashboard.lossCurve(epochs))</td>\
            <td class="final">\(metricText)</td>\
            <td class="links">\(links.joined(separator: " "))</td></tr>
            """
    }
}
