#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// An HTTP/1.1 server on POSIX sockets: one thread accepts, each connection is served
/// on its own thread with blocking reads bounded by poll() deadlines.
public final class HTTPServer {
    public let configuration: HTTPServerConfiguration
    let handler: (HTTPRequest) -> HTTPResponse
    /// Called after each response is written: (request, status, seconds spent in the
    /// handler and writing). Runs on the connection's thread.
    public var onRequestCompleted: ((HTTPRequest, Int, Double) -> Void)?

    private let lock = NSLock()
    private var listener: Int32 = -1
    private var boundPort = 0
    private var stopping = false
    private var active: Set<Int32> = []
    private var rejecting = 0
    private let acceptLoopDone = DispatchSemaphore(value: 0)

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

    /// Number of connections being served now.
    public var connectionCount: Int {
        lock.lock(); defer { lock.unlock() }
        return active.count
    }

    /// Binds, listens and starts accepting on a background thread.
    /// - Throws: `HTTPServerError` naming the address and the reason (address in use,
    ///   unknown host, ...).
    public func start() throws {
        HTTPServer.ignoreSIGPIPE
        var address = try HTTPServer.resolve(configuration.host, port: configuration.port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError(message: "socket(): \(Socket.errorText())") }
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
        guard listen(fd, 512) == 0 else {
            let reason = Socket.errorText()
            close(fd)
            throw HTTPServerError(message: "cannot listen on \(configuration.host):\(configuration.port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        lock.lock()
        listener = fd
        boundPort = Int(UInt16(bigEndian: actual.sin_port))
        stopping = false
        lock.unlock()
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "kiln-http-accept"
        thread.start()
    }

    /// Stops accepting, closes every connection (a running handler finishes, its
    /// response is dropped) and waits briefly for connection threads to end.
    public func stop() {
        lock.lock()
        let fd = listener
        guard fd >= 0, !stopping else { lock.unlock(); return }
        stopping = true
        for connection in active { shutdown(connection, Int32(SHUT_RDWR)) }
        lock.unlock()
        _ = acceptLoopDone.wait(timeout: .now() + 2)
        close(fd)
        lock.lock()
        listener = -1
        lock.unlock()
        let deadline = Socket.now() + 2
        while connectionCount > 0 && Socket.now() < deadline { usleep(5000) }
    }

    var isStopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopping
    }

    // MARK: - Accepting

    private func acceptLoop(_ listenFD: Int32) {
        defer { acceptLoopDone.signal() }
        while !isStopping {
            guard Socket.wait(listenFD, for: Int16(POLLIN), until: Socket.now() + 0.1) else { continue }
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE { usleep(10_000) }
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            lock.lock()
            if stopping {
                lock.unlock()
                close(fd)
                break
            }
            if active.count >= configuration.maxConnections {
                let canLinger = rejecting < 32
                if canLinger { rejecting += 1 }
                lock.unlock()
                reject(fd, linger: canLinger)
                continue
            }
            active.insert(fd)
            lock.unlock()
            let thread = Thread { [self] in
                HTTPConnection(fd: fd, server: self).run()
                lock.lock()
                active.remove(fd)
                lock.unlock()
                close(fd)
            }
            thread.name = "kiln-http-connection"
            thread.start()
        }
    }

    /// Past the connection cap: a 503 and close, off the accept thread so a slow
    /// rejected client cannot delay the others.
    private func reject(_ fd: Int32, linger: Bool) {
        let response = HTTPResponse.error(503, code: "too_many_connections",
                                          message: "the server is at its connection limit; retry shortly",
                                          headers: ["Retry-After": "1"])
        guard case let .bytes(body) = response.body else { return }
        let bytes = HTTPResponse.head(status: 503, headers: response.headers, contentLength: body.count,
                                      chunked: false, close: true) + body
        guard linger else {
            _ = Socket.writeAll(fd, bytes, until: Socket.now())
            close(fd)
            return
        }
        let thread = Thread { [self] in
            _ = Socket.writeAll(fd, bytes, until: Socket.now() + 1)
            Socket.drainBeforeClose(fd, seconds: 0.5)
            close(fd)
            lock.lock()
            rejecting -= 1
            lock.unlock()
        }
        thread.start()
    }

    // MARK: - Setup

    private static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

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
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &results)
        guard status == 0, let first = results, let found = first.pointee.ai_addr else {
            throw HTTPServerError(message: "cannot resolve host '\(host)' to an IPv4 address")
        }
        defer { freeaddrinfo(results) }
        found.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address.sin_addr = $0.pointee.sin_addr }
        return address
    }
}
