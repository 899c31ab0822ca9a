import Foundation
import KilnPostgres
import XCTest

final class PostgresPoolTests: PostgresTestCase {
    func testCheckoutIsBoundedAndTimesOut() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL(), maxConnections: 2, checkoutTimeout: 0.3)
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        for _ in 0..<2 {
            Thread.detachNewThread {
                try? pool.withConnection { _ in
                    holding.signal()
                    release.wait()
                }
            }
        }
        holding.wait()
        holding.wait()
        XCTAssertEqual(pool.openConnections, 2)
        let start = Date()
        XCTAssertThrowsError(try pool.query("SELECT 1 AS one")) { error in
            XCTAssertEqual(error as? PostgresError, .poolTimeout(seconds: 0.3))
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.29)
        // A waiting checkout gets the first connection given back.
        let answered = Locked<Int?>(nil)
        let waiter = Thread {
            answered.with { $0 = try? pool.query("SELECT 5 AS n")[0].int("n") }
        }
        waiter.start()
        usleep(50_000)
        release.signal()
        eventually("the waiting checkout") { answered.snapshot == 5 }
        release.signal()
        XCTAssertLessThanOrEqual(pool.openConnections, 2)
    }

    func testManyThreadsShareFewConnections() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL(), maxConnections: 3)
        try pool.query("CREATE TABLE hits (n integer)")
        let errors = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for j in 0..<20 {
                do { try pool.query("INSERT INTO hits VALUES ($1)", [.int(i * 100 + j)]) } catch { errors.with { $0.append("\(error)") } }
            }
        }
        XCTAssertEqual(errors.snapshot, [])
        XCTAssertEqual(try pool.query("SELECT count(DISTINCT n) AS n FROM hits")[0].int("n"), 160)
        XCTAssertLessThanOrEqual(pool.openConnections, 3)
    }

    func testTransactionRollsBackOnErrorAndCommitsOtherwise() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL(), maxConnections: 1)
        try pool.query("CREATE TABLE t (n integer PRIMARY KEY)")
        try pool.transaction { c in
            try c.query("INSERT INTO t VALUES ($1)", [.int(1)])
            try c.query("INSERT INTO t VALUES ($1)", [.int(2)])
        }
        // A failing statement in the middle: the earlier insert is undone too.
        XCTAssertThrowsError(try pool.transaction { c in
            try c.query("INSERT INTO t VALUES ($1)", [.int(3)])
            try c.query("INSERT INTO t VALUES ($1)", [.int(1)])
        }) { XCTAssertEqual(($0 as? PostgresError)?.isUniqueViolation, true) }
        // A Swift error thrown by the body.
        struct Stop: Error {}
        XCTAssertThrowsError(try pool.transaction { c in
            try c.query("INSERT INTO t VALUES ($1)", [.int(4)])
            throw Stop()
        }) { XCTAssertTrue($0 is Stop) }
        // A body that swallowed an error and left the transaction aborted: the pool rolls
        // it back on return, so the one connection is clean for the next caller.
        try pool.withConnection { c in
            try c.execute("BEGIN")
            _ = try? c.query("SELECT * FROM missing")
        }
        XCTAssertEqual(try pool.query("SELECT array_agg(n ORDER BY n)::text AS ns FROM t")[0].string("ns"), "{1,2}")
        XCTAssertEqual(pool.openConnections, 1)
    }

    func testCheckoutReplacesConnectionsTheServerClosed() throws {
        let url = try freshDatabaseURL()
        let pool = try PostgresPool(url: url, maxConnections: 2)
        let firstPID = try pool.withConnection { $0.backendPID }
        let admin = try PostgresConnection(url: url)
        try admin.query("SELECT pg_terminate_backend($1)", [.int(firstPID)])
        usleep(100_000)
        // No error reaches the caller: the dead connection is noticed on checkout.
        let pid = try pool.withConnection { c -> Int in
            XCTAssertEqual(try c.query("SELECT 1 AS one")[0].int("one"), 1)
            return c.backendPID
        }
        XCTAssertNotEqual(pid, firstPID)
    }

    func testShutdownRefusesCheckouts() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL())
        try pool.query("SELECT 1 AS one")
        pool.shutdown()
        XCTAssertEqual(pool.openConnections, 0)
        XCTAssertThrowsError(try pool.query("SELECT 1 AS one")) { XCTAssertEqual($0 as? PostgresError, .closed) }
    }
}
