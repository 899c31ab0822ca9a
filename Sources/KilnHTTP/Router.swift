/// Routes declared in one place: method and pattern (`/jobs/:id/metrics`) to handler.
/// Unknown paths answer 404, a known path without the method 405 with `Allow`, HEAD is
/// served by GET without the body, and thrown errors render themselves.
public final class Router: @unchecked Sendable {
    struct Route {
        let method: String
        let segments: [String]
        let handler: (HTTPRequest) throws -> HTTPResponse
    }

    private var routes: [Route] = []

    public init() {}

    public func add(_ method: String, _ pattern: String, _ handler: @escaping (HTTPRequest) throws -> HTTPResponse) {
        routes.append(Route(method: method, segments: pattern.split(separator: "/").map(String.init), handler: handler))
    }

    func match(_ route: Route, _ parts: [String]) -> [String: String]? {
        guard route.segments.count == parts.count else { return nil }
        var params: [String: String] = [:]
        for (s, p) in zip(route.segments, parts) {
            if s.hasPrefix(":") { params[String(s.dropFirst())] = p } else if s != p { return nil }
        }
        return params
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init).filter { !$0.isEmpty }
        let candidates = routes.compactMap { r in match(r, parts).map { (r, $0) } }
        guard !candidates.isEmpty else {
            return .error(404, code: "not_found", message: "no route for \(request.path.prefix(200))")
        }
        let method = request.method == "HEAD" ? "GET" : request.method
        guard let (route, params) = candidates.first(where: { $0.0.method == method }) else {
            var allowed = Set(candidates.map(\.0.method))
            if allowed.contains("GET") { allowed.insert("HEAD") }
            let allow = allowed.sorted().joined(separator: ", ")
            return .error(405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path.prefix(200)); use \(allow)",
                          headers: HTTPHeaders([("Allow", allow)]))
        }
        var r = request
        r.pathParameters = params
        do {
            return try route.handler(r)
        } catch let e as HTTPError {
            return e.response
        } catch {
            return .error(500, code: "internal", message: "internal error")
        }
    }
}
