/// Where and how the server listens, and the limits that keep hostile clients cheap.
/// The defaults let 10,000 idle keep-alive connections sit while others are served.
public struct HTTPServerConfiguration {
    /// An IPv4 address or a name resolving to one ("localhost").
    public var host: String = "127.0.0.1"
    /// 0 picks a free port; read the chosen one from `HTTPServer.port`.
    public var port: Int = 8080
    public var maxBodyBytes: Int = 64 << 20
    /// Routes whose bodies go to a file in `spool` as they arrive rather than into
    /// memory, and each one's limit (method and decoded path in; nil: held in memory up
    /// to `maxBodyBytes`).
    public var spooledBodyLimit: (@Sendable (_ method: String, _ path: String) -> Int?)?
    public var spool: HTTPBodySpool?
    /// A spooled body's deadline is `bodyTimeout` plus one second per this many bytes
    /// received (Apache mod_reqtimeout's MinRate): a large upload on a slow link
    /// finishes, a client trickling bytes does not hold its spool slot.
    public var minUploadBytesPerSecond = 64 << 10
    /// Open connections at most (clamped below the descriptor limit). When they run
    /// short, the longest-idle keep-alive connection is closed to make room; only when
    /// none is idle does a new client get a 503.
    public var maxConnections: Int = 16384
    /// Connections one client address may hold (0: no limit). Off by default because
    /// clients behind a proxy or on loopback share one address; the idle eviction and
    /// the deadlines already keep one client from starving the others.
    public var maxConnectionsPerAddress: Int = 0
    /// Seconds to receive a request's head once its first byte arrived (then 408).
    public var headerTimeout: Double = 10
    /// Seconds to receive a request's body once its head arrived (then 408).
    public var bodyTimeout: Double = 60
    /// Seconds a keep-alive connection may sit idle between requests (closed quietly).
    public var idleTimeout: Double = 60
    /// Seconds a response may wait without the client taking any of it (then dropped).
    public var writeTimeout: Double = 30
    /// Seconds between comment lines on a quiet stream, so proxies and clients see it alive.
    public var streamHeartbeat: Double = 15
    /// Seconds between refreshes of streams that sample state (one shared clock).
    public var streamRefreshInterval: Double = 0.25
    /// Threads running handlers; 0 picks two per core (at least four).
    public var workerThreads: Int = 0
    /// Seconds between summary lines of refusals and timeouts (at most one per interval).
    public var logSummaryInterval: Double = 10
    /// Messages below this level are not passed to `HTTPServer.log`.
    public var logLevel: HTTPLogLevel = .info

    public init() {}

    /// Both header and body deadlines (the whole request), for callers that set one.
    public var readTimeout: Double {
        get { max(headerTimeout, bodyTimeout) }
        set { headerTimeout = newValue; bodyTimeout = newValue }
    }
}

/// Severity of the server's own log messages; `debug` includes one line per request.
public enum HTTPLogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }

    public static func < (a: HTTPLogLevel, b: HTTPLogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// `start()` failed: the message names the address and the system error.
public struct HTTPServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
