// A minimal static HTTP/1.1 file server on 127.0.0.1, for tests: serves files under a
// root directory (GET and HEAD; one request per connection; Content-Length; 404 when
// missing). Used as the dataset mirror.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct LoopbackFileServerError: Error, CustomStringConvertible {
    public var description: String
}

public final class LoopbackFileServer: @unchecked Sendable {
    public let root: String
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    private let state: ServerState

    /// Requests answered so far (any status).
    public var requestCount: Int { state.lock.lock(); defer { state.lock.unlock() }; return state.count }
    /// Request targets in the order received.
    public var requestedPaths: [String] { state.lock.lock(); defer { state.lock.unlock() }; return state.paths }

    public init(root: String) throws {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r

        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw LoopbackFileServerError(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw LoopbackFileServerError(description: "bind/listen on 127.0.0.1: \(why)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))

        // The thread holds only the state, so dropping the server stops it (deinit).
        let state = ServerState(listenFD: fd, root: r)
        self.state = state
        let thread = Thread {
            state.serve()
            state.finished.signal()
        }
        thread.name = "LoopbackFileServer:\(port)"
        thread.start()
    }

    deinit { stop() }

    /// Stops accepting connections and waits for the server thread to finish. Idempotent.
    public func stop() { state.stop() }
}

private final class ServerState: @unchecked Sendable {
    let listenFD: Int32
    let root: String
    let lock = NSLock()
    var running = true
    var stopped = false
    var count = 0
    var paths = [String]()
    let finished = DispatchSemaphore(value: 0)

    init(listenFD: Int32, root: String) {
        self.listenFD = listenFD
        self.root = root
    }

    func stop() {
        lock.lock()
        if stopped { lock.unlock(); return }
        stopped = true
        running = false
        lock.unlock()
        finished.wait()
        close(listenFD)
    }

    private var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

    func serve() {
        while isRunning {
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 50)
            if ready <= 0 { continue }
            let client = accept(listenFD, nil, nil)
            if client < 0 { continue }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        // Read the request head (up to 16 KiB).
        var head = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let terminator: [UInt8] = [13, 10, 13, 10]
        while head.count < 16384 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return }
            head += buffer[0..<n]
            if head.count >= 4, head.indices.dropLast(3).contains(where: { head[$0..<($0 + 4)].elementsEqual(terminator) }) { break }
        }
        let text = String(decoding: head, as: UTF8.self)
        let requestLine = text.split(separator: "\r\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        lock.lock()
        count += 1
        if parts.count > 1 { paths.append(parts[1]) }
        lock.unlock()

        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return respond(fd, 400, "Bad Request") }
        let method = parts[0]
        guard method == "GET" || method == "HEAD" else { return respond(fd, 405, "Method Not Allowed", extra: "Allow: GET, HEAD\r\n") }
        var target = parts[1]
        if let q = target.firstIndex(of: "?") { target = String(target[..<q]) }
        let segments = target.split(separator: "/", omittingEmptySubsequences: false)
        guard target.hasPrefix("/"), !target.contains("%"), !target.contains("\\"), !target.utf8.contains(0),
              !segments.contains(where: { $0 == ".." || $0 == "." }) else {
            return respond(fd, 400, "Bad Request")
        }
        let path = root + target
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return respond(fd, 404, "Not Found") }
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return respond(fd, 404, "Not Found") }
        defer { close(file) }
        let size = Int(st.st_size)
        let header = "HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        guard sendAll(fd, Array(header.utf8)) else { return }
        if method == "HEAD" { return }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(file, &chunk, chunk.count)
            if n <= 0 { break }
            guard sendAll(fd, Array(chunk[0..<n])) else { return }
        }
    }

    private func respond(_ fd: Int32, _ status: Int, _ reason: String, extra: String = "") {
        let body = "\(status) \(reason)\n"
        let text = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.utf8.count)\r\nContent-Type: text/plain\r\n\(extra)Connection: close\r\n\r\n\(body)"
        _ = sendAll(fd, Array(text.utf8))
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        #if canImport(Glibc)
        let flags = Int32(MSG_NOSIGNAL)
        #else
        let flags: Int32 = 0
        #endif
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, flags) }
            if n < 0 { if errno == EINTR { continue }; return false }
            sent += n
        }
        return true
    }
}
