// Built-in datasets, downloaded from the configured mirror and cached on disk.

/// Downloads built-in datasets through libcurl from the configured mirror, verifies
/// SHA-256, caches files under `<cacheDirectory>/<dataset>/` (written atomically: temp
/// file, fsync, rename, directory fsync) and parses them.
///
/// Cache rules:
/// - A file with a known checksum (the MNIST files) is verified after download and again
///   whenever it is read from the cache; a cached file that fails is discarded and
///   downloaded again.
/// - A file without a known checksum (CIFAR-10: its canonical digest cannot be checked
///   here) is trusted on first use: after download it must parse completely (structure
///   check: gzip CRC, tar header checksums, record sizes, labels), and then its SHA-256 is
///   recorded next to it as `<file>.sha256`. Later loads verify the cached file against
///   that record, so on-disk corruption is detected and the file is downloaded again.
///   Filling in `checksums` with the canonical digest turns this into a strict check.
/// - A downloaded file is written to the cache only after it has been verified and parsed,
///   so a corrupt mirror file is never cached.
public final class DatasetCatalog: @unchecked Sendable {
    public let cacheDirectory: String
    public let mirror: String
    public let maxDownloadBytes: Int
    public let timeoutSeconds: Int
    private let lock = Lock()
    /// The checksum table in use (the static table; tests may change it).
    var knownChecksums: [String: String?] = DatasetCatalog.checksums

    /// Known SHA-256 digests of the mirror files (hex), by dataset directory and file name.
    public static let checksums: [String: String?] = [
        "mnist/train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
        "mnist/train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
        "mnist/t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
        "mnist/t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
        // Unknown here: trust on first download, then verified against the recorded digest.
        "cifar10/cifar-10-binary.tar.gz": nil,
    ]

    public static let builtInNames = ["mnist", "cifar10"]

    /// - Parameter checksums: digests that replace the built-in ones, by
    ///   `<dataset>/<file>` (a mirror that serves its own copies, e.g. a subset).
    public init(cacheDirectory: String, mirror: String, checksums: [String: String] = [:], maxDownloadBytes: Int = 512 << 20, timeoutSeconds: Int = 600) {
        self.cacheDirectory = cacheDirectory.count > 1 && cacheDirectory.hasSuffix("/") ? String(cacheDirectory.dropLast()) : cacheDirectory
        var m = mirror
        while m.hasSuffix("/") { m.removeLast() }
        self.mirror = m
        self.maxDownloadBytes = maxDownloadBytes
        self.timeoutSeconds = timeoutSeconds
        for (file, digest) in checksums { knownChecksums[file] = .some(digest.lowercased()) }
        for name in DatasetCatalog.builtInNames {
            FileIO.removeLeftoverTempFiles(in: "\(self.cacheDirectory)/\(name)")
        }
    }

    /// Loads "mnist" or "cifar10" (downloading on first use). Loads through one catalog
    /// are serialised; a second load reads the cache and downloads nothing.
    public func load(builtIn name: String) throws(DatasetError) -> DatasetSplits {
        lock.lock()
        defer { lock.unlock() }
        switch name {
        case "mnist": return try loadMNIST()
        case "cifar10": return try loadCIFAR10()
        default:
            throw DatasetError(field: nil, "unknown built-in dataset '\(name)' (available: \(DatasetCatalog.builtInNames.joined(separator: ", ")))")
        }
    }

    // MARK: - Datasets

    private func loadMNIST() throws(DatasetError) -> DatasetSplits {
        func split(_ prefix: String) throws(DatasetError) -> Dataset {
            let imageFile = "\(prefix)-images-idx3-ubyte.gz"
            let labelFile = "\(prefix)-labels-idx1-ubyte.gz"
            let images = try obtain(dataset: "mnist", file: imageFile) { (bytes) throws(DatasetError) -> DataArray in
                let raw = try Gzip.decompress(bytes, name: imageFile, maxOutputBytes: 256 << 20)
                return try MNIST.images(raw, name: imageFile)
            }
            let labels = try obtain(dataset: "mnist", file: labelFile) { (bytes) throws(DatasetError) -> DataArray in
                let raw = try Gzip.decompress(bytes, name: labelFile, maxOutputBytes: 16 << 20)
                return try MNIST.labels(raw, name: labelFile)
            }
            guard images.rowCount == labels.rowCount else {
                throw DatasetError(field: labelFile, "holds \(labels.rowCount) labels but \(imageFile) holds \(images.rowCount) images")
            }
            return try Dataset(fields: ["image": images, "label": labels])
        }
        return DatasetSplits(train: try split("train"), test: try split("t10k"))
    }

    private func loadCIFAR10() throws(DatasetError) -> DatasetSplits {
        let file = "cifar-10-binary.tar.gz"
        return try obtain(dataset: "cifar10", file: file) { (bytes) throws(DatasetError) -> DatasetSplits in
            try CIFAR10.parse(tarGz: bytes, name: file)
        }
    }

    // MARK: - Download, verify, cache

    /// Returns `parse` applied to the file's bytes, from the cache if a valid copy is
    /// there, otherwise downloaded, verified, parsed and then cached.
    private func obtain<T>(dataset: String, file: String, parse: ([UInt8]) throws(DatasetError) -> T) throws(DatasetError) -> T {
        let directory = "\(cacheDirectory)/\(dataset)"
        let path = "\(directory)/\(file)"
        let recordPath = path + ".sha256"
        let known: String? = knownChecksums["\(dataset)/\(file)"] ?? nil

        if let cached = try FileIO.read(path, name: file) {
            let digest = SHA256.hex(cached)
            var expected = known
            if expected == nil, let record = try FileIO.read(recordPath, name: file + ".sha256") {
                expected = String(decoding: record, as: UTF8.self).trimmingWhitespace()
            }
            if expected == nil || expected == digest {
                do throws(DatasetError) {
                    let value = try parse(cached)
                    if known == nil && expected == nil {
                        try FileIO.writeAtomically(Array(digest.utf8), to: recordPath, name: file)
                    }
                    return value
                } catch {
                    // A cached file that does not parse is discarded and downloaded again.
                }
            }
            FileIO.remove(path)
            FileIO.remove(recordPath)
        }

        let url = try fileURL(dataset: dataset, file: file)
        let bytes = try Downloader(maxBytes: maxDownloadBytes, timeoutSeconds: timeoutSeconds).fetch(url)
        let digest = SHA256.hex(bytes)
        if let known, known != digest {
            throw DatasetError(field: file, "SHA-256 mismatch (expected \(known), got \(digest)); downloaded from \(Redact.url(url))")
        }
        let value = try parse(bytes)
        try FileIO.makeDirectories(directory)
        try FileIO.writeAtomically(bytes, to: path, name: file)
        if known == nil {
            try FileIO.writeAtomically(Array(digest.utf8), to: recordPath, name: file)
        }
        return value
    }

    private func fileURL(dataset: String, file: String) throws(DatasetError) -> String {
        let lower = mirror.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw DatasetError(field: file, "the dataset mirror '\(Redact.url(mirror))' is not an http or https URL")
        }
        return "\(mirror)/\(dataset)/\(file)"
    }
}

/// MNIST IDX files: checks the expected layout on top of the IDX format.
enum MNIST {
    static func images(_ raw: [UInt8], name: String) throws(DatasetError) -> DataArray {
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else { return try IDX.parse(raw, name: name) } // IDX error
        guard raw[2] == 0x08, raw[3] == 3 else {
            throw DatasetError(field: name, "expected unsigned-byte images with 3 dimensions (type 0x08, rank 3), got type 0x\(String(raw[2], radix: 16)) rank \(raw[3])")
        }
        let a = try IDX.parse(raw, name: name, scale: 1 / 255, trailingShape: [1])
        guard a.shape[1] == 28, a.shape[2] == 28 else {
            throw DatasetError(field: name, "expected 28×28 images, got \(a.shape[1])×\(a.shape[2])")
        }
        return a
    }

    static func labels(_ raw: [UInt8], name: String) throws(DatasetError) -> DataArray {
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else { return try IDX.parse(raw, name: name) }
        guard raw[2] == 0x08, raw[3] == 1 else {
            throw DatasetError(field: name, "expected unsigned-byte labels with 1 dimension (type 0x08, rank 1), got type 0x\(String(raw[2], radix: 16)) rank \(raw[3])")
        }
        let a = try IDX.parse(raw, name: name)
        if let i = a.values.firstIndex(where: { $0 > 9 }) {
            throw DatasetError(field: name, "label \(Int(a.values[i])) at item \(i) is outside 0…9")
        }
        return a
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
