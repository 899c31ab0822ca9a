#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Where the server puts request bodies too large to hold in memory (dataset uploads):
/// a directory of temp files, and a bound on how many may be written at once, so a few
/// clients cannot fill the disk with unfinished uploads.
public final class HTTPBodySpool: @unchecked Sendable {
    public let directory: String
    /// Bodies being written or handled at once; past it a new one is answered 503.
    public let maxFiles: Int
    private let lock = NSLock()
    private var openCount = 0
    private var serial = 0

    public init(directory: String, maxFiles: Int) {
        self.directory = directory
        self.maxFiles = maxFiles
    }

    /// Spooled bodies that exist now (being received, or held by their request).
    public var openFiles: Int {
        lock.lock()
        defer { lock.unlock() }
        return openCount
    }

    /// A new empty body file, or nil when `maxFiles` are open already.
    func makeFile(maxBytes: Int) throws(HTTPParseError) -> HTTPBodyFile? {
        lock.lock()
        guard openCount < maxFiles else {
            lock.unlock()
            return nil
        }
        openCount += 1
        serial += 1
        let path = "\(directory)/body-\(getpid())-\(serial)"
        lock.unlock()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            release()
            throw .bodyNotStored
        }
        return HTTPBodyFile(path: path, fd: fd, maxBytes: maxBytes, spool: self)
    }

    fileprivate func release() {
        lock.lock()
        openCount -= 1
        lock.unlock()
    }
}

/// A request body the server wrote to a file as it arrived (`HTTPRequest.bodyFile`).
/// The file is removed when the last reference goes, so a handler reads it, or copies
/// what it keeps, while it holds the request.
public final class HTTPBodyFile: @unchecked Sendable {
    public let path: String
    /// The most this body may hold (the route's limit, not `max_body_bytes`).
    public let maxBytes: Int
    /// Bytes written so far; the whole body once the request is complete.
    public private(set) var size = 0
    private var fd: Int32
    private let spool: HTTPBodySpool

    fileprivate init(path: String, fd: Int32, maxBytes: Int, spool: HTTPBodySpool) {
        self.path = path
        self.fd = fd
        self.maxBytes = maxBytes
        self.spool = spool
    }

    /// Appends bytes; a failed write (a full disk) is `.bodyNotStored`.
    func append(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw .bodyNotStored
            }
            done += n
        }
        size += bytes.count
    }

    /// The body is complete: the descriptor is closed, the file stays until released.
    func finishWriting() {
        if fd >= 0 { _ = close(fd) }
        fd = -1
    }

    deinit {
        if fd >= 0 { _ = close(fd) }
        unlink(path)
        spool.release()
    }
}
