/// Where and how the server listens, and the limits that keep hostile clients cheap.
public struct HTTPServerConfiguration {
    /// An IPv4 address or a name resolving to one ("localhost").
    public var host: String = "127.0.0.1"
    /// 0 picks a free port; read the chosen one from `HTTPServer.port`.
    public var port: Int = 8080
    public var maxBodyBytes: Int = 64 << 20
    /// Connections past this get a 503 and are closed; the others are unaffected.
    public var maxConnections: Int = 256
    /// Seconds to receive a whole request once its first byte arrived (then 408 and close).
    public var readTimeout: Double = 30
    /// Seconds a keep-alive connection may sit idle between requests.
    public var idleTimeout: Double = 60
    /// Seconds a response write may wait on a client that does not read.
    public var writeTimeout: Double = 30

    public init() {}
}

/// `start()` failed: the message names the address and the system error.
public struct HTTPServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
