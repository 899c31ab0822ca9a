import Foundation
import KilnJSON

/// Structured log lines on stderr: one JSON object per line.
public enum Log {
    static let lock = NSLock()

    public static func info(_ event: String, _ fields: [(String, JSON)] = []) { write("info", event, fields) }
    public static func error(_ event: String, _ fields: [(String, JSON)] = []) { write("error", event, fields) }

    static func write(_ level: String, _ event: String, _ fields: [(String, JSON)]) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        let line = JSON.object([("time", .string(stamp)), ("level", .string(level)), ("event", .string(event))] + fields).serialized() + "\n"
        lock.lock()
        FileHandle.standardError.write(Data(line.utf8))
        lock.unlock()
    }
}
