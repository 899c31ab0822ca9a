import Foundation
import KilnPostgres
import XCTest

final class PostgresMigratorTests: PostgresTestCase {
    func testNodesStartingTogetherApplyEachMigrationOnce() throws {
        let url = try freshDatabaseURL()
        // A migration that is not idempotent (a plain CREATE TABLE and an INSERT): run
        // twice it would fail or count 2.
        var migrations = KilnSchema.migrations
        migrations.append(PostgresMigration(version: 100, name: "counter", statements: [
            "CREATE TABLE migration_runs (n integer)",
            "SELECT pg_sleep(0.2)",
            "INSERT INTO migration_runs VALUES (1)",
        ]))
        let pools = try (0..<4).map { _ in try PostgresPool(url: url, maxConnections: 1) }
        let applied = Locked<[[Int]]>([])
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: pools.count) { i in
            do {
                let versions = try PostgresMigrator.migrate(pools[i], migrations)
                applied.with { $0.append(versions) }
            } catch {
                failures.with { $0.append("\(error)") }
            }
        }
        XCTAssertEqual(failures.snapshot, [])
        // One node applied everything; the others found the schema current.
        let all = KilnSchema.migrations.map(\.version) + [100]
        XCTAssertEqual(applied.snapshot.filter { !$0.isEmpty }, [all])
        XCTAssertEqual(applied.snapshot.count, 4)
        XCTAssertEqual(try pools[0].query("SELECT count(*) AS n FROM migration_runs")[0].int("n"), 1)
        XCTAssertEqual(try PostgresMigrator.appliedVersions(pools[0]), all)
        // Starting again changes nothing.
        XCTAssertEqual(try PostgresMigrator.migrate(pools[1], migrations), [])
    }

    func testAFailedMigrationIsRolledBackAndNotRecorded() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL())
        // The next version after Kiln's own.
        let next = KilnSchema.migrations.count + 1
        let broken = KilnSchema.migrations + [PostgresMigration(version: next, name: "broken", statements: [
            "CREATE TABLE half_done (n integer)",
            "ALTER TABLE no_such_table ADD COLUMN x integer",
        ])]
        XCTAssertThrowsError(try PostgresMigrator.migrate(pool, broken)) { XCTAssertEqual(($0 as? PostgresError)?.sqlState, "42P01") }
        XCTAssertEqual(try PostgresMigrator.appliedVersions(pool), Array(1..<next))
        XCTAssertEqual(try pool.query("SELECT to_regclass('half_done') IS NULL AS gone")[0].bool("gone"), true)
        // The advisory lock was released: a corrected set applies.
        let fixed = KilnSchema.migrations + [PostgresMigration(version: next, name: "fixed", statements: ["CREATE TABLE half_done (n integer)"])]
        XCTAssertEqual(try PostgresMigrator.migrate(pool, fixed), [next])
    }

    func testADatabaseNewerThanTheBuildIsRefused() throws {
        let pool = try PostgresPool(url: try freshDatabaseURL())
        let newer = KilnSchema.migrations + [PostgresMigration(version: 99, name: "future", statements: ["SELECT 1"])]
        try PostgresMigrator.migrate(pool, newer)
        XCTAssertThrowsError(try KilnSchema.migrate(pool)) { error in
            guard case let PostgresError.schema(message)? = error as? PostgresError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("version 99"), message)
        }
    }
}
