import Foundation
import XCTest
import KilnJSON
import KilnTestSupport
@testable import KilnHTTP

/// RELIABILITY.md "Connections": deadlines, the connection cap, pipelining, and
/// nothing processed after a close. Timeouts are short so the suite stays fast.
final class HTTPServerConnectionTests: HTTPServerTestCase {
    override func configure(_ configuration: inout HTTPServerConfiguration) {
        configuration.readTimeout = 1
        configuration.idleTimeout = 1
        configuration.writeTimeout = 1
    }

    func jobIDs(_ client: RawHTTPClient, count: Int) throws -> [String] {
        try (0..<count).map { _ in try JSON.parse(client.readResponse().body)["id"]?.stringValue ?? "?" }
    }

    // MARK: - Slow clients

    func testTricklingHeadersAreCutAtTheReadDeadline() throws {
        let client = try RawHTTPClient(port: port)
        let started = Date()
        let bytes = Array(get("/healthz").utf8)
        let sender = Thread { client.sendSlowly(bytes, pauseMicroseconds: 200_000) }
        sender.start()
        let response = try client.readResponse(timeout: 4)
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertTrue(client.isClosedByServer())
        assertHealthy()
    }

    func testStalledBodyIsCutAtTheReadDeadline() throws {
        let client = try RawHTTPClient(port: port)
        client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        let response = try client.readResponse(timeout: 4)
        XCTAssertEqual(response.status, 408)
        XCTAssertTrue(client.isClosedByServer())
        assertHealthy()
    }

    func testIdleKeepAliveConnectionIsClosedQuietly() throws {
        let client = try RawHTTPClient(port: port)
        client.send(get("/healthz"))
        XCTAssertEqual(try client.readResponse().status, 200)
        let started = Date()
        XCTAssertTrue(client.readUntilClose(timeout: 4).isEmpty, "no 408 for an idle connection")
        XCTAssertTrue(client.sawEnd)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
    }

    func testClientThatNeverReadsIsDropped() throws {
        let client = try RawHTTPClient(port: port)
        // 64 pipelined requests for 1 MiB each, and never a read: the server must give
        // up at its write deadline instead of buffering 64 MiB.
        let sender = Thread { _ = client.send(String(repeating: self.get("/big"), count: 64)) }
        sender.start()
        Thread.sleep(forTimeInterval: 2.5)
        let deadline = Date().addingTimeInterval(5)
        var received = 0
        while !client.sawEnd && Date() < deadline {
            received += client.readUntilClose(timeout: 0.5).count
        }
        XCTAssertTrue(client.sawEnd, "server kept the connection")
        XCTAssertLessThan(received, 64 << 20)
        assertHealthy()
    }

    // MARK: - Pipelining and ordering

    func testThreePipelinedGetsAnsweredInOrder() throws {
        let client = try RawHTTPClient(port: port)
        client.send(get("/jobs/1") + get("/jobs/2") + get("/jobs/3"))
        XCTAssertEqual(try jobIDs(client, count: 3), ["1", "2", "3"])
    }

    func testPipelinedPostThenGet() throws {
        let client = try RawHTTPClient(port: port)
        client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" + get("/jobs/9"))
        XCTAssertEqual(try client.readResponse().text, "body")
        XCTAssertEqual(try JSON.parse(client.readResponse().body), ["id": "9"])
    }

    func testEveryRequestByteAtATimeMatchesWhole() throws {
        let requests = [
            get("/jobs/abc"),
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://x/jobs/2?a=b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /healthz HTTP/1.0\r\n\r\n",
        ]
        for raw in requests {
            let head = raw.hasPrefix("HEAD")
            let whole = try RawHTTPClient(port: port)
            whole.send(raw)
            let expected = try whole.readResponse(headRequest: head)
            let slow = try RawHTTPClient(port: port)
            slow.sendSlowly(Array(raw.utf8))
            let actual = try slow.readResponse(headRequest: head)
            XCTAssertEqual(actual.status, expected.status, raw)
            XCTAssertEqual(actual.body, expected.body, raw)
            XCTAssertEqual(actual.header("Content-Length"), expected.header("Content-Length"), raw)
        }
    }

    func testNothingAfterConnectionCloseIsProcessed() throws {
        let client = try RawHTTPClient(port: port)
        client.send(get("/jobs/1", headers: "Connection: close\r\n") + get("/jobs/2"))
        let response = try client.readResponse()
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertEqual(try JSON.parse(response.body), ["id": "1"])
        XCTAssertTrue(client.readUntilClose(timeout: 3).isEmpty, "second request was answered")
        XCTAssertTrue(client.sawEnd)
    }

    func testNothingAfterA400IsProcessed() throws {
        let client = try RawHTTPClient(port: port)
        client.send(get("/jobs/1", headers: "Bad Header: x\r\n") + get("/jobs/2"))
        XCTAssertEqual(try client.readResponse().status, 400)
        XCTAssertTrue(client.readUntilClose(timeout: 3).isEmpty)
        XCTAssertTrue(client.sawEnd)
        assertHealthy()
    }

    func testKeepAliveServesManyRequestsOnOneConnection() throws {
        let client = try RawHTTPClient(port: port)
        for index in 0..<50 {
            client.send(get("/jobs/\(index)"))
            XCTAssertEqual(try JSON.parse(client.readResponse().body)["id"], JSON(String(index)))
        }
    }

    // MARK: - Lifecycle

    func testConnectionsEndWithTheirClients() throws {
        for _ in 0..<100 {
            let client = try RawHTTPClient(port: port)
            client.send(get("/healthz"))
            XCTAssertEqual(try client.readResponse().status, 200)
        }
        let deadline = Date().addingTimeInterval(3)
        while server.connectionCount > 0 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(server.connectionCount, 0)
    }

    func testBindFailureIsDescriptive() {
        var configuration = HTTPServerConfiguration()
        configuration.port = port
        let second = HTTPServer(configuration: configuration) { _ in .text(200, "") }
        XCTAssertThrowsError(try second.start()) { error in
            XCTAssertTrue("\(error)".contains("\(port)"), "\(error)")
        }
    }

    func testLocalhostAndStop() throws {
        var configuration = HTTPServerConfiguration()
        configuration.host = "localhost"
        configuration.port = 0
        let local = HTTPServer(configuration: configuration) { _ in .text(200, "local") }
        try local.start()
        let client = try RawHTTPClient(port: local.port)
        client.send(get("/"))
        XCTAssertEqual(try client.readResponse().text, "local")
        let stoppedPort = local.port
        local.stop()
        XCTAssertTrue(client.isClosedByServer(timeout: 3))
        XCTAssertThrowsError(try RawHTTPClient(port: stoppedPort))
    }
}
