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

    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = Lock()

    /// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync,
    /// rename over `path`, fsync of the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String, name: String) throws(DatasetError) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let serial = counterLock.locked { () -> Int in counter += 1; return counter }
        let temp = "\(directory)/.\(base).tmp-\(getpid())-\(serial)"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DatasetError(field: name, "cannot create \(temp): \(errorText())") }
        var failure: String?
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = "cannot write \(temp): \(errorText())"; return }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = "cannot fsync \(temp): \(errorText())" }
        if close(fd) != 0, failure == nil { failure = "cannot close \(temp): \(errorText())" }
        if failure == nil, rename(temp, path) != 0 { failure = "cannot rename \(temp) to \(path): \(errorText())" }
        if let failure {
            unlink(temp)
            throw DatasetError(field: name, failure)
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// Removes temp files left by interrupted `writeAtomically` calls in `directory`.
    static func removeLeftoverTempFiles(in directory: String) {
        guard let dir = opendir(directory) else { return }
        var names = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix("."), name.contains(".tmp-") { names.append(name) }
        }
        closedir(dir)
        for name in names { unlink("\(directory)/\(name)") }
    }

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
