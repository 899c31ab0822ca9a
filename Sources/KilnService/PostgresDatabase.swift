import Foundation
import KilnData
import KilnHTTP
import KilnJSON
import KilnPostgres

/// The shared database of a cluster of nodes (docs/cluster.md): the connection pool,
/// the blob store and what the node knows of the database's reachability. The stores
/// read and write through it; a connection failure marks the database away until a
/// probe reaches it again, and requests that need it are answered 503 meanwhile.
public final class PostgresDatabase: @unchecked Sendable {
    public let pool: PostgresPool
    public let blobs: PostgresBlobStore
    public let queue: PostgresJobQueue
    private let lock = NSLock()
    private var away: String?
    private var failureCount = 0

    /// Opens the pool and brings the schema to the newest version (under the
    /// migrator's advisory lock, so nodes starting together agree).
    public init(url: String, maxConnections: Int = 8) throws {
        pool = try PostgresPool(url: url, maxConnections: maxConnections, checkoutTimeout: 5, idleCheckInterval: 10, connectTimeout: 3)
        blobs = try PostgresBlobStore()
        queue = PostgresJobQueue(pool: pool, blobs: blobs)
        try KilnSchema.migrate(pool)
    }

    /// Why the database is unreachable, or nil while it answers.
    public var unavailableReason: String? { lock.lock(); defer { lock.unlock() }; return away }

    /// Failures seen so far (a request compares it before and after).
    var failures: Int { lock.lock(); defer { lock.unlock() }; return failureCount }

    /// Runs `body`; a failure to reach the database marks it away and becomes a 503.
    @discardableResult
    func run<T>(_ body: () throws -> T) throws -> T {
        do {
            let value = try body()
            markReachable()
            return value
        } catch let error as PostgresError where Self.isUnreachable(error) {
            // Credentials in a URL never reach a client or the log.
            let reason = Redact.text("\(error)")
            markAway(reason)
            throw ServiceError(.unavailable, code: "database_unavailable", "the database is unreachable: \(reason)", retryAfter: 5)
        }
    }

    /// For reads the protocols answer without throwing: nil when the database fails.
    func read<T>(_ body: () throws -> T) -> T? {
        do {
            return try run(body)
        } catch {
            if !(error is ServiceError) { Log.error("database_read_failed", [("error", .string("\(error)"))]) }
            return nil
        }
    }

    /// A round trip (`SELECT 1`); updates the reachability.
    @discardableResult
    public func probe() -> Bool {
        (try? run { try pool.query("SELECT 1 AS one") }) != nil
    }

    static func isUnreachable(_ error: PostgresError) -> Bool {
        if error.isConnectionFailure { return true }
        switch error {
        case .poolTimeout, .closed: return true
        default: return false
        }
    }

    private func markAway(_ reason: String) {
        lock.lock()
        let first = away == nil
        away = reason
        failureCount += 1
        lock.unlock()
        if first { Log.error("database_unavailable", [("error", .string(reason))]) }
    }

    private func markReachable() {
        lock.lock()
        let was = away != nil
        away = nil
        lock.unlock()
        if was { Log.info("database_available", []) }
    }

    public func shutdown() { pool.shutdown() }
}

extension PostgresError {
    var isInvalidArgument: Bool {
        if case .invalidArgument = self { return true }
        return false
    }
}

/// While the database is away, calls that need it are answered 503 with the reason
/// (and so is a call during which a read failed), instead of a 404 for a job that
/// could not be read. `/healthz`, `/metrics` and the API description need no database.
struct DatabaseAvailabilityMiddleware: Middleware {
    let database: PostgresDatabase
    static let exempt: Set<String> = ["/healthz", "/metrics", "/openapi.yaml"]

    func handle(_ request: HTTPRequest, _ route: RouteMatch, next: (HTTPRequest) -> HTTPResponse) throws -> HTTPResponse {
        guard let pattern = route.pattern, !Self.exempt.contains(pattern) else { return next(request) }
        if let reason = database.unavailableReason, !database.probe() {
            throw ServiceError(.unavailable, code: "database_unavailable", "the database is unreachable: \(reason)", retryAfter: 5)
        }
        let before = database.failures
        let response = next(request)
        if database.failures != before, response.status < 500, let reason = database.unavailableReason {
            throw ServiceError(.unavailable, code: "database_unavailable", "the database is unreachable: \(reason)", retryAfter: 5)
        }
        return response
    }
}
