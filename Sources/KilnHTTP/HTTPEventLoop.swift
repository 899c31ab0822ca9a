#if canImport(Glibc)
import Glibc
import CKilnPoll
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import KilnJSON

/// The server's event loop: owns the listener and every connection. All connection
/// state is touched only on the loop thread; other threads reach it through `execute`.
///
/// One loop thread serves all connections: parsing and writing are cheap next to the
/// handlers, which run on the worker pool (see docs/http.md for the measurement).
final class HTTPEventLoop: @unchecked Sendable {
    unowned let server: HTTPServer
    let configuration: HTTPServerConfiguration
    let poller: Poller
    let pool: WorkerPool
    let workerCount: Int
    let listener: Int32
    let maxConnections: Int
    /// Refused connections kept open briefly so their 503 arrives instead of a reset.
    let maxLingeringRejections: Int
    /// The loop's clock: deadlines, heartbeats and stream refreshes are checked each tick.
    let tick: Double

    private(set) var connections: [Int32: HTTPConnection] = [:]
    private var perAddress: [UInt32: Int] = [:]
    private var activeCount = 0
    private var lingeringRejections = 0
    private var streaming: [ObjectIdentifier: HTTPConnection] = [:]
    var readBuffer = [UInt8](repeating: 0, count: 65536)
    private var idleHead: HTTPConnection?
    private var idleTail: HTTPConnection?
    private var acceptPausedUntil: Double?
    private var nextTick = 0.0
    private var nextRefresh = 0.0
    private var stopping = false

    private let inboxLock = NSLock()
    private var inbox: [() -> Void] = []
    private var wakePending = false
    private var pumpAgain: [HTTPConnection] = []
    private var ready: [PollEvent] = []
    private let finished = DispatchSemaphore(value: 0)

    private let statisticsLock = NSLock()
    private var counters = HTTPServerStatistics()
    private var reported = HTTPServerStatistics()
    private var nextReport = 0.0

    init(server: HTTPServer, listener: Int32, descriptorLimit: Int) throws {
        self.server = server
        configuration = server.configuration
        self.listener = listener
        poller = try Poller()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        workerCount = configuration.workerThreads > 0 ? configuration.workerThreads : max(4, 2 * cores)
        pool = WorkerPool(threads: workerCount, name: "kiln-http-worker")
        // Keep descriptors for lingering rejections, the data directory and libraries.
        maxLingeringRejections = max(4, min(1024, descriptorLimit / 16))
        let usable = max(8, descriptorLimit - maxLingeringRejections - 128)
        maxConnections = max(1, min(configuration.maxConnections, usable))
        let deadlines = [configuration.headerTimeout, configuration.bodyTimeout, configuration.idleTimeout,
                         configuration.writeTimeout, configuration.streamHeartbeat].filter { $0 > 0 }
        tick = min(0.25, max(0.01, (deadlines.min() ?? 1) / 4))
    }

    func start() {
        poller.add(listener, PollInterest(read: true))
        let thread = Thread { [self] in
            Socket.nameCurrentThread("kiln-http-loop")
            run()
        }
        thread.name = "kiln-http-loop"
        thread.stackSize = 1 << 20
        thread.start()
    }

    func stop() {
        execute { [self] in stopping = true }
        _ = finished.wait(timeout: .now() + 3)
        pool.shutdown(waiting: 1)
    }

    /// Runs `task` on the loop thread; any thread. With `wake` false it runs at the
    /// loop's next wake-up (an event, or the clock within one tick).
    func execute(wake: Bool = true, _ task: @escaping () -> Void) {
        inboxLock.lock()
        inbox.append(task)
        let needsWake = wake && !wakePending
        if needsWake { wakePending = true }
        inboxLock.unlock()
        if needsWake { poller.wake() }
    }

    /// Makes the loop run its inbox now; any thread.
    func wakeUp() {
        inboxLock.lock()
        let needsWake = !wakePending
        wakePending = true
        inboxLock.unlock()
        if needsWake { poller.wake() }
    }

    /// Revisits a connection that yielded with input left (fairness between clients).
    func pumpLater(_ connection: HTTPConnection) {
        pumpAgain.append(connection)
    }

    var statistics: HTTPServerStatistics {
        statisticsLock.lock(); defer { statisticsLock.unlock() }
        return counters
    }

    func count(_ change: (inout HTTPServerStatistics) -> Void) {
        statisticsLock.lock()
        change(&counters)
        statisticsLock.unlock()
    }

    // MARK: - The loop

    private func run() {
        let started = Socket.now()
        nextTick = started + tick
        nextRefresh = started + configuration.streamRefreshInterval
        nextReport = started + configuration.logSummaryInterval
        while !stopping {
            ready.removeAll(keepingCapacity: true)
            poller.wait(timeout: pumpAgain.isEmpty ? nextTick - Socket.now() : 0, into: &ready)
            // Finished requests first, so a connection whose answer a worker already
            // sent is ready to read its client's next request below.
            runInbox()
            for event in ready { handle(event) }
            let again = pumpAgain
            pumpAgain = []
            for connection in again where !connection.isClosed { connection.pump() }
            runInbox()
            let now = Socket.now()
            if now >= nextTick {
                sweep(now)
                nextTick = now + tick
            }
        }
        for connection in Array(connections.values) { connection.close() }
        poller.remove(listener)
        close(listener)
        runInbox()
        finished.signal()
    }

    private func runInbox() {
        while true {
            inboxLock.lock()
            let tasks = inbox
            inbox = []
            wakePending = false
            inboxLock.unlock()
            if tasks.isEmpty { return }
            for task in tasks { task() }
        }
    }

    private func handle(_ event: PollEvent) {
        if event.fd == listener {
            acceptAll()
            return
        }
        connections[event.fd]?.handle(event)
    }

    // MARK: - Accepting

    private func acceptAll() {
        for _ in 0..<256 {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { acceptSocket(listener, $0, &length) }
            }
            if fd < 0 {
                let code = errno
                if code == EAGAIN || code == EWOULDBLOCK { return }
                if code == EINTR || code == ECONNABORTED { continue }
                count { $0.acceptErrors += 1 }
                if (code == EMFILE || code == ENFILE), evictOldestIdle() { continue }
                // Out of descriptors with nothing to free: stop accepting for a moment
                // instead of spinning on the ready listener.
                poller.modify(listener, PollInterest())
                acceptPausedUntil = Socket.now() + 0.1
                return
            }
            #if !canImport(Glibc)
            Socket.setNonBlocking(fd)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
            #endif
            Socket.setNoDelay(fd)
            admit(fd, address: address.sin_addr.s_addr)
        }
    }

    private func acceptSocket(_ listener: Int32, _ address: UnsafeMutablePointer<sockaddr>, _ length: inout socklen_t) -> Int32 {
        #if canImport(Glibc)
        return kiln_accept_nonblocking(listener, address, &length)
        #else
        return accept(listener, address, &length)
        #endif
    }

    /// Takes a new connection, making room by closing the longest-idle keep-alive
    /// connection when the cap is reached; refuses with a 503 only when none is idle.
    private func admit(_ fd: Int32, address: UInt32) {
        let limit = configuration.maxConnectionsPerAddress
        if limit > 0 && perAddress[address, default: 0] >= limit {
            count { $0.rejectedPerAddress += 1 }
            refuse(fd, message: "this client address is at its connection limit; retry shortly")
            return
        }
        if activeCount >= maxConnections && !evictOldestIdle() {
            count { $0.rejectedConnections += 1 }
            refuse(fd, message: "the server is at its connection limit; retry shortly")
            return
        }
        let connection = HTTPConnection(fd: fd, address: address, loop: self)
        connections[fd] = connection
        perAddress[address, default: 0] += 1
        activeCount += 1
        count {
            $0.acceptedConnections += 1
            $0.openConnections = activeCount
        }
        poller.addEdgeTriggered(fd)
        connection.pump()
    }

    /// A 503 the client actually receives: whatever it already sent is read first, the
    /// answer goes into the fresh socket's buffer, and the socket lingers (bounded in
    /// number and time) so a late request does not turn the close into a reset.
    private func refuse(_ fd: Int32, message: String) {
        Socket.discardPending(fd)
        let response = HTTPResponse.error(503, code: "too_many_connections", message: message,
                                          headers: ["Retry-After": "1"])
        let bytes = HTTPConnection.closingBytes(response)
        _ = bytes.withUnsafeBytes { Socket.send(fd, $0) }
        guard lingeringRejections < maxLingeringRejections else {
            close(fd)
            return
        }
        lingeringRejections += 1
        let connection = HTTPConnection(fd: fd, address: 0, loop: self, counted: false)
        connections[fd] = connection
        poller.addEdgeTriggered(fd)
        connection.beginLinger(seconds: 1)
    }

    // MARK: - Bookkeeping called by connections

    func closed(_ connection: HTTPConnection) {
        connections[connection.fd] = nil
        if connection.counted {
            activeCount -= 1
            let remaining = perAddress[connection.address, default: 1] - 1
            perAddress[connection.address] = remaining > 0 ? remaining : nil
            count { $0.openConnections = activeCount }
        } else {
            lingeringRejections -= 1
        }
    }

    func streamOpened(_ connection: HTTPConnection) {
        streaming[ObjectIdentifier(connection)] = connection
        count { $0.openStreams = streaming.count }
    }

    func streamClosed(_ connection: HTTPConnection) {
        streaming[ObjectIdentifier(connection)] = nil
        count { $0.openStreams = streaming.count }
    }

    // MARK: - Idle connections, oldest first

    func addIdle(_ connection: HTTPConnection) {
        guard !connection.inIdleList else { return }
        connection.inIdleList = true
        connection.idlePrevious = idleTail
        connection.idleNext = nil
        idleTail?.idleNext = connection
        idleTail = connection
        if idleHead == nil { idleHead = connection }
    }

    func removeIdle(_ connection: HTTPConnection) {
        guard connection.inIdleList else { return }
        connection.inIdleList = false
        if let previous = connection.idlePrevious { previous.idleNext = connection.idleNext } else { idleHead = connection.idleNext }
        if let next = connection.idleNext { next.idlePrevious = connection.idlePrevious } else { idleTail = connection.idlePrevious }
        connection.idlePrevious = nil
        connection.idleNext = nil
    }

    private func evictOldestIdle() -> Bool {
        guard let oldest = idleHead else { return false }
        count { $0.evictedIdleConnections += 1 }
        oldest.close()
        return true
    }

    // MARK: - The clock

    /// Deadlines, heartbeats, stream refreshes and the rate-limited summary line.
    private func sweep(_ now: Double) {
        if let paused = acceptPausedUntil, now >= paused {
            acceptPausedUntil = nil
            poller.modify(listener, PollInterest(read: true))
        }
        for connection in Array(connections.values) where !connection.isClosed {
            connection.checkDeadlines(now)
        }
        if now >= nextRefresh {
            nextRefresh = now + configuration.streamRefreshInterval
            for connection in Array(streaming.values) { connection.refreshStream() }
        }
        if now >= nextReport {
            nextReport = now + configuration.logSummaryInterval
            report()
        }
    }

    /// One line per `logSummaryInterval` at most, and only when something was refused or cut off.
    private func report() {
        let current = statistics
        let previous = reported
        reported = current
        let refused = current.rejectedConnections - previous.rejectedConnections
        let perAddress = current.rejectedPerAddress - previous.rejectedPerAddress
        let acceptErrors = current.acceptErrors - previous.acceptErrors
        let timeouts = current.timeouts - previous.timeouts
        let evicted = current.evictedIdleConnections - previous.evictedIdleConnections
        let parseErrors = current.parseErrors - previous.parseErrors
        let uploadsRefused = current.rejectedUploads - previous.rejectedUploads
        let uploadsNotStored = current.uploadsNotStored - previous.uploadsNotStored
        guard refused + perAddress + acceptErrors + timeouts + evicted + parseErrors + uploadsRefused + uploadsNotStored > 0 else { return }
        let level: HTTPLogLevel = refused + perAddress + acceptErrors + uploadsRefused + uploadsNotStored > 0 ? .warning : .info
        let fields: [(String, JSON)] = [
            ("seconds", JSON(configuration.logSummaryInterval)), ("refused", JSON(refused)), ("refused_per_address", JSON(perAddress)),
            ("accept_errors", JSON(acceptErrors)), ("timeouts", JSON(timeouts)), ("evicted_idle", JSON(evicted)),
            ("parse_errors", JSON(parseErrors)), ("uploads_refused", JSON(uploadsRefused)),
            ("uploads_not_stored", JSON(uploadsNotStored)), ("open_connections", JSON(current.openConnections)),
            ("open_streams", JSON(current.openStreams)),
        ]
        let server = self.server
        pool.submit { server.emit(level, "http_connections", fields) }
    }
}
