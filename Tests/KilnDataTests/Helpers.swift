// Helpers that build test inputs (archives come from KilnTestSupport.ArchiveFixtures).
import KilnTestSupport
import XCTest
@testable import KilnData

enum Fixtures {
    /// An .npy file with the given descr, shape, raw little-endian data and order.
    static func npy(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false, version: UInt8 = 1) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
        let pre = version == 1 ? 10 : 12
        header += String(repeating: " ", count: (64 - (pre + header.utf8.count + 1) % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        out += version == 1 ? ArchiveFixtures.le16(header.utf8.count) : ArchiveFixtures.le32(header.utf8.count)
        return out + Array(header.utf8) + data
    }

    static func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// The MNIST files the tests serve (see `MNISTFiles`).
    static func mnistDirectory() throws -> String { MNISTFiles.directory() }

    static func temporaryDirectory() -> String {
        var template = Array("/tmp/kiln-data-test-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return path
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func readFile(_ path: String) -> [UInt8] {
        (try? KilnData.FileIO.read(path, name: path)) .flatMap { $0 } ?? []
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }
}

/// Asserts that `body` throws a DatasetError whose description contains every fragment.
func assertDatasetError<T>(_ body: @autoclosure () throws -> T, contains fragments: [String],
                           file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a DatasetError containing \(fragments)", file: file, line: line)
    } catch let error as DatasetError {
        for f in fragments where !error.description.contains(f) {
            XCTFail("error '\(error.description)' lacks '\(f)'", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}
