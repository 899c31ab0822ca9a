import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal static file server on 127.0.0.1 for tests: GET only, one request per
/// connection, files under `root` (no `..`), 404 for anything missing. It stands in for
/// a dataset mirror so downloads go through libcurl for real.
public final class LoopbackFileServer: @unchecked Sendable {
    public let root: String
    public private(set) var port = 0
    private var listener: Int32 = -1
    private let lock = NSLock()
    private var count = 0

    public init(root: String) throws {
        self.root = root
        signal(SIGPIPE, SIG_IGN)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        let thread = Thread { [weak self] in self?.run(fd) }
        thread.start()
    }

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Requests answered so far.
    public var requestCount: Int { lock.lock(); defer { lock.unlock() }; return count }

    public func stop() {
        if listener >= 0 { shutdown(listener, Int32(SHUT_RDWR)); close(listener); listener = -1 }
    }

    private func run(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 { if errno == EINTR { continue }; return }
            DispatchQueue.global().async { [self] in
                serve(client)
                close(client)
            }
        }
    }

    private func serve(_ client: Int32) {
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.contains(0x0A) || String(decoding: request, as: UTF8.self).range(of: "\r\n\r\n") == nil {
            let n = recv(client, &buffer, buffer.count, 0)
            if n <= 0 { return }
            request += buffer[0..<n]
            if request.count > 65536 { return }
        }
        lock.lock(); count += 1; lock.unlock()
        let line = String(decoding: request, as: UTF8.self).components(separatedBy: "\r\n")[0].split(separator: " ")
        var status = "404 Not Found", body: [UInt8] = Array("not found".utf8)
        if line.count >= 2, line[0] == "GET", !line[1].contains(".."),
           let data = FileManager.default.contents(atPath: root + String(line[1])) {
            status = "200 OK"
            body = [UInt8](data)
        }
        let head = "HTTP/1.1 \(status)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}
