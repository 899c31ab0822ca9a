import Foundation
import KilnPostgres
import KilnTestSupport
import XCTest

/// Tests against a real PostgreSQL: one throwaway cluster per test process (removed at
/// exit), and a fresh database per test so tests never see each other's rows.
class PostgresTestCase: XCTestCase {
    private static let lock = NSLock()
    private static var sharedServer: PostgresServer?
    private static var databaseCounter = 0

    /// The process-wide server, started on first use.
    static func server() throws -> PostgresServer {
        lock.lock()
        defer { lock.unlock() }
        if let sharedServer { return sharedServer }
        let server = try PostgresServer()
        sharedServer = server
        return server
    }

    /// A URL to a new, empty database on `server` (the shared one by default).
    func freshDatabaseURL(on server: PostgresServer? = nil) throws -> String {
        let server = try server ?? Self.server()
        Self.lock.lock()
        Self.databaseCounter += 1
        let name = "kiln_test_\(getpid())_\(Self.databaseCounter)"
        Self.lock.unlock()
        let admin = try PostgresConnection(url: server.url())
        // A database name is an identifier, not a value; this one is generated here.
        try admin.execute("CREATE DATABASE \(name)")
        admin.close()
        return server.url(database: name)
    }

    /// A pool on a fresh database with Kiln's schema applied.
    func migratedPool(maxConnections: Int = 8, on server: PostgresServer? = nil) throws -> PostgresPool {
        let pool = try PostgresPool(url: try freshDatabaseURL(on: server), maxConnections: maxConnections, checkoutTimeout: 10)
        try KilnSchema.migrate(pool)
        return pool
    }

    /// Polls `condition` until it holds or `timeout` passes.
    /// A condition that throws counts as not yet true.
    func eventually(timeout: Double = 10, _ what: String, _ condition: () throws -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) ?? false { return }
            usleep(10_000)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)")
    }
}

/// Thread-safe collection for callbacks and worker threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func with<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    var snapshot: Value { with { $0 } }
}
