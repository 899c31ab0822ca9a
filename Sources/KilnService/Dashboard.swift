import Foundation
import KilnJSON

/// `GET /`: the jobs, their status and progress, and loss and accuracy curves drawn by
/// the server as inline SVG. No JavaScript; the page refreshes itself every 5 s.
enum Dashboard {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func render(_ store: JobStore) -> String {
        let jobs = store.all().reversed()
        var rows = ""
        for job in jobs {
            let metrics = store.metrics(job.id)
            let epochs = metrics["epochs"]?.arrayValue ?? []
            let last = epochs.last
            let accuracy = last?["val_accuracy"]?.doubleValue ?? last?["accuracy"]?.doubleValue
            let progress = job.epochs > 0 ? "\(job.epoch)/\(job.epochs) epochs" + (job.status == .running && job.steps > 0 ? ", step \(job.step)/\(job.steps)" : "") : ""
            rows += """
                <tr><td><code>\(escape(job.id))</code><br>\(escape(job.name))</td>
                <td class="\(job.status.rawValue)">\(job.status.rawValue)\(job.error.map { "<br><small>\(escape(String($0.prefix(300))))</small>" } ?? "")</td>
                <td>\(progress)</td>
                <td>\(last?["loss"]?.doubleValue.map { String(format: "%.4g", $0) } ?? "–")</td>
                <td>\(accuracy.map { String(format: "%.4f", $0) } ?? "–")</td>
                <td>\(chart(epochs))</td></tr>

                """
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
            <title>Kiln</title>
            <style>
            body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
            table { border-collapse: collapse; width: 100%; }
            th, td { border-bottom: 1px solid #ddd; padding: 6px 10px; text-align: left; vertical-align: top; }
            .succeeded { color: #18794e; } .failed { color: #c62828; } .running { color: #1565c0; } .cancelled, .queued { color: #777; }
            .legend span { margin-right: 1em; } small { color: #777; }
            </style></head><body>
            <h1>Kiln</h1>
            <p>\(jobs.count) job\(jobs.count == 1 ? "" : "s"). <span class="legend"><span style="color:#1565c0">— loss</span><span style="color:#e65100">— val_loss</span><span style="color:#18794e">— accuracy</span></span></p>
            <table><tr><th>job</th><th>status</th><th>progress</th><th>loss</th><th>accuracy</th><th>curves</th></tr>
            \(rows.isEmpty ? "<tr><td colspan=6>No jobs yet: <code>POST /jobs</code> with a spec.</td></tr>" : rows)
            </table></body></html>

            """
    }

    /// Loss (and val_loss) scaled to the chart's height, accuracy on a fixed 0–1 scale.
    static func chart(_ epochs: [JSON]) -> String {
        guard !epochs.isEmpty else { return "" }
        let width = 240.0, height = 80.0
        func series(_ key: String) -> [Double] { epochs.compactMap { $0[key]?.doubleValue } }
        let losses = series("loss") + series("val_loss")
        let top = max(losses.max() ?? 1, 1e-9)
        func path(_ values: [Double], scale: Double, color: String) -> String {
            guard !values.isEmpty else { return "" }
            let step = values.count > 1 ? width / Double(values.count - 1) : 0
            let points = values.enumerated().map { i, v in
                String(format: "%.1f,%.1f", Double(i) * step, height - min(max(v / scale, 0), 1) * height)
            }.joined(separator: " ")
            let dot = values.count == 1 ? "<circle cx=\"0\" cy=\"\(String(format: "%.1f", height - min(max(values[0] / scale, 0), 1) * height))\" r=\"2\" fill=\"\(color)\"/>" : ""
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points)\"/>\(dot)"
        }
        let accuracy = series("val_accuracy").isEmpty ? series("accuracy") : series("val_accuracy")
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="-2 -2 \(Int(width) + 4) \(Int(height) + 4)" role="img" aria-label="training curves">\
            <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="#fafafa" stroke="#eee"/>\
            \(path(series("loss"), scale: top, color: "#1565c0"))\(path(series("val_loss"), scale: top, color: "#e65100"))\(path(accuracy, scale: 1, color: "#18794e"))</svg>
            """
    }
}
