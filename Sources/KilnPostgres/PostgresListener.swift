import Foundation

/// Delivers `NOTIFY`s on a thread of its own, over a connection of its own.
///
/// The thread `poll()`s the connection's socket (and a pipe that wakes it for new channels
/// and for `stop()`), reads with `PQconsumeInput` and hands each `PQnotifies` entry to
/// `onNotification(channel, payload)`. When the database goes away it reconnects with
/// back-off, LISTENs again on every channel, and then calls `onReconnect`: notifications
/// sent while it was away are lost, so a consumer re-reads the state it follows there
/// (a worker tries a claim, a stream re-reads its job's epochs).
///
/// Callbacks run on the listener thread, one at a time, and must return quickly.
public final class PostgresListener: @unchecked Sendable {
    public typealias Handler = @Sendable (_ channel: String, _ payload: String) -> Void

    private let url: String
    private let onNotification: Handler
    private let onReconnect: @Sendable () -> Void
    private let lock = NSLock()
    private var channels: [String] = []
    /// Channels added since the thread last LISTENed.
    private var pending: [String] = []
    private var connection: PostgresConnection?
    private var stopping = false
    private var connected = false
    private var reconnects = 0
    private let wakeRead: Int32, wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?
    private var listenerThread: pthread_t?

    /// Starts listening on `channels` (identifiers: letters, digits, `_`).
    /// - Throws: `.invalidURL`, or `.connection` when the first connection fails (later
    ///   failures are retried on the thread).
    public init(url: String, channels: [String], onReconnect: @escaping @Sendable () -> Void = {},
                onNotification: @escaping Handler) throws {
        for channel in channels { try PostgresListener.check(channel) }
        self.url = url
        self.onNotification = onNotification
        self.onReconnect = onReconnect
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw PostgresError.connection("pipe: \(String(cString: strerror(errno)))") }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        let first: PostgresConnection
        do {
            first = try PostgresConnection(url: url)
            for channel in channels { try first.execute("LISTEN \(channel)") }
        } catch {
            close(wakeRead)
            close(wakeWrite)
            throw error
        }
        self.channels = channels
        connection = first
        connected = true
        // The thread keeps the listener alive until stop() ends it.
        let thread = Thread { self.run() }
        thread.name = "kiln-pg-listener"
        self.thread = thread
        thread.start()
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Adds a channel; LISTEN runs on the listener thread before it next waits.
    public func listen(_ channel: String) throws {
        try PostgresListener.check(channel)
        lock.lock()
        if !channels.contains(channel) {
            channels.append(channel)
            pending.append(channel)
        }
        lock.unlock()
        wake()
    }

    /// True while the listener's connection is up.
    public var isConnected: Bool { lock.lock(); defer { lock.unlock() }; return connected }

    /// Times the connection was re-established after a failure.
    public var reconnectCount: Int { lock.lock(); defer { lock.unlock() }; return reconnects }

    /// Stops the thread and closes the connection; waits for the thread to end, except
    /// when called from a callback on that thread, which ends after the callback.
    /// The thread holds the listener, so a listener runs until it is stopped.
    public func stop() {
        lock.lock()
        let wasRunning = !stopping && thread != nil
        stopping = true
        let onListenerThread = listenerThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
        lock.unlock()
        guard wasRunning else { return }
        wake()
        if !onListenerThread { finished.wait() }
    }

    // MARK: - Thread

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        lock.lock()
        listenerThread = pthread_self()
        lock.unlock()
        defer {
            connection?.close()
            finished.signal()
        }
        while !isStopping {
            guard let connection, connection.isConnected else {
                reconnectWithBackoff()
                continue
            }
            do {
                try listenPending(on: connection)
                var fds = [pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
                let ready = poll(&fds, 2, 1000)
                if ready < 0 && errno != EINTR { throw PostgresError.connection("poll: \(String(cString: strerror(errno)))") }
                if fds[1].revents != 0 { drainWakePipe() }
                if fds[0].revents != 0 {
                    try connection.consumeInput()
                    while let (channel, payload) = connection.nextNotification() { onNotification(channel, payload) }
                }
            } catch {
                lock.lock()
                connected = false
                lock.unlock()
                connection.close()
            }
        }
    }

    private func listenPending(on connection: PostgresConnection) throws {
        lock.lock()
        let toListen = pending
        pending.removeAll()
        lock.unlock()
        // On failure the reconnect that follows LISTENs on every channel again.
        for channel in toListen { try connection.execute("LISTEN \(channel)") }
    }

    /// Opens a new connection, LISTENs on every channel, then tells the owner.
    private func reconnectWithBackoff() {
        var delay = 0.05
        while !isStopping {
            do {
                let fresh = try PostgresConnection(url: url)
                lock.lock()
                let all = channels
                pending.removeAll()
                lock.unlock()
                for channel in all { try fresh.execute("LISTEN \(channel)") }
                lock.lock()
                connection = fresh
                connected = true
                reconnects += 1
                lock.unlock()
                onReconnect()
                return
            } catch {
                waitForWake(seconds: delay)
                delay = min(delay * 2, 2)
            }
        }
    }

    private func waitForWake(seconds: Double) {
        var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
        if poll(&fd, 1, Int32(seconds * 1000)) > 0 { drainWakePipe() }
    }

    private func drainWakePipe() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    /// LISTEN takes an identifier, not a parameter, so channel names are checked
    /// before they reach SQL.
    static func check(_ channel: String) throws {
        let valid = !channel.isEmpty && channel.count <= 63
            && channel.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }
            && !(channel.first!.isNumber)
        guard valid else { throw PostgresError.invalidArgument("channel name '\(channel)' must be lower-case letters, digits and _") }
    }
}
