import CCurl
import Foundation

/// Fetches a URL with libcurl: http and https only, no redirects, a size cap and a
/// time limit. An HTTP status of 400 or more is an error naming the URL.
public final class Downloader: @unchecked Sendable {
    let maxBytes: Int
    let timeoutSeconds: Int
    static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init(maxBytes: Int, timeoutSeconds: Int) {
        self.maxBytes = maxBytes
        self.timeoutSeconds = timeoutSeconds
        _ = Downloader.globalInit
    }

    final class Sink {
        var bytes: [UInt8] = []
        let limit: Int
        var overflowed = false
        init(limit: Int) { self.limit = limit }
    }

    public func fetch(_ url: String) throws(DatasetError) -> [UInt8] {
        let file = (url as NSString).lastPathComponent
        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw DatasetError(field: file, message: "only http and https URLs are allowed, got \(url)")
        }
        guard let handle = curl_easy_init() else { throw DatasetError(field: file, message: "libcurl could not start") }
        defer { curl_easy_cleanup(handle) }
        let sink = Sink(limit: maxBytes)
        let context = Unmanaged.passRetained(sink)
        defer { context.release() }
        _ = kiln_curl_setopt_string(handle, CURLOPT_URL, url)
        _ = kiln_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        _ = kiln_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        _ = kiln_curl_setopt_long(handle, CURLOPT_TIMEOUT, timeoutSeconds)
        _ = kiln_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, 30)
        _ = kiln_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = kiln_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque())
        _ = kiln_curl_setopt_write_function(handle) { data, size, count, user in
            let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
            let n = size * count
            if sink.bytes.count + n > sink.limit { sink.overflowed = true; return 0 }
            data!.withMemoryRebound(to: UInt8.self, capacity: n) { sink.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
            return n
        }
        let code = curl_easy_perform(handle)
        if sink.overflowed { throw DatasetError(field: file, message: "download of \(url) exceeds \(maxBytes) bytes") }
        guard code == CURLE_OK else {
            throw DatasetError(field: file, message: "download of \(url) failed: \(String(cString: curl_easy_strerror(code)))")
        }
        var status = 0
        _ = kiln_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        guard status < 300 else {
            throw DatasetError(field: file, message: "\(url) answered HTTP \(status)\(status >= 300 && status < 400 ? " (redirects are not followed)" : "")")
        }
        return sink.bytes
    }
}

/// Built-in datasets from the mirror, verified by SHA-256 and cached on disk.
public final class DatasetCatalog: @unchecked Sendable {
    let cacheDirectory: String
    let mirror: String
    let downloader: Downloader
    private let lock = NSLock()

    /// Known SHA-256 of each file, as published and as recompressed by common mirrors.
    static let checksums: [String: Set<String>] = [
        "mnist/train-images-idx3-ubyte.gz": ["440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19"],
        "mnist/train-labels-idx1-ubyte.gz": ["3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a"],
        "mnist/t10k-images-idx3-ubyte.gz": ["8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209"],
        "mnist/t10k-labels-idx1-ubyte.gz": ["f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920"],
    ]

    public init(cacheDirectory: String, mirror: String, maxDownloadBytes: Int = 512 << 20, timeoutSeconds: Int = 600) {
        self.cacheDirectory = cacheDirectory
        self.mirror = mirror.hasSuffix("/") ? String(mirror.dropLast()) : mirror
        downloader = Downloader(maxBytes: maxDownloadBytes, timeoutSeconds: timeoutSeconds)
    }

    /// A verified file: from the cache, or downloaded, checked and cached.
    func file(_ relative: String) throws(DatasetError) -> [UInt8] {
        let name = (relative as NSString).lastPathComponent
        let path = "\(cacheDirectory)/\(relative)"
        // Files without a published checksum here (CIFAR-10) are pinned on first
        // download: the digest is recorded beside the file and checked on every load.
        let pinPath = "\(path).sha256"
        var known = DatasetCatalog.checksums[relative] ?? []
        if known.isEmpty, let pinned = FileManager.default.contents(atPath: pinPath) {
            known = [String(decoding: pinned, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)]
        }
        if let cached = FileManager.default.contents(atPath: path) {
            let bytes = [UInt8](cached)
            if known.contains(SHA256.hex(bytes)) { return bytes }
            try? FileManager.default.removeItem(atPath: path)
        }
        let bytes = try downloader.fetch("\(mirror)/\(relative)")
        let digest = SHA256.hex(bytes)
        if !known.isEmpty && !known.contains(digest) {
            throw DatasetError(field: name, message: "SHA-256 mismatch (expected \(known.sorted().joined(separator: " or ")), got \(digest))")
        }
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let temp = "\(path).\(getpid()).tmp-kiln"
            try Data(bytes).write(to: URL(fileURLWithPath: temp))
            guard rename(temp, path) == 0 else { throw DatasetError(field: name, message: "cannot cache: \(String(cString: strerror(errno)))") }
            if DatasetCatalog.checksums[relative] == nil {
                try Data((digest + "\n").utf8).write(to: URL(fileURLWithPath: pinPath), options: .atomic)
            }
        } catch let e as DatasetError { throw e } catch {
            throw DatasetError(field: name, message: "cannot cache: \(error.localizedDescription)")
        }
        return bytes
    }

    public func load(builtIn name: String) throws(DatasetError) -> DatasetSplits {
        lock.lock()
        defer { lock.unlock() }
        switch name {
        case "mnist":
            func split(_ prefix: String) throws(DatasetError) -> Dataset {
                let imagesName = "\(prefix)-images-idx3-ubyte.gz", labelsName = "\(prefix)-labels-idx1-ubyte.gz"
                var images = try IDX.parse(try Gzip.decompress(try file("mnist/\(imagesName)"), name: imagesName), name: imagesName)
                let labels = try IDX.parse(try Gzip.decompress(try file("mnist/\(labelsName)"), name: labelsName), name: labelsName)
                guard images.shape.count == 3, images.shape[1] == 28, images.shape[2] == 28 else {
                    throw DatasetError(field: imagesName, message: "expected images of 28×28, got shape \(images.shape)")
                }
                guard labels.shape == [images.shape[0]] else {
                    throw DatasetError(field: labelsName, message: "\(labels.shape.first ?? 0) labels for \(images.shape[0]) images")
                }
                images.shape = images.shape + [1]
                images.dtype = .float32
                let scale: Float = 1 / 255
                images.values.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] *= scale } }
                return try Dataset(fields: ["image": images, "label": labels])
            }
            return DatasetSplits(train: try split("train"), test: try split("t10k"))
        case "cifar10":
            return try CIFAR10.parse(tarGz: try file("cifar10/cifar-10-binary.tar.gz"))
        default:
            throw DatasetError(field: name, message: "unknown built-in dataset '\(name)'")
        }
    }
}
