import Foundation
import KilnData

/// The MNIST files the end-to-end tests serve from a loopback mirror: the fixture in
/// `Tests/Fixtures/mnist` (the first 10,000 training and 2,000 test images of real
/// MNIST in its own gzipped IDX format, made by `scripts/make-mnist-fixture.py`), or
/// the full set in `$KILN_MNIST` when that is set. Always found: no test skips for
/// want of data.
public enum MNISTFiles {
    public static let names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

    public static func directory(file: String = #filePath) -> String {
        if let full = ProcessInfo.processInfo.environment["KILN_MNIST"], !full.isEmpty { return full }
        // This file is <repo>/Tests/KilnTestSupport/MNISTFiles.swift.
        return URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/mnist").path
    }

    /// Whether the files are the full MNIST (the built-in digests apply) or the fixture.
    public static var isFull: Bool { ProcessInfo.processInfo.environment["KILN_MNIST"].map { !$0.isEmpty } ?? false }

    /// The digests a mirror of these files needs (`Config.datasetChecksums`): none for
    /// the full set, the fixture's own otherwise.
    public static func checksums() throws -> [String: String] {
        guard !isFull else { return [:] }
        var digests: [String: String] = [:]
        for name in names {
            digests["mnist/\(name)"] = SHA256.hex([UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(directory())/\(name)"))))
        }
        return digests
    }
}
