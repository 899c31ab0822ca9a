import Foundation

/// What the router knows about a request once it has matched it: the route's pattern
/// (`/jobs/:id`, or nil when nothing matched), and what the route declared of itself.
/// Middleware reads it for auth, metrics labels and logs, so nothing re-derives the
/// route from the path.
public struct RouteMatch: Sendable {
    /// The pattern as registered; nil for a 404, a 405 or an OPTIONS answer.
    public var pattern: String?
    public var changesState: Bool
    /// The pattern, or a fixed label for requests no route took (bounded label space).
    public var label: String { pattern ?? "unmatched" }
}

/// Runs around every request: `next` runs the rest of the chain (later middleware and
/// the handler) and never throws — an error thrown inside is already an answer.
public protocol Middleware: Sendable {
    func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse
}

/// Maps method + path pattern to a handler. Routes are declared in one place; the
/// router answers 404 for an unknown path, 405 with `Allow` for a known path without
/// the method, serves HEAD from GET, runs middleware around every request, and renders
/// thrown errors.
public final class Router: @unchecked Sendable {
    public typealias Handler = (HTTPRequest) throws -> HTTPResponse
    public typealias ErrorRenderer = (ErrorReply) -> HTTPResponse

    struct Route {
        var method: String
        var pattern: String
        var segments: [Segment]
        var handler: Handler
        var changesState: Bool
        var renderError: ErrorRenderer?
        /// Literal segments count more than parameters with a literal suffix, and those
        /// more than bare parameters, when two patterns match.
        var specificity: Int {
            segments.reduce(0) { total, segment in
                switch segment {
                case .literal: return total + 2
                case let .parameter(_, suffix): return total + (suffix.isEmpty ? 0 : 1)
                }
            }
        }
    }

    enum Segment: Equatable {
        case literal(String)
        /// `:name`, or `:name:verb`: a value followed by the literal suffix `:verb`
        /// (TensorFlow Serving's `/v1/models/{name}:predict`).
        case parameter(String, suffix: String)
    }

    private var routes: [Route] = []
    private var middleware: [any Middleware] = []
    private var prefixRenderers: [(prefix: [String], render: ErrorRenderer)] = []

    /// How a `ResponseError` becomes an answer, unless its route says otherwise.
    public var renderError: ErrorRenderer = { .error($0) }

    /// Called with an error that is not a `ResponseError` (a bug, or a failure with no
    /// meaning for the client), with the request id the client is told; the client
    /// gets a 500 that reveals nothing else.
    public var onUnexpectedError: ((HTTPRequest, RouteMatch, String, Error) -> Void)?

    public init() {}

    /// Registers a handler.
    /// - Parameters:
    ///   - method: "GET", "POST", ... (case-sensitive, as on the wire).
    ///   - pattern: like "/jobs/:id/metrics"; a `:name` segment matches one non-empty
    ///     segment and is passed percent-decoded in `pathParameters`; `:name:verb`
    ///     matches a segment ending in `:verb` and passes what precedes it.
    ///   - changesState: whether the call changes stored state (for auth); by default
    ///     every method but GET, HEAD and OPTIONS does.
    ///   - renderError: how this route's errors are answered, if not by `renderError`.
    ///   - handler: runs on a worker thread; may throw (`ResponseError` renders itself,
    ///     anything else becomes a 500 that reveals nothing).
    public func add(_ method: String, _ pattern: String, changesState: Bool? = nil,
                    renderError: ErrorRenderer? = nil, _ handler: @escaping Handler) {
        let segments = Router.split(pattern).map { text -> Segment in
            guard text.hasPrefix(":") else { return .literal(text) }
            let body = text.dropFirst()
            guard let colon = body.firstIndex(of: ":") else { return .parameter(String(body), suffix: "") }
            return .parameter(String(body[..<colon]), suffix: String(body[colon...]))
        }
        let writes = changesState ?? !["GET", "HEAD", "OPTIONS"].contains(method)
        routes.append(Route(method: method, pattern: pattern, segments: segments, handler: handler,
                            changesState: writes, renderError: renderError))
    }

    /// How errors are answered for every request whose path lies under `prefix` (such as
    /// `/v2`), its 404s and 405s included, unless the matched route says otherwise. A
    /// protocol that owns a path prefix thus answers in its own error form everywhere.
    public func renderErrors(under prefix: String, _ render: @escaping ErrorRenderer) {
        prefixRenderers.append((Router.split(prefix), render))
    }

    /// Adds middleware; the first added runs outermost.
    public func use(_ m: any Middleware) {
        middleware.append(m)
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let (match, route, respond) = resolve(request)
        let render = route?.renderError ?? prefixRenderer(request) ?? renderError
        var next: (HTTPRequest) -> HTTPResponse = { [self] r in run(respond, r, match, render) }
        for m in middleware.reversed() {
            let inner = next
            next = { [self] r in run({ r in try m.handle(r, match, next: inner) }, r, match, render) }
        }
        var response = next(request)
        if request.method == "HEAD" && route?.method == "GET", case let .bytes(bytes) = response.body {
            // What GET would send, without the body.
            response.headers.replace("Content-Length", String(bytes.count))
            response.body = .bytes([])
        }
        return response
    }

    private func prefixRenderer(_ request: HTTPRequest) -> ErrorRenderer? {
        guard !prefixRenderers.isEmpty else { return nil }
        let segments = Router.requestSegments(request)
        return prefixRenderers.last { $0.prefix.count <= segments.count && Array(segments.prefix($0.prefix.count)) == $0.prefix }?.render
    }

    /// The route a request takes, and what answers it: the route's handler, or the
    /// 404 / 405 / OPTIONS answer.
    private func resolve(_ request: HTTPRequest) -> (RouteMatch, Route?, Handler) {
        let segments = Router.requestSegments(request)
        var matches: [(route: Route, parameters: [String: String])] = []
        for route in routes {
            if let parameters = Router.match(route.segments, segments) { matches.append((route, parameters)) }
        }
        let unmatched = RouteMatch(pattern: nil, changesState: false)
        guard !matches.isEmpty else {
            let path = request.path
            return (unmatched, nil, { _ in throw HTTPError(404, code: "not_found", message: "no route for \(path.prefix(200))") })
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
                let allow = (methods + ["OPTIONS"]).joined(separator: ", ")
                return (unmatched, nil, { _ in HTTPResponse(status: 204, headers: ["Allow": allow]) })
            }
            let (method, path) = (request.method, request.path)
            return (unmatched, nil, { _ in
                throw HTTPError(405, code: "method_not_allowed", message: "\(method.prefix(20)) is not allowed on \(path.prefix(200))",
                                headers: ["Allow": methods.joined(separator: ", ")])
            })
        }
        let handler = chosen.route.handler
        let parameters = chosen.parameters
        return (RouteMatch(pattern: chosen.route.pattern, changesState: chosen.route.changesState), chosen.route, { request in
            var routed = request
            routed.pathParameters = parameters
            return try handler(routed)
        })
    }

    private func run(_ handler: Handler, _ request: HTTPRequest, _ match: RouteMatch, _ render: ErrorRenderer) -> HTTPResponse {
        do {
            return try handler(request)
        } catch let error as any ResponseError {
            return render(error.reply)
        } catch {
            let id = Router.requestID()
            onUnexpectedError?(request, match, id, error)
            var response = render(ErrorReply(status: 500, code: "internal_error", message: "internal server error (request id \(id))"))
            response.headers.replace("X-Request-Id", id)
            return response
        }
    }

    /// 16 hex digits, for correlating a 500 with its log line.
    static func requestID() -> String {
        let n = UInt64.random(in: 0...UInt64.max)
        let hex = String(n, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
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
            case let .parameter(name, suffix):
                guard segment.count > suffix.count, segment.hasSuffix(suffix) else { return nil }
                parameters[name] = String(segment.dropLast(suffix.count))
            }
        }
        return parameters
    }
}
