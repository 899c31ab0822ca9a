import Foundation

/// Where the real MNIST files are: `$KILN_MNIST`, else `../shared/data/mnist` beside the
/// repository, else `/work/shared/data/mnist`. nil when none holds all four files.
public enum MNISTFiles {
    public static let names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

    public static func directory(file: String = #filePath) -> String? {
        // This file is <repo>/Tests/KilnTestSupport/MNISTFiles.swift.
        let repo = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [ProcessInfo.processInfo.environment["KILN_MNIST"],
                          repo.deletingLastPathComponent().appendingPathComponent("shared/data/mnist").path,
                          "/work/shared/data/mnist"].compactMap { $0 }
        return candidates.first { dir in names.allSatisfy { FileManager.default.isReadableFile(atPath: "\(dir)/\($0)") } }
    }

    /// The places searched, for a skip message.
    public static var searched: String { "$KILN_MNIST, ../shared/data/mnist beside the repository, /work/shared/data/mnist" }
}
