// Image datasets as Keras's `image_dataset_from_directory` reads them: one folder per
// class, PNG or JPEG files inside, in a zip, tar or tar.gz archive.

/// The dataset an image archive holds, and the class name of each label index.
public struct ImageFolderDataset: Sendable {
    public var splits: DatasetSplits
    /// Sorted folder names: label i is `classNames[i]`.
    public var classNames: [String]
}

public enum ImageFolders {
    public static let imageField = "image"
    public static let labelField = "label"
    /// Top-level folders read as the train and test splits.
    static let trainFolders: Set<String> = ["train", "training"]
    static let testFolders: Set<String> = ["test", "testing"]

    /// Reads an archive of class folders (`cat/1.png`, `dog/2.jpg`, …), optionally inside
    /// one root folder, optionally split into `train/` and `test/` (or `training/`,
    /// `testing/`) folders of class folders.
    ///
    /// Class names are the folder names sorted, as in Keras, and become label indices
    /// (int32 field `label`); the test split uses the train split's classes. Images
    /// become the uint8 field `image` [rows, height, width, channels]: gray images have 1
    /// channel, colour ones 3 (alpha dropped). Every image must have the size and
    /// channels of the first; none is resized. Files other than .png/.jpg/.jpeg
    /// (`.DS_Store`, `__MACOSX/`) are skipped. Rows are in a fixed pseudo-random order,
    /// the same for every upload of the same archive, so that a validation fraction
    /// (the last rows) holds every class.
    /// - Throws: `DatasetError` saying the archive format it was read as and why it
    ///   failed, naming the file at fault.
    public static func parse(_ bytes: [UInt8], maxValues: Int = 1 << 28) throws(DatasetError) -> ImageFolderDataset {
        let (format, files) = try members(bytes)
        func fail(_ why: String) -> DatasetError { DatasetError(field: "\(format) archive", why) }
        var images: [(path: [Substring], bytes: [UInt8])] = []
        for (path, data) in files {
            let parts = path.split(separator: "/").filter { $0 != "." }
            guard let file = parts.last, parts.count >= 2, !parts.contains(where: { $0.hasPrefix("__MACOSX") || $0.hasPrefix(".") }) else { continue }
            let lower = file.lowercased()
            guard lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") else { continue }
            images.append((parts, data))
        }
        guard !images.isEmpty else {
            throw fail("holds no .png or .jpg images in class folders (expected e.g. cat/1.png, dog/2.png)")
        }
        // One root folder around everything is not a class.
        while images.allSatisfy({ $0.path.count >= 3 }), let root = images.first?.path.first, images.allSatisfy({ $0.path.first == root }) {
            images = images.map { (Array($0.path.dropFirst()), $0.bytes) }
        }
        let tops = Set(images.map { String($0.path[0]) })
        let split = tops.isSubset(of: trainFolders.union(testFolders)) && !tops.isDisjoint(with: trainFolders) && images.allSatisfy { $0.path.count >= 3 }
        var groups: [String: [(String, String, [UInt8])]] = [:]  // split → (class, path, bytes)
        for image in images {
            let splitName = split ? (trainFolders.contains(String(image.path[0])) ? "train" : "test") : "train"
            let classPath = split ? image.path.dropFirst() : image.path[...]
            groups[splitName, default: []].append((String(classPath.first!), image.path.joined(separator: "/"), image.bytes))
        }
        let train = groups["train"] ?? []
        let classNames = Set(train.map(\.0)).sorted()
        let labels = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($0.element, $0.offset) })
        var shape: (dims: [Int], file: String)?
        var budget = maxValues
        func decode(_ files: [(String, String, [UInt8])], split: String) throws(DatasetError) -> Dataset {
            var pixels: [Float] = []
            var rowLabels: [Float] = []
            for (className, path, data) in files.sorted(by: { $0.1 < $1.1 }) {
                guard let label = labels[className] else {
                    throw fail("\(path): class folder '\(className)' of the test split has no train folder; the train split has \(classNames.joined(separator: ", "))")
                }
                let image: DecodedImage
                do { image = try ImageCodec.decode(data, name: path, maxValues: budget) } catch {
                    throw DatasetError(field: "\(format) archive", "\(path): \(error.message)")
                }
                if let s = shape, s.dims != image.shape {
                    throw fail("\(path) is \(describe(image.shape)) but \(s.file) is \(describe(s.dims)); every image must have one size and colour mode (Kiln does not resize)")
                }
                shape = shape ?? (image.shape, path)
                budget -= image.pixels.count
                pixels.append(contentsOf: image.pixels.lazy.map(Float.init))
                rowLabels.append(Float(label))
            }
            let dims = shape!.dims
            let rows = rowLabels.count
            let order = shuffledOrder(rows)
            let image = DataArray(shape: [rows] + dims, dtype: .uint8, values: pixels).gather(rows: order)
            let label = DataArray(shape: [rows], dtype: .int32, values: rowLabels).gather(rows: order)
            return try Dataset(fields: [imageField: image, labelField: label])
        }
        guard !train.isEmpty else { throw fail("has a test folder but no train folder") }
        let trainSet = try decode(train, split: "train")
        let testSet = try groups["test"].map { files throws(DatasetError) in try decode(files, split: "test") }
        return ImageFolderDataset(splits: DatasetSplits(train: trainSet, test: testSet), classNames: classNames)
    }

    static func describe(_ dims: [Int]) -> String {
        "\(dims[1])×\(dims[0]) \(dims[2] == 1 ? "gray" : dims[2] == 3 ? "RGB" : "\(dims[2])-channel")"
    }

    /// A permutation of 0..<n from a fixed seed (SplitMix64 and Fisher–Yates).
    static func shuffledOrder(_ n: Int) -> [Int] {
        var order = Array(0..<n)
        var state: UInt64 = 0x4B49_4C4E  // fixed: the same order on every upload
        for i in stride(from: n - 1, to: 0, by: -1) {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            order.swapAt(i, Int(z % UInt64(i + 1)))
        }
        return order
    }

    /// The archive's regular files, by magic bytes: zip, tar, or gzip-compressed tar.
    static func members(_ bytes: [UInt8]) throws(DatasetError) -> (format: String, files: [(String, [UInt8])]) {
        if bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]) || bytes.starts(with: [0x50, 0x4B, 0x05, 0x06]) {
            let r: Result<[(String, [UInt8])], DatasetError> = bytes.withUnsafeBytes { z in
                do throws(DatasetError) {
                    var total = 0
                    var out: [(String, [UInt8])] = []
                    for entry in try Zip.entries(z, archive: "zip archive") where !entry.name.hasSuffix("/") {
                        out.append((entry.name, try Zip.read(z, entry, field: entry.name, archive: "zip archive", totalOut: &total, maxOutputBytes: NPZ.defaultMaxOutputBytes)))
                    }
                    return .success(out)
                } catch { return .failure(DatasetError(field: "zip archive", error.description)) }
            }
            return ("zip", try r.get())
        }
        var tar = bytes
        var format = "tar"
        if bytes.starts(with: [0x1F, 0x8B]) {
            do { tar = try Gzip.decompress(bytes, name: "tar.gz archive") } catch {
                throw DatasetError(field: "tar.gz archive", error.message)
            }
            format = "tar.gz"
        }
        // A tar header: "ustar" magic, or (old tar) a valid header checksum.
        let looksLikeTar = tar.count >= 512 && (Array(tar[257..<262]) == Array("ustar".utf8) || {
            var sum = 0
            for i in 0..<512 { sum += (i >= 148 && i < 156) ? 0x20 : Int(tar[i]) }
            return Tar.octal(tar, 148, 8) == sum
        }())
        guard looksLikeTar else {
            throw DatasetError(field: "image archive", "not a zip, tar or tar.gz archive (its first bytes match none of them)")
        }
        let files = try Tar.regularFiles(tar, name: "\(format) archive")
        return (format, files.map { ($0.path, Array(tar[$0.data])) })
    }
}
