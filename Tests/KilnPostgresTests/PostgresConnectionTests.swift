import Foundation
import KilnJSON
import KilnPostgres
import KilnTestSupport
import XCTest

final class PostgresConnectionTests: PostgresTestCase {
    func testConnectsByURLAndReportsTheServer() throws {
        let connection = try PostgresConnection(url: try freshDatabaseURL())
        let row = try connection.query("SELECT current_user AS who, current_database() AS db, 1 + 1 AS two")[0]
        XCTAssertEqual(try row.string("who"), "kiln")
        XCTAssertTrue(try row.string("db").hasPrefix("kiln_test_"))
        XCTAssertEqual(try row.int("two"), 2)
        XCTAssertGreaterThan(connection.backendPID, 0)
    }

    func testRejectsURLsThatAreNotPostgres() {
        for url in ["http://kiln@127.0.0.1:5432/db", "127.0.0.1:5432", ""] {
            XCTAssertThrowsError(try PostgresConnection(url: url), url) { error in
                guard case PostgresError.invalidURL = error else { return XCTFail("\(url): \(error)") }
            }
        }
    }

    func testUnreachableServerIsAConnectionErrorWithoutThePassword() throws {
        let probe = try PostgresServer.freePort()  // nothing listens there
        let url = "postgresql://kiln:secret@127.0.0.1:\(probe)/db?connect_timeout=2"
        XCTAssertThrowsError(try PostgresConnection(url: url)) { error in
            guard case let PostgresError.connection(message) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(message.contains("secret"), message)
            XCTAssertTrue(message.contains("kiln:***@127.0.0.1"), message)
            XCTAssertTrue((error as? PostgresError)?.isConnectionFailure ?? false)
        }
    }

    func testParametersRoundTripEveryType() throws {
        let connection = try PostgresConnection(url: try freshDatabaseURL())
        try connection.execute("""
            CREATE TABLE t (i bigint, small integer, d double precision, f real, b boolean, s text, v varchar(20),
                            j jsonb, js json, raw bytea, at timestamptz, u uuid)
            """)
        var allBytes = [UInt8](0...255)
        allBytes += [0, 0, 39, 92]  // NUL, quote, backslash survive
        let when = Date(timeIntervalSince1970: 1_764_500_000.123456)
        let spec: JSON = ["name": "a'b\"c", "layers": [1, 2.5, true, nil]]
        let text = "it's \"quoted\"; DROP TABLE t; -- ünïcødé ✓"
        try connection.query("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", [
            .int(Int.min), .int(-123_456), .double(0.1 + 0.2), .double(1.5), .bool(true), .text(text), .text("short"),
            .json(spec), .json([1, 2]), .bytes(allBytes), .timestamp(when), .text("123e4567-e89b-12d3-a456-426614174000"),
        ])
        try connection.query("INSERT INTO t (i, raw, s) VALUES ($1, $2, $3)", [.null, .bytes([]), .text("")])
        let rows = try connection.query("SELECT * FROM t ORDER BY i NULLS LAST").rows
        XCTAssertEqual(rows.count, 2)
        let r = rows[0]
        XCTAssertEqual(try r.int("i"), Int.min)
        XCTAssertEqual(try r.int("small"), -123_456)
        XCTAssertEqual(try r.double("d"), 0.1 + 0.2)  // binary results: exact
        XCTAssertEqual(try r.double("f"), 1.5)
        XCTAssertEqual(try r.bool("b"), true)
        XCTAssertEqual(try r.string("s"), text)
        XCTAssertEqual(try r.string("v"), "short")
        XCTAssertEqual(try r.json("j"), spec)
        XCTAssertEqual(try r.json("js"), [1, 2])
        XCTAssertEqual(try r.bytes("raw"), allBytes)
        XCTAssertEqual(try r.date("at").timeIntervalSince1970, when.timeIntervalSince1970, accuracy: 1e-6)
        XCTAssertEqual(try r.string("u"), "123e4567-e89b-12d3-a456-426614174000")
        let empty = rows[1]
        XCTAssertEqual(try empty.value("i"), .null)
        XCTAssertTrue(try empty.isNull("d"))
        XCTAssertEqual(try empty.bytes("raw"), [])
        XCTAssertEqual(try empty.string("s"), "")
        XCTAssertThrowsError(try empty.int("i")) { XCTAssertTrue("\($0)".contains("NULL"), "\($0)") }
        XCTAssertThrowsError(try r.int("s")) { XCTAssertTrue("\($0)".contains("expected an integer"), "\($0)") }
        XCTAssertThrowsError(try r.int("nope")) { XCTAssertTrue("\($0)".contains("no column 'nope'"), "\($0)") }
        XCTAssertThrowsError(try connection.query("SELECT $1::text AS s", [.text("a\u{0}b")])) { error in
            guard case PostgresError.invalidArgument = error else { return XCTFail("\(error)") }
        }
        // The statement text was stored, not run.
        XCTAssertEqual(try connection.query("SELECT count(*) AS n FROM t")[0].int("n"), 2)
    }

    func testServerErrorsCarrySQLStateAndMessage() throws {
        let connection = try PostgresConnection(url: try freshDatabaseURL())
        func expect(_ state: String, _ sql: String, _ params: [PostgresValue] = [], file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try connection.query(sql, params), file: file, line: line) { error in
                guard case let PostgresError.server(e) = error else { return XCTFail("\(error)", file: file, line: line) }
                XCTAssertEqual(e.sqlState, state, e.message, file: file, line: line)
                XCTAssertFalse(e.message.isEmpty, file: file, line: line)
                XCTAssertEqual(e.severity, "ERROR", file: file, line: line)
            }
        }
        expect("42P01", "SELECT * FROM missing_table")
        expect("42601", "SELEKT 1")
        expect("22P02", "SELECT $1::integer AS n", [.text("twelve")])
        try connection.execute("CREATE TABLE u (id integer PRIMARY KEY)")
        try connection.query("INSERT INTO u VALUES ($1)", [.int(1)])
        XCTAssertThrowsError(try connection.query("INSERT INTO u VALUES ($1)", [.int(1)])) { error in
            let e = error as? PostgresError
            XCTAssertEqual(e?.isUniqueViolation, true)
            guard case let .server(server)? = e else { return XCTFail() }
            XCTAssertEqual(server.constraint, "u_pkey")
            XCTAssertNotNil(server.detail)
        }
        // The connection is still usable after errors outside a transaction.
        XCTAssertEqual(try connection.query("SELECT 7 AS n")[0].int("n"), 7)
    }

    func testPreparedStatementsAreReusedAcrossParameterValues() throws {
        let connection = try PostgresConnection(url: try freshDatabaseURL())
        for i in 0..<50 {
            XCTAssertEqual(try connection.query("SELECT $1::bigint * 2 AS n", [.int(i)])[0].int("n"), 2 * i)
        }
        let prepared = try connection.query("SELECT count(*) AS n FROM pg_prepared_statements")[0].int("n")
        XCTAssertEqual(prepared, 2)  // the doubling statement and this count itself
    }

    func testAPreparedStatementSurvivesANewColumn() throws {
        // A node that started later migrated the schema while this one kept its
        // prepared statements.
        let url = try freshDatabaseURL()
        let connection = try PostgresConnection(url: url)
        try connection.execute("CREATE TABLE t (a integer)")
        try connection.query("INSERT INTO t VALUES ($1)", [.int(1)])
        XCTAssertEqual(try connection.query("SELECT * FROM t WHERE a = $1", [.int(1)]).columns, ["a"])
        let other = try PostgresConnection(url: url)
        try other.execute("ALTER TABLE t ADD COLUMN b text DEFAULT 'x'")
        let after = try connection.query("SELECT * FROM t WHERE a = $1", [.int(1)])
        XCTAssertEqual(after.columns, ["a", "b"])
        XCTAssertEqual(try after[0].string("b"), "x")
        XCTAssertEqual(try connection.query("SELECT * FROM t WHERE a = $1", [.int(1)]).columns, ["a", "b"])
    }

    func testReconnectsAfterTheServerEndsTheConnection() throws {
        let url = try freshDatabaseURL()
        let connection = try PostgresConnection(url: url)
        let admin = try PostgresConnection(url: url)
        let oldPID = connection.backendPID
        try admin.query("SELECT pg_terminate_backend($1)", [.int(oldPID)])
        usleep(100_000)
        XCTAssertFalse(connection.checkAlive())
        XCTAssertThrowsError(try connection.query("SELECT 1 AS one")) { error in
            XCTAssertTrue((error as? PostgresError)?.isConnectionFailure ?? false, "\(error)")
        }
        try connection.reconnect()
        XCTAssertNotEqual(connection.backendPID, oldPID)
        XCTAssertEqual(try connection.query("SELECT 1 AS one")[0].int("one"), 1)
    }

    func testTransactionCommitsOrRollsBack() throws {
        let connection = try PostgresConnection(url: try freshDatabaseURL())
        try connection.execute("CREATE TABLE t (n integer)")
        try connection.transaction { try $0.query("INSERT INTO t VALUES ($1)", [.int(1)]) }
        struct Abort: Error {}
        XCTAssertThrowsError(try connection.transaction { c in
            try c.query("INSERT INTO t VALUES ($1)", [.int(2)])
            throw Abort()
        })
        XCTAssertTrue(connection.isIdle)
        XCTAssertEqual(try connection.query("SELECT array_agg(n)::text AS ns FROM t")[0].string("ns"), "{1}")
    }
}
