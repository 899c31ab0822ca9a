import Foundation
import KilnData
import KilnGraph
import KilnHTTP
import KilnJSON
import KilnTrain

/// Datasets uploaded with `POST /datasets`, kept under `<data>/uploads/<id>/` as one
/// `.npy` file per field (and `test.<field>.npy` for a test split) plus `dataset.json`.
/// Ids are generated here; a `name` is checked against `[A-Za-z0-9_.-]{1,64}`.
final class DatasetStore: @unchecked Sendable {
    let directory: String
    private let lock = NSLock()
    private var records: [String: JSON] = [:]

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for id in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where JobStore.isValidID(id) {
            AtomicFile.removeLeftovers(in: "\(directory)/\(id)")
            if let json = AtomicFile.read("\(directory)/\(id)/dataset.json").flatMap({ try? JSON.parse($0) }) { records[id] = json }
        }
    }

    var all: [JSON] {
        lock.lock()
        defer { lock.unlock() }
        return records.values.sorted { ($0["created_at"]?.stringValue ?? "") > ($1["created_at"]?.stringValue ?? "") }
    }

    /// Stores an upload. The body is `.npy` (one field, named by `?field=`), `.npz`
    /// (stored or deflated members; `test.<field>` members form the test split) or JSON
    /// `{"name", "fields": {...}, "test": {...}}`.
    func upload(_ request: HTTPRequest) throws -> JSON {
        var name = request.query["name"]
        var train: [String: DataArray] = [:], test: [String: DataArray] = [:]
        let body = request.body
        do {
            if body.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) {  // \x93NUMPY
                let field = request.query["field"] ?? "x"
                try checkName(field, "field")
                train[field] = try NPY.parse(body, name: field)
            } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) {  // zip
                for (member, array) in try NPZ.parse(body) {
                    if member.hasPrefix("test.") { test[String(member.dropFirst(5))] = array } else { train[member] = array }
                }
            } else {
                let json: JSON
                do { json = try JSON.parse(body) } catch { throw HTTPError(400, code: "invalid_json", message: "\(error)") }
                guard let fields = json["fields"] else {
                    throw HTTPError(400, code: "missing_field", message: "send .npy, .npz, or JSON with 'fields'", path: "fields")
                }
                if let n = json["name"]?.stringValue { name = n }
                train = try JSONFields.parse(fields, path: "fields")
                if let t = json["test"] { test = try JSONFields.parse(t, path: "test") }
            }
        } catch let e as DatasetError {
            throw HTTPError(400, code: "invalid_dataset", message: e.description, path: e.field)
        }
        for field in Array(train.keys) + Array(test.keys) { try checkName(field, "fields.\(field)") }
        if let name { try checkName(name, "name") }
        guard !train.isEmpty else { throw HTTPError(400, code: "invalid_dataset", message: "the upload holds no fields") }
        let trainSet: Dataset, testSet: Dataset?
        do {
            trainSet = try Dataset(fields: train)
            testSet = test.isEmpty ? nil : try Dataset(fields: test)
        } catch {
            throw HTTPError(400, code: "invalid_dataset", message: error.description, path: error.field.map { "fields.\($0)" })
        }
        if let testSet {
            for (k, v) in testSet.fields where train[k]?.rowShape != v.rowShape {
                throw HTTPError(400, code: "invalid_dataset", message: "test field '\(k)' has rows of shape \(v.rowShape) but the train field has \(train[k]?.rowShape.description ?? "none")", path: "test.\(k)")
            }
        }
        let id = "ds-" + String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36) + "-" + String(UInt64.random(in: 0...(1 << 40)), radix: 36)
        let folder = "\(directory)/\(id)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (k, v) in train { try AtomicFile.write(NPY.encode(v), to: "\(folder)/\(k).npy") }
        for (k, v) in test { try AtomicFile.write(NPY.encode(v), to: "\(folder)/test.\(k).npy") }
        let describe = { (d: Dataset) -> JSON in
            .object(d.fields.keys.sorted().map { k in
                (k, .object([("shape", JSON(d.fields[k]!.shape)), ("dtype", .string(d.fields[k]!.dtype.rawValue))]))
            })
        }
        var record: [(String, JSON)] = [("id", .string(id)), ("name", name.map(JSON.string) ?? .null), ("rows", JSON(trainSet.rowCount)),
                                        ("fields", describe(trainSet)), ("created_at", .string(Job.dates.string(from: Date())))]
        if let testSet { record.append(("test", describe(testSet))) }
        let json = JSON.object(record)
        try AtomicFile.write(json.serialized(pretty: true), to: "\(folder)/dataset.json")
        lock.lock()
        records[id] = json
        lock.unlock()
        return json
    }

    func checkName(_ name: String, _ path: String) throws {
        guard JobStore.isValidID(name) else {
            throw HTTPError(400, code: "invalid_name", message: "names must match [A-Za-z0-9_.-]{1,64}, got '\(name.prefix(80))'", path: path)
        }
    }

    func record(_ idOrName: String) -> JSON? {
        lock.lock()
        defer { lock.unlock() }
        return records[idOrName] ?? records.values.filter { $0["name"]?.stringValue == idOrName }
            .max { ($0["created_at"]?.stringValue ?? "") < ($1["created_at"]?.stringValue ?? "") }
    }

    /// Field row shapes of an uploaded dataset, for checking specs before training.
    func schema(_ idOrName: String) -> DataSchema? {
        guard let members = record(idOrName)?["fields"]?.objectMembers else { return nil }
        var fields: [String: [Int]] = [:]
        for (name, info) in members { fields[name] = Array((info["shape"]?.arrayValue ?? []).compactMap(\.intValue).dropFirst()) }
        return DataSchema(fields: fields, known: true)
    }

    /// The dataset with this id, or the newest one with this name.
    func load(_ idOrName: String) -> DatasetSplits? {
        guard let record = record(idOrName), let id = record["id"]?.stringValue else { return nil }
        func read(_ members: JSON?, prefix: String) -> Dataset? {
            guard let names = members?.objectMembers?.map(\.0) else { return nil }
            var fields: [String: DataArray] = [:]
            for n in names {
                guard let bytes = AtomicFile.read("\(directory)/\(id)/\(prefix)\(n).npy"), let a = try? NPY.parse(bytes, name: n) else { return nil }
                fields[n] = a
            }
            return try? Dataset(fields: fields)
        }
        guard let train = read(record["fields"], prefix: "") else { return nil }
        return DatasetSplits(train: train, test: read(record["test"], prefix: "test."))
    }
}
