// A throwaway PostgreSQL cluster for tests: initdb into a fresh temporary directory,
// start it with pg_ctl on a free loopback port (TCP only, trust authentication on
// 127.0.0.1), and stop and remove it at the end — also when a test fails or the process
// exits early. initdb and pg_ctl refuse to run as root, so as root they run as the
// `postgres` user (runuser), which Debian's postgresql package creates.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct PostgresServerError: Error, CustomStringConvertible {
    public var description: String
}

public final class PostgresServer: @unchecked Sendable {
    /// The user initdb creates (superuser, no password).
    public static let user = "kiln"
    public let binDirectory: String
    /// The temporary directory holding the cluster (`data/`) and its log (`server.log`).
    public let baseDirectory: String
    public var dataDirectory: String { baseDirectory + "/data" }
    public var logFile: String { baseDirectory + "/server.log" }
    public private(set) var port: Int
    private var removed = false
    /// A shell that stops and removes the cluster if this process dies without doing so
    /// (a crash ends a test run without atexit handlers).
    private var reaper: pid_t = 0

    /// The connection URL of `database` (the cluster starts with `postgres`).
    public func url(database: String = "postgres") -> String {
        "postgresql://\(PostgresServer.user)@127.0.0.1:\(port)/\(database)"
    }

    /// The directory holding initdb and pg_ctl (the newest under /usr/lib/postgresql),
    /// or nil when PostgreSQL is not installed.
    public static func findBinaries() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        let usable = versions.compactMap { Int($0) }.sorted(by: >).map { "\(root)/\($0)/bin" }
        return usable.first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") && FileManager.default.isExecutableFile(atPath: $0 + "/pg_ctl") }
    }

    /// Creates and starts a cluster.
    /// - Parameter durable: keep fsync on (benchmarks); tests turn it off for speed, which
    ///   changes nothing they check since every shutdown they cause is clean.
    public init(durable: Bool = false) throws {
        guard let bin = PostgresServer.findBinaries() else {
            throw PostgresServerError(description: "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin); run scripts/setup-deps.sh")
        }
        binDirectory = bin
        var template = Array("/tmp/kiln-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw PostgresServerError(description: "mkdtemp: \(String(cString: strerror(errno)))") }
        baseDirectory = String(cString: made)
        port = 0
        PostgresServer.register(self)
        startReaper()
        do {
            if getuid() == 0 {
                guard let account = getpwnam("postgres") else {
                    throw PostgresServerError(description: "running as root but there is no 'postgres' user to run initdb as")
                }
                guard chown(baseDirectory, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else {
                    throw PostgresServerError(description: "chown \(baseDirectory): \(String(cString: strerror(errno)))")
                }
            }
            try run("initdb", ["-D", dataDirectory, "-U", PostgresServer.user, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            var lastError: Error?
            for _ in 0..<5 {
                port = try PostgresServer.freePort()
                try configure(durable: durable)
                do {
                    try start()
                    return
                } catch {
                    lastError = error
                }
            }
            throw lastError!
        } catch {
            destroy()
            throw error
        }
    }

    deinit { destroy() }

    /// Starts the stopped cluster and waits until it accepts connections.
    public func start() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start"])
    }

    /// Stops the cluster (fast shutdown: connections are closed).
    public func stop() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-w", "-t", "60", "-m", "fast", "stop"])
    }

    /// Restarts the cluster: every connection is closed, the port stays the same.
    public func restart() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "-m", "fast", "restart"])
    }

    /// Stops the cluster if it runs and removes its directory. Safe to call twice.
    public func destroy() {
        PostgresServer.lock.lock()
        if removed { PostgresServer.lock.unlock(); return }
        removed = true
        PostgresServer.live.removeAll { $0 == baseDirectory }
        PostgresServer.lock.unlock()
        PostgresServer.stopAndRemove(binDirectory: binDirectory, baseDirectory: baseDirectory)
        if reaper > 0 {
            kill(reaper, SIGTERM)
            var status: Int32 = 0
            while waitpid(reaper, &status, 0) < 0 && errno == EINTR {}
        }
    }

    /// The last lines of the server's log, for failure messages.
    public func logTail(lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    // MARK: - Internals

    private func startReaper() {
        let stop = "\(binDirectory)/pg_ctl -D \(baseDirectory)/data -m immediate stop"
        let asPostgres = getuid() == 0 ? "runuser -u postgres -- \(stop)" : stop
        let script = "trap 'exit 0' TERM; while kill -0 \(getpid()) 2>/dev/null; do sleep 1 & wait $!; done; "
            + "[ -f \(baseDirectory)/data/postmaster.pid ] && \(asPostgres) >/dev/null 2>&1; rm -rf \(baseDirectory)"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let words: [String] = ["/bin/sh", "-c", script]
        let argv = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        if posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ) == 0 { reaper = pid }
    }

    private func configure(durable: Bool) throws {
        var settings = [
            "listen_addresses = '127.0.0.1'",
            "port = \(port)",
            "unix_socket_directories = ''",
            "max_connections = 100",
            "shared_buffers = 32MB",
            "log_min_messages = warning",
        ]
        if !durable { settings += ["fsync = off", "full_page_writes = off"] }
        // The last setting of a name wins, so re-configuring (a new port) only appends.
        let text = "\n# kiln test server\n" + settings.joined(separator: "\n") + "\n"
        guard let handle = FileHandle(forWritingAtPath: dataDirectory + "/postgresql.conf") else {
            throw PostgresServerError(description: "cannot open \(dataDirectory)/postgresql.conf")
        }
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        try handle.close()
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let (status, output) = PostgresServer.runTool(binDirectory: binDirectory, baseDirectory: baseDirectory, tool, arguments)
        guard status == 0 else {
            throw PostgresServerError(description: "\(tool) \(arguments.joined(separator: " ")) exited with \(status): \(output)\n\(logTail())")
        }
    }

    /// Runs a PostgreSQL tool, as `postgres` when this process is root, from the base
    /// directory (which that user can read), and waits for it. posix_spawn rather than
    /// Foundation's Process: the server pg_ctl leaves running inherits what the tool
    /// inherited, and Process waits for descriptors of its own to close, which a
    /// daemon never does. Output goes to a file for the same reason.
    static func runTool(binDirectory: String, baseDirectory: String, _ tool: String, _ arguments: [String]) -> (Int32, String) {
        let executable = binDirectory + "/" + tool
        var argv: [String]
        if getuid() == 0 {
            if let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
                argv = [runuser, "-u", "postgres", "--", executable] + arguments
            } else {
                argv = ["/bin/su", "postgres", "-s", "/bin/sh", "-c", ([executable] + arguments).map(shellQuoted).joined(separator: " ")]
            }
        } else {
            argv = [executable] + arguments
        }
        let directory = FileManager.default.fileExists(atPath: baseDirectory) ? baseDirectory : "/"
        // Start in a directory the postgres user can enter (the tests' own may be private).
        argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + argv
        let outputPath = NSTemporaryDirectory() + "kiln-pg-tool-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
        guard spawned == 0 else { return (-1, "cannot run \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS are macros: the low 7 bits are the signal, the next 8 the code.
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private static func shellQuoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    private static func stopAndRemove(binDirectory: String, baseDirectory: String) {
        if FileManager.default.fileExists(atPath: baseDirectory + "/data/postmaster.pid") {
            _ = runTool(binDirectory: binDirectory, baseDirectory: baseDirectory, "pg_ctl",
                        ["-D", baseDirectory + "/data", "-w", "-t", "30", "-m", "immediate", "stop"])
        }
        try? FileManager.default.removeItem(atPath: baseDirectory)
    }

    /// A port nothing listens on now (bound to 0 and released; start retries on a clash).
    public static func freePort() throws -> Int {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw PostgresServerError(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw PostgresServerError(description: "bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    // MARK: - Clean-up at exit

    private static let lock = NSLock()
    private static var live: [String] = []
    private static var binaries: [String: String] = [:]
    private static var exitHookInstalled = false

    /// Remembers the cluster so that a test process that exits without tearing down
    /// (a crash in a test, `exit`) still stops and removes it.
    private static func register(_ server: PostgresServer) {
        lock.lock()
        defer { lock.unlock() }
        live.append(server.baseDirectory)
        binaries[server.baseDirectory] = server.binDirectory
        if !exitHookInstalled {
            exitHookInstalled = true
            atexit { PostgresServer.removeAllAtExit() }
        }
    }

    private static func removeAllAtExit() {
        lock.lock()
        let remaining = live.map { ($0, binaries[$0] ?? "") }
        live.removeAll()
        lock.unlock()
        for (base, bin) in remaining { stopAndRemove(binDirectory: bin, baseDirectory: base) }
    }
}
