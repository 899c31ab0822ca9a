#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves one connection: read with deadlines, feed the parser, answer each request in
/// order, stop after an error or a closing request.
final class HTTPConnection {
    let fd: Int32
    unowned let server: HTTPServer
    private var configuration: HTTPServerConfiguration { server.configuration }

    init(fd: Int32, server: HTTPServer) {
        self.fd = fd
        self.server = server
    }

    func run() {
        var parser = HTTPRequestParser(maxBodyBytes: configuration.maxBodyBytes)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var lastActivity = Socket.now()
        var requestStarted: Double?

        while true {
            let deadline = requestStarted.map { $0 + configuration.readTimeout } ?? lastActivity + configuration.idleTimeout
            let wasIdle = parser.isIdle
            guard let count = buffer.withUnsafeMutableBytes({ Socket.read(fd, into: $0, until: deadline) }) else {
                if !wasIdle { sendError(408, code: "request_timeout", message: "the request was not received in time") }
                return
            }
            guard count > 0, !server.isStopping else { return }
            let now = Socket.now()
            lastActivity = now
            if wasIdle { requestStarted = now }

            let events = buffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            var completed = false
            for (index, event) in events.enumerated() {
                switch event {
                case .continueExpected:
                    // If the body already arrived with the head, the interim answer is moot.
                    let bodyArrived = index + 1 < events.count
                    if !bodyArrived && !write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) { return }
                case let .request(request):
                    completed = true
                    guard respond(to: request) else {
                        Socket.drainBeforeClose(fd, seconds: 0.2)
                        return
                    }
                case let .failure(error):
                    sendError(error.response)
                    return
                }
            }
            if parser.isIdle {
                requestStarted = nil
                lastActivity = Socket.now()
            } else if completed {
                requestStarted = Socket.now()
            }
        }
    }

    // MARK: - Responding

    /// Runs the handler and writes its response; false when the connection must close.
    private func respond(to request: HTTPRequest) -> Bool {
        let started = Socket.now()
        let response = server.handler(request)
        var keepAlive = request.keepAlive && !server.isStopping
            && !response.headers.tokens(for: "Connection").contains("close")
        let isHead = request.method == "HEAD"
        var written: Bool
        switch response.body {
        case let .bytes(bytes):
            var length = bytes.count
            if isHead, bytes.isEmpty, let declared = response.headers["Content-Length"].flatMap(Int.init) {
                length = declared
            }
            let sendsBody = !isHead && !HTTPResponse.forbidsBody(response.status)
            var out = HTTPResponse.head(status: response.status, headers: response.headers,
                                        contentLength: length, chunked: false, close: !keepAlive)
            if sendsBody { out += bytes }
            written = write(out)
        case let .stream(produce):
            // HTTP/1.0 has no chunked coding: the body runs until close.
            let chunked = request.versionMinor >= 1
            if !chunked { keepAlive = false }
            written = write(HTTPResponse.head(status: response.status, headers: response.headers,
                                              contentLength: nil, chunked: chunked, close: !keepAlive))
            if written && !isHead && !HTTPResponse.forbidsBody(response.status) {
                let writer = StreamWriter(connection: self, chunked: chunked)
                produce(writer)
                written = !writer.failed && (!chunked || write(Array("0\r\n\r\n".utf8)))
            }
        }
        server.onRequestCompleted?(request, response.status, Socket.now() - started)
        return written && keepAlive
    }

    private func sendError(_ status: Int, code: String, message: String) {
        sendError(.error(status, code: code, message: message))
    }

    /// Writes an error response that closes the connection, then closes gracefully.
    private func sendError(_ response: HTTPResponse) {
        guard case let .bytes(body) = response.body else { return }
        if write(HTTPResponse.head(status: response.status, headers: response.headers, contentLength: body.count,
                                   chunked: false, close: true) + body) {
            Socket.drainBeforeClose(fd, seconds: 0.5)
        }
    }

    func write(_ bytes: [UInt8]) -> Bool {
        Socket.writeAll(fd, bytes, until: Socket.now() + configuration.writeTimeout)
    }
}

/// Frames each write as one chunk (or raw bytes for HTTP/1.0).
final class StreamWriter: HTTPStreamWriter {
    private let connection: HTTPConnection
    private let chunked: Bool
    private(set) var failed = false

    init(connection: HTTPConnection, chunked: Bool) {
        self.connection = connection
        self.chunked = chunked
    }

    func write(_ bytes: [UInt8]) -> Bool {
        if failed { return false }
        if bytes.isEmpty { return true }   // an empty chunk would end the body
        let frame = chunked ? Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [13, 10] : bytes
        if !connection.write(frame) { failed = true }
        return !failed
    }
}
