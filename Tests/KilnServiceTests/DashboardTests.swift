import Foundation
import KilnJSON
@testable import KilnService
import XCTest

/// The dashboard's pages over real sockets: content types, content negotiation on
/// `/jobs/{id}`, `/jobs/{id}/spec`, the comparison page, and that no page refers to
/// anything outside the server.
final class DashboardTests: ServiceTestCase {
    /// What Chromium and Firefox send for a page load.
    static let browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

    /// A small classifier on inline points with a validation split, so the pages have
    /// accuracy and validation curves to draw.
    func classifier(name: String, epochs: Int, learningRate: Double = 0.02) -> JSON {
        let xs = (0..<96).map { i in JSON([Double(i % 12) / 12, Double(i / 12) / 8]) }
        let ys = (0..<96).map { i in JSON(sin(6 * Double(i % 12) / 12) > Double(i / 12) / 8 - 0.5 ? 1 : 0) }
        return [
            "name": .string(name),
            "model": ["inputs": ["x": [2]], "layers": [["type": "dense", "units": 16, "activation": "tanh"], ["type": "dense", "units": 2, "activation": "softmax", "name": "p"]]],
            "data": ["fields": ["x": .array(xs), "y": .array(ys)]],
            "train": ["epochs": JSON(epochs), "batch_size": 16, "seed": 3, "optimizer": ["type": "adam", "learning_rate": .number(learningRate)],
                      "losses": [["node": "p", "type": "categorical_crossentropy", "target": "y"]], "metrics": ["accuracy"],
                      "validation": ["fraction": 0.25]],
        ]
    }

    func post(_ spec: JSON) throws -> String {
        let response = try client.json("POST", "/jobs", spec)
        XCTAssertEqual(response.status, 201, String(decoding: response.body, as: UTF8.self))
        return try XCTUnwrap(response.json?["id"]?.stringValue)
    }

    func page(_ path: String, accept: String? = browserAccept) throws -> (status: Int, type: String, html: String) {
        let response = try client.request("GET", path, headers: accept.map { ["Accept": $0] } ?? [:])
        if response.headers["content-type"]?.hasPrefix("text/html") == true {
            // The browser is told to load nothing from elsewhere.
            XCTAssertEqual(response.headers["content-security-policy"]?.hasPrefix("default-src 'none'"), true, path)
        }
        return (response.status, response.headers["content-type"] ?? "", String(decoding: response.body, as: UTF8.self))
    }

    /// Nothing on the page is loaded from, or links to, another origin.
    func assertSelfContained(_ html: String, file: StaticString = #filePath, line: UInt = #line) {
        for needle in ["http://", "https://", "src=\"//", "href=\"//", "url(", "@import", "<link", "<script src", "<iframe"] {
            XCTAssertFalse(html.contains(needle), "the page contains '\(needle)'", file: file, line: line)
        }
    }

    // MARK: - Pages over HTTP

    func testPagesContentNegotiationSpecAndComparison() throws {
        try start()
        let first = try post(classifier(name: "waves", epochs: 4))
        let second = try post(classifier(name: "waves", epochs: 3, learningRate: 0.05))
        _ = try wait(first)
        _ = try wait(second)

        // The jobs list: HTML, both jobs with links to their pages, the filters and the compare form.
        let list = try page("/")
        XCTAssertEqual(list.status, 200)
        XCTAssertEqual(list.type, "text/html; charset=utf-8")
        for id in [first, second] {
            XCTAssertTrue(list.html.contains("href=\"/jobs/\(id)\""), "no link to \(id)")
            XCTAssertTrue(list.html.contains("name=\"jobs\" value=\"\(id)\""), "no compare box for \(id)")
        }
        XCTAssertTrue(list.html.contains("id=\"filter-name\"") && list.html.contains("id=\"filter-status\""))
        XCTAssertTrue(list.html.contains("<dt>val_accuracy</dt>"), "the final metrics name validation values as such")
        XCTAssertEqual(list.html.components(separatedBy: "<div class=\"mini\"><svg").count - 1, 2, "a loss curve per job")
        XCTAssertFalse(list.html.contains("<meta http-equiv=\"refresh\""), "no reload timer")
        XCTAssertTrue(list.html.contains("EventSource"), "live updates follow the event streams")
        assertSelfContained(list.html)

        // Filters: rows that do not match are hidden, not dropped.
        let filtered = try page("/?status=failed")
        XCTAssertTrue(filtered.html.contains("data-id=\"\(first)\" data-status=\"succeeded\" hidden"), filtered.html)
        XCTAssertFalse(try page("/?q=waves").html.contains("succeeded\" hidden"))

        // The job page for a browser; JSON for everyone else.
        let jobPage = try page("/jobs/\(first)")
        XCTAssertEqual(jobPage.status, 200)
        XCTAssertEqual(jobPage.type, "text/html; charset=utf-8")
        XCTAssertTrue(jobPage.html.contains(first))
        for title in ["<figcaption>loss", "<figcaption>accuracy", "<figcaption>learning rate", "<figcaption>gradient norm per weight"] {
            XCTAssertTrue(jobPage.html.contains(title), "missing chart \(title)")
        }
        XCTAssertTrue(jobPage.html.contains("validation val_loss"), "the loss chart has a validation curve in its legend")
        XCTAssertTrue(jobPage.html.contains("dense_1.kernel"), "gradient norms and the summary name the weights")
        let specHash = try XCTUnwrap(try client.json("GET", "/jobs/\(first)").json?["spec_hash"]?.stringValue)
        XCTAssertTrue(jobPage.html.contains(specHash), "the page shows the spec hash")
        XCTAssertTrue(jobPage.html.contains("&quot;learning_rate&quot;: 0.02"), "the page shows the spec")
        XCTAssertFalse(jobPage.html.contains("id=\"cancel\""), "a finished job has no cancel button")
        assertSelfContained(jobPage.html)

        for accept in [nil, "*/*", "application/json", "application/json, text/html;q=0.5", "text/html;q=0.5, application/json"] {
            let response = try client.request("GET", "/jobs/\(first)", headers: accept.map { ["Accept": $0] } ?? [:])
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.headers["content-type"], "application/json", "Accept: \(accept ?? "(none)")")
            XCTAssertEqual(response.json?["id"]?.stringValue, first)
        }
        XCTAssertEqual(try page("/jobs/\(first)", accept: "text/html").type, "text/html; charset=utf-8")

        // Unknown jobs: 404 in the form asked for.
        let missingPage = try page("/jobs/job-nope")
        XCTAssertEqual(missingPage.status, 404)
        XCTAssertEqual(missingPage.type, "text/html; charset=utf-8")
        let missingJSON = try client.json("GET", "/jobs/job-nope")
        XCTAssertEqual(missingJSON.status, 404)
        XCTAssertEqual(missingJSON.json?["error"]?["code"]?.stringValue, "job_not_found")

        // The stored spec.
        let stored = try client.json("GET", "/jobs/\(second)/spec")
        XCTAssertEqual(stored.status, 200)
        XCTAssertEqual(stored.headers["content-type"], "application/json")
        XCTAssertEqual(stored.json, classifier(name: "waves", epochs: 3, learningRate: 0.05))
        for bad in ["job-nope", "..%2F..%2Fetc", "a%00b"] {
            let response = try client.json("GET", "/jobs/\(bad)/spec")
            XCTAssertEqual(response.status, 404, bad)
            XCTAssertEqual(response.json?["error"]?["code"]?.stringValue, "job_not_found", bad)
        }

        // The comparison: both runs overlaid, the differing spec fields side by side.
        for path in ["/compare?jobs=\(first),\(second)", "/compare?jobs=\(first)&jobs=\(second)"] {
            let compare = try page(path)
            XCTAssertEqual(compare.status, 200, path)
            XCTAssertEqual(compare.type, "text/html; charset=utf-8")
            XCTAssertTrue(compare.html.contains(first) && compare.html.contains(second))
            XCTAssertTrue(compare.html.contains("train.optimizer.learning_rate") && compare.html.contains("train.epochs"), "differing fields")
            XCTAssertFalse(compare.html.contains("<td class=\"mono\">model.layers[0].units</td>"), "equal fields are not listed")
            XCTAssertTrue(compare.html.contains("<figcaption>val_accuracy") == false && compare.html.contains("<figcaption>accuracy"))
            assertSelfContained(compare.html)
        }
        let partly = try page("/compare?jobs=\(first),job-gone")
        XCTAssertEqual(partly.status, 200)
        XCTAssertTrue(partly.html.contains("Unknown: job-gone"))
        XCTAssertEqual(try page("/compare").status, 404)
        XCTAssertEqual(try page("/compare?jobs=..%2Fx").status, 404)
    }

    func testRunningJobPageOffersCancelAndToken() throws {
        try start(token: "s3cret")
        let response = try client.request("POST", "/jobs", body: Array(classifier(name: "long", epochs: 100_000).serialized().utf8),
                                          headers: ["Authorization": "Bearer s3cret", "Content-Type": "application/json"])
        let id = try XCTUnwrap(response.json?["id"]?.stringValue)
        let html = try page("/jobs/\(id)").html
        XCTAssertTrue(html.contains("id=\"cancel\" data-job=\"\(id)\""), "a cancel button")
        XCTAssertTrue(html.contains("id=\"token\""), "a field for the token, as one is configured")
        XCTAssertTrue(html.contains("data-follow=\"\(id)\""), "the page follows the job's events")
        XCTAssertTrue(try page("/").html.contains("data-follow=\"\(id)\""))
        // The button's call, as the page makes it.
        let cancel = try client.request("DELETE", "/jobs/\(id)", headers: ["Authorization": "Bearer s3cret"])
        XCTAssertEqual(cancel.status, 202)
        _ = try wait(id)
        let after = try page("/jobs/\(id)").html
        XCTAssertFalse(after.contains("id=\"cancel\""))
        XCTAssertTrue(after.contains("badge cancelled"))
    }

    func testEmptyServerPages() throws {
        try start()
        let list = try page("/")
        XCTAssertEqual(list.status, 200)
        XCTAssertTrue(list.html.contains("No jobs yet"))
    }

    // MARK: - Pieces

    func testAcceptHeaderPreference() {
        XCTAssertTrue(Dashboard.prefersHTML(DashboardTests.browserAccept))
        XCTAssertTrue(Dashboard.prefersHTML("text/html"))
        XCTAssertTrue(Dashboard.prefersHTML("text/*, application/json;q=0.5"))
        XCTAssertFalse(Dashboard.prefersHTML(nil))
        XCTAssertFalse(Dashboard.prefersHTML(""))
        XCTAssertFalse(Dashboard.prefersHTML("*/*"))
        XCTAssertFalse(Dashboard.prefersHTML("application/json"))
        XCTAssertFalse(Dashboard.prefersHTML("text/html, application/json"), "a tie keeps JSON")
        XCTAssertFalse(Dashboard.prefersHTML("text/html;q=0, */*"))
        XCTAssertFalse(Dashboard.prefersHTML("garbage;;q=x,,/"))
    }

    func testChartAxesTicksAndLegend() {
        let linear = DashboardChart.linearTicks(low: 0.031, high: 0.92)
        XCTAssertEqual(linear.ticks.first, 0)
        XCTAssertEqual(linear.ticks.last!, 1, accuracy: 1e-12)
        XCTAssertEqual(linear.ticks.map(linear.label), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        let flat = DashboardChart.linearTicks(low: 5, high: 5)
        XCTAssertLessThan(flat.low, 5)
        XCTAssertGreaterThan(flat.high, 5)
        let log = DashboardChart.logTicks(low: 3e-6, high: 0.4)
        XCTAssertEqual(log.ticks.map(log.label), ["1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1"])
        XCTAssertEqual(DashboardChart.epochTicks(low: 1, high: 40).ticks, [10, 20, 30, 40])
        XCTAssertEqual(DashboardChart.epochTicks(low: 1, high: 1).ticks, [1])

        let chart = DashboardChart(title: "loss", series: [
            .init(label: "training loss", color: "#111111", points: [(1, 2.0), (2, 1.0), (3, 0.5)]),
            .init(label: "validation val_loss", color: "#222222", dashed: true, points: [(1, 2.5), (2, 1.4), (3, .nan)]),
        ])
        let html = chart.html()
        XCTAssertTrue(html.contains("<li>") && html.contains("training loss") && html.contains("validation val_loss"), "a legend")
        XCTAssertTrue(html.contains(">0.5</text>") && html.contains(">epoch</text>"), "tick and axis labels")
        XCTAssertEqual(html.components(separatedBy: "<circle").count - 1, 5, "a marker per finite point")
        XCTAssertFalse(html.lowercased().contains("nan"))
        XCTAssertFalse(chart.usesLogScale)
        // One epoch is a visible point, not a line of zero length.
        let single = DashboardChart(title: "loss", series: [.init(label: "loss", color: "#111111", points: [(1, 0.7)])]).svg()
        XCTAssertTrue(single.contains("<circle") && single.contains(">1</text>"))
        XCTAssertTrue(DashboardChart(title: "g", series: [.init(label: "w", color: "#111111", points: [(1, 1e-5), (2, 3)])]).usesLogScale)
    }

    func testMetricChartsAndSpecDifferences() {
        let epochs: [JSON] = (1...3).map { e in
            ["epoch": JSON(e), "loss": JSON(1.0 / Double(e)), "accuracy": 0.8, "val_loss": 1.1, "val_accuracy": 0.7,
             "dense_1_mod_wrapped": 0.1, "dense_1_mod_sign_lost": 0.0, "dense_1_mod_near_wrap": 0.02,
             "seconds": 0.5, "samples_per_second": 1000, "learning_rate": 0.001, "grad_norms": ["dense_1.kernel": 0.3, "dense_1.m": 2.0]]
        }
        XCTAssertEqual(Dashboard.metricNames(epochs).prefix(2), ["loss", "accuracy"])
        let titles = Dashboard.charts(epochs).map(\.title)
        XCTAssertEqual(titles, ["loss", "accuracy", "dense_1: share of weights through mod", "learning rate", "gradient norm per weight", "samples per second"])
        XCTAssertEqual(Dashboard.finalMetrics(epochs).map(\.name), ["loss", "accuracy"])
        XCTAssertEqual(Dashboard.finalMetrics(epochs).first?.validation, 1.1)
        XCTAssertTrue(Dashboard.metricList(epochs).contains("<dt>val_accuracy</dt><dd>0.7</dd>"))

        let a: JSON = ["name": "m", "train": ["epochs": 3, "optimizer": ["type": "adam"]], "model": ["layers": [["units": 8], ["units": 2]]]]
        let b: JSON = ["name": "m", "train": ["epochs": 5, "optimizer": ["type": "adam"], "seed": 2], "model": ["layers": [["units": 16], ["units": 2]]]]
        let difference = Dashboard.specDifferences([a, b])
        XCTAssertEqual(difference.rows.map(\.path), ["train.epochs", "train.seed", "model.layers[0].units"], "by section, then layer")
        XCTAssertEqual(difference.rows[1].values, [nil, "2"])
        XCTAssertEqual(difference.same, 3)
        let layered = Dashboard.specDifferences([
            ["model": ["layers": [["type": "flatten"], ["type": "dense", "units": 9]]]],
            ["model": ["layers": [["type": "conv2d", "filters": 3], ["type": "dense", "units": 8], ["type": "dense", "units": 8]]]],
        ])
        XCTAssertEqual(layered.rows.map(\.path), ["model.layers[0].type", "model.layers[0].filters", "model.layers[1].units",
                                                  "model.layers[2].type", "model.layers[2].units"])
        XCTAssertEqual(Dashboard.comparedIDs("/compare?jobs=a,b&x=1&jobs=c%2Cd&jobs=a"), ["a", "b", "c", "d"])
        XCTAssertEqual(Dashboard.escape("<script>\"x\" & 'y'"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;")
    }
}
