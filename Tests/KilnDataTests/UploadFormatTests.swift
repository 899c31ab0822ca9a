// The upload readers: CSV, multipart/form-data, image class folders, Keras array names.
import KilnTestSupport
import XCTest
@testable import KilnData

final class CSVTests: XCTestCase {
    func testHeaderLabelColumnAndFeatures() throws {
        let text = "a,label,b\r\n1.5,0,2\r\n-3,2,4e1\r\n\r\n"
        let fields = try CSV.parse(Array(text.utf8))
        XCTAssertEqual(fields["features"]?.shape, [2, 2])
        XCTAssertEqual(fields["features"]?.values, [1.5, 2, -3, 40])
        XCTAssertEqual(fields["features"]?.dtype, .float32)
        XCTAssertEqual(fields["label"]?.values, [0, 2])
        XCTAssertEqual(fields["label"]?.dtype, .int32)
    }

    func testNamedLabelColumnQuotesBOMAndNoFinalNewline() throws {
        let text = "\u{FEFF}\"si\"\"ze\", price ,rooms\n\"12\",  3.25 ,1\n\n7,-1.5e0,\"2\"\r"
        let fields = try CSV.parse(Array(text.utf8), labelColumn: "price")
        XCTAssertEqual(fields["label"]?.values, [3.25, -1.5])
        XCTAssertEqual(fields["label"]?.dtype, .float32, "fractional labels stay float")
        XCTAssertEqual(fields["features"]?.values, [12, 1, 7, 2])
    }

    func testWithoutLabelEveryColumnIsAFeature() throws {
        let fields = try CSV.parse(Array("x,y\n1,2\n3,4\n".utf8))
        XCTAssertNil(fields["label"])
        XCTAssertEqual(fields["features"]?.shape, [2, 2])
    }

    func testErrorsNameLineAndColumn() {
        assertDatasetError(try CSV.parse(Array("a,label\n1,0\n2,x\n".utf8)), contains: ["line 3, column 2 ('label')", "'x' is not a number"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,2\n3\n".utf8)), contains: ["line 3", "1 cells", "2 columns"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,\n".utf8)), contains: ["line 2, column 2 ('b')", "empty cell"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,nan\n".utf8)), contains: ["line 2, column 2"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,2\n".utf8), labelColumn: "y"), contains: ["no column named 'y'", "a, b"])
        assertDatasetError(try CSV.parse(Array("a,b\n\"1,2\n".utf8)), contains: ["line 2", "not closed"])
        assertDatasetError(try CSV.parse([]), contains: ["empty"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,".utf8)), contains: ["line 2, column 2", "empty cell"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,2,3\n".utf8)), contains: ["line 2", "more cells"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,0x10\n".utf8)), contains: ["'0x10' is not a number"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,inf\n".utf8)), contains: ["'inf' is not a number"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,1e39\n".utf8)), contains: ["'1e39' is not a number"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,\"2\"x\n".utf8)), contains: ["line 2", "after a quoted cell"])
        assertDatasetError(try CSV.parse(Array("a,b\n".utf8)), contains: ["no rows"])
        // A quoted cell may span lines; errors give the line its record starts on, and later lines count them.
        assertDatasetError(try CSV.parse(Array("a,b\n\"1\n\",2\n3,z\n".utf8)), contains: ["line 2, column 1 ('a')"])
        assertDatasetError(try CSV.parse(Array("a,b\n1,\"2\"\n\"3\",\"\n\"\n4,z\n".utf8)), contains: ["line 3, column 2"])
    }
}

final class MultipartTests: XCTestCase {
    /// What `curl -F data=@mnist.csv -F label=digit` sends.
    func body(_ boundary: String) -> [UInt8] {
        var b = Array("preamble to ignore\r\n".utf8)
        b += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"data\"; filename=\"my file.csv\"\r\nContent-Type: text/csv\r\n\r\n".utf8)
        b += Array("a,label\r\n1,0\r\n".utf8)
        b += Array("\r\n--\(boundary)\r\ncontent-disposition: form-data; name=label\r\n\r\ndigit".utf8)
        b += Array("\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"raw\"; filename=\"x.bin\"\r\n\r\n".utf8)
        b += [0, 13, 10, 45, 45, 255]  // binary, with CRLF and "--" inside
        b += Array("\r\n--\(boundary)--\r\nepilogue".utf8)
        return b
    }

    func testPartsNamesFilenamesAndBinaryBodies() throws {
        let boundary = try Multipart.boundary(contentType: "multipart/form-data; boundary=\"------------------------d74496d66958873e\"")
        XCTAssertEqual(boundary, "------------------------d74496d66958873e")
        let parts = try Multipart.parse(body(boundary), boundary: boundary)
        XCTAssertEqual(parts.map(\.name), ["data", "label", "raw"])
        XCTAssertEqual(parts[0].filename, "my file.csv")
        XCTAssertEqual(parts[0].contentType, "text/csv")
        XCTAssertEqual(parts[0].body, Array("a,label\r\n1,0\r\n".utf8))
        XCTAssertNil(parts[1].filename)
        XCTAssertEqual(parts[1].body, Array("digit".utf8))
        XCTAssertEqual(parts[2].body, [0, 13, 10, 45, 45, 255])
        // A part's body feeds the other readers as it is.
        XCTAssertEqual(try CSV.parse(parts[0].body)["label"]?.values, [0])
    }

    func testMalformedBodiesAndHeaders() {
        assertDatasetError(try Multipart.boundary(contentType: "application/json"), contains: ["not multipart/form-data"])
        assertDatasetError(try Multipart.boundary(contentType: "multipart/form-data"), contains: ["lacks its boundary"])
        assertDatasetError(try Multipart.boundary(contentType: "multipart/form-data; boundary=" + String(repeating: "x", count: 71)), contains: ["1 to 70"])
        let b = "XyZ"
        assertDatasetError(try Multipart.parse(Array("no delimiter here".utf8), boundary: b), contains: ["no part starts"])
        assertDatasetError(try Multipart.parse(Array("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nbody without end".utf8), boundary: b),
                           contains: ["part 1", "not closed"])
        assertDatasetError(try Multipart.parse(Array("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--".utf8), boundary: b),
                           contains: ["part 1", "no Content-Disposition"])
        assertDatasetError(try Multipart.parse(Array("--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--".utf8), boundary: b),
                           contains: ["form-data with a name"])
        assertDatasetError(try Multipart.parse(Array("--XyZ\r\nbad header\r\n\r\nx\r\n--XyZ--".utf8), boundary: b), contains: ["no colon"])
    }
}

final class ImageFolderTests: XCTestCase {
    /// A gray w×h image whose pixels encode (seed, x, y).
    func gray(_ seed: Int, width: Int = 5, height: Int = 4) -> DecodedImage {
        DecodedImage(width: width, height: height, channels: 1, pixels: (0..<(width * height)).map { UInt8((seed * 37 + $0 * 11) % 256) })
    }

    func png(_ image: DecodedImage) throws -> [UInt8] { try XCTUnwrap(ImageCodec.encodePNG(image)) }

    func testPNGRoundTripsThroughLibpngAndJPEGDecodesClose() throws {
        let image = DecodedImage(width: 3, height: 2, channels: 3, pixels: Array(0..<18).map { UInt8($0 * 14) })
        XCTAssertEqual(try ImageCodec.decode(try png(image), name: "a.png"), image)
        // RGBA: alpha dropped.
        let rgba = DecodedImage(width: 1, height: 1, channels: 4, pixels: [10, 20, 30, 128])
        XCTAssertEqual(try ImageCodec.decode(try png(rgba), name: "b.png").pixels, [10, 20, 30])
        // A flat gray JPEG decodes to (nearly) its value.
        let flat = DecodedImage(width: 16, height: 16, channels: 1, pixels: [UInt8](repeating: 200, count: 256))
        let jpeg = try XCTUnwrap(ImageCodec.encodeJPEG(flat, quality: 95))
        let back = try ImageCodec.decode(jpeg, name: "c.jpg")
        XCTAssertEqual(back.shape, [16, 16, 1])
        XCTAssertTrue(back.pixels.allSatisfy { abs(Int($0) - 200) <= 2 }, "\(back.pixels.prefix(8))")
    }

    func testCorruptImagesSayTheFormatAndWhy() throws {
        var bytes = try png(gray(1))
        bytes.removeLast(bytes.count / 2)
        assertDatasetError(try ImageCodec.decode(bytes, name: "3/x.png"), contains: ["3/x.png", "read as PNG"])
        assertDatasetError(try ImageCodec.decode([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3], name: "y.jpg"), contains: ["y.jpg", "read as JPEG"])
        assertDatasetError(try ImageCodec.decode(Array("GIF89a".utf8), name: "z.gif"), contains: ["not a PNG or JPEG"])
        assertDatasetError(try ImageCodec.decode(try png(gray(1, width: 100, height: 100)), name: "big.png", maxValues: 1000), contains: ["over the limit"])
    }

    func testZipOfClassFoldersAsKerasReadsIt() throws {
        var members: [(name: String, data: [UInt8], deflated: Bool)] = []
        // Written out of order, inside one root folder, with macOS debris.
        for (cls, count) in [("dog", 2), ("cat", 3), ("bird", 1)] {
            for i in 0..<count { members.append(("pets/\(cls)/\(i).png", try png(gray(cls.count * 10 + i)), i % 2 == 0)) }
        }
        members.append(("pets/cat/.DS_Store", [1, 2, 3], false))
        members.append(("__MACOSX/pets/cat/._0.png", [0, 0], false))
        members.append(("pets/dog/", [], false))
        let dataset = try ImageFolders.parse(ArchiveFixtures.zip(members))
        XCTAssertEqual(dataset.classNames, ["bird", "cat", "dog"])
        XCTAssertNil(dataset.splits.test)
        let train = dataset.splits.train
        XCTAssertEqual(train["image"]?.shape, [6, 4, 5, 1])
        XCTAssertEqual(train["image"]?.dtype, .uint8)
        XCTAssertEqual(train["label"]?.dtype, .int32)
        XCTAssertEqual(train["label"]!.values.sorted(), [0, 1, 1, 1, 2, 2])
        // Every row's pixels are its own file's, whatever the order.
        for r in 0..<6 {
            let label = Int(train["label"]!.values[r])
            let row = train["image"]!.rows(r..<(r + 1)).values.map { UInt8($0) }
            let cls = dataset.classNames[label]
            let candidates = (0..<3).map { gray(cls.count * 10 + $0).pixels }
            XCTAssertTrue(candidates.contains(row), "row \(r) (\(cls)) matches none of its class's images")
        }
        // The order is fixed: the same archive gives the same rows.
        XCTAssertEqual(try ImageFolders.parse(ArchiveFixtures.zip(members)).splits.train["label"]?.values, train["label"]?.values)
    }

    func testTarGzWithTrainAndTestFoldersAndJPEGs() throws {
        let rgb = { (v: UInt8) in DecodedImage(width: 8, height: 8, channels: 3, pixels: [UInt8](repeating: v, count: 192)) }
        var files: [(path: String, data: [UInt8])] = []
        for (split, n) in [("training", 3), ("testing", 2)] {
            for i in 0..<n {
                files.append(("\(split)/0/\(i).jpg", try XCTUnwrap(ImageCodec.encodeJPEG(rgb(40), quality: 95))))
                files.append(("\(split)/1/\(i).png", try png(rgb(220))))
            }
        }
        let dataset = try ImageFolders.parse(ArchiveFixtures.gzip(ArchiveFixtures.tar(files)))
        XCTAssertEqual(dataset.classNames, ["0", "1"])
        XCTAssertEqual(dataset.splits.train["image"]?.shape, [6, 8, 8, 3])
        XCTAssertEqual(dataset.splits.test?["image"]?.shape, [4, 8, 8, 3])
        let test = dataset.splits.test!
        for r in 0..<4 {
            let first = test["image"]!.values[r * 192]
            XCTAssertEqual(test["label"]!.values[r], first > 128 ? 1 : 0, "row \(r): pixel \(first)")
        }
    }

    func testMixedSizesAndEmptyArchivesAreErrors() throws {
        let zip = ArchiveFixtures.zip([("a/1.png", try png(gray(1)), false), ("b/2.png", try png(gray(2, width: 6)), false)])
        assertDatasetError(try ImageFolders.parse(zip), contains: ["zip archive", "b/2.png is 6×4 gray but a/1.png is 5×4 gray", "does not resize"])
        assertDatasetError(try ImageFolders.parse(ArchiveFixtures.zip([("readme.txt", [1], false)])), contains: ["no .png or .jpg"])
        var broken = try png(gray(3))
        broken.removeLast(30)
        assertDatasetError(try ImageFolders.parse(ArchiveFixtures.tar([("a/1.png", try png(gray(1))), ("a/2.png", broken)])),
                           contains: ["tar archive", "a/2.png", "read as PNG"])
        assertDatasetError(try ImageFolders.parse(Array("plain text, not an archive at all".utf8) + [UInt8](repeating: 0, count: 600)),
                           contains: ["not a zip, tar or tar.gz"])
        assertDatasetError(try ImageFolders.parse(ArchiveFixtures.zip([("train/a/1.png", try png(gray(1)), false), ("test/b/1.png", try png(gray(1)), false)])),
                           contains: ["class folder 'b'", "no train folder"])
    }
}

final class KerasArraysTests: XCTestCase {
    func testMNISTNpzNamingBecomesTrainAndTestSplits() throws {
        // np.savez("mnist.npz", x_train=..., y_train=..., x_test=..., y_test=...) with uint8 arrays.
        let npz = ArchiveFixtures.zip([
            ("x_train.npy", Fixtures.npy(descr: "|u1", shape: [3, 2, 2], data: Array(0..<12)), true),
            ("y_train.npy", Fixtures.npy(descr: "|u1", shape: [3], data: [5, 0, 4]), false),
            ("x_test.npy", Fixtures.npy(descr: "|u1", shape: [1, 2, 2], data: [255, 0, 255, 0]), false),
            ("y_test.npy", Fixtures.npy(descr: "|u1", shape: [1], data: [7]), false),
        ])
        let splits = try XCTUnwrap(KerasArrays.splits(try NPZ.parse(npz)))
        XCTAssertEqual(splits.train["image"]?.shape, [3, 2, 2, 1], "gains a channel axis like the built-in mnist")
        XCTAssertEqual(splits.train["image"]?.dtype, .uint8)
        XCTAssertEqual(splits.train["image"]?.values, (0..<12).map(Float.init))
        XCTAssertEqual(splits.train["label"]?.values, [5, 0, 4])
        XCTAssertEqual(splits.test?["image"]?.values, [255, 0, 255, 0])
        XCTAssertEqual(splits.test?["label"]?.values, [7])
    }

    func testOtherNamesAreNotKerasAndMismatchesAreErrors() throws {
        let x = DataArray(shape: [2, 3], dtype: .float32, values: [1, 2, 3, 4, 5, 6])
        let y = DataArray(shape: [2], dtype: .int32, values: [0, 1])
        XCTAssertNil(try KerasArrays.splits(["image": x, "label": y]))
        XCTAssertNil(try KerasArrays.splits(["x_train": x, "y_train": y, "extra": y]))
        let plain = try XCTUnwrap(KerasArrays.splits(["x": x, "y": y]))
        XCTAssertEqual(plain.train["features"]?.shape, [2, 3])
        XCTAssertNil(plain.test)
        assertDatasetError(try KerasArrays.splits(["x_train": x, "y_train": y, "x_test": x]), contains: ["y_test", "is missing"])
        assertDatasetError(try KerasArrays.splits(["x_train": x, "y_train": DataArray(shape: [3], dtype: .int32, values: [0, 1, 2])]),
                           contains: ["y_train", "3 rows", "x_train has 2"])
    }

    func testUint8SurvivesAnNpyRoundTrip() throws {
        let a = DataArray(shape: [2, 2], dtype: .uint8, values: [0, 7, 128, 255])
        let bytes = NPY.encode(a)
        XCTAssertTrue(String(decoding: bytes.prefix(80), as: UTF8.self).contains("'|u1'"))
        XCTAssertEqual(bytes.count % 64, 4, "one byte per value after a 64-byte-aligned header")
        let back = try NPY.parse(bytes, name: "a")
        XCTAssertEqual(back.dtype, .uint8)
        XCTAssertEqual(back.values, a.values)
    }
}

/// One MNIST subset written as Keras's mnist.npz, as PNG class folders and as CSV must
/// read back to the same rows, so any of them trains as the .npz upload does.
final class SameDataEveryFormatTests: XCTestCase {
    func testMNISTSubsetReadsTheSameFromNpzPNGFoldersAndCSV() throws {
        let dir = try Fixtures.mnistDirectory()
        func idx(_ name: String) throws -> DataArray {
            try IDX.parse(Gzip.decompress(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)"))), name: name), name: name)
        }
        let images = try idx("t10k-images-idx3-ubyte.gz").rows(0..<400), labels = try idx("t10k-labels-idx1-ubyte.gz").rows(0..<400)
        let pixels = 28 * 28
        func row(_ r: Int) -> [UInt8] { images.values[(r * pixels)..<((r + 1) * pixels)].map { UInt8($0) } }
        let splits = [("train", 0..<300), ("test", 300..<400)]

        // Keras's mnist.npz: uint8 x_train [300, 28, 28], y_train [300], x_test, y_test.
        var members: [(name: String, data: [UInt8], deflated: Bool)] = []
        for (split, range) in splits {
            members.append(("x_\(split).npy", NPY.encode(DataArray(shape: [range.count, 28, 28], dtype: .uint8, values: Array(images.values[(range.lowerBound * pixels)..<(range.upperBound * pixels)]))), true))
            members.append(("y_\(split).npy", NPY.encode(DataArray(shape: [range.count], dtype: .uint8, values: Array(labels.values[range]))), true))
        }
        let npz = try XCTUnwrap(KerasArrays.splits(try NPZ.parse(ArchiveFixtures.zip(members))))

        // PNG class folders, train/ and test/, inside one root folder.
        var pngs: [(name: String, data: [UInt8], deflated: Bool)] = []
        for (split, range) in splits {
            for r in range {
                let png = try XCTUnwrap(ImageCodec.encodePNG(DecodedImage(width: 28, height: 28, channels: 1, pixels: row(r))))
                pngs.append(("mnist/\(split)/\(Int(labels.values[r]))/\(r).png", png, false))
            }
        }
        let folders = try ImageFolders.parse(ArchiveFixtures.zip(pngs))
        XCTAssertEqual(folders.classNames, (0...9).map(String.init))

        // CSV: label, then one column per pixel.
        var csv = "label," + (0..<pixels).map { "p\($0)" }.joined(separator: ",") + "\n"
        for r in 0..<300 { csv += "\(Int(labels.values[r]))," + row(r).map(String.init).joined(separator: ",") + "\n" }
        let table = try CSV.parse(Array(csv.utf8))

        // The same rows, in a canonical order (by label, then pixels).
        func canonical(_ image: DataArray, _ label: DataArray) -> [[Float]] {
            (0..<label.rowCount).map { [label.values[$0]] + Array(image.values[($0 * pixels)..<(($0 + 1) * pixels)]) }
                .sorted { $0.lexicographicallyPrecedes($1) }
        }
        let expected = [canonical(images.rows(0..<300), labels.rows(0..<300)), canonical(images.rows(300..<400), labels.rows(300..<400))]
        XCTAssertEqual(npz.train["image"]?.shape, [300, 28, 28, 1])
        XCTAssertEqual(folders.splits.train["image"]?.shape, [300, 28, 28, 1])
        XCTAssertEqual(folders.splits.test?["image"]?.shape, [100, 28, 28, 1])
        XCTAssertEqual(canonical(npz.train["image"]!, npz.train["label"]!), expected[0])
        XCTAssertEqual(canonical(npz.test!["image"]!, npz.test!["label"]!), expected[1])
        XCTAssertEqual(canonical(folders.splits.train["image"]!, folders.splits.train["label"]!), expected[0])
        XCTAssertEqual(canonical(folders.splits.test!["image"]!, folders.splits.test!["label"]!), expected[1])
        XCTAssertEqual(canonical(table["features"]!, table["label"]!), expected[0])
        for d in [npz.train["image"]!, folders.splits.train["image"]!] { XCTAssertEqual(d.dtype, .uint8) }
    }
}

/// Seeded byte mutations of valid uploads: every reader answers with data or a
/// DatasetError, never a crash.
final class UploadMutationTests: XCTestCase {
    func testMutatedUploadsNeverCrashTheReaders() throws {
        var g = SplitMix(seed: 23)
        let csv = Array("a,label,b\r\n1.5,0,\"2\"\r\n-3,2,4e1\n\"x\"\"y\",1,2\n".utf8)
        let boundary = "XyZ"
        let multipart = Array("pre\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.csv\"\r\n\r\n1,2\r\n--XyZ\r\nContent-Disposition: form-data; name=g\r\n\r\nv\r\n--XyZ--\r\n".utf8)
        let png = try XCTUnwrap(ImageCodec.encodePNG(DecodedImage(width: 4, height: 3, channels: 3, pixels: (0..<36).map { UInt8($0 * 7) })))
        let jpeg = try XCTUnwrap(ImageCodec.encodeJPEG(DecodedImage(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8($0 * 3) })))
        let zip = ArchiveFixtures.zip([("a/1.png", png, false), ("b/2.jpg", jpeg, true)])
        let special: [UInt8] = [0, 10, 13, 34, 44, 45, 0xFF, 0x80]
        func mutate(_ bytes: [UInt8]) -> [UInt8] {
            var out = bytes
            for _ in 0..<(1 + Int(g.next() % 4)) {
                guard !out.isEmpty else { break }
                let i = Int(g.next() % UInt64(out.count))
                switch g.next() % 4 {
                case 0: out[i] = special[Int(g.next() % UInt64(special.count))]
                case 1: out[i] = UInt8(truncatingIfNeeded: g.next())
                case 2: out.remove(at: i)
                default: out.removeLast(Int(g.next() % UInt64(out.count)))
                }
            }
            return out
        }
        var failures = 0
        for _ in 0..<400 {
            do { _ = try CSV.parse(mutate(csv)) } catch { failures += 1 }
            do { _ = try Multipart.parse(mutate(multipart), boundary: boundary) } catch { failures += 1 }
            do { _ = try ImageCodec.decode(mutate(png), name: "p.png") } catch { failures += 1 }
            do { _ = try ImageCodec.decode(mutate(jpeg), name: "j.jpg") } catch { failures += 1 }
            do { _ = try ImageFolders.parse(mutate(zip)) } catch { failures += 1 }
        }
        XCTAssertGreaterThan(failures, 400, "mutations are mostly refused")
    }
}

/// A small seeded generator for the mutation tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
