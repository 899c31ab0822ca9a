import Foundation
import XCTest
import KilnTestSupport
@testable import KilnHTTP

/// Bodies of the routes that take large uploads go to a file as they arrive: with that
/// route's limit rather than `maxBodyBytes`, removed once the request is done, and only
/// as many at once as the spool allows.
final class HTTPServerSpoolTests: HTTPServerTestCase {
    let directory = NSTemporaryDirectory() + "kiln-spool-\(UUID().uuidString)"

    override func configure(_ configuration: inout HTTPServerConfiguration) {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        configuration.spool = HTTPBodySpool(directory: directory, maxFiles: 1)
        configuration.spooledBodyLimit = { method, path in method == "POST" && path == "/upload" ? 3 << 20 : nil }
        configuration.bodyTimeout = 1
        configuration.minUploadBytesPerSecond = 1 << 20
    }

    override func tearDown() {
        super.tearDown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var spooled: [String] { (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] }

    func testALargeBodyIsWrittenToAFileAndRemovedAfterwards() throws {
        // Twice max_body_bytes (1 MiB here), within the route's 3 MiB.
        let body = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        let client = try RawHTTPClient(port: port)
        XCTAssertTrue(client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n"))
        XCTAssertTrue(client.send(body))
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("X-Memory-Bytes"), "0", "nothing of the body is held in memory")
        XCTAssertEqual(response.body, body, "the file holds the body exactly")
        let path = try XCTUnwrap(response.header("X-Spool-Path"))
        XCTAssertTrue(path.hasPrefix(directory))
        XCTAssertTrue(eventually { !FileManager.default.fileExists(atPath: path) }, "the file goes with the request")
        XCTAssertEqual(server.configuration.spool?.openFiles, 0)

        // Chunked, fed a few bytes at a time, on the same connection.
        var chunked = Array("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        for start in stride(from: 0, to: 20_000, by: 7_000) {
            let piece = body[start..<min(start + 7_000, 20_000)]
            chunked += Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + [13, 10]
        }
        chunked += Array("0\r\n\r\n".utf8)
        XCTAssertTrue(client.sendSlowly(chunked))
        let second = try client.readResponse()
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(second.body, Array(body[0..<20_000]))
        XCTAssertTrue(eventually { spooled.isEmpty })
    }

    func testTheRouteLimitAppliesAndOtherRoutesKeepTheirs() throws {
        let over = try XCTUnwrap(assertRejected("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \((3 << 20) + 1)\r\n\r\n", 413))
        XCTAssertTrue(over.text.contains("payload_too_large"))
        // A body over max_body_bytes on a route that holds bodies in memory.
        _ = assertRejected("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \((1 << 20) + 1)\r\n\r\n", 413)
        // Chunks past the route's limit, after 2 MiB already went to the file.
        let client = try RawHTTPClient(port: port)
        var head = Array("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        head += Array("200000\r\n".utf8) + [UInt8](repeating: 7, count: 0x200000) + [13, 10]
        head += Array("200000\r\n".utf8)
        XCTAssertTrue(client.send(head))
        XCTAssertEqual(try client.readResponse().status, 413)
        XCTAssertTrue(eventually { spooled.isEmpty }, "a refused body's file is removed")
        assertHealthy()
    }

    func testUploadsPastTheSpoolLimitAreRefusedWith503() throws {
        let first = try RawHTTPClient(port: port)
        XCTAssertTrue(first.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"))
        XCTAssertTrue(eventually { server.configuration.spool?.openFiles == 1 })
        let second = try XCTUnwrap(assertRejected("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", 503))
        XCTAssertEqual(second.header("Retry-After"), "5")
        XCTAssertEqual(server.statistics.rejectedUploads, 1)
        XCTAssertEqual(server.statistics.spooledBodies, 1)
        XCTAssertEqual(server.statistics.parseErrors, 0, "a refused upload is not a malformed request")
        // Small bodies of other routes are not counted.
        let echo = try RawHTTPClient(port: port)
        XCTAssertTrue(echo.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"))
        XCTAssertEqual(try echo.readResponse().body, Array("ok".utf8))
        XCTAssertTrue(first.send("defghij"))
        XCTAssertEqual(try first.readResponse().body, Array("abcdefghij".utf8))
        XCTAssertTrue(eventually { server.configuration.spool?.openFiles == 0 })
        let third = try RawHTTPClient(port: port)
        XCTAssertTrue(third.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"))
        XCTAssertEqual(try third.readResponse().body, Array("xyz".utf8))
    }

    func testAnAbandonedUploadLeavesNoFile() throws {
        let client = try RawHTTPClient(port: port)
        XCTAssertTrue(client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "a", count: 50_000)))
        XCTAssertTrue(eventually { spooled.count == 1 })
        client.closeConnection()
        XCTAssertTrue(eventually { spooled.isEmpty && server.configuration.spool?.openFiles == 0 })
    }

    func testAnUploadEarnsTimeByWhatItSendsAndATrickleIsCutOff() throws {
        // 2 MiB in 512 KiB pieces over about 2 s: twice the 1 s body deadline, but each
        // piece earns half a second at 1 MiB/s.
        let client = try RawHTTPClient(port: port)
        XCTAssertTrue(client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(2 << 20)\r\n\r\n"))
        for _ in 0..<4 {
            usleep(400_000)
            XCTAssertTrue(client.send([UInt8](repeating: 1, count: 512 << 10)))
        }
        let finished = try client.readResponse()
        XCTAssertEqual(finished.status, 200)
        XCTAssertEqual(finished.body.count, 2 << 20)

        // A few bytes now and then earn nothing worth having: 408 after about 1 s.
        let trickle = try RawHTTPClient(port: port)
        XCTAssertTrue(trickle.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"))
        let started = Date()
        var status = 0
        while Date().timeIntervalSince(started) < 4 {
            _ = trickle.send("abc")
            if trickle.receiveMore(timeout: 0.2), let response = try? trickle.readResponse(timeout: 0.5) {
                status = response.status
                break
            }
        }
        XCTAssertEqual(status, 408)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertTrue(eventually { spooled.isEmpty })
    }
}
