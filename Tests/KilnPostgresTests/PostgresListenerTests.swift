import Foundation
import KilnPostgres
import KilnTestSupport
import XCTest

final class PostgresListenerTests: PostgresTestCase {
    func testDeliversNotificationsOnTheChannelsListenedTo() throws {
        let url = try freshDatabaseURL()
        let received = Locked<[String]>([])
        let listener = try PostgresListener(url: url, channels: ["alpha"]) { channel, payload in
            received.with { $0.append("\(channel):\(payload)") }
        }
        defer { listener.stop() }
        let pool = try PostgresPool(url: url)
        try pool.query("SELECT pg_notify($1, $2)", [.text("alpha"), .text("one")])
        try pool.query("SELECT pg_notify($1, $2)", [.text("beta"), .text("ignored")])
        try listener.listen("beta")
        // LISTEN happens on the listener thread; wait until the server knows it.
        eventually("LISTEN beta") {
            try pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'LISTEN beta'")[0].int("n") > 0
        }
        try pool.query("SELECT pg_notify($1, $2)", [.text("beta"), .text("two")])
        // A notification in a transaction arrives only at commit; a rolled back one never.
        try pool.transaction { c in try c.query("SELECT pg_notify($1, $2)", [.text("alpha"), .text("three")]) }
        struct Abort: Error {}
        _ = try? pool.transaction { c in
            try c.query("SELECT pg_notify($1, $2)", [.text("alpha"), .text("rolled back")])
            throw Abort()
        }
        try pool.query("SELECT pg_notify($1, $2)", [.text("alpha"), .text("four ✓ {\"json\": 1}")])
        eventually("four notifications") { received.snapshot.count >= 4 }
        usleep(100_000)
        XCTAssertEqual(received.snapshot, ["alpha:one", "beta:two", "alpha:three", "alpha:four ✓ {\"json\": 1}"])
        XCTAssertThrowsError(try listener.listen("Robert'); DROP TABLE x; --"))
    }

    func testListensAgainAfterTheDatabaseRestarts() throws {
        // A cluster of its own: restarting it must not disturb the other tests.
        let server = try PostgresServer()
        defer { server.destroy() }
        let url = server.url()
        let received = Locked<[String]>([])
        let reconnects = Locked(0)
        let listener = try PostgresListener(url: url, channels: ["kiln_jobs"], onReconnect: { reconnects.with { $0 += 1 } }) { _, payload in
            received.with { $0.append(payload) }
        }
        defer { listener.stop() }
        let pool = try PostgresPool(url: url, maxConnections: 2)
        try pool.query("SELECT pg_notify($1, $2)", [.text("kiln_jobs"), .text("before")])
        eventually("the first notification") { received.snapshot == ["before"] }

        try server.restart()
        eventually(timeout: 20, "the listener's reconnect") { reconnects.snapshot == 1 && listener.isConnected }
        XCTAssertEqual(listener.reconnectCount, 1)
        // The pool's connections died with the server; checkout replaces them unseen.
        try pool.query("SELECT pg_notify($1, $2)", [.text("kiln_jobs"), .text("after")])
        eventually("the notification after the restart") { received.snapshot == ["before", "after"] }

        // A longer outage: the listener keeps retrying until the server is back.
        try server.stop()
        eventually("the listener to notice the outage") { !listener.isConnected }
        // Meanwhile the pool says what is wrong, and recovers on its own afterwards.
        XCTAssertThrowsError(try pool.query("SELECT 1 AS one")) { error in
            XCTAssertTrue((error as? PostgresError)?.isConnectionFailure ?? false, "\(error)")
        }
        usleep(500_000)
        try server.start()
        eventually(timeout: 20, "the second reconnect") { reconnects.snapshot == 2 }
        try pool.query("SELECT pg_notify($1, $2)", [.text("kiln_jobs"), .text("back")])
        eventually("the notification after the outage") { received.snapshot == ["before", "after", "back"] }
    }

    func testStopEndsTheThreadAndClosesItsConnection() throws {
        let url = try freshDatabaseURL()
        let listener = try PostgresListener(url: url, channels: ["gamma"]) { _, _ in }
        let pool = try PostgresPool(url: url)
        let connections = { try pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'LISTEN gamma'")[0].int("n") }
        XCTAssertEqual(try connections(), 1)
        listener.stop()
        listener.stop()
        eventually("the connection to close") { (try? connections()) == 0 }

        // A callback may stop its own listener: the thread ends after the callback.
        let box = Locked<PostgresListener?>(nil)
        let calls = Locked(0)
        let selfStopping = try PostgresListener(url: url, channels: ["gamma"]) { _, _ in
            calls.with { $0 += 1 }
            box.snapshot?.stop()
        }
        box.with { $0 = selfStopping }
        try pool.query("SELECT pg_notify($1, $2)", [.text("gamma"), .text("1")])
        eventually("the self-stopped connection to close") { calls.snapshot == 1 && (try? connections()) == 0 }
        try pool.query("SELECT pg_notify($1, $2)", [.text("gamma"), .text("2")])
        usleep(100_000)
        XCTAssertEqual(calls.snapshot, 1)
        selfStopping.stop()
    }
}
