import Foundation

/// A line chart over epochs, drawn by the server as SVG: real axes, tick labels at
/// round values, a grid, a marker per point with its value as a tooltip, and an HTML
/// legend under the plot. A positive series spanning more than two decades is drawn
/// on a log scale (losses falling to 1e-6, gradient norms of very different weights).
struct DashboardChart {
    struct Series {
        var label: String
        var color: String
        var dashed = false
        /// (epoch, value); non-finite values are left out.
        var points: [(x: Double, y: Double)]
    }

    var title: String
    var series: [Series]
    var xLabel = "epoch"
    /// Legend entries when they are not one per series (a comparison names each run
    /// once and says once which style is validation).
    var legend: [Series]?

    /// Sizes in SVG user units (the drawing scales to the width of its box) and how
    /// much goes on the axes.
    struct Layout {
        var width: Double, height: Double
        var margin: (left: Double, right: Double, top: Double, bottom: Double)
        var fontSize: Double
        /// About this many intervals on the y axis.
        var yIntervals: Int
        /// About this many epoch ticks; 0 marks only the first and last epoch.
        var xTicks: Int
        /// Whether the x axis is named and every point marked (else only the last).
        var detailed: Bool

        /// A chart of its own on a page.
        static let full = Layout(width: 400, height: 230, margin: (52, 12, 10, 36), fontSize: 11, yIntervals: 5, xTicks: 6, detailed: true)
        /// A row's chart in the jobs list.
        static let compact = Layout(width: 200, height: 64, margin: (36, 8, 6, 15), fontSize: 10, yIntervals: 2, xTicks: 0, detailed: false)
    }

    var layout = Layout.full

    /// Colours for runs and weights, distinguishable and readable on white.
    static let palette = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"]

    var finitePoints: [(x: Double, y: Double)] { series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite } }

    /// Values at or below zero rule a log scale out, except exact zeros among positive
    /// values (a loss that reaches 0), which sit on the axis's floor.
    var usesLogScale: Bool {
        let ys = finitePoints.map(\.y)
        guard ys.allSatisfy({ $0 >= 0 }), let low = ys.filter({ $0 > 0 }).min(), let high = ys.max() else { return false }
        return high / low > 100
    }

    /// The figure: title, SVG and legend.
    func html() -> String {
        let legend = (self.legend ?? series).map { s in
            "<li><svg viewBox=\"0 0 22 8\" aria-hidden=\"true\"><line x1=\"1\" y1=\"4\" x2=\"21\" y2=\"4\" stroke=\"\(s.color)\" stroke-width=\"2.5\"\(s.dashed ? " stroke-dasharray=\"5 3\"" : "")/></svg>\(Dashboard.escape(s.label))</li>"
        }.joined()
        let scaleNote = usesLogScale ? " <span class=\"muted\">(log scale)</span>" : ""
        return "<figure class=\"chart\"><figcaption>\(Dashboard.escape(title))\(scaleNote)</figcaption>\(svg())<ul class=\"legend\">\(legend)</ul></figure>"
    }

    func svg() -> String {
        let (w, h, m) = (layout.width, layout.height, layout.margin)
        let plotWidth = w - m.left - m.right, plotHeight = h - m.top - m.bottom
        var out = "<svg viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"\(Dashboard.escape(title)) by \(xLabel)\" font-size=\"\(layout.fontSize)\">"
        let points = finitePoints
        guard !points.isEmpty else {
            out += "<text x=\"\(Int(w / 2))\" y=\"\(Int(h / 2))\" text-anchor=\"middle\" fill=\"#656d76\">no values yet</text></svg>"
            return out
        }
        // Axes' domains and ticks.
        let xs = DashboardChart.epochTicks(low: points.map(\.x).min()!, high: points.map(\.x).max()!, count: layout.xTicks)
        let log = usesLogScale
        let ys = log ? DashboardChart.logTicks(low: points.map(\.y).filter { $0 > 0 }.min()!, high: points.map(\.y).max()!)
                     : DashboardChart.linearTicks(low: points.map(\.y).min()!, high: points.map(\.y).max()!, intervals: layout.yIntervals)
        func px(_ x: Double) -> Double { m.left + (x - xs.low) / (xs.high - xs.low) * plotWidth }
        func py(_ y: Double) -> Double {
            let t = log ? (Foundation.log10(max(y, ys.low)) - Foundation.log10(ys.low)) / (Foundation.log10(ys.high) - Foundation.log10(ys.low))
                        : (y - ys.low) / (ys.high - ys.low)
            return m.top + (1 - t) * plotHeight
        }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        // Grid and y tick labels.
        for tick in ys.ticks {
            let y = py(tick)
            out += "<line x1=\"\(f(m.left))\" y1=\"\(f(y))\" x2=\"\(f(w - m.right))\" y2=\"\(f(y))\" stroke=\"#eaeef2\"/>"
            out += "<text x=\"\(f(m.left - 6))\" y=\"\(f(y + 3.5))\" text-anchor=\"end\" fill=\"#57606a\">\(ys.label(tick))</text>"
        }
        // x tick marks and labels.
        for tick in xs.ticks {
            let x = px(tick)
            out += "<line x1=\"\(f(x))\" y1=\"\(f(m.top + plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(m.top + plotHeight + 4))\" stroke=\"#8c959f\"/>"
            out += "<text x=\"\(f(x))\" y=\"\(f(m.top + plotHeight + layout.fontSize + 4))\" text-anchor=\"middle\" fill=\"#57606a\">\(xs.label(tick))</text>"
        }
        // Axes.
        out += "<path d=\"M\(f(m.left)) \(f(m.top))V\(f(m.top + plotHeight))H\(f(w - m.right))\" fill=\"none\" stroke=\"#8c959f\"/>"
        if layout.detailed {
            out += "<text x=\"\(f(m.left + plotWidth / 2))\" y=\"\(f(h - 4))\" text-anchor=\"middle\" fill=\"#57606a\">\(Dashboard.escape(xLabel))</text>"
        }

        // Series: a line through consecutive points, and a marker per point while they are few.
        let markerLimit = 25
        for s in series {
            let valid = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            guard !valid.isEmpty else { continue }
            if valid.count > 1 {
                let line = valid.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                out += "<polyline points=\"\(line)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" stroke-linejoin=\"round\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            }
            let marked = layout.detailed && valid.count <= markerLimit ? valid : [valid.last!]
            for p in marked {
                out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"\(valid.count == 1 ? 4 : layout.detailed ? 2.5 : 2)\" fill=\"\(s.dashed ? "#fff" : s.color)\" stroke=\"\(s.color)\" stroke-width=\"1.5\">"
                    + "<title>\(Dashboard.escape(s.label)), \(xLabel) \(xs.label(p.x)): \(Dashboard.number(p.y))</title></circle>"
            }
        }
        return out + "</svg>"
    }

    // MARK: - Ticks

    struct Axis {
        var low: Double
        var high: Double
        var ticks: [Double]
        var label: (Double) -> String
    }

    /// Whole epochs at a step of 1, 2 or 5 × 10ⁿ, about `count` of them (0: the first
    /// and the last); a single epoch sits in the middle of the axis.
    static func epochTicks(low: Double, high: Double, count: Int = 6) -> Axis {
        let label: (Double) -> String = { String(Int($0.rounded())) }
        guard high > low else { return Axis(low: low - 0.5, high: high + 0.5, ticks: [low], label: label) }
        if count == 0 { return Axis(low: low, high: high, ticks: [low, high], label: label) }
        let step = max(1, niceStep((high - low) / Double(count)))
        let first = (low / step).rounded(.up) * step
        let ticks = stride(from: first, through: high + 1e-9, by: step).map { $0 }
        return Axis(low: low, high: high, ticks: ticks, label: label)
    }

    /// Round ticks covering [low, high], about `intervals` + 1 of them, labelled with
    /// as many decimals as the step needs.
    static func linearTicks(low: Double, high: Double, intervals: Int = 5) -> Axis {
        var low = low, high = high
        if high - low < max(abs(high), abs(low)) * 1e-9 || high == low {
            let pad = abs(high) > 0 ? abs(high) * 0.1 : 1
            low -= pad
            high += pad
        }
        let step = niceStep((high - low) / Double(intervals))
        let first = (low / step).rounded(.down) * step
        let last = (high / step).rounded(.up) * step
        let ticks = stride(from: first, through: last + step * 1e-6, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
        let decimals = max(0, Int((-Foundation.log10(step)).rounded(.up)))
        let magnitude = max(abs(first), abs(last))
        let label: (Double) -> String = { value in
            if magnitude >= 1e5 || (decimals > 6 && value != 0) { return compact(value) }
            return String(format: "%.\(decimals)f", value)
        }
        return Axis(low: first, high: last, ticks: ticks, label: label)
    }

    /// Powers of ten covering [low, high] (low > 0); every other one when there are many.
    static func logTicks(low: Double, high: Double) -> Axis {
        let first = Foundation.log10(low).rounded(.down), last = Foundation.log10(high).rounded(.up)
        let every = last - first > 8 ? 2.0 : 1.0
        let ticks = stride(from: first, through: last, by: every).map { Foundation.pow(10, $0) }
        let label: (Double) -> String = { value in
            let exponent = Int(Foundation.log10(value).rounded())
            if (-3...3).contains(exponent) { return String(format: "%g", value) }
            return "1e\(exponent)"
        }
        return Axis(low: Foundation.pow(10, first), high: Foundation.pow(10, last), ticks: ticks, label: label)
    }

    /// 1, 2 or 5 × 10ⁿ nearest above `rough`.
    static func niceStep(_ rough: Double) -> Double {
        guard rough > 0, rough.isFinite else { return 1 }
        let magnitude = Foundation.pow(10, Foundation.log10(rough).rounded(.down))
        let fraction = rough / magnitude
        return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
    }

    /// Short labels for very large or very small values: 12k, 3.5M, 2e-06, 1.7e+31.
    static func compact(_ value: Double) -> String {
        let a = abs(value)
        if a >= 1e12 { return String(format: "%.2g", value) }
        if a >= 1e9 { return String(format: "%gG", value / 1e9) }
        if a >= 1e6 { return String(format: "%gM", value / 1e6) }
        if a >= 1e4 { return String(format: "%gk", value / 1e3) }
        return String(format: "%.2g", value)
    }
}
