import Foundation

/// Large values (checkpoints, model weights, datasets) as rows of `bytea` chunks of at
/// most 1 MiB, keyed by (blob id, seq). Writing pulls one chunk at a time from a reader
/// and reading hands one chunk at a time to a sink, so a blob is never held whole in
/// memory by this layer — the caller's file or tensor is the only full copy.
///
/// Every call runs on the connection it is given: inside the caller's transaction, a
/// blob and the rows that point at it land together or not at all.
public struct PostgresBlobStore: Sendable {
    /// The largest chunk: big enough that a round trip per chunk costs little, small
    /// enough that one chunk and its copy in libpq stay a few MiB.
    public static let maximumChunkSize = 1 << 20
    public let chunkSize: Int

    /// - Throws: `.invalidArgument` for a chunk size outside 1 byte … 1 MiB.
    public init(chunkSize: Int = PostgresBlobStore.maximumChunkSize) throws {
        guard chunkSize > 0 && chunkSize <= PostgresBlobStore.maximumChunkSize else {
            throw PostgresError.invalidArgument("chunk size \(chunkSize) is outside 1 … \(PostgresBlobStore.maximumChunkSize) bytes")
        }
        self.chunkSize = chunkSize
    }

    /// The schema the blob store needs (migration 1 of `KilnSchema`). Chunks are
    /// stored uncompressed (`STORAGE EXTERNAL`): weights and images hardly compress.
    public static let schema = [
        """
        CREATE TABLE kiln_blobs (
            id text PRIMARY KEY,
            size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
            chunks integer NOT NULL DEFAULT 0 CHECK (chunks >= 0),
            created_at timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE kiln_blob_chunks (
            blob_id text NOT NULL REFERENCES kiln_blobs(id) ON DELETE CASCADE,
            seq integer NOT NULL CHECK (seq >= 0),
            data bytea NOT NULL,
            PRIMARY KEY (blob_id, seq))
        """,
        "ALTER TABLE kiln_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    ]

    // MARK: - Writing

    /// Writes a blob from `read`, which fills the buffer it is given and returns the
    /// byte count (0 at the end). Run it in a transaction so that a reader that throws
    /// leaves nothing behind.
    /// - Returns: the blob's size in bytes.
    /// - Throws: `.server` 23505 when `id` exists, what `read` throws, or a database error.
    @discardableResult
    public func write(id: String, on connection: PostgresConnection, from read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Int {
        try connection.query("INSERT INTO kiln_blobs (id) VALUES ($1)", [.text(id)])
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var size = 0, seq = 0
        while true {
            // Fill the chunk completely unless the reader ends, so chunks are full-sized.
            var filled = 0
            while filled < chunkSize {
                let n = try buffer.withUnsafeMutableBytes { try read(UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
                precondition(n >= 0 && n <= chunkSize - filled, "reader returned \(n) for a buffer of \(chunkSize - filled)")
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            let chunk: PostgresValue = .bytes(filled == chunkSize ? buffer : Array(buffer[0..<filled]))
            try connection.query("INSERT INTO kiln_blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)", [.text(id), .int(seq), chunk])
            size += filled
            seq += 1
            if filled < chunkSize { break }
        }
        try connection.query("UPDATE kiln_blobs SET size = $2, chunks = $3 WHERE id = $1", [.text(id), .int(size), .int(seq)])
        return size
    }

    /// Writes a blob held in memory (small values and tests).
    @discardableResult
    public func write(id: String, on connection: PostgresConnection, bytes: [UInt8]) throws -> Int {
        var offset = 0
        return try write(id: id, on: connection) { buffer in
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { src in
                if n > 0 { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<offset + n])) }
            }
            offset += n
            return n
        }
    }

    /// Writes the contents of a file, read chunk by chunk.
    @discardableResult
    public func write(id: String, on connection: PostgresConnection, file path: String) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PostgresError.invalidArgument("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try write(id: id, on: connection) { buffer in
            while true {
                let n = Foundation.read(fd, buffer.baseAddress, buffer.count)
                if n >= 0 { return n }
                if errno != EINTR { throw PostgresError.invalidArgument("reading \(path): \(String(cString: strerror(errno)))") }
            }
        }
    }

    // MARK: - Reading

    /// Streams a blob to `sink`, one chunk at a time (the pointer is valid only during
    /// the call). Run it in a REPEATABLE READ transaction, or on a blob nobody deletes
    /// meanwhile, so that every chunk comes from one snapshot.
    /// - Returns: the blob's size.
    /// - Throws: `.missing` when there is no such blob, `.decoding` when chunks are missing.
    @discardableResult
    public func read(id: String, on connection: PostgresConnection, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        guard let header = try connection.query("SELECT size, chunks FROM kiln_blobs WHERE id = $1", [.text(id)]).first else {
            throw PostgresError.missing("blob '\(id)'")
        }
        let size = try header.int("size"), chunks = try header.int("chunks")
        var total = 0
        for seq in 0..<chunks {
            let result = try connection.query("SELECT data FROM kiln_blob_chunks WHERE blob_id = $1 AND seq = $2", [.text(id), .int(seq)])
            guard let row = result.first else { throw PostgresError.decoding("blob '\(id)': chunk \(seq) of \(chunks) is missing") }
            try row.withBytes("data") { data in
                total += data.count
                try sink(data)
            }
        }
        guard total == size else { throw PostgresError.decoding("blob '\(id)': \(total) bytes in chunks, \(size) recorded") }
        return size
    }

    /// Reads a blob into memory (small values and tests).
    public func bytes(id: String, on connection: PostgresConnection) throws -> [UInt8] {
        var out: [UInt8] = []
        try read(id: id, on: connection) { out.append(contentsOf: $0) }
        return out
    }

    /// Streams a blob into a file atomically: a temporary file beside it, fsync,
    /// rename over `path`, fsync of the directory. On any error the old file stays.
    @discardableResult
    public func read(id: String, on connection: PostgresConnection, toFile path: String) throws -> Int {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PostgresError.invalidArgument("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var renamed = false
        defer {
            if !renamed { unlink(temporary) }
        }
        let size: Int
        do {
            size = try read(id: id, on: connection) { data in
                var offset = 0
                while offset < data.count {
                    let n = Foundation.write(fd, data.baseAddress! + offset, data.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw PostgresError.invalidArgument("writing \(temporary): \(String(cString: strerror(errno)))") }
                    offset += n
                }
            }
            guard fsync(fd) == 0 else { throw PostgresError.invalidArgument("fsync \(temporary): \(String(cString: strerror(errno)))") }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw PostgresError.invalidArgument("rename to \(path): \(String(cString: strerror(errno)))") }
        renamed = true
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
        return size
    }

    // MARK: - Other

    /// The blob's size, or nil when it does not exist.
    public func size(id: String, on connection: PostgresConnection) throws -> Int? {
        try connection.query("SELECT size FROM kiln_blobs WHERE id = $1", [.text(id)]).first?.int("size")
    }

    /// Deletes a blob and its chunks; returns whether it existed.
    @discardableResult
    public func delete(id: String, on connection: PostgresConnection) throws -> Bool {
        try connection.query("DELETE FROM kiln_blobs WHERE id = $1", [.text(id)]).affectedRows > 0
    }
}
