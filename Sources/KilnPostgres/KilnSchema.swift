/// Kiln's schema in PostgreSQL, as migrations applied in order at start
/// (`PostgresMigrator`). Append new versions at the end; never edit a released one.
/// docs/cluster.md describes the tables.
public enum KilnSchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "blobs", statements: PostgresBlobStore.schema),
        PostgresMigration(version: 2, name: "job queue", statements: PostgresJobQueue.schema),
    ]

    /// Brings the database to the newest schema (see `PostgresMigrator.migrate`).
    @discardableResult
    public static func migrate(_ pool: PostgresPool) throws -> [Int] {
        try PostgresMigrator.migrate(pool, migrations)
    }
}
