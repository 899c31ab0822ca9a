import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct HTTPServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var maxBodyBytes = 64 << 20
    public var maxConnections = 256
    public var readTimeout: Double = 30
    public var idleTimeout: Double = 60
    public init() {}
}

public struct HTTPServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// HTTP/1.1 on POSIX sockets: an accept loop on its own thread, each connection on a
/// Dispatch worker reading with poll() deadlines, requests parsed by
/// `HTTPRequestParser`, responses written in order (pipelining).
public final class HTTPServer: @unchecked Sendable {
    public let configuration: HTTPServerConfiguration
    let handler: (HTTPRequest) -> HTTPResponse
    public var onRequestCompleted: ((HTTPRequest, Int, Double) -> Void)?
    private var listener: Int32 = -1
    private var boundPort = 0
    private let lock = NSLock()
    private var connections = Set<Int32>()
    private var stopped = false
    private let queue = DispatchQueue(label: "kiln.http", attributes: .concurrent)

    public init(configuration: HTTPServerConfiguration, handler: @escaping (HTTPRequest) -> HTTPResponse) {
        self.configuration = configuration
        self.handler = handler
    }

    public var port: Int { boundPort }

    public func start() throws {
        signal(SIGPIPE, SIG_IGN)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>?
        let host = configuration.host == "localhost" ? "127.0.0.1" : configuration.host
        guard getaddrinfo(host, String(configuration.port), &hints, &result) == 0, let info = result else {
            throw HTTPServerError(message: "cannot resolve host '\(configuration.host)'")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw HTTPServerError(message: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw HTTPServerError(message: "cannot bind \(configuration.host):\(configuration.port): \(reason)")
        }
        guard listen(fd, 128) == 0 else {
            close(fd)
            throw HTTPServerError(message: "listen: \(String(cString: strerror(errno)))")
        }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) } }
        boundPort = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        listener = fd
        let thread = Thread { [weak self] in self?.acceptLoop(fd) }
        thread.name = "kiln-accept"
        thread.start()
    }

    public func stop() {
        lock.lock()
        stopped = true
        let open = connections
        let l = listener
        listener = -1
        lock.unlock()
        if l >= 0 { shutdown(l, Int32(SHUT_RDWR)); close(l) }
        for c in open { shutdown(c, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                lock.lock(); let done = stopped; lock.unlock()
                if done || errno == EBADF || errno == EINVAL { return }
                continue
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            lock.lock()
            let full = connections.count >= configuration.maxConnections || stopped
            if !full { connections.insert(client) }
            lock.unlock()
            if full {
                let r = HTTPResponse.error(503, code: "too_many_connections", message: "the server is at its connection limit", headers: HTTPHeaders([("Retry-After", "1")]))
                _ = Connection(fd: client, server: self).send(r, head: false, keepAlive: false)
                close(client)
                continue
            }
            queue.async { [self] in
                Connection(fd: client, server: self).serve()
                lock.lock(); connections.remove(client); lock.unlock()
                close(client)
            }
        }
    }

    func complete(_ request: HTTPRequest, _ status: Int, _ started: DispatchTime) {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        onRequestCompleted?(request, status, seconds)
    }

    /// One client connection: read, parse, answer, until close or a deadline.
    final class Connection: HTTPStreamWriter {
        let fd: Int32
        unowned let server: HTTPServer
        var alive = true

        init(fd: Int32, server: HTTPServer) {
            self.fd = fd
            self.server = server
        }

        /// Waits for bytes until `deadline`; nil on timeout, close or error.
        func read(until deadline: DispatchTime) -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let now = DispatchTime.now()
                guard now < deadline else { return nil }
                let ms = Int32(min(Double(deadline.uptimeNanoseconds - now.uptimeNanoseconds) / 1e6, 1_000_000))
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, max(ms, 1))
                if ready < 0 { if errno == EINTR { continue }; return nil }
                if ready == 0 { continue }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return nil }
                return Array(buffer[0..<n])
            }
        }

        func writeAll(_ bytes: [UInt8]) -> Bool {
            var sent = 0
            while sent < bytes.count {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                guard poll(&p, 1, Int32(server.configuration.readTimeout * 1000)) > 0 else { return false }
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                sent += n
            }
            return true
        }

        func write(_ bytes: [UInt8]) -> Bool {
            guard alive else { return false }
            if bytes.isEmpty { return true }
            alive = writeAll(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [0x0D, 0x0A])
            return alive
        }

        static let dateFormatter: DateFormatter = {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "GMT")
            f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            return f
        }()
        static let dateLock = NSLock()

        /// Writes a response; returns false if the client is gone.
        func send(_ response: HTTPResponse, head: Bool, keepAlive: Bool) -> Bool {
            var lines = "HTTP/1.1 \(response.status) \(HTTPResponse.reasons[response.status] ?? "Status")\r\n"
            Connection.dateLock.lock()
            let date = Connection.dateFormatter.string(from: Date())
            Connection.dateLock.unlock()
            var headers = response.headers
            headers.replace("Date", date)
            headers.replace("Server", "kiln")
            headers.replace("Connection", keepAlive ? "keep-alive" : "close")
            switch response.body {
            case .bytes(let body):
                headers.replace("Content-Length", String(body.count))
                for (n, v) in headers { lines += "\(n): \(v)\r\n" }
                lines += "\r\n"
                return writeAll(Array(lines.utf8) + (head ? [] : body))
            case .stream(let produce):
                headers.replace("Transfer-Encoding", "chunked")
                for (n, v) in headers { lines += "\(n): \(v)\r\n" }
                lines += "\r\n"
                guard writeAll(Array(lines.utf8)) else { return false }
                if head { return writeAll(Array("0\r\n\r\n".utf8)) }
                produce(self)
                return alive && writeAll(Array("0\r\n\r\n".utf8))
            }
        }

        func serve() {
            var limits = HTTPRequestParser.Limits()
            limits.maxBody = server.configuration.maxBodyBytes
            var parser = HTTPRequestParser(limits: limits)
            var pending: [UInt8] = []
            while true {
                // Idle until the first byte of a request, then a deadline for the whole of it.
                var deadline = DispatchTime.now() + server.configuration.idleTimeout
                var started = false
                var events: [HTTPRequestParser.Event] = []
                do {
                    events = try parser.feed(pending)
                    pending = []
                    while !events.contains(.request) {
                        guard let bytes = read(until: deadline) else {
                            if started || parser.hasBufferedBytes {
                                _ = send(.error(408, code: "request_timeout", message: "the request was not received in time"), head: false, keepAlive: false)
                            }
                            return
                        }
                        if !started { started = true; deadline = DispatchTime.now() + server.configuration.readTimeout }
                        let new = try parser.feed(bytes)
                        if new.contains(where: { if case .head(true) = $0 { return true } else { return false } }), !new.contains(.request) {
                            guard writeAll(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return }
                        }
                        events += new
                    }
                } catch {
                    let startedAt = DispatchTime.now()
                    let r = HTTPResponse.error(error.status, code: error.status == 400 ? "bad_request" : "http_\(error.status)", message: error.message)
                    _ = send(r, head: false, keepAlive: false)
                    server.complete(HTTPRequest(method: "-", target: "-"), error.status, startedAt)
                    return
                }
                let startedAt = DispatchTime.now()
                guard let request = parser.request else { return }
                let keepAlive = parser.keepAlive
                let response = server.handler(request)
                let ok = send(response, head: request.method == "HEAD", keepAlive: keepAlive)
                server.complete(request, response.status, startedAt)
                guard ok, keepAlive else { return }
                parser.reset()
            }
        }
    }
}
