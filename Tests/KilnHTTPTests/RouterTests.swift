import Foundation
import XCTest
import KilnJSON
@testable import KilnHTTP

final class RouterTests: XCTestCase {
    struct Secret: Error { var detail = "database password is hunter2" }

    func makeRouter() -> Router {
        let router = Router()
        router.add("GET", "/healthz") { _ in .text(200, "ok") }
        router.add("GET", "/jobs") { _ in .json(200, ["jobs": []]) }
        router.add("POST", "/jobs") { request in .json(201, ["size": JSON(request.body.count)]) }
        router.add("GET", "/jobs/:id") { request in .json(200, ["id": JSON(request.pathParameters["id"] ?? "?")]) }
        router.add("DELETE", "/jobs/:id") { _ in HTTPResponse(status: 204) }
        router.add("GET", "/jobs/:id/metrics") { request in .text(200, "metrics of \(request.pathParameters["id"]!)") }
        router.add("GET", "/jobs/summary") { _ in .text(200, "summary") }
        router.add("GET", "/teapot") { _ in
            throw HTTPError(418, code: "teapot", message: "short and stout", path: "pot.spout", headers: ["X-Pot": "1"])
        }
        router.add("GET", "/crash") { _ in throw Secret() }
        return router
    }

    func body(_ response: HTTPResponse) -> String {
        guard case let .bytes(bytes) = response.body else { return "<stream>" }
        return String(decoding: bytes, as: UTF8.self)
    }

    func json(_ response: HTTPResponse) -> JSON? {
        guard case let .bytes(bytes) = response.body else { return nil }
        return try? JSON.parse(bytes)
    }

    func testUnknownPathIs404WithEnvelope() {
        let response = makeRouter().handle(HTTPRequest(method: "GET", target: "/nope"))
        XCTAssertEqual(response.status, 404)
        XCTAssertEqual(response.headers["Content-Type"], "application/json")
        XCTAssertEqual(json(response)?["error"]?["code"], "not_found")
        XCTAssertNotNil(json(response)?["error"]?["message"]?.stringValue)
        XCTAssertNil(json(response)?["error"]?["path"])
    }

    func testKnownPathWrongMethodIs405WithAllow() {
        let response = makeRouter().handle(HTTPRequest(method: "PUT", target: "/jobs"))
        XCTAssertEqual(response.status, 405)
        XCTAssertEqual(response.headers["Allow"], "GET, POST, HEAD")
        XCTAssertEqual(json(response)?["error"]?["code"], "method_not_allowed")
        let byId = makeRouter().handle(HTTPRequest(method: "POST", target: "/jobs/7"))
        XCTAssertEqual(byId.status, 405)
        XCTAssertEqual(byId.headers["Allow"], "GET, DELETE, HEAD")
    }

    func testOptionsListsMethods() {
        let response = makeRouter().handle(HTTPRequest(method: "OPTIONS", target: "/jobs"))
        XCTAssertEqual(response.status, 204)
        XCTAssertEqual(response.headers["Allow"], "GET, POST, HEAD, OPTIONS")
    }

    func testHeadServedByGetWithoutBody() {
        let response = makeRouter().handle(HTTPRequest(method: "HEAD", target: "/healthz"))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(body(response), "")
        XCTAssertEqual(response.headers["Content-Length"], "2")
        XCTAssertEqual(response.headers["Content-Type"], "text/plain; charset=utf-8")
    }

    func testParameterWithLiteralSuffix() {
        let router = Router()
        router.add("GET", "/v1/models/:name") { request in .text(200, "status \(request.pathParameters["name"]!)") }
        router.add("POST", "/v1/models/:name:predict") { request in .text(200, "predict \(request.pathParameters["name"]!)") }
        router.add("POST", "/v1/models/:name/versions/:version:predict") { request in
            .text(200, "predict \(request.pathParameters["name"]!) v\(request.pathParameters["version"]!)")
        }
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "POST", target: "/v1/models/m:predict"))), "predict m")
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "POST", target: "/v1/models/a:b:predict"))), "predict a:b")
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "POST", target: "/v1/models/m/versions/2:predict"))), "predict m v2")
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "GET", target: "/v1/models/m"))), "status m")
        // The suffix alone is no value; a GET on the predict path is the status route's.
        XCTAssertEqual(router.handle(HTTPRequest(method: "POST", target: "/v1/models/:predict")).status, 405)
        XCTAssertEqual(router.handle(HTTPRequest(method: "POST", target: "/v1/models/m:classify")).status, 405)
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "GET", target: "/v1/models/m:predict"))), "status m:predict")
    }

    func testErrorRendererByPathPrefix() {
        let router = makeRouter()
        router.add("GET", "/v2/thing") { _ in throw HTTPError(409, code: "busy", message: "busy now") }
        router.renderErrors(under: "/v2") { reply in .json(reply.status, ["error": .string(reply.message)]) }
        for (method, target, status) in [("GET", "/v2/nowhere", 404), ("POST", "/v2/thing", 405), ("GET", "/v2/thing", 409), ("GET", "/v2", 404)] {
            let response = router.handle(HTTPRequest(method: method, target: target))
            XCTAssertEqual(response.status, status, target)
            XCTAssertNotNil(json(response)?["error"]?.stringValue, target)
        }
        XCTAssertEqual(json(router.handle(HTTPRequest(method: "GET", target: "/v2x")))?["error"]?["code"], "not_found", "a prefix is whole segments")
    }

    func testPathParameters() {
        let router = makeRouter()
        XCTAssertEqual(json(router.handle(HTTPRequest(method: "GET", target: "/jobs/abc-1")))?["id"], "abc-1")
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "GET", target: "/jobs/42/metrics?follow=1"))), "metrics of 42")
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "GET", target: "/jobs/summary"))), "summary", "literal wins")
        XCTAssertEqual(json(router.handle(HTTPRequest(method: "GET", target: "/jobs/a%2Fb")))?["id"], "a/b",
                       "an encoded slash stays in its segment, decoded once")
        XCTAssertEqual(json(router.handle(HTTPRequest(method: "GET", target: "/jobs/%2e%2e%2f")))?["id"], "../")
        XCTAssertEqual(router.handle(HTTPRequest(method: "GET", target: "/jobs//metrics")).status, 404)
        XCTAssertEqual(router.handle(HTTPRequest(method: "GET", target: "/jobs/")).status, 200, "one trailing slash is ignored")
        XCTAssertEqual(router.handle(HTTPRequest(method: "GET", target: "http://h:1/jobs/9")).status, 200)
    }

    func testThrownHTTPErrorRendersItself() {
        let response = makeRouter().handle(HTTPRequest(method: "GET", target: "/teapot"))
        XCTAssertEqual(response.status, 418)
        XCTAssertEqual(response.headers["X-Pot"], "1")
        XCTAssertEqual(json(response), ["error": ["code": "teapot", "message": "short and stout", "path": "pot.spout"]])
    }

    func testOtherErrorsBecomeOpaque500() {
        let router = makeRouter()
        var seen: Error?
        var seenID = "", seenRoute = ""
        router.onUnexpectedError = { _, route, id, error in seen = error; seenID = id; seenRoute = route.label }
        let response = router.handle(HTTPRequest(method: "GET", target: "/crash"))
        XCTAssertEqual(response.status, 500)
        XCTAssertEqual(json(response)?["error"]?["code"], "internal_error")
        XCTAssertFalse(body(response).contains("hunter2"))
        XCTAssertFalse(body(response).contains("Secret"))
        XCTAssertNotNil(seen)
        XCTAssertEqual(seenRoute, "/crash")
        // The client gets the id the log line carries.
        XCTAssertEqual(seenID.count, 16)
        XCTAssertEqual(response.headers["X-Request-Id"], seenID)
        XCTAssertTrue(body(response).contains(seenID))
    }

    /// Records what middleware saw: the matched pattern, never the raw path.
    final class Recorder: Middleware, @unchecked Sendable {
        var seen: [(String, Int, Bool)] = []
        func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse {
            let response = next(request)
            seen.append((route.label, response.status, route.changesState))
            return response
        }
    }

    struct Gate: Middleware {
        func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse {
            if route.changesState && request.headers["X-Key"] != "k" { throw HTTPError(401, code: "unauthorized", message: "no key") }
            return next(request)
        }
    }

    func testMiddlewareSeesMatchedPatternAndRenderedErrors() {
        let router = makeRouter()
        let recorder = Recorder()
        router.use(recorder)
        router.use(Gate())
        _ = router.handle(HTTPRequest(method: "GET", target: "/jobs/abc/metrics"))
        _ = router.handle(HTTPRequest(method: "GET", target: "/no/such/\(UUID().uuidString)"))
        _ = router.handle(HTTPRequest(method: "PUT", target: "/jobs"))
        let denied = router.handle(HTTPRequest(method: "DELETE", target: "/jobs/7"))
        _ = router.handle(HTTPRequest(method: "GET", target: "/teapot"))
        XCTAssertEqual(denied.status, 401)
        XCTAssertEqual(json(denied)?["error"]?["code"], "unauthorized")
        XCTAssertEqual(recorder.seen.map(\.0), ["/jobs/:id/metrics", "unmatched", "unmatched", "/jobs/:id", "/teapot"])
        // An error thrown by inner middleware or the handler reaches outer middleware as its answer.
        XCTAssertEqual(recorder.seen.map(\.1), [200, 404, 405, 401, 418])
        XCTAssertEqual(recorder.seen.map(\.2), [false, false, false, true, false])
    }

    func testRouteErrorRendererOverridesTheRouters() {
        let router = Router()
        router.renderError = { e in .text(e.status, "plain: \(e.message)") }
        router.add("GET", "/a") { _ in throw HTTPError(409, code: "c", message: "m") }
        router.add("GET", "/b", renderError: { e in .json(e.status, ["error": .string(e.message)]) }) { _ in throw HTTPError(409, code: "c", message: "m") }
        XCTAssertEqual(body(router.handle(HTTPRequest(method: "GET", target: "/a"))), "plain: m")
        XCTAssertEqual(json(router.handle(HTTPRequest(method: "GET", target: "/b"))), ["error": "m"])
    }

    func testResponseHelpers() {
        let error = HTTPResponse.error(413, code: "too_large", message: "big", path: "inputs.x")
        XCTAssertEqual(json(error), ["error": ["code": "too_large", "message": "big", "path": "inputs.x"]])
        XCTAssertEqual(HTTPResponse.text(200, "hi").headers["content-type"], "text/plain; charset=utf-8")
    }

    func testHeadersOrderedCaseInsensitive() {
        var headers = HTTPHeaders([("Set-Cookie", "a"), ("X-Other", "1"), ("set-cookie", "b")])
        XCTAssertEqual(headers["SET-COOKIE"], "a")
        XCTAssertEqual(headers.values(for: "Set-Cookie"), ["a", "b"])
        headers.add("X-New", "n")
        headers.replace("set-cookie", "c")
        XCTAssertEqual(headers.map { "\($0.name)=\($0.value)" }, ["set-cookie=c", "X-Other=1", "X-New=n"])
        XCTAssertNil(headers["missing"])
    }

    func testHTTPDateFormat() {
        XCTAssertEqual(HTTPResponse.httpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT")
    }
}
