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
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        counterLock.lock()
        counter += 1
        let serial = counter
        counterLock.unlock()
        let temp = "\(directory)/.\(base).tmp-\(getpid())-\(serial)"
        func reason() -> String { String(cString: strerror(errno)) }
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, reason: "cannot create a temp file: \(reason())") }
        var failure: String?
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = reason(); return }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = reason() }
        if close(fd) != 0, failure == nil { failure = reason() }
        if failure == nil, rename(temp, path) != 0 { failure = reason() }
        if let failure {
            unlink(temp)
            throw WriteError(path: path, reason: failure)
        }
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
