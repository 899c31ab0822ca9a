import Foundation
import KilnPostgres
import XCTest

final class PostgresBlobStoreTests: PostgresTestCase {
    private func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    func testFiveMebibytesRoundTripChunkByChunk() throws {
        let pool = try migratedPool()
        let blobs = try PostgresBlobStore()
        let data = randomBytes(5 * 1024 * 1024 + 12345, seed: 1)
        // The reader hands out odd-sized pieces; the store still writes full 1 MiB chunks.
        var offset = 0, calls = 0
        let size = try pool.transaction { c in
            try blobs.write(id: "model-a", on: c) { buffer in
                calls += 1
                let n = min(buffer.count, 300_000, data.count - offset)
                data.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
                offset += n
                return n
            }
        }
        XCTAssertEqual(size, data.count)
        XCTAssertGreaterThan(calls, 6)
        let chunks = try pool.query("SELECT seq, length(data) AS n FROM kiln_blob_chunks WHERE blob_id = $1 ORDER BY seq", [.text("model-a")]).rows
        XCTAssertEqual(try chunks.map { try $0.int("seq") }, Array(0..<6))
        XCTAssertEqual(try chunks.map { try $0.int("n") }, [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 12345])
        // Read back chunk by chunk: no piece larger than a chunk reaches the sink.
        var back: [UInt8] = []
        var largest = 0
        let read = try pool.transaction(isolation: .repeatableRead) { c in
            try blobs.read(id: "model-a", on: c) { piece in
                largest = max(largest, piece.count)
                back.append(contentsOf: piece)
            }
        }
        XCTAssertEqual(read, data.count)
        XCTAssertEqual(largest, 1 << 20)
        XCTAssertTrue(back == data)
    }

    func testSizesAtChunkBoundaries() throws {
        let pool = try migratedPool()
        let blobs = try PostgresBlobStore(chunkSize: 1000)
        for (i, count) in [0, 1, 999, 1000, 1001, 3000].enumerated() {
            let data = randomBytes(count, seed: UInt64(i + 7))
            try pool.withConnection { c in
                try blobs.write(id: "b\(count)", on: c, bytes: data)
                XCTAssertEqual(try blobs.size(id: "b\(count)", on: c), count)
                XCTAssertEqual(try blobs.bytes(id: "b\(count)", on: c), data, "\(count) bytes")
            }
            let chunks = try pool.query("SELECT count(*) AS n FROM kiln_blob_chunks WHERE blob_id = $1", [.text("b\(count)")])[0].int("n")
            XCTAssertEqual(chunks, (count + 999) / 1000, "\(count) bytes")
        }
        XCTAssertThrowsError(try PostgresBlobStore(chunkSize: (1 << 20) + 1))
        XCTAssertThrowsError(try PostgresBlobStore(chunkSize: 0))
    }

    func testAFailingReaderLeavesNothingBehind() throws {
        let pool = try migratedPool()
        let blobs = try PostgresBlobStore()
        struct DiskError: Error {}
        var served = 0
        XCTAssertThrowsError(try pool.transaction { c in
            try blobs.write(id: "half", on: c) { buffer in
                if served >= 3 << 20 { throw DiskError() }
                memset(buffer.baseAddress!, 7, buffer.count)
                served += buffer.count
                return buffer.count
            }
        }) { XCTAssertTrue($0 is DiskError) }
        XCTAssertEqual(try pool.query("SELECT count(*) AS n FROM kiln_blobs")[0].int("n"), 0)
        XCTAssertEqual(try pool.query("SELECT count(*) AS n FROM kiln_blob_chunks")[0].int("n"), 0)
    }

    func testFileRoundTripIsAtomicAndMissingBlobsAreNamed() throws {
        let pool = try migratedPool()
        let blobs = try PostgresBlobStore()
        let dir = NSTemporaryDirectory() + "kiln-blob-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = randomBytes(2_500_000, seed: 3)
        try Data(data).write(to: URL(fileURLWithPath: dir + "/in.bin"))
        try pool.transaction { c in _ = try blobs.write(id: "file", on: c, file: dir + "/in.bin") }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/out.bin"))
        try pool.withConnection { c in _ = try blobs.read(id: "file", on: c, toFile: dir + "/out.bin") }
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin"))), data)
        // A missing blob: a clear error, and the existing file is untouched.
        XCTAssertThrowsError(try pool.withConnection { c in try blobs.read(id: "nope", on: c, toFile: dir + "/out.bin") }) { error in
            XCTAssertEqual(error as? PostgresError, .missing("blob 'nope'"))
        }
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin"))), data)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["in.bin", "out.bin"])
        // Ids are unique; delete removes the chunks too.
        XCTAssertThrowsError(try pool.withConnection { c in try blobs.write(id: "file", on: c, bytes: [1]) }) {
            XCTAssertEqual(($0 as? PostgresError)?.isUniqueViolation, true)
        }
        XCTAssertTrue(try pool.withConnection { try blobs.delete(id: "file", on: $0) })
        XCTAssertEqual(try pool.query("SELECT count(*) AS n FROM kiln_blob_chunks")[0].int("n"), 0)
    }
}
