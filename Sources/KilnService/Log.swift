import Foundation
import KilnData
import KilnHTTP
import KilnJSON

/// Structured log lines on stderr: one JSON object per line.
public enum Log {
    static let lock = NSLock()
    /// `yyyy-MM-ddTHH:mm:ss` of the second in `cachedSecond`, so a line formats its time
    /// with a few integer operations (guarded by `lock`).
    nonisolated(unsafe) static var cachedSecond = -1
    nonisolated(unsafe) static var cachedStamp = ""

    /// Severity; lines below `Log.level` (the `log_level` setting) are not written.
    /// The HTTP server's levels, so its messages pass through unchanged.
    public typealias Level = HTTPLogLevel

    nonisolated(unsafe) public static var level = Level.info

    public static func isEnabled(_ candidate: Level) -> Bool { candidate >= level }

    public static func debug(_ event: String, _ fields: [(String, JSON)] = []) { write(.debug, event, fields) }
    public static func info(_ event: String, _ fields: [(String, JSON)] = []) { write(.info, event, fields) }
    public static func warning(_ event: String, _ fields: [(String, JSON)] = []) { write(.warning, event, fields) }
    public static func error(_ event: String, _ fields: [(String, JSON)] = []) { write(.error, event, fields) }

    static func write(_ level: Level, _ event: String, _ fields: [(String, JSON)]) {
        guard isEnabled(level) else { return }
        write(level.name, event, fields)
    }

    static func write(_ level: String, _ event: String, _ fields: [(String, JSON)]) {
        // No credential in a URL reaches the log.
        let fields = fields.map { key, value -> (String, JSON) in
            if case let .string(text) = value, text.contains("://") { return (key, .string(Redact.text(text))) }
            return (key, value)
        }
        lock.lock()
        defer { lock.unlock() }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let line = JSON.object([("time", .string(stamp(now))), ("level", .string(level)), ("event", .string(event))] + fields).serialized() + "\n"
        Array(line.utf8).withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                #if canImport(Glibc)
                let n = Glibc.write(2, raw.baseAddress! + offset, raw.count - offset)
                #else
                let n = Darwin.write(2, raw.baseAddress! + offset, raw.count - offset)
                #endif
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-01-31T09:05:07.042Z` (what
    /// ISO8601DateFormatter gives with internet date-time and fractional seconds).
    static func stamp(_ time: timespec) -> String {
        let second = Int(time.tv_sec)
        if second != cachedSecond {
            var moment = time_t(second)
            var parts = tm()
            gmtime_r(&moment, &parts)
            func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
            cachedStamp = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
            cachedSecond = second
        }
        let ms = Int(time.tv_nsec) / 1_000_000
        return cachedStamp + (ms < 10 ? ".00" : ms < 100 ? ".0" : ".") + String(ms) + "Z"
    }
}
