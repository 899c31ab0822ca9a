import KilnData
import KilnHTTP
import KilnJSON

/// `/datasets`: uploads are read here (by their magic bytes: `.npy`, `.npz`, or JSON
/// fields) and handed to the dataset store as arrays.
struct DatasetsController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/datasets") { request in
            let upload = try Upload.read(request.body, name: request.query["name"], field: request.query["field"])
            return .json(201, try service.datasets.store(name: upload.name, train: upload.train, test: upload.test))
        }
        router.add("GET", "/datasets") { _ in .json(200, ["datasets": .array(service.datasets.all)]) }
        router.add("DELETE", "/datasets/:name") { request in
            let record = try service.removeDataset(request.pathParameters["name"] ?? "")
            return .json(200, ["id": record["id"] ?? .null, "deleted": true])
        }
    }
}

/// An uploaded dataset's arrays, read and checked before anything is stored.
struct Upload {
    var name: String?
    var train: [String: DataArray] = [:]
    var test: [String: DataArray] = [:]

    /// The body is `.npy` (one field, named by `field`), `.npz` (stored or deflated
    /// members; `test.<field>` members form the test split) or JSON
    /// `{"name", "fields": {...}, "test": {...}}`.
    static func read(_ body: [UInt8], name: String?, field: String?) throws -> Upload {
        var upload = Upload(name: name)
        do {
            if body.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) {  // \x93NUMPY
                let field = field ?? "x"
                try checkName(field, "field")
                upload.train[field] = try NPY.parse(body, name: field)
            } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) {  // zip
                for (member, array) in try NPZ.parse(body) {
                    if member.hasPrefix("test.") { upload.test[String(member.dropFirst(5))] = array } else { upload.train[member] = array }
                }
            } else {
                let json = try JSON.parse(body)
                guard let fields = json["fields"] else {
                    throw ServiceError(.invalid, code: "missing_field", "send .npy, .npz, or JSON with 'fields'", path: "fields")
                }
                if let n = json["name"]?.stringValue { upload.name = n }
                upload.train = try JSONFields.parse(fields, path: "fields")
                if let t = json["test"] { upload.test = try JSONFields.parse(t, path: "test") }
            }
        } catch let e as DatasetError {
            throw ServiceError(.invalid, code: "invalid_dataset", e.description, path: e.field)
        }
        for field in Array(upload.train.keys) + Array(upload.test.keys) { try checkName(field, "fields.\(field)") }
        if let name = upload.name { try checkName(name, "name") }
        guard !upload.train.isEmpty else { throw ServiceError(.invalid, code: "invalid_dataset", "the upload holds no fields") }
        do {
            _ = try Dataset(fields: upload.train)
            if !upload.test.isEmpty { _ = try Dataset(fields: upload.test) }
        } catch {
            throw ServiceError(.invalid, code: "invalid_dataset", error.description, path: error.field.map { "fields.\($0)" })
        }
        for (k, v) in upload.test where upload.train[k]?.rowShape != v.rowShape {
            throw ServiceError(.invalid, code: "invalid_dataset", "test field '\(k)' has rows of shape \(v.rowShape) but the train field has \(upload.train[k]?.rowShape.description ?? "none")", path: "test.\(k)")
        }
        return upload
    }

    static func checkName(_ name: String, _ path: String) throws {
        guard StoredName.isValid(name) else {
            throw ServiceError(.invalid, code: "invalid_name", "names must match [A-Za-z0-9_.-]{1,64}, got '\(name.prefix(80))'", path: path)
        }
    }
}
