import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A deliberately dumb HTTP client over a raw TCP socket, for sending exactly the bytes
/// a test wants (malformed, split, pipelined) and reading exactly what came back.
/// Every read has a timeout, so a misbehaving server fails a test instead of hanging it.
public final class RawHTTPClient {
    /// One response as received.
    public struct Response {
        public var status: Int
        public var reason: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public enum ClientError: Error, CustomStringConvertible {
        case connect(String)
        case timeout
        case closed
        case malformed(String)
        public var description: String {
            switch self {
            case let .connect(message): return "connect failed: \(message)"
            case .timeout: return "timed out waiting for the server"
            case .closed: return "connection closed before a full response"
            case let .malformed(message): return "malformed response: \(message)"
            }
        }
    }

    public let fd: Int32
    /// Bytes received but not yet consumed by `readResponse`.
    public private(set) var pending: [UInt8] = []
    public private(set) var sawEnd = false

    public init(port: Int, host: String = "127.0.0.1") throws {
        signal(SIGPIPE, SIG_IGN)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.connect(String(cString: strerror(errno))) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ClientError.connect(message)
        }
    }

    private var closedHere = false

    deinit { if !closedHere { close(fd) } }

    /// Closes the socket now, without reading what the server sent (an abandoned client).
    public func closeConnection() {
        guard !closedHere else { return }
        closedHere = true
        close(fd)
    }

    /// Sends all bytes; false if the server has closed or reset the connection.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 {
                if sent < 0 && errno == EINTR { continue }
                return false
            }
            offset += sent
        }
        return true
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Sends the bytes one at a time with an optional pause between them.
    @discardableResult
    public func sendSlowly(_ bytes: [UInt8], pauseMicroseconds: UInt32 = 0) -> Bool {
        for byte in bytes {
            guard send([byte]) else { return false }
            if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
        }
        return true
    }

    /// Half-closes the sending side.
    public func finishSending() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads more bytes into `pending`; false on timeout or end of stream.
    @discardableResult
    public func receiveMore(timeout: Double) -> Bool {
        if sawEnd { return false }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeout * 1000)) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 {
            sawEnd = true
            return false
        }
        pending += buffer[0..<count]
        return true
    }

    /// Reads until the server closes (or reset), returning everything received.
    public func readUntilClose(timeout: Double = 5) -> [UInt8] {
        let deadline = Self.now() + timeout
        while !sawEnd && Self.now() < deadline {
            receiveMore(timeout: max(0.01, deadline - Self.now()))
        }
        defer { pending = [] }
        return pending
    }

    /// True if the server closed the connection within `timeout` (reading and
    /// discarding anything still sent).
    public func isClosedByServer(timeout: Double = 3) -> Bool {
        _ = readUntilClose(timeout: timeout)
        return sawEnd
    }

    /// Parses one full response (interim 1xx responses are returned as themselves),
    /// reading more as needed. HEAD responses have no body: pass `headRequest: true`.
    public func readResponse(timeout: Double = 5, headRequest: Bool = false) throws -> Response {
        let deadline = Self.now() + timeout
        func need(_ condition: () -> Bool) throws {
            while !condition() {
                if sawEnd { throw ClientError.closed }
                let remaining = deadline - Self.now()
                if remaining <= 0 { throw ClientError.timeout }
                receiveMore(timeout: remaining)
            }
        }
        var headEnd = 0
        try need {
            if let end = Self.find([13, 10, 13, 10], in: pending) { headEnd = end; return true }
            return false
        }
        let headText = String(decoding: pending[0..<headEnd], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw ClientError.malformed(statusLine)
        }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw ClientError.malformed(line) }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = Response(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: [])
        pending.removeFirst(headEnd + 4)
        if status < 200 || status == 204 || status == 304 || headRequest { return response }

        if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                var lineEnd = 0
                try need {
                    if let end = Self.find([13, 10], in: pending) { lineEnd = end; return true }
                    return false
                }
                let sizeText = String(decoding: pending[0..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw ClientError.malformed("chunk size \(sizeText)")
                }
                pending.removeFirst(lineEnd + 2)
                if size == 0 {
                    try need { Self.find([13, 10], in: pending) != nil }
                    pending.removeFirst(Self.find([13, 10], in: pending)! + 2)
                    return response
                }
                try need { pending.count >= size + 2 }
                response.body += pending[0..<size]
                pending.removeFirst(size + 2)
            }
        } else if let lengthText = response.header("Content-Length") {
            guard let length = Int(lengthText) else { throw ClientError.malformed("Content-Length \(lengthText)") }
            try need { pending.count >= length }
            response.body = Array(pending[0..<length])
            pending.removeFirst(length)
        } else {
            let deadlineLeft = max(0.01, deadline - Self.now())
            response.body = readUntilClose(timeout: deadlineLeft)
        }
        return response
    }

    /// Connects, sends `raw`, and reads one response.
    public static func exchange(port: Int, _ raw: String, timeout: Double = 5) throws -> Response {
        let client = try RawHTTPClient(port: port)
        client.send(raw)
        return try client.readResponse(timeout: timeout)
    }

    public static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }

    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
