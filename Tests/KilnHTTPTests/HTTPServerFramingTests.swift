import Foundation
import XCTest
import KilnJSON
import KilnTestSupport
@testable import KilnHTTP

/// RELIABILITY.md "HTTP/1.1 framing" and "Headers and request line", over real sockets.
final class HTTPServerFramingTests: HTTPServerTestCase {
    let post = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    // MARK: - Bodies

    func testContentLengthWithTransferEncodingIs400() {
        assertRejected(post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400)
    }

    func testBadContentLengthsAre400() {
        for value in ["abc", "+5", "-1", "0x5", "4 2", "", "99999999999999999999999"] {
            assertRejected(post + "Content-Length: \(value)\r\n\r\nhello", 400)
        }
        assertRejected(post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400)
    }

    func testUnsupportedTransferEncodings() {
        assertRejected(post + "Transfer-Encoding: gzip\r\n\r\n", 400)
        assertRejected(post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)
        assertRejected("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)
    }

    func testBadChunksAre400() {
        let head = post + "Transfer-Encoding: chunked\r\n\r\n"
        for size in ["0x5", "-1", " 5", "fffffffffffffffffffffff"] {
            let response = assertRejected(head + "\(size)\r\nhello\r\n0\r\n\r\n", 400)
            if response?.status == 413 { continue }
        }
        assertRejected(head + "3\r\nhello\r\n0\r\n\r\n", 400)          // chunk longer than its size
        assertRejected(head + "5\r\nhelloGET / HTTP/1.1\r\n\r\n", 400)  // data without its CRLF
    }

    func testMegabytesOfChunkExtensionsAre400() throws {
        let client = try RawHTTPClient(port: port)
        client.send(post + "Transfer-Encoding: chunked\r\n\r\n5;")
        let flood = [UInt8](repeating: UInt8(ascii: "a"), count: 4 << 20)
        let sender = Thread { client.send(flood) }
        sender.start()
        let response = try client.readResponse(timeout: 5)
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.header("Connection"), "close")
        assertHealthy()
    }

    func testValidChunkedWithExtensionsAndTrailers() throws {
        let raw = post + "Transfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n1\r\n!\r\n0;end=1\r\nX-Checksum: 1\r\n\r\n"
        let response = try RawHTTPClient.exchange(port: port, raw)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.text, "hello!")
    }

    func testBodyOverLimitIs413BeforeItIsSent() {
        // The body is never sent: the answer must come from the head alone.
        assertRejected(post + "Content-Length: \(10 << 20)\r\n\r\n", 413)
    }

    func testExpectContinue() throws {
        let client = try RawHTTPClient(port: port)
        client.send(post + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = try client.readResponse(timeout: 3)
        XCTAssertEqual(interim.status, 100)
        client.send("hello")
        let final = try client.readResponse(timeout: 3)
        XCTAssertEqual(final.status, 200)
        XCTAssertEqual(final.text, "hello")
    }

    func testExpectContinueOverLimitIs413WithoutContinue() {
        let response = assertRejected(post + "Content-Length: \(10 << 20)\r\nExpect: 100-continue\r\n\r\n", 413)
        XCTAssertEqual(response?.status, 413, "first response must be the 413, not 100 Continue")
    }

    func testChunkedTotalOverLimitIs413() throws {
        let client = try RawHTTPClient(port: port)
        client.send(post + "Transfer-Encoding: chunked\r\n\r\n")
        let chunk = Array("40000\r\n".utf8) + [UInt8](repeating: 66, count: 0x40000) + [13, 10]
        let sender = Thread { for _ in 0..<8 { if !client.send(chunk) { return } } }
        sender.start()
        let response = try client.readResponse(timeout: 5)
        XCTAssertEqual(response.status, 413)
        XCTAssertEqual(response.header("Connection"), "close")
        assertHealthy()
    }

    // MARK: - Headers

    func testHostRules() {
        assertRejected("GET /healthz HTTP/1.1\r\n\r\n", 400)
        assertRejected("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
    }

    func testMalformedHeadersAre400() {
        for header in ["X-A: 1\r\n folded", "NoColonHere", "X-A : 1", "X-A: a\0b", "X-A: a\rb", "X(A): 1", "X\u{e9}: 1"] {
            assertRejected(get("/healthz", headers: header + "\r\n"), 400)
        }
    }

    func testUTF8HeaderValueAccepted() throws {
        let response = try RawHTTPClient.exchange(port: port, get("/healthz", headers: "X-Name: Zo\u{eb} \u{1F525}\r\n"))
        XCTAssertEqual(response.status, 200)
    }

    func testOversizedHeadersAre431() {
        assertRejected(get("/healthz", headers: "X-Big: \(String(repeating: "a", count: 9000))\r\n"), 431)
        assertRejected(get("/healthz", headers: (0..<101).map { "X-\($0): v\r\n" }.joined()), 431)
        assertRejected(get("/healthz", headers: (0..<5).map { "X-\($0): \(String(repeating: "b", count: 4000))\r\n" }.joined()), 431)
    }

    // MARK: - Request line

    func testUnknownMethodIs501() {
        assertRejected("BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501)
    }

    func testKnownMethodWrongPathIs405WithAllow() throws {
        let response = try RawHTTPClient.exchange(port: port, "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(response.status, 405)
        XCTAssertEqual(response.header("Allow"), "GET, HEAD")
    }

    /// TRACE is a standard method Kiln does not serve on any route: 405, not a 5xx.
    func testTraceIs405() throws {
        let response = try RawHTTPClient.exchange(port: port, "TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(response.status, 405)
        XCTAssertEqual(response.header("Allow"), "GET, HEAD")
    }

    func testLongTargetIs414() {
        assertRejected(get("/" + String(repeating: "a", count: 9000)), 414)
    }

    func testBadBytesInTargetAre400() {
        assertRejected(get("/heal\0thz"), 400)
        assertRejected(Array("GET /caf".utf8) + [0xC3, 0xA9] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8), 400)
    }

    func testVersions() throws {
        assertRejected("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505)
        for version in ["HTTP/1", "HTTP/01.1", "ICE/1.0"] {
            assertRejected("GET /healthz \(version)\r\nHost: x\r\n\r\n", 400)
        }
        let client = try RawHTTPClient(port: port)
        client.send("GET /healthz HTTP/1.0\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertTrue(client.isClosedByServer())
    }

    func testAbsoluteFormTarget() throws {
        let response = try RawHTTPClient.exchange(port: port, "GET http://127.0.0.1:\(port)/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        XCTAssertEqual(response.status, 200)
    }

    // MARK: - Responses

    func testStandardResponseHeaders() throws {
        let response = try RawHTTPClient.exchange(port: port, get("/jobs/7"))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Server"), "kiln")
        XCTAssertEqual(response.header("Content-Length"), String(response.body.count))
        XCTAssertNotNil(response.header("Date")?.hasSuffix(" GMT"))
        XCTAssertNil(response.header("Connection"))
        XCTAssertEqual(try JSON.parse(response.body), ["id": "7"])
    }

    func testHeadHasLengthButNoBody() throws {
        let client = try RawHTTPClient(port: port)
        client.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + get("/jobs/1"))
        let head = try client.readResponse(headRequest: true)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.header("Content-Length"), "2")
        let next = try client.readResponse()
        XCTAssertEqual(try JSON.parse(next.body), ["id": "1"], "no stray body bytes before the next response")
    }

    func testHandlerErrorIsOpaque500AndServerSurvives() throws {
        let response = try RawHTTPClient.exchange(port: port, get("/crash"))
        XCTAssertEqual(response.status, 500)
        XCTAssertFalse(response.text.contains("secret"))
        assertHealthy()
    }

    func testStreamedResponseIsChunked() throws {
        let client = try RawHTTPClient(port: port)
        client.send(get("/events") + get("/healthz"))
        let response = try client.readResponse()
        XCTAssertEqual(response.header("Transfer-Encoding"), "chunked")
        XCTAssertNil(response.header("Content-Length"))
        XCTAssertEqual(response.text, "data: 1\n\ndata: 2\n\ndata: 3\n\n")
        XCTAssertEqual(try client.readResponse().text, "ok", "keep-alive continues after a stream")
    }

    func testStreamedResponseToHTTP10RunsUntilClose() throws {
        let client = try RawHTTPClient(port: port)
        client.send("GET /events HTTP/1.0\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertNil(response.header("Transfer-Encoding"))
        XCTAssertEqual(response.text, "data: 1\n\ndata: 2\n\ndata: 3\n\n")
    }

    func testCompletionCallback() throws {
        _ = try RawHTTPClient.exchange(port: port, get("/jobs/5"))
        // The callback runs after the write, so it may trail the client's read a little.
        let deadline = Date().addingTimeInterval(2)
        var seen = false
        while !seen && Date() < deadline {
            completedLock.lock()
            seen = completed.contains { $0.0 == "/jobs/5" && $0.1 == 200 }
            completedLock.unlock()
            if !seen { usleep(5000) }
        }
        XCTAssertTrue(seen)
    }

    // MARK: - Concurrency

    func testConcurrentClients() {
        let group = DispatchGroup()
        final class Statuses: @unchecked Sendable {
            let lock = NSLock()
            var values: [Int] = []
            func append(_ value: Int) { lock.lock(); values.append(value); lock.unlock() }
        }
        let results = Statuses()
        for index in 0..<3 {
            group.enter()
            Thread {
                defer { group.leave() }
                for _ in 0..<20 {
                    let status = (try? RawHTTPClient.exchange(port: self.port, self.get("/jobs/\(index)")).status) ?? -1
                    results.append(status)
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        XCTAssertEqual(results.values.filter { $0 == 200 }.count, 60, "\(results.values.filter { $0 != 200 })")
    }
}
