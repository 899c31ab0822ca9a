import Foundation
import KilnHTTP
import KilnJSON

/// With a token configured, calls need `Authorization: Bearer <token>`: the calls that
/// change state (`auth_scope` `writes`, the default) or every call but `/healthz`
/// (`all`). The scheme is case-insensitive (RFC 9110 §11.1); the token is compared in
/// constant time.
struct AuthMiddleware: Middleware {
    enum Scope: String, Sendable { case writes, all }
    let token: String
    let scope: Scope

    func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse {
        guard let pattern = route.pattern else { return next(request) }
        let needed = scope == .all ? pattern != "/healthz" : route.changesState
        if needed { try check(request.headers["Authorization"] ?? "") }
        return next(request)
    }

    func check(_ given: String) throws {
        var presented = ""
        if let space = given.firstIndex(of: " "), given[..<space].lowercased() == "bearer" {
            presented = String(given[given.index(after: space)...].drop(while: { $0 == " " }))
        }
        let a = Array(presented.utf8), b = Array(token.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<b.count { difference |= (i < a.count ? a[i] : 0) ^ b[i] }
        guard difference == 0 else {
            throw HTTPError(401, code: "unauthorized", message: "this call needs 'Authorization: Bearer <token>'",
                            headers: HTTPHeaders([("WWW-Authenticate", "Bearer realm=\"kiln\"")]))
        }
    }
}

/// Counts requests and their latency by the route pattern the router matched (a fixed
/// `unmatched` for the rest), so the label space is bounded by the routes; logs each
/// request at `debug`.
struct RequestMetricsMiddleware: Middleware {
    let metrics: ServiceMetrics

    func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse {
        let start = DispatchTime.now().uptimeNanoseconds
        let response = next(request)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        metrics.record(method: request.method, route: route.label, status: response.status, seconds: seconds)
        // The access log is off unless asked for (`log_level` debug), so the log does not grow per request.
        guard Log.isEnabled(.debug) else { return response }
        Log.debug("request", [("method", .string(String(request.method.prefix(20)))), ("route", .string(route.label)),
                             ("path", .string(String(request.path.prefix(200)))), ("status", JSON(response.status)),
                             ("ms", .number((seconds * 1e4).rounded() / 10))])
        return response
    }
}
