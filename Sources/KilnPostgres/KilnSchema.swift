/// Kiln's schema in PostgreSQL, as migrations applied in order at start
/// (`PostgresMigrator`). Append new versions at the end; never edit a released one.
/// docs/cluster.md describes the tables.
public enum KilnSchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "blobs", statements: PostgresBlobStore.schema),
        PostgresMigration(version: 2, name: "job queue", statements: PostgresJobQueue.schema),
        PostgresMigration(version: 3, name: "service stores", statements: serviceStores),
    ]

    /// What the service's stores keep beside the queue: the job's record as the API
    /// shows it and its warnings; model artifacts (graph, checkpoint and optimizer
    /// blobs, replaced together); uploaded datasets (one blob per field).
    public static let serviceStores = [
        "ALTER TABLE kiln_jobs ADD COLUMN record jsonb",
        "ALTER TABLE kiln_jobs ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]'",
        """
        CREATE TABLE kiln_artifacts (
            job_id text PRIMARY KEY,
            graph jsonb,
            epoch integer NOT NULL DEFAULT 0,
            checkpoint_blob text REFERENCES kiln_blobs(id),
            optimizer_blob text REFERENCES kiln_blobs(id),
            updated_at timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE kiln_datasets (
            id text PRIMARY KEY,
            name text,
            record jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())
        """,
        "CREATE INDEX kiln_datasets_name ON kiln_datasets (name, created_at)",
    ]

    /// Brings the database to the newest schema (see `PostgresMigrator.migrate`).
    @discardableResult
    public static func migrate(_ pool: PostgresPool) throws -> [Int] {
        try PostgresMigrator.migrate(pool, migrations)
    }
}
