#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import KilnJSON

/// An HTTP/1.1 server on non-blocking POSIX sockets: one event-loop thread (epoll on
/// Linux, kqueue elsewhere) accepts, reads, parses and writes for every connection;
/// handlers run on a bounded worker pool and hand their response back to the loop. A
/// connection costs its buffers, not a thread.
public final class HTTPServer: @unchecked Sendable {
    public let configuration: HTTPServerConfiguration
    let handler: (HTTPRequest) -> HTTPResponse
    /// Called once per answered request: (request, status, seconds from dispatch until
    /// the handler returned, or until the stream ended). Runs on a worker thread.
    public var onRequestCompleted: ((HTTPRequest, Int, Double) -> Void)?
    /// Receives the server's own messages at or above `configuration.logLevel`
    /// (rejections and timeouts are summarised, at most one line per 10 seconds).
    public var log: ((HTTPLogLevel, String, [(String, JSON)]) -> Void)?

    private let lock = NSLock()
    private var loop: HTTPEventLoop?
    private var boundPort = 0

    public init(configuration: HTTPServerConfiguration, handler: @escaping (HTTPRequest) -> HTTPResponse) {
        self.configuration = configuration
        self.handler = handler
    }

    deinit {
        stop()
    }

    /// The bound port (the chosen one when configured with 0); 0 before `start()`.
    public var port: Int {
        lock.lock(); defer { lock.unlock() }
        return boundPort
    }

    /// Number of connections open now (not counting refused ones being closed).
    public var connectionCount: Int { statistics.openConnections }

    /// Counters for `/metrics`: zero before `start()`.
    public var statistics: HTTPServerStatistics {
        lock.lock()
        let loop = self.loop
        lock.unlock()
        var statistics = loop?.statistics ?? HTTPServerStatistics()
        statistics.spooledBodies = configuration.spool?.openFiles ?? 0
        return statistics
    }

    /// Raises the descriptor limit, binds, listens and starts the event loop.
    /// - Throws: `HTTPServerError` naming the address and the reason (address in use,
    ///   unknown host, ...).
    public func start() throws {
        HTTPServer.ignoreSIGPIPE
        let descriptorLimit = Socket.raiseDescriptorLimit()
        var address = try HTTPServer.resolve(configuration.host, port: configuration.port)
        let fd = socket(AF_INET, HTTPServer.streamSocketType, 0)
        guard fd >= 0 else { throw HTTPServerError(message: "socket(): \(Socket.errorText())") }
        Socket.setNonBlocking(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let reason = Socket.errorText()
            close(fd)
            throw HTTPServerError(message: "cannot bind \(configuration.host):\(configuration.port): \(reason)")
        }
        guard listen(fd, 4096) == 0 else {
            let reason = Socket.errorText()
            close(fd)
            throw HTTPServerError(message: "cannot listen on \(configuration.host):\(configuration.port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let loop: HTTPEventLoop
        do {
            loop = try HTTPEventLoop(server: self, listener: fd, descriptorLimit: descriptorLimit)
        } catch {
            close(fd)
            throw error
        }
        lock.lock()
        self.loop = loop
        boundPort = Int(UInt16(bigEndian: actual.sin_port))
        lock.unlock()
        loop.start()
        emit(.info, "http_listening", [("max_connections", JSON(loop.maxConnections)),
                                       ("descriptor_limit", JSON(descriptorLimit)),
                                       ("worker_threads", JSON(loop.workerCount))])
    }

    /// Stops accepting and closes every connection (a running handler finishes, its
    /// response is dropped; streams get their `onClose`).
    public func stop() {
        lock.lock()
        let loop = self.loop
        self.loop = nil
        lock.unlock()
        loop?.stop()
    }

    /// Passes a message to `log` when its level is enabled.
    func emit(_ level: HTTPLogLevel, _ event: String, _ fields: [(String, JSON)]) {
        guard level >= configuration.logLevel, let log else { return }
        log(level, event, fields)
    }

    // MARK: - Setup

    private static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

    #if canImport(Glibc)
    private static let streamSocketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    #else
    private static let streamSocketType = SOCK_STREAM
    #endif

    static func resolve(_ host: String, port: Int) throws -> sockaddr_in {
        guard (0...65535).contains(port) else {
            throw HTTPServerError(message: "port \(port) is out of range 0...65535")
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        if inet_pton(AF_INET, host, &address.sin_addr) == 1 { return address }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = HTTPServer.streamSocketType & ~HTTPServer.cloexecFlag
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &results)
        guard status == 0, let first = results, let found = first.pointee.ai_addr else {
            throw HTTPServerError(message: "cannot resolve host '\(host)' to an IPv4 address")
        }
        defer { freeaddrinfo(results) }
        found.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address.sin_addr = $0.pointee.sin_addr }
        return address
    }

    #if canImport(Glibc)
    private static let cloexecFlag = Int32(SOCK_CLOEXEC.rawValue)
    #else
    private static let cloexecFlag: Int32 = 0
    #endif
}

/// What the server has counted since it started, and what is open now.
public struct HTTPServerStatistics: Sendable, Equatable {
    public var openConnections = 0
    public var openStreams = 0
    public var acceptedConnections = 0
    /// Refused with a 503 because every connection was busy (none idle to close).
    public var rejectedConnections = 0
    /// Refused with a 503 because the client address was at its limit.
    public var rejectedPerAddress = 0
    /// Idle keep-alive connections closed to make room for new clients.
    public var evictedIdleConnections = 0
    public var headerTimeouts = 0
    public var bodyTimeouts = 0
    /// Clients dropped because they did not take their response in time.
    public var writeTimeouts = 0
    /// Keep-alive connections closed after the idle deadline (normal, not an error).
    public var idleTimeouts = 0
    public var parseErrors = 0
    /// accept() failures, such as running out of descriptors.
    public var acceptErrors = 0
    /// Large uploads refused with a 503 because the spool was at `maxFiles`.
    public var rejectedUploads = 0
    /// Large uploads answered 507 because their file could not be written.
    public var uploadsNotStored = 0
    /// Large uploads being received or held by their request now (`HTTPBodySpool`).
    public var spooledBodies = 0

    public init() {}

    /// Timeouts that cut a client off (idle closes excluded).
    public var timeouts: Int { headerTimeouts + bodyTimeouts + writeTimeouts }
}
