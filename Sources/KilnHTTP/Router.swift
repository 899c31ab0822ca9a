/// Maps method + path pattern to a handler. Routes are declared in one place; the
/// router answers 404 for an unknown path, 405 with `Allow` for a known path without
/// the method, serves HEAD from GET, and renders thrown errors.
public final class Router {
    struct Route {
        var method: String
        var segments: [Segment]
        var handler: (HTTPRequest) throws -> HTTPResponse
        /// Literal segments count more than parameters when two patterns match.
        var specificity: Int { segments.filter { if case .literal = $0 { return true } else { return false } }.count }
    }

    enum Segment: Equatable {
        case literal(String)
        case parameter(String)
    }

    private var routes: [Route] = []

    /// Called with a non-`HTTPError` a handler threw, before it becomes an opaque 500
    /// (for logging; the client never sees it).
    public var onUnexpectedError: ((HTTPRequest, Error) -> Void)?

    public init() {}

    /// Registers a handler.
    /// - Parameters:
    ///   - method: "GET", "POST", ... (case-sensitive, as on the wire).
    ///   - pattern: like "/jobs/:id/metrics"; a `:name` segment matches one non-empty
    ///     segment and is passed percent-decoded in `pathParameters`.
    ///   - handler: runs on the connection's worker thread; may throw (`HTTPError`
    ///     renders itself, anything else becomes a 500 that reveals nothing).
    public func add(_ method: String, _ pattern: String, _ handler: @escaping (HTTPRequest) throws -> HTTPResponse) {
        let segments = Router.split(pattern).map { text -> Segment in
            text.hasPrefix(":") ? .parameter(String(text.dropFirst())) : .literal(text)
        }
        routes.append(Route(method: method, segments: segments, handler: handler))
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let segments = Router.requestSegments(request)
        var matches: [(route: Route, parameters: [String: String])] = []
        for route in routes {
            if let parameters = Router.match(route.segments, segments) { matches.append((route, parameters)) }
        }
        guard !matches.isEmpty else {
            return .error(404, code: "not_found", message: "no route for \(request.path)")
        }
        // Prefer literal segments over parameters; registration order breaks ties.
        let candidates = matches.enumerated().sorted {
            ($0.element.route.specificity, -$0.offset) > ($1.element.route.specificity, -$1.offset)
        }.map(\.element)
        var methods: [String] = []
        for match in candidates where !methods.contains(match.route.method) { methods.append(match.route.method) }
        if methods.contains("GET") && !methods.contains("HEAD") { methods.append("HEAD") }

        let lookup = request.method == "HEAD" && !candidates.contains { $0.route.method == "HEAD" } ? "GET" : request.method
        guard let chosen = candidates.first(where: { $0.route.method == lookup }) else {
            if request.method == "OPTIONS" {
                return HTTPResponse(status: 204, headers: ["Allow": (methods + ["OPTIONS"]).joined(separator: ", ")])
            }
            return .error(405, code: "method_not_allowed",
                          message: "\(request.method) is not allowed on \(request.path)",
                          headers: ["Allow": methods.joined(separator: ", ")])
        }
        var routed = request
        routed.pathParameters = chosen.parameters
        var response = run(chosen.route.handler, routed)
        if request.method == "HEAD" && lookup == "GET", case let .bytes(bytes) = response.body {
            // What GET would send, without the body.
            response.headers.replace("Content-Length", String(bytes.count))
            response.body = .bytes([])
        }
        return response
    }

    private func run(_ handler: (HTTPRequest) throws -> HTTPResponse, _ request: HTTPRequest) -> HTTPResponse {
        do {
            return try handler(request)
        } catch let error as HTTPError {
            return error.response
        } catch {
            onUnexpectedError?(request, error)
            return .error(500, code: "internal_error", message: "internal server error")
        }
    }
}

// MARK: - Matching

extension Router {
    static func split<S: StringProtocol>(_ path: S) -> [String] {
        var parts = path.split(separator: "/", maxSplits: Int.max, omittingEmptySubsequences: false).map { String($0) }
        if parts.first == "" { parts.removeFirst() }
        if parts.count > 1 && parts.last == "" { parts.removeLast() }   // one trailing slash is ignored
        if parts == [""] { parts = [] }
        return parts
    }

    /// Segments of the raw path, each decoded on its own, so an encoded `/` (`%2F`)
    /// stays inside its segment. Falls back to `path` when a caller changed it.
    static func requestSegments(_ request: HTTPRequest) -> [String] {
        let raw = HTTPRequest.splitTarget(request.target).path
        if HTTPRequest.percentDecode(raw, plusIsSpace: false) == request.path {
            return split(raw).map { HTTPRequest.percentDecode($0, plusIsSpace: false) }
        }
        return split(request.path)
    }

    static func match(_ pattern: [Segment], _ segments: [String]) -> [String: String]? {
        guard pattern.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (part, segment) in zip(pattern, segments) {
            switch part {
            case let .literal(text):
                guard text == segment else { return nil }
            case let .parameter(name):
                guard !segment.isEmpty else { return nil }
                parameters[name] = segment
            }
        }
        return parameters
    }
}
