import Foundation
import XCTest
import KilnJSON
import KilnTestSupport
@testable import KilnHTTP

/// The connection cap: idle keep-alive connections make room oldest first; when none is
/// idle, new clients receive a 503 (not a reset) and the others are unaffected.
final class HTTPServerCapacityTests: HTTPServerTestCase {
    override func configure(_ configuration: inout HTTPServerConfiguration) {
        configuration.maxConnections = 4
    }

    func testConnectionsPastTheCapGet503WithoutStarvingOthers() throws {
        // Four clients in the middle of a request: none is idle, so none can be closed.
        let held = try (0..<4).map { _ in try RawHTTPClient(port: port) }
        for client in held { client.send("GET /jobs/1 HTTP/1.1\r\n") }
        XCTAssertTrue(eventually { server.connectionCount == 4 })

        let extra = try RawHTTPClient(port: port)
        extra.send(get("/healthz"))
        let refused = try extra.readResponse()
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.header("Connection"), "close")
        XCTAssertEqual(refused.header("Retry-After"), "1")
        XCTAssertTrue(extra.isClosedByServer())
        XCTAssertEqual(server.statistics.rejectedConnections, 1)

        // The held connections are still served.
        for client in held {
            client.send("Host: x\r\n\r\n")
            XCTAssertEqual(try client.readResponse().status, 200)
        }
        // Freeing one slot lets a new connection in.
        held[0].finishSending()
        _ = held[0].readUntilClose(timeout: 2)
        var status = 0
        let deadline = Date().addingTimeInterval(3)
        while status != 200 && Date() < deadline {
            status = (try? RawHTTPClient.exchange(port: port, get("/healthz")).status) ?? 0
            if status != 200 { usleep(20_000) }
        }
        XCTAssertEqual(status, 200)
    }

    /// Past the cap, many refusals at once still each receive the 503 (not a reset).
    func testEveryRefusedClientReceivesTheAnswer() throws {
        let held = try (0..<4).map { _ in try RawHTTPClient(port: port) }
        for client in held { client.send("GET /jobs/1 HTTP/1.1\r\n") }
        XCTAssertTrue(eventually { server.connectionCount == 4 })
        let refused = try (0..<60).map { _ in try RawHTTPClient(port: port) }
        for client in refused { client.send(get("/healthz")) }
        let statuses = refused.map { (try? $0.readResponse(timeout: 3).status) ?? -1 }
        XCTAssertEqual(statuses.filter { $0 == 503 }.count, 60, "\(statuses)")
        withExtendedLifetime(held) {}
    }

    func testIdleConnectionsAreClosedOldestFirstToMakeRoom() throws {
        var idle: [RawHTTPClient] = []
        for index in 0..<4 {
            let client = try RawHTTPClient(port: port)
            client.send(get("/jobs/\(index)"))
            XCTAssertEqual(try client.readResponse().status, 200)
            idle.append(client)
            usleep(20_000)
        }
        // A fifth client is served: the longest-idle connection makes room.
        XCTAssertEqual(try RawHTTPClient.exchange(port: port, get("/healthz")).status, 200)
        XCTAssertTrue(idle[0].isClosedByServer(timeout: 2), "the oldest idle connection stays open")
        XCTAssertEqual(server.statistics.evictedIdleConnections, 1)
        for client in idle[1...] {
            client.send(get("/jobs/7"))
            XCTAssertEqual(try client.readResponse().status, 200)
        }
    }

    /// Refusals reach the log as one summary line, never one line per connection.
    func testRefusalsAreSummarisedInTheLog() throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.maxConnections = 1
        configuration.logSummaryInterval = 0.5
        let lines = LogLines()
        let limited = HTTPServer(configuration: configuration) { _ in .text(200, "ok") }
        limited.log = { level, event, fields in lines.append(level, event, fields) }
        try limited.start()
        defer { limited.stop() }
        let held = try RawHTTPClient(port: limited.port)
        held.send("GET / HTTP/1.1\r\n")
        XCTAssertTrue(eventually { limited.connectionCount == 1 })
        for _ in 0..<5 { XCTAssertEqual(try RawHTTPClient.exchange(port: limited.port, get("/")).status, 503) }
        XCTAssertTrue(eventually { lines.summaries.count >= 1 })
        usleep(1_200_000)
        let summaries = lines.summaries
        XCTAssertEqual(summaries.count, 1, "\(summaries)")
        XCTAssertEqual(summaries.first?.0, .warning)
        XCTAssertEqual(summaries.first?.1.first { $0.0 == "refused" }?.1, JSON(5))
        withExtendedLifetime(held) {}
    }

    final class LogLines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [(HTTPLogLevel, String, [(String, JSON)])] = []
        func append(_ level: HTTPLogLevel, _ event: String, _ fields: [(String, JSON)]) {
            lock.lock(); lines.append((level, event, fields)); lock.unlock()
        }
        var summaries: [(HTTPLogLevel, [(String, JSON)])] {
            lock.lock(); defer { lock.unlock() }
            return lines.filter { $0.1 == "http_connections" }.map { ($0.0, $0.2) }
        }
    }

    func testPerAddressLimit() throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.maxConnectionsPerAddress = 2
        let limited = HTTPServer(configuration: configuration) { _ in .text(200, "ok") }
        try limited.start()
        defer { limited.stop() }
        let held = try (0..<2).map { _ in try RawHTTPClient(port: limited.port) }
        for client in held { client.send("GET / HTTP/1.1\r\n") }
        XCTAssertTrue(eventually { limited.connectionCount == 2 })
        let third = try RawHTTPClient.exchange(port: limited.port, get("/"))
        XCTAssertEqual(third.status, 503)
        XCTAssertEqual(limited.statistics.rejectedPerAddress, 1)
        withExtendedLifetime(held) {}
    }
}
