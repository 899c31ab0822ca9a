import Foundation
import XCTest
import KilnJSON
import KilnTestSupport
@testable import KilnHTTP

/// Starts a real `HTTPServer` on a free loopback port with a small set of routes, and
/// offers assertions that talk to it over raw sockets.
class HTTPServerTestCase: XCTestCase {
    var server: HTTPServer!
    var port: Int { server.port }
    let release = DispatchSemaphore(value: 0)
    let completedLock = NSLock()
    var completed: [(String, Int)] = []
    let streamsClosed = Counter()

    /// A count shared with handlers on worker threads.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.lock(); count += 1; lock.unlock() }
        var value: Int { lock.lock(); defer { lock.unlock() }; return count }
    }

    /// Polls `condition` until it holds or `seconds` pass.
    func eventually(within seconds: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// Override in a subclass to tighten limits.
    func configure(_ configuration: inout HTTPServerConfiguration) {}

    override func setUpWithError() throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.maxBodyBytes = 1 << 20
        configuration.readTimeout = 5
        configuration.idleTimeout = 5
        configuration.writeTimeout = 5
        configure(&configuration)
        let router = makeRouter()
        server = HTTPServer(configuration: configuration, handler: router.handle)
        server.onRequestCompleted = { [weak self] request, status, _ in
            guard let self else { return }
            completedLock.lock()
            completed.append((request.path, status))
            completedLock.unlock()
        }
        try server.start()
    }

    override func tearDown() {
        server.stop()
        server = nil
    }

    func makeRouter() -> Router {
        let router = Router()
        router.add("GET", "/healthz") { _ in .text(200, "ok") }
        router.add("POST", "/echo") { request in
            HTTPResponse(status: 200, headers: ["Content-Type": "application/octet-stream"], body: .bytes(request.body))
        }
        router.add("GET", "/jobs/:id") { request in .json(200, ["id": JSON(request.pathParameters["id"]!)]) }
        // Echoes a spooled body as read back from its file, naming the file.
        router.add("POST", "/upload") { request in
            guard let file = request.bodyFile else { return .text(200, "in memory: \(request.body.count)") }
            let bytes = FileManager.default.contents(atPath: file.path).map { [UInt8]($0) } ?? []
            return HTTPResponse(status: 200, headers: ["X-Spool-Path": file.path, "X-Memory-Bytes": String(request.body.count)], body: .bytes(bytes))
        }
        router.add("GET", "/crash") { _ in throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "/secret/path"]) }
        router.add("GET", "/big") { _ in HTTPResponse(status: 200, body: .bytes([UInt8](repeating: 65, count: 1 << 20))) }
        router.add("GET", "/block") { [release] _ in
            _ = release.wait(timeout: .now() + 5)
            return .text(200, "released")
        }
        router.add("GET", "/events") { _ in
            HTTPResponse(status: 200, headers: ["Content-Type": "text/event-stream"], body: .stream(HTTPStreamBody(open: { stream in
                for index in 1...3 { guard stream.send(Array("data: \(index)\n\n".utf8)) else { return } }
                stream.finish()
            })))
        }
        // A stream that never ends by itself: one event, then refreshes that send nothing.
        router.add("GET", "/follow") { [streamsClosed] _ in
            HTTPResponse(status: 200, headers: ["Content-Type": "text/event-stream"], body: .stream(HTTPStreamBody(
                open: { stream in stream.send(Array("data: first\n\n".utf8)) },
                refresh: { _ in },
                onClose: { streamsClosed.add() })))
        }
        // Sends 256 KiB per refresh, for clients that never read.
        router.add("GET", "/flood") { [streamsClosed] _ in
            HTTPResponse(status: 200, headers: ["Content-Type": "text/event-stream"], body: .stream(.refreshing(onClose: { streamsClosed.add() }) { stream in
                stream.send(Array("data: \(String(repeating: "x", count: 256 << 10))\n\n".utf8))
            }))
        }
        return router
    }

    // MARK: - Assertions

    func get(_ path: String, headers: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n"
    }

    /// Sends `raw` on a fresh connection, expects `status` with the JSON error envelope
    /// and `Connection: close`, expects the server to close, and checks the server still
    /// answers `/healthz`.
    @discardableResult
    func assertRejected(_ raw: [UInt8], _ status: Int, file: StaticString = #filePath, line: UInt = #line) -> RawHTTPClient.Response? {
        do {
            let client = try RawHTTPClient(port: port)
            client.send(raw)
            let response = try client.readResponse(timeout: 5)
            XCTAssertEqual(response.status, status, "body: \(response.text)", file: file, line: line)
            XCTAssertEqual(response.header("Connection")?.lowercased(), "close", file: file, line: line)
            XCTAssertEqual(response.header("Content-Type"), "application/json", file: file, line: line)
            let envelope = try JSON.parse(response.body)
            XCTAssertNotNil(envelope["error"]?["code"]?.stringValue, file: file, line: line)
            XCTAssertNotNil(envelope["error"]?["message"]?.stringValue, file: file, line: line)
            XCTAssertTrue(client.isClosedByServer(timeout: 3), "connection left open", file: file, line: line)
            assertHealthy(file: file, line: line)
            return response
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return nil
        }
    }

    @discardableResult
    func assertRejected(_ raw: String, _ status: Int, file: StaticString = #filePath, line: UInt = #line) -> RawHTTPClient.Response? {
        assertRejected(Array(raw.utf8), status, file: file, line: line)
    }

    func assertHealthy(file: StaticString = #filePath, line: UInt = #line) {
        do {
            let response = try RawHTTPClient.exchange(port: port, get("/healthz"))
            XCTAssertEqual(response.status, 200, file: file, line: line)
            XCTAssertEqual(response.text, "ok", file: file, line: line)
        } catch {
            XCTFail("healthz after the case: \(error)", file: file, line: line)
        }
    }
}
