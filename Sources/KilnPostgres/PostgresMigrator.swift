import Foundation

/// One step of the schema: statements run in one transaction, recorded under `version`.
/// Versions only grow; a released migration is never edited, a change is a new one.
public struct PostgresMigration: Sendable {
    public var version: Int
    public var name: String
    public var statements: [String]

    public init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }
}

/// Applies migrations at start. Every node calls `migrate` when it starts; a connection
/// advisory lock makes nodes that start together take turns, so each migration runs
/// once and every node sees the finished schema when `migrate` returns. The lock is
/// released on return, or by the server when the connection dies.
public enum PostgresMigrator {
    /// The advisory lock key: "KILN" in ASCII.
    public static let lockKey = 0x4B49_4C4E

    /// Applies the migrations the database lacks, in version order.
    /// - Returns: the versions applied by this call (empty when the schema was current).
    /// - Throws: `.schema` when the database holds a version newer than any here (a
    ///   newer Kiln migrated it), or the error of the statement that failed (its
    ///   migration is rolled back and not recorded).
    @discardableResult
    public static func migrate(_ pool: PostgresPool, _ migrations: [PostgresMigration]) throws -> [Int] {
        let ordered = migrations.sorted { $0.version < $1.version }
        precondition(Set(ordered.map(\.version)).count == ordered.count && (ordered.first?.version ?? 1) > 0,
                     "migration versions must be positive and unique")
        return try pool.withConnection { connection in
            try connection.execute("SELECT pg_advisory_lock($1::bigint)", [.int(lockKey)])
            defer { _ = try? connection.execute("SELECT pg_advisory_unlock($1::bigint)", [.int(lockKey)]) }
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS kiln_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let rows = try connection.execute("SELECT version FROM kiln_schema_migrations").rows
            let present = Set(try rows.map { try $0.int("version") })
            if let newest = present.max(), newest > (ordered.last?.version ?? 0) {
                throw PostgresError.schema("the database is at version \(newest), newer than this build's \(ordered.last?.version ?? 0); upgrade Kiln")
            }
            var applied: [Int] = []
            for migration in ordered where !present.contains(migration.version) {
                try connection.transaction { c in
                    for statement in migration.statements { try c.execute(statement) }
                    try c.execute("INSERT INTO kiln_schema_migrations (version, name) VALUES ($1, $2)",
                                  [.int(migration.version), .text(migration.name)])
                }
                applied.append(migration.version)
            }
            return applied
        }
    }

    /// The versions recorded in the database, ascending.
    public static func appliedVersions(_ pool: PostgresPool) throws -> [Int] {
        let exists = try pool.query("SELECT to_regclass('kiln_schema_migrations') IS NOT NULL AS present")
        guard try exists[0].bool("present") else { return [] }
        return try pool.query("SELECT version FROM kiln_schema_migrations ORDER BY version").rows.map { try $0.int("version") }
    }
}
