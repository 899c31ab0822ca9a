import Foundation
import KilnData
import KilnGraph
import KilnJSON
import KilnPostgres

/// Uploaded datasets in PostgreSQL: a `kiln_datasets` row (the record `GET /datasets`
/// shows) and one blob per field, `.npy` bytes as on disk, written with the row in one
/// transaction so a dataset is listed only once all its fields are stored.
public final class PostgresDatasetStore: DatasetStore, @unchecked Sendable {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    private var pool: PostgresPool { database.pool }

    static func blobID(_ id: String, _ field: String, test: Bool) -> String {
        "dataset/\(id)/\(test ? "test." : "")\(field)"
    }

    public func store(name: String?, train: [String: StagedArray], test: [String: StagedArray]) throws -> JSON {
        let id = StoredName.newID("ds")
        let record = DatasetRecord.make(id: id, name: name, train: train, test: test)
        try database.run {
            do {
                try pool.transaction { c in
                    for (field, array) in train { _ = try database.blobs.write(id: Self.blobID(id, field, test: false), on: c, file: array.path) }
                    for (field, array) in test { _ = try database.blobs.write(id: Self.blobID(id, field, test: true), on: c, file: array.path) }
                    try c.query("INSERT INTO kiln_datasets (id, name, record) VALUES ($1, $2, $3)",
                                [.text(id), name.map { .text($0) } ?? .null, .json(record)])
                }
            } catch let error as PostgresError where !PostgresDatabase.isUnreachable(error) {
                throw ServiceError(.insufficientStorage, code: "storage_error", "could not store the dataset: \(error)")
            }
        }
        return record
    }

    public var all: [JSON] {
        database.read { try pool.query("SELECT record FROM kiln_datasets ORDER BY created_at DESC, id").rows.map { try $0.json("record") } } ?? []
    }

    public func record(_ idOrName: String) -> JSON? {
        database.read {
            try pool.query("""
                SELECT record FROM kiln_datasets WHERE id = $1
                UNION ALL
                (SELECT record FROM kiln_datasets WHERE name = $1 ORDER BY created_at DESC LIMIT 1)
                LIMIT 1
                """, [.text(idOrName)]).first?.json("record")
        } ?? nil
    }

    public func schema(_ idOrName: String) -> DataSchema? {
        record(idOrName).flatMap(DatasetRecord.schema)
    }

    public func load(_ idOrName: String) -> DatasetSplits? {
        guard let record = record(idOrName), let id = record["id"]?.stringValue else { return nil }
        return database.read {
            try pool.transaction(isolation: .repeatableRead) { c -> DatasetSplits? in
                func read(_ members: JSON?, test: Bool) throws -> Dataset? {
                    guard let names = members?.objectMembers?.map(\.0) else { return nil }
                    var fields: [String: DataArray] = [:]
                    for name in names {
                        fields[name] = try NPY.parse(try database.blobs.bytes(id: Self.blobID(id, name, test: test), on: c), name: name)
                    }
                    return try Dataset(fields: fields)
                }
                guard let train = try read(record["fields"], test: false) else { return nil }
                return DatasetSplits(train: train, test: try read(record["test"], test: true))
            }
        } ?? nil
    }

    public func addField(id: String, field: String, train: StagedArray, test: StagedArray?) throws -> JSON {
        guard let current = record(id) else {
            throw ServiceError(.notFound, code: "dataset_not_found", "no dataset with id '\(id)'")
        }
        let record = try DatasetRecord.adding(field, train: train, test: test, record: current)
        try database.run {
            try pool.transaction { c in
                _ = try database.blobs.write(id: Self.blobID(id, field, test: false), on: c, file: train.path)
                if current["test"] != nil, let test { _ = try database.blobs.write(id: Self.blobID(id, field, test: true), on: c, file: test.path) }
                try c.query("UPDATE kiln_datasets SET record = $2 WHERE id = $1", [.text(id), .json(record)])
            }
        }
        return record
    }

    public func remove(id: String) throws {
        try database.run {
            try pool.transaction { c in
                try c.query("DELETE FROM kiln_datasets WHERE id = $1", [.text(id)])
                try c.query("DELETE FROM kiln_blobs WHERE starts_with(id, $1)", [.text("dataset/\(id)/")])
            }
        }
    }
}
