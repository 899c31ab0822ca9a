import KilnData
import KilnHTTP
import KilnJSON

/// `/datasets`: uploads are read here (by their magic bytes: `.npy`, `.npz`, or JSON
/// fields) and handed to the dataset store as arrays.
struct DatasetsController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/datasets") { request in
            let upload = try Upload.read(request.body, contentType: request.headers["Content-Type"], query: request.query,
                                         maxBytes: service.config.maxDatasetBytes)
            if let name = upload.name, service.datasets.record(name) != nil {
                throw ServiceError(.conflict, code: "dataset_exists", "a dataset named '\(name)' exists; add a field with PUT /datasets/\(name)/fields/<field>, or remove it first", path: "name")
            }
            return .json(201, try service.datasets.store(name: upload.name, train: upload.train, test: upload.test))
        }
        router.add("GET", "/datasets") { _ in .json(200, ["datasets": .array(service.datasets.all)]) }
        router.add("DELETE", "/datasets/:name") { request in
            let record = try service.removeDataset(request.pathParameters["name"] ?? "")
            return .json(200, ["id": record["id"] ?? .null, "deleted": true])
        }
        router.add("PUT", "/datasets/:name/fields/:field") { request in
            let field = request.pathParameters["field"] ?? ""
            try Upload.checkName(field, "field")
            var query = request.query
            query["field"] = field
            let upload = try Upload.read(request.body, contentType: request.headers["Content-Type"], query: query,
                                         maxBytes: service.config.maxDatasetBytes)
            guard upload.train.count == 1, let array = upload.train[field] ?? upload.train.values.first else {
                throw ServiceError(.invalid, code: "invalid_dataset", "send one array for field '\(field)' (a .npy, or JSON {\"fields\": {\"\(field)\": [...]}})")
            }
            return .json(200, try service.addField(to: request.pathParameters["name"] ?? "", field: field, train: array, test: upload.test.values.first))
        }
    }
}

/// An uploaded dataset's arrays, read and checked before anything is stored.
struct Upload {
    var name: String?
    var train: [String: DataArray] = [:]
    var test: [String: DataArray] = [:]
    /// Which reader took the body, for error messages.
    var format = "JSON"

    /// Reads a body by its magic bytes, then its `Content-Type` (docs/data-formats.md):
    /// `.npy` (one field, named by `?field=`), `.npz` (with `test.<field>` members, or
    /// Keras's `x_train`/`y_train`/`x_test`/`y_test`), PNG/JPEG class folders in a zip,
    /// tar or tar.gz, CSV (`text/csv`, `?label=` names the label column),
    /// `multipart/form-data` (each file part read the same way; a `name` part names the
    /// dataset) or JSON `{"name", "fields": {...}, "test": {...}}`.
    static func read(_ body: [UInt8], contentType: String?, query: [String: String], maxBytes: Int) throws -> Upload {
        var upload = Upload(name: query["name"])
        let media = contentType.map(RequestBody.mediaType) ?? ""
        do {
            try upload.take(body, media: media, contentType: contentType, field: query["field"], label: query["label"], maxBytes: maxBytes)
        } catch let e as DatasetError {
            if e.tooLarge { throw ServiceError(.tooLarge, code: "dataset_too_large", "\(upload.format): \(e.description)", path: e.field) }
            throw ServiceError(.invalid, code: "invalid_dataset", "read as \(upload.format): \(e.description)", path: e.field)
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

    mutating func take(_ body: [UInt8], media: String, contentType: String?, field: String?, label: String?, maxBytes: Int) throws {
        func isTar(_ b: [UInt8]) -> Bool { b.count > 262 && Array(b[257..<262]) == Array("ustar".utf8) }
        if body.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) {  // \x93NUMPY
            format = ".npy"
            let field = field ?? "x"
            try Upload.checkName(field, "field")
            train[field] = try NPY.parse(body, name: field)
        } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) && !Upload.isImageArchive(body) {  // zip of .npy
            format = ".npz"
            let members = try NPZ.parse(body, maxOutputBytes: maxBytes)
            if let splits = try KerasArrays.splits(members) {
                format = ".npz (Keras arrays)"
                train = splits.train.fields
                test = splits.test?.fields ?? [:]
            } else {
                for (member, array) in members {
                    if member.hasPrefix("test.") { test[String(member.dropFirst(5))] = array } else { train[member] = array }
                }
            }
        } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) || body.starts(with: [0x1F, 0x8B]) || isTar(body) {
            format = "image folders"
            let images = try ImageFolders.parse(body, maxValues: maxBytes)
            train = images.splits.train.fields
            test = images.splits.test?.fields ?? [:]
        } else if media == "text/csv" {
            format = "CSV"
            train = try CSV.parse(body, labelColumn: label)
        } else if media == "multipart/form-data" {
            format = "multipart/form-data"
            let parts = try Multipart.parse(body, boundary: try Multipart.boundary(contentType: contentType ?? ""))
            for part in parts {
                if part.filename == nil && part.name == "name" { name = String(decoding: part.body, as: UTF8.self); continue }
                if part.filename == nil && part.name == "label" { continue }
                let labelPart = parts.first { $0.filename == nil && $0.name == "label" }.map { String(decoding: $0.body, as: UTF8.self) }
                let partMedia = part.contentType.map(RequestBody.mediaType)
                    ?? (part.filename?.lowercased().hasSuffix(".csv") == true ? "text/csv" : "application/json")
                var inner = Upload(name: name)
                try inner.take(part.body, media: partMedia, contentType: part.contentType, field: field ?? part.name, label: label ?? labelPart, maxBytes: maxBytes)
                format = "multipart/form-data part '\(part.name)' (\(inner.format))"
                for (k, v) in inner.train { guard train[k] == nil else { throw DatasetError(field: k, message: "field '\(k)' is given by two parts") }; train[k] = v }
                for (k, v) in inner.test { test[k] = v }
                if let n = inner.name { name = n }
            }
        } else {
            format = "JSON"
            let json: JSON
            do { json = try JSON.parse(body) } catch {
                throw ServiceError(.invalid, code: "invalid_json", "read as JSON (Content-Type '\(media.isEmpty ? "none" : media)'): \(error); send .npy, .npz, a zip or tar of image folders, text/csv, multipart/form-data or JSON fields")
            }
            guard let fields = json["fields"] else {
                throw ServiceError(.invalid, code: "missing_field", "send .npy, .npz, a zip or tar of image folders, text/csv, multipart/form-data, or JSON with 'fields'", path: "fields")
            }
            if let n = json["name"]?.stringValue { name = n }
            train = try JSONFields.parse(fields, path: "fields")
            if let t = json["test"] { test = try JSONFields.parse(t, path: "test") }
        }
    }

    /// A zip whose members are not all `.npy` arrays holds image folders.
    static func isImageArchive(_ zip: [UInt8]) -> Bool {
        // Member names stand in the central directory; an .npz names only `.npy` files.
        let text = String(decoding: zip.suffix(Swift.min(zip.count, 1 << 20)), as: UTF8.self).lowercased()
        return text.contains(".png") || text.contains(".jpg") || text.contains(".jpeg")
    }

    static func checkName(_ name: String, _ path: String) throws {
        guard StoredName.isValid(name) else {
            throw ServiceError(.invalid, code: "invalid_name", "names must match [A-Za-z0-9_.-]{1,64}, got '\(name.prefix(80))'", path: path)
        }
    }
}
