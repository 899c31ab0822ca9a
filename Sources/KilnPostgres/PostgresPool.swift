import Foundation

/// A bounded pool of connections to one database.
///
/// Checkout blocks up to `checkoutTimeout` when all `maxConnections` are in use.
/// Connections are opened lazily and checked on checkout: a connection the server closed
/// (restart, `pg_terminate_backend`) is noticed without a round trip and reopened, and a
/// connection idle longer than `idleCheckInterval` is pinged first. Statements are never
/// retried on their own: after a `.connection` error the caller cannot know whether the
/// statement took effect, so it decides.
public final class PostgresPool: @unchecked Sendable {
    public let url: String
    public let maxConnections: Int
    public let checkoutTimeout: Double
    public let idleCheckInterval: Double
    public let connectTimeout: Int

    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []
    /// Connections that exist (idle, checked out, or being opened).
    private var open = 0
    private var closed = false

    /// - Parameters:
    ///   - url: `postgresql://user@host:port/db`.
    ///   - maxConnections: upper bound on open connections.
    ///   - checkoutTimeout: seconds a checkout waits for a free connection.
    ///   - idleCheckInterval: a connection idle this long is pinged (`SELECT 1`) on checkout.
    /// - Throws: `.invalidURL` when the URL is not a PostgreSQL URL (no connection is opened here).
    public init(url: String, maxConnections: Int = 8, checkoutTimeout: Double = 10, idleCheckInterval: Double = 30,
                connectTimeout: Int = 5) throws {
        precondition(maxConnections > 0)
        _ = try PostgresConnection.checkedDisplayURL(url)
        self.url = url
        self.maxConnections = maxConnections
        self.checkoutTimeout = checkoutTimeout
        self.idleCheckInterval = idleCheckInterval
        self.connectTimeout = connectTimeout
    }

    deinit { shutdown() }

    /// Connections currently open (idle or checked out).
    public var openConnections: Int { condition.lock(); defer { condition.unlock() }; return open }

    /// Closes idle connections and refuses further checkouts; connections in use are
    /// closed when they come back.
    public func shutdown() {
        condition.lock()
        closed = true
        let toClose = idle
        idle.removeAll()
        open -= toClose.count
        condition.broadcast()
        condition.unlock()
        toClose.forEach { $0.close() }
    }

    /// Runs `body` with a connection of its own, returning it to the pool afterwards.
    /// - Throws: `.poolTimeout`, `.connection` when no connection can be opened, `.closed`,
    ///   or what `body` throws.
    @discardableResult
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try checkout()
        do {
            let value = try body(connection)
            checkin(connection)
            return value
        } catch {
            checkin(connection)
            throw error
        }
    }

    /// Runs `body` in one transaction: COMMIT when it returns, ROLLBACK when it throws.
    /// A connection failure during COMMIT leaves the outcome unknown and throws
    /// `.connection`.
    @discardableResult
    public func transaction<T>(isolation: PostgresIsolation = .readCommitted, _ body: (PostgresConnection) throws -> T) throws -> T {
        try withConnection { try $0.transaction(isolation: isolation, body) }
    }

    /// Runs one statement on a pooled connection (see `PostgresConnection.query`).
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgresValue] = []) throws -> PostgresResult {
        try withConnection { try $0.query(sql, parameters) }
    }

    // MARK: - Checkout

    private func checkout() throws -> PostgresConnection {
        let deadline = Date().addingTimeInterval(checkoutTimeout)
        condition.lock()
        while true {
            if closed { condition.unlock(); throw PostgresError.closed }
            if let connection = idle.popLast() {
                condition.unlock()
                return try ready(connection)
            }
            if open < maxConnections {
                open += 1
                condition.unlock()
                do {
                    return try PostgresConnection(url: url, connectTimeout: connectTimeout)
                } catch {
                    release()
                    throw error
                }
            }
            if !condition.wait(until: deadline) {
                condition.unlock()
                throw PostgresError.poolTimeout(seconds: checkoutTimeout)
            }
        }
    }

    /// Makes sure a connection taken from the idle list still works, reopening it if
    /// the server closed it.
    private func ready(_ connection: PostgresConnection) throws -> PostgresConnection {
        var alive = connection.checkAlive()
        if alive && Date().timeIntervalSince(connection.lastUsed) > idleCheckInterval {
            alive = (try? connection.query("SELECT 1")) != nil
        }
        if alive { return connection }
        do {
            try connection.reconnect()
            return connection
        } catch {
            connection.close()
            release()
            throw error
        }
    }

    private func checkin(_ connection: PostgresConnection) {
        // A connection left inside a transaction (a body that caught an error itself) is
        // rolled back; one that broke is dropped.
        if connection.isConnected && !connection.isIdle { _ = try? connection.execute("ROLLBACK") }
        condition.lock()
        if closed || !connection.isConnected || !connection.isIdle {
            open -= 1
            condition.signal()
            condition.unlock()
            connection.close()
            return
        }
        idle.append(connection)
        condition.signal()
        condition.unlock()
    }

    private func release() {
        condition.lock()
        open -= 1
        condition.signal()
        condition.unlock()
    }
}
