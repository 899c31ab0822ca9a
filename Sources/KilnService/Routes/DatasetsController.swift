import KilnData
import KilnHTTP
import KilnJSON

/// `/datasets`: uploads are read here (by their magic bytes: `.npy`, `.npz`, or JSON
/// fields), staged as files, and handed to the dataset store. The server writes these
/// routes' bodies to a file as they arrive (`Service.start`), and `.npy` and `.npz`
/// arrays are converted from that file in windows, so an upload is never held whole in
/// memory; other formats are parsed in memory, up to `max_body_bytes`.
struct DatasetsController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/datasets") { request in
            let upload = try Upload.read(request, query: request.query, limits: service.uploadLimits, stager: service.stager)
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
            let upload = try Upload.read(request, query: query, limits: service.uploadLimits, stager: service.stager)
            guard upload.train.count == 1, let array = upload.train[field] ?? upload.train.values.first else {
                throw ServiceError(.invalid, code: "invalid_dataset", "send one array for field '\(field)' (a .npy, or JSON {\"fields\": {\"\(field)\": [...]}})")
            }
            return .json(200, try service.addField(to: request.pathParameters["name"] ?? "", field: field, train: array, test: upload.test.values.first))
        }
    }

    /// The routes whose bodies the server writes to a file (method, decoded path).
    static func takesLargeBody(_ method: String, _ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return (method == "POST" && parts == ["", "datasets"])
            || (method == "PUT" && parts.count == 5 && parts[1] == "datasets" && parts[3] == "fields")
    }
}

/// An uploaded dataset's arrays, read, checked and staged on disk before anything is stored.
struct Upload {
    struct Limits {
        /// Formats parsed in memory (CSV, JSON, images, multipart) are refused past this.
        var maxBodyBytes: Int
        /// The bound on an archive's inflated members and on image values.
        var maxDatasetBytes: Int
    }

    var name: String?
    var train: [String: StagedArray] = [:]
    var test: [String: StagedArray] = [:]
    /// Which reader took the body, for error messages.
    var format = "JSON"

    /// Reads a body by its magic bytes, then its `Content-Type` (docs/data-formats.md):
    /// `.npy` (one field, named by `?field=`), `.npz` (with `test.<field>` members, or
    /// Keras's `x_train`/`y_train`/`x_test`/`y_test`), PNG/JPEG class folders in a zip,
    /// tar or tar.gz, CSV (`text/csv`, `?label=` names the label column),
    /// `multipart/form-data` (each file part read the same way; a `name` part names the
    /// dataset) or JSON `{"name", "fields": {...}, "test": {...}}`.
    static func read(_ request: HTTPRequest, query: [String: String], limits: Limits, stager: ArrayStager) throws -> Upload {
        var upload = Upload(name: query["name"])
        let contentType = request.headers["Content-Type"]
        let media = contentType.map(RequestBody.mediaType) ?? ""
        do {
            let mapped = try request.bodyFile.map { file throws(StagingError) in try MappedFile(path: file.path) }
            if let mapped {
                try upload.take(mapped.bytes, release: mapped.release, media: media, contentType: contentType, field: query["field"], label: query["label"], limits: limits, stager: stager)
            } else {
                try request.body.withUnsafeBytes { body in
                    try upload.take(body, release: { _ in }, media: media, contentType: contentType, field: query["field"], label: query["label"], limits: limits, stager: stager)
                }
            }
        } catch let e as DatasetError {
            if e.tooLarge { throw ServiceError(.tooLarge, code: "dataset_too_large", "\(upload.format): \(e.description)", path: e.field) }
            throw ServiceError(.invalid, code: "invalid_dataset", "read as \(upload.format): \(e.description)", path: e.field)
        } catch where error is StagingError || error is AtomicFile.WriteError {
            throw ServiceError(.insufficientStorage, code: "storage_error", "could not stage the upload: \(error)")
        }
        for field in Array(upload.train.keys) + Array(upload.test.keys) { try checkName(field, "fields.\(field)") }
        if let name = upload.name { try checkName(name, "name") }
        guard !upload.train.isEmpty else { throw ServiceError(.invalid, code: "invalid_dataset", "the upload holds no fields") }
        do {
            try Dataset.checkRows(upload.train)
            try Dataset.checkRows(upload.test)
        } catch {
            throw ServiceError(.invalid, code: "invalid_dataset", error.description, path: error.field.map { "fields.\($0)" })
        }
        for (k, v) in upload.test where upload.train[k]?.rowShape != v.rowShape {
            throw ServiceError(.invalid, code: "invalid_dataset", "test field '\(k)' has rows of shape \(v.rowShape) but the train field has \(upload.train[k]?.rowShape.description ?? "none")", path: "test.\(k)")
        }
        return upload
    }

    /// Reads one body (or multipart part). `.npy` and `.npz` are staged as they are read,
    /// `release` told which spans are done with; the other formats are parsed in memory,
    /// then staged.
    mutating func take(_ body: UnsafeRawBufferPointer, release: @escaping (Range<Int>) -> Void, media: String, contentType: String?,
                       field: String?, label: String?, limits: Limits, stager: ArrayStager) throws {
        func isTar(_ b: UnsafeRawBufferPointer) -> Bool { b.count > 262 && Array(b[257..<262]) == Array("ustar".utf8) }
        func inMemory() throws -> [UInt8] {
            guard body.count <= limits.maxBodyBytes else {
                throw ServiceError(.tooLarge, code: "dataset_too_large", "a \(format) upload is parsed in memory, so it may be at most max_body_bytes (\(limits.maxBodyBytes) bytes); this one is \(body.count). Send large datasets as .npy or .npz, which are read as they arrive")
            }
            return Array(body)
        }
        if body.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) {  // \x93NUMPY
            format = ".npy"
            let field = field ?? "x"
            try Upload.checkName(field, "field")
            train[field] = try stager.stageNPY(body, release: release, name: field)
        } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) && !Upload.isImageArchive(body, release: release) {  // zip of .npy
            format = ".npz"
            let members = try stager.stageNPZ(body, release: release, maxOutputBytes: limits.maxDatasetBytes, reshape: KerasArrays.stagedShape)
            if let pairs = try KerasArrays.pairs(members) {
                format = ".npz (Keras arrays)"
                train = pairs.train
                test = pairs.test ?? [:]
            } else {
                for (member, array) in members {
                    if member.hasPrefix("test.") { test[String(member.dropFirst(5))] = array } else { train[member] = array }
                }
            }
        } else if body.starts(with: [0x50, 0x4B, 0x03, 0x04]) || body.starts(with: [0x1F, 0x8B]) || isTar(body) {
            format = "image folders"
            let images = try ImageFolders.parse(try inMemory(), maxValues: limits.maxDatasetBytes)
            train = try stage(images.splits.train.fields, stager)
            test = try stage(images.splits.test?.fields ?? [:], stager)
        } else if media == "text/csv" {
            format = "CSV"
            train = try stage(try CSV.parse(try inMemory(), labelColumn: label), stager)
        } else if media == "multipart/form-data" {
            format = "multipart/form-data"
            let parts = try Multipart.parse(try inMemory(), boundary: try Multipart.boundary(contentType: contentType ?? ""))
            for part in parts {
                if part.filename == nil && part.name == "name" { name = String(decoding: part.body, as: UTF8.self); continue }
                if part.filename == nil && part.name == "label" { continue }
                let labelPart = parts.first { $0.filename == nil && $0.name == "label" }.map { String(decoding: $0.body, as: UTF8.self) }
                let partMedia = part.contentType.map(RequestBody.mediaType)
                    ?? (part.filename?.lowercased().hasSuffix(".csv") == true ? "text/csv" : "application/json")
                var inner = Upload(name: name)
                try part.body.withUnsafeBytes { partBody in
                    try inner.take(partBody, release: { _ in }, media: partMedia, contentType: part.contentType, field: field ?? part.name,
                                   label: label ?? labelPart, limits: limits, stager: stager)
                }
                format = "multipart/form-data part '\(part.name)' (\(inner.format))"
                for (k, v) in inner.train { guard train[k] == nil else { throw DatasetError(field: k, message: "field '\(k)' is given by two parts") }; train[k] = v }
                for (k, v) in inner.test { test[k] = v }
                if let n = inner.name { name = n }
            }
        } else {
            format = "JSON"
            let json: JSON
            do { json = try JSON.parse(try inMemory()) } catch let error as JSONParseError {
                throw ServiceError(.invalid, code: "invalid_json", "read as JSON (Content-Type '\(media.isEmpty ? "none" : media)'): \(error); send .npy, .npz, a zip or tar of image folders, text/csv, multipart/form-data or JSON fields")
            }
            guard let fields = json["fields"] else {
                throw ServiceError(.invalid, code: "missing_field", "send .npy, .npz, a zip or tar of image folders, text/csv, multipart/form-data, or JSON with 'fields'", path: "fields")
            }
            if let n = json["name"]?.stringValue { name = n }
            train = try stage(try JSONFields.parse(fields, path: "fields"), stager)
            if let t = json["test"] { test = try stage(try JSONFields.parse(t, path: "test"), stager) }
        }
    }

    /// Arrays parsed in memory, written out as the stores keep them.
    private func stage(_ arrays: [String: DataArray], _ stager: ArrayStager) throws -> [String: StagedArray] {
        try arrays.mapValues { try stager.stage($0) }
    }

    /// A zip whose members are not all `.npy` arrays holds image folders.
    static func isImageArchive(_ zip: UnsafeRawBufferPointer, release: (Range<Int>) -> Void) -> Bool {
        // Member names stand in the central directory; an .npz names only `.npy` files.
        let tail = (zip.count - Swift.min(zip.count, 1 << 20))..<zip.count
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: zip[tail]), as: UTF8.self).lowercased()
        release(tail)
        return text.contains(".png") || text.contains(".jpg") || text.contains(".jpeg")
    }

    static func checkName(_ name: String, _ path: String) throws {
        guard StoredName.isValid(name) else {
            throw ServiceError(.invalid, code: "invalid_name", "names must match [A-Za-z0-9_.-]{1,64}, got '\(name.prefix(80))'", path: path)
        }
    }
}
