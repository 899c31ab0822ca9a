import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files written so that a crash leaves either the old or the new content, never a mix:
/// a temp file in the same directory, fsync, rename over the target, fsync of the
/// directory. Every state file of the service (jobs, metrics, checkpoints, datasets)
/// goes through here.
public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "could not write \((path as NSString).lastPathComponent): \(reason)" }
    }

    private static var counter = 0
    private static let counterLock = NSLock()

    public static func write(_ bytes: [UInt8], to path: String) throws(WriteError) {
        let temp = tempPath(for: path)
        do {
            let out = try OutputFile(path: temp)
            try out.write(bytes)
            try out.finish()
        } catch {
            throw WriteError(path: path, reason: error.reason)
        }
        guard rename(temp, path) == 0 else {
            let why = FileIO.errorText()
            unlink(temp)
            throw WriteError(path: path, reason: why)
        }
        syncDirectory(of: path)
    }

    /// Moves a complete, synced file to `path`: a rename, or across file systems a copy
    /// to a temp file beside `path`, synced, then renamed. The directory is synced after.
    public static func move(_ source: String, to path: String) throws(WriteError) {
        func reason() -> String { String(cString: strerror(errno)) }
        if rename(source, path) != 0 {
            guard errno == EXDEV else { throw WriteError(path: path, reason: reason()) }
            let temp = tempPath(for: path)
            do { try copy(source, to: temp) } catch {
                throw WriteError(path: path, reason: error.reason)
            }
            guard rename(temp, path) == 0 else {
                let why = reason()
                unlink(temp)
                throw WriteError(path: path, reason: why)
            }
            unlink(source)
        }
        syncDirectory(of: path)
    }

    /// A byte copy in 1 MiB pieces, synced.
    private static func copy(_ source: String, to target: String) throws(WriteError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw WriteError(path: source, reason: FileIO.errorText()) }
        defer { close(input) }
        let out = try OutputFile(path: target)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw WriteError(path: source, reason: FileIO.errorText()) }
            if n == 0 { break }
            try out.write(buffer, count: n)
        }
        try out.finish()
    }

    private static func tempPath(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        counterLock.lock()
        counter += 1
        let serial = counter
        counterLock.unlock()
        return "\(directory)/.\(base).tmp-\(getpid())-\(serial)"
    }

    private static func syncDirectory(of path: String) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    public static func write(_ text: String, to path: String) throws(WriteError) {
        try write(Array(text.utf8), to: path)
    }

    /// Removes temp files that interrupted writes left in `directory` (not recursive).
    public static func removeLeftovers(in directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
            unlink("\(directory)/\(name)")
        }
    }

    public static func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }
}

/// A new file written front to back, then synced and closed by `finish`. A file that was
/// not finished, or whose finish failed, is removed. The one writer of whole files:
/// `AtomicFile` writes its temp files with it, the upload stager its arrays.
final class OutputFile {
    let path: String
    private var fd: Int32

    init(path: String) throws(AtomicFile.WriteError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw AtomicFile.WriteError(path: path, reason: "cannot create the file: \(FileIO.errorText())") }
    }

    /// The first `count` bytes of `bytes` (all of them by default).
    func write(_ bytes: [UInt8], count: Int? = nil) throws(AtomicFile.WriteError) {
        let failure: AtomicFile.WriteError? = bytes.withUnsafeBytes { raw in
            do throws(AtomicFile.WriteError) { try write(UnsafeRawBufferPointer(rebasing: raw[0..<(count ?? raw.count)])); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(AtomicFile.WriteError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw AtomicFile.WriteError(path: path, reason: FileIO.errorText())
            }
            done += n
        }
    }

    func finish() throws(AtomicFile.WriteError) {
        let synced = fsync(fd) == 0
        let reason = FileIO.errorText()
        let closed = close(fd) == 0
        fd = -1
        guard synced && closed else {
            unlink(path)
            throw AtomicFile.WriteError(path: path, reason: reason)
        }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(path)
        }
    }
}
