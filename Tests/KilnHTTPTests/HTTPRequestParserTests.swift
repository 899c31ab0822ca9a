import XCTest
@testable import KilnHTTP

/// The parser fed raw bytes directly, no sockets.
final class HTTPRequestParserTests: XCTestCase {
    /// A comparable summary of one parser event.
    enum Outcome: Equatable {
        case continueExpected
        case request(method: String, target: String, path: String, minor: Int, headers: [String], body: String)
        case failure(HTTPParseError)
    }

    static func outcomes(_ events: [HTTPParserEvent]) -> [Outcome] {
        events.map { event in
            switch event {
            case .continueExpected: return .continueExpected
            case let .failure(error): return .failure(error)
            case let .request(request):
                return .request(method: request.method, target: request.target, path: request.path,
                                minor: request.versionMinor, headers: request.headers.map { "\($0.name): \($0.value)" },
                                body: String(decoding: request.body, as: UTF8.self))
            }
        }
    }

    /// Parses whole and one byte at a time, asserts both agree, returns the outcomes.
    func parse(_ raw: String, maxBody: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line) -> [Outcome] {
        parse(Array(raw.utf8), maxBody: maxBody, file: file, line: line)
    }

    func parse(_ bytes: [UInt8], maxBody: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line) -> [Outcome] {
        var whole = HTTPRequestParser(maxBodyBytes: maxBody)
        let all = Self.outcomes(whole.feed(bytes))
        var single = HTTPRequestParser(maxBodyBytes: maxBody)
        var split: [HTTPParserEvent] = []
        for byte in bytes { split += single.feed([byte]) }
        XCTAssertEqual(all, Self.outcomes(split), "byte-at-a-time differs from whole", file: file, line: line)
        return all
    }

    func failure(_ raw: String, maxBody: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line) -> HTTPParseError? {
        for outcome in parse(raw, maxBody: maxBody, file: file, line: line) {
            if case let .failure(error) = outcome { return error }
        }
        return nil
    }

    func firstRequest(_ raw: String, file: StaticString = #filePath, line: UInt = #line) -> Outcome? {
        parse(raw, file: file, line: line).first { if case .request = $0 { return true } else { return false } }
    }

    // MARK: - Valid requests

    func testSimpleGet() {
        XCTAssertEqual(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                       [.request(method: "GET", target: "/healthz", path: "/healthz", minor: 1, headers: ["Host: x"], body: "")])
    }

    func testContentLengthBody() {
        XCTAssertEqual(parse("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
                       [.request(method: "POST", target: "/echo", path: "/echo", minor: 1,
                                 headers: ["Host: x", "Content-Length: 5"], body: "hello")])
    }

    func testChunkedBodyWithExtensionsAndTrailers() {
        let raw = "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value;flag\r\nhello\r\n6\r\n world\r\n0;last\r\nX-Trailer: yes\r\nOther: 1\r\n\r\n"
        guard case let .request(_, _, _, _, _, body)? = firstRequest(raw) else { return XCTFail("no request") }
        XCTAssertEqual(body, "hello world")
    }

    func testHexChunkSizesAnyCase() {
        let raw = "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n"
        guard case let .request(_, _, _, _, _, body)? = firstRequest(raw) else { return XCTFail("no request") }
        XCTAssertEqual(body.count, 20)
    }

    func testTransferEncodingCaseInsensitive() {
        let raw = "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
        guard case let .request(_, _, _, _, _, body)? = firstRequest(raw) else { return XCTFail("no request") }
        XCTAssertEqual(body, "a")
    }

    func testPipelinedRequestsInOrder() {
        let raw = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: x\r\n\r\n"
        let paths = parse(raw).compactMap { outcome -> String? in
            if case let .request(_, _, path, _, _, _) = outcome { return path }
            return nil
        }
        XCTAssertEqual(paths, ["/a", "/b", "/c"])
    }

    func testNothingAfterConnectionClose() {
        let raw = "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        XCTAssertEqual(parse(raw).count, 1)
    }

    func testHTTP10ClosesAndNeedsNoHost() {
        var parser = HTTPRequestParser()
        let events = parser.feed(Array("GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n".utf8))
        XCTAssertEqual(events.count, 1)
        guard case let .request(request) = events[0] else { return XCTFail() }
        XCTAssertEqual(request.versionMinor, 0)
        XCTAssertFalse(request.keepAlive)
        XCTAssertTrue(parser.isClosed)
    }

    func testLeadingEmptyLinesIgnored() {
        XCTAssertNotNil(firstRequest("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    }

    func testUTF8HeaderValueAccepted() {
        guard case let .request(_, _, _, _, headers, _)? = firstRequest("GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\u{e9} \u{1F525}\r\n\r\n")
        else { return XCTFail("no request") }
        XCTAssertEqual(headers.last, "X-Name: caf\u{e9} \u{1F525}")
    }

    func testHeaderValueWhitespaceTrimmed() {
        guard case let .request(_, _, _, _, headers, _)? = firstRequest("GET / HTTP/1.1\r\nHost:\t x \t\r\n\r\n")
        else { return XCTFail("no request") }
        XCTAssertEqual(headers, ["Host: x"])
    }

    func testAbsoluteFormTarget() {
        XCTAssertEqual(firstRequest("GET http://127.0.0.1:8080/healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
                       .request(method: "GET", target: "http://127.0.0.1:8080/healthz?x=1", path: "/healthz", minor: 1,
                                headers: ["Host: 127.0.0.1"], body: ""))
    }

    func testPathDecodedOnceAndQuery() {
        let request = HTTPRequest(method: "GET", target: "/models/a%20b%252F?follow=1&name=x+y%26z&flag")
        XCTAssertEqual(request.path, "/models/a b%2F")
        XCTAssertEqual(request.query, ["follow": "1", "name": "x y&z", "flag": ""])
    }

    func testIdenticalDuplicateContentLengthAccepted() {
        guard case let .request(_, _, _, _, _, body)? = firstRequest("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
        else { return XCTFail("no request") }
        XCTAssertEqual(body, "abc")
    }

    func testExpectContinueEvent() {
        var parser = HTTPRequestParser()
        let head = parser.feed(Array("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8))
        XCTAssertEqual(Self.outcomes(head), [.continueExpected])
        XCTAssertEqual(Self.outcomes(parser.feed(Array("ok".utf8))).count, 1)
    }

    func testExpectContinueOverLimitIs413WithoutContinue() {
        XCTAssertEqual(parse("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n", maxBody: 1000),
                       [.failure(.bodyTooLarge)])
    }

    func testBodyExactlyAtTheLimitIsAccepted() {
        let raw = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
        guard case let .request(_, _, _, _, _, body)? = parse(raw, maxBody: 10).first else { return XCTFail() }
        XCTAssertEqual(body, "0123456789")
        let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
        guard case .request? = parse(chunked, maxBody: 10).first else { return XCTFail() }
    }

    func testNoContinueForHTTP10() {
        let raw = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
        XCTAssertEqual(parse(raw).count, 1)
    }

    func testVersionOneX() {
        guard case let .request(_, _, _, minor, _, _)? = firstRequest("GET / HTTP/1.9\r\nHost: x\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(minor, 1, "a later HTTP/1.x minor is served as 1.1")
    }

    // MARK: - Framing rejections (RELIABILITY.md)

    func testContentLengthWithTransferEncoding() {
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                       .contentLengthWithTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
                       .contentLengthWithTransferEncoding)
    }

    func testInvalidContentLengths() {
        for value in ["abc", "+5", "-1", "0x5", "4 2", "", "5,5", "99999999999999999999", "18446744073709551616"] {
            XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \(value)\r\n\r\n"), .invalidContentLength, value)
        }
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
                       .conflictingContentLength)
    }

    func testContentLengthOverLimit() {
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", maxBody: 1000), .bodyTooLarge)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\n"), .bodyTooLarge)
    }

    func testTransferEncodings() {
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), .unsupportedTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
                       .invalidTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(failure("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), .transferEncodingInHTTP10)
    }

    func testBadChunkSizes() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        for size in ["0x5", "-1", " 5", "5 ", "", "g", "fffffffffffffffffff", "1000000000000000"] {
            let error = failure(head + size + "\r\nhello\r\n0\r\n\r\n")
            XCTAssertTrue(error == .invalidChunkSize || error == .bodyTooLarge, "\(size): \(String(describing: error))")
        }
    }

    func testChunkSizeLeadingZerosAreValid() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        let zeros = String(repeating: "0", count: 40)
        guard case let .request(_, _, _, _, _, body)? = firstRequest(head + zeros + "5\r\nhello\r\n" + zeros + "\r\n\r\n") else {
            return XCTFail("leading zeros refused")
        }
        XCTAssertEqual(body, "hello")
        // The value is bounded, not the digit count.
        XCTAssertEqual(failure(head + "0100000000000000000\r\nhello\r\n0\r\n\r\n"), .invalidChunkSize)
        XCTAssertEqual(failure(head + String(repeating: "0", count: 5000) + "1\r\nh\r\n0\r\n\r\n"), .chunkExtensionTooLong)
    }

    func testChunkLongerThanItsSize() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        XCTAssertEqual(failure(head + "3\r\nhello\r\n0\r\n\r\n"), .invalidChunkData)
        XCTAssertEqual(failure(head + "5\r\nhelloXX0\r\n\r\n"), .invalidChunkData)
    }

    func testHugeChunkExtension() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        XCTAssertEqual(failure(head + "5;" + String(repeating: "a", count: 1 << 20) + "\r\nhello\r\n0\r\n\r\n"),
                       .chunkExtensionTooLong)
    }

    func testChunkedTotalOverLimit() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        let chunk = "100\r\n" + String(repeating: "a", count: 256) + "\r\n"
        XCTAssertEqual(failure(head + chunk + chunk + chunk + "0\r\n\r\n", maxBody: 600), .bodyTooLarge)
    }

    func testBadTrailers() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        XCTAssertEqual(failure(head + "X: a\0b\r\n\r\n"), .invalidTrailer)
        XCTAssertEqual(failure(head + "X: a\r\n folded\r\n\r\n"), .obsoleteLineFolding)
    }

    // MARK: - Header rejections

    func testHostValues() {
        for host in ["a b", "u@evil/x", "a/b", "a?b", "a#b", "[::1", "[]", "h:8o", "h:123456", "a%zz", "\u{e9}"] {
            XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n"), .invalidHost, host)
        }
        for host in ["", "x", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:80", "a-b.c_d~e", "a%41b", "h:"] {
            XCTAssertNotNil(firstRequest("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n"), host)
        }
    }

    func testHost() {
        XCTAssertEqual(failure("GET / HTTP/1.1\r\n\r\n"), .missingHost)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), .duplicateHost)
    }

    func testHeaderSyntax() {
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n"), .obsoleteLineFolding)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), .headerWithoutColon)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), .spaceBeforeColon)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"), .invalidHeaderValue)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"), .invalidLineEnding)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n"), .invalidHeaderName)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\n\u{e9}: 1\r\n\r\n"), .invalidHeaderName)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n"), .invalidHeaderName)
        XCTAssertEqual(failure("GET / HTTP/1.1\nHost: x\n\n"), .invalidLineEnding)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\n\r\n"), .invalidLineEnding)
    }

    func testHeaderLimits() {
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8200))\r\n\r\n"), .headerTooLong)
        let many = (0..<101).map { "X-\($0): v\r\n" }.joined()
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n"), .tooManyHeaders)
        let block = (0..<5).map { "X-\($0): \(String(repeating: "a", count: 4000))\r\n" }.joined()
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nHost: x\r\n" + block + "\r\n"), .headerBlockTooLarge)
        let exactly100 = (0..<99).map { "X-\($0): v\r\n" }.joined()
        XCTAssertNotNil(firstRequest("GET / HTTP/1.1\r\nHost: x\r\n" + exactly100 + "\r\n"))
    }

    // MARK: - Request line rejections

    func testMethods() {
        XCTAssertEqual(failure("BREW / HTTP/1.1\r\nHost: x\r\n\r\n"), .unknownMethod)
        XCTAssertEqual(failure("get / HTTP/1.1\r\nHost: x\r\n\r\n"), .unknownMethod)
        XCTAssertEqual(failure(String(repeating: "A", count: 100) + " / HTTP/1.1\r\n\r\n"), .unknownMethod)
        XCTAssertEqual(failure("G(T / HTTP/1.1\r\nHost: x\r\n\r\n"), .invalidRequestLine)
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            XCTAssertNotNil(firstRequest("\(method) / HTTP/1.1\r\nHost: x\r\n\r\n"), method)
        }
    }

    func testTargets() {
        XCTAssertEqual(failure("GET /\(String(repeating: "a", count: 8200)) HTTP/1.1\r\nHost: x\r\n\r\n"), .targetTooLong)
        XCTAssertEqual(failure("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), .invalidTarget)
        XCTAssertEqual(parse(Array("GET /caf".utf8) + [0xC3, 0xA9] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                       [.failure(.invalidTarget)])
        XCTAssertEqual(failure("GET relative HTTP/1.1\r\nHost: x\r\n\r\n"), .invalidTarget)
        XCTAssertEqual(failure("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), .invalidRequestLine)
        XCTAssertEqual(failure("GET /\r\n\r\n"), .invalidRequestLine)
    }

    func testVersions() {
        XCTAssertEqual(failure("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), .unsupportedVersion)
        XCTAssertEqual(failure("GET / HTTP/0.9\r\nHost: x\r\n\r\n"), .unsupportedVersion)
        for version in ["HTTP/1", "HTTP/01.1", "ICE/1.0", "http/1.1", "HTTP/1.1 ", "HTTP/1.1x", "HTTP/a.b"] {
            XCTAssertEqual(failure("GET / \(version)\r\nHost: x\r\n\r\n"), .invalidVersion, version)
        }
    }

    func testErrorStatuses() {
        XCTAssertEqual(HTTPParseError.unknownMethod.status, 501)
        XCTAssertEqual(HTTPParseError.targetTooLong.status, 414)
        XCTAssertEqual(HTTPParseError.tooManyHeaders.status, 431)
        XCTAssertEqual(HTTPParseError.bodyTooLarge.status, 413)
        XCTAssertEqual(HTTPParseError.unsupportedVersion.status, 505)
        XCTAssertEqual(HTTPParseError.missingHost.status, 400)
        for error in HTTPParseError.allCases {
            XCTAssertEqual(error.response.headers["Connection"], "close")
        }
    }

    func testNothingParsedAfterFailure() {
        var parser = HTTPRequestParser()
        let events = parser.feed(Array("GET / HTTP/1.1\r\nHost : x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(Self.outcomes(events), [.failure(.spaceBeforeColon)])
        XCTAssertTrue(parser.feed(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)).isEmpty)
    }
}
