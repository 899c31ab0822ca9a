import Foundation
import KilnJSON

/// Structured log lines on stderr: one JSON object per line.
public enum Log {
    static let lock = NSLock()
    /// One formatter for every line (creating one per line costs more than the write).
    nonisolated(unsafe) static let dates: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    public static func info(_ event: String, _ fields: [(String, JSON)] = []) { write("info", event, fields) }
    public static func error(_ event: String, _ fields: [(String, JSON)] = []) { write("error", event, fields) }

    static func write(_ level: String, _ event: String, _ fields: [(String, JSON)]) {
        lock.lock()
        let stamp = dates.string(from: Date())
        let line = JSON.object([("time", .string(stamp)), ("level", .string(level)), ("event", .string(event))] + fields).serialized() + "\n"
        FileHandle.standardError.write(Data(line.utf8))
        lock.unlock()
    }
}
