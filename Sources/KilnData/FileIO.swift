// Small POSIX file helpers: whole-file reads and atomic, durable writes.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemRead = Glibc.read
#else
private let systemRead = Darwin.read
#endif

enum FileIO {
    static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// The file's bytes, or nil if it does not exist.
    static func read(_ path: String, name: String) throws(DatasetError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw DatasetError(field: name, "cannot open cached file \(path): \(errorText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DatasetError(field: name, "cannot stat \(path): \(errorText())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DatasetError(field: name, "\(path) is not a regular file") }
        let size = Int(st.st_size)
        var failure: Int32 = 0
        var short = false
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            var done = 0
            while done < size {
                let n = systemRead(fd, buf.baseAddress! + done, size - done)
                if n < 0 { if errno == EINTR { continue }; failure = errno; break }
                if n == 0 { short = true; break }
                done += n
            }
            // Zero whatever was not read so that every element is initialized.
            if done < size { (buf.baseAddress! + done).initialize(repeating: 0, count: size - done) }
            initialized = size
        }
        if failure != 0 { throw DatasetError(field: name, "cannot read \(path): \(errorText(failure))") }
        if short { throw DatasetError(field: name, "\(path) shrank while being read") }
        return bytes
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(DatasetError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw DatasetError(field: nil, "cannot create directory \(current): \(errorText())")
            }
        }
    }


    /// Writes `bytes` to `path` atomically (see `AtomicFile`), as a dataset error.
    static func writeAtomically(_ bytes: [UInt8], to path: String, name: String) throws(DatasetError) {
        do {
            try AtomicFile.write(bytes, to: path)
        } catch {
            throw DatasetError(field: name, error.reason)
        }
    }

    static func removeLeftoverTempFiles(in directory: String) { AtomicFile.removeLeftovers(in: directory) }

    static func remove(_ path: String) { unlink(path) }
}

/// A pthread mutex.
final class Lock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
