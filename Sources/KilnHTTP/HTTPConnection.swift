#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One client connection, driven by the event loop (and touched only on its thread):
/// read what is available, feed the parser, hand each request to the worker pool in
/// order, queue the response and write it as the client takes it.
///
/// Readiness is edge-triggered: the loop registers the socket once, and `inputReady`
/// remembers that unread input may wait in the kernel. Backpressure: while a request is
/// being handled, a response is unsent or a stream runs, the connection is not read
/// from, so a client cannot queue unbounded work or make the server buffer unbounded
/// output; one that stops reading is dropped at the write deadline.
final class HTTPConnection {
    let fd: Int32
    let address: UInt32
    unowned let loop: HTTPEventLoop
    /// False for a refused connection that only lingers to deliver its 503.
    let counted: Bool

    private var parser: HTTPRequestParser
    private var events: [HTTPParserEvent] = []
    private var eventIndex = 0
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var busy = false
    private var servedAny = false
    private var stream: StreamState?
    private var closeAfterWrite = false
    /// The kernel may hold input not read yet (set by a readable edge, cleared by EAGAIN).
    private var inputReady = false
    private var lingerDeadline: Double?
    private var lingerDiscarded = 0
    private(set) var isClosed = false
    /// Guards the descriptor between the loop's close and a worker's send.
    private let descriptorLock = NSLock()
    private var descriptorClosed = false
    /// A settled answer is in the loop's inbox / the loop saw an event while busy
    /// (both guarded by `descriptorLock`): whoever comes second makes sure the inbox runs.
    private var answerQueued = false
    private var eventWhileBusy = false

    private enum Phase { case idle, head, body }
    private var phase = Phase.idle
    private var phaseStarted: Double
    private var lastActivity: Double
    private var lastWriteProgress: Double

    var inIdleList = false
    var idlePrevious: HTTPConnection?
    var idleNext: HTTPConnection?

    /// Reads per `pump` before yielding to other connections (64 KiB each).
    private static let readBudget = 8

    private var configuration: HTTPServerConfiguration { loop.configuration }

    init(fd: Int32, address: UInt32, loop: HTTPEventLoop, counted: Bool = true) {
        self.fd = fd
        self.address = address
        self.loop = loop
        self.counted = counted
        parser = HTTPRequestParser(maxBodyBytes: loop.configuration.maxBodyBytes)
        if let spool = loop.configuration.spool, let limitFor = loop.configuration.spooledBodyLimit {
            parser.bodyDestination = { method, target throws(HTTPParseError) in
                let path = HTTPRequest.percentDecode(HTTPRequest.splitTarget(target).path, plusIsSpace: false)
                guard let limit = limitFor(method, path) else { return nil }
                guard let file = try spool.makeFile(maxBytes: limit) else { throw .tooManyUploads }
                return file
            }
        }
        let now = Socket.now()
        phaseStarted = now
        lastActivity = now
        lastWriteProgress = now
    }

    /// A keep-alive connection waiting for its client's next request.
    private var isWaitingForClient: Bool {
        !busy && stream == nil && eventIndex >= events.count && outputOffset >= output.count
            && !closeAfterWrite && !parser.isClosed && lingerDeadline == nil
    }

    // MARK: - Readiness

    /// The poller reported an edge for this socket.
    func handle(_ event: PollEvent) {
        if event.failed {
            close()
            return
        }
        if event.readable { inputReady = true }
        if busy {
            // If the answer is already queued, the loop runs its inbox after these
            // events; otherwise the worker wakes the loop when it queues it.
            descriptorLock.lock()
            eventWhileBusy = true
            descriptorLock.unlock()
        }
        // A stream ends the moment its client goes; a request in progress is answered
        // first (its client may only have half-closed) and the end of input read after.
        if event.peerClosed && stream != nil {
            close()
            return
        }
        pump()
    }

    /// Makes all the progress possible now: writes queued output, processes parsed
    /// requests in order, and reads while the connection waits for its client.
    func pump() {
        var reads = 0
        while !isClosed {
            if lingerDeadline != nil {
                if inputReady { drainWhileLingering() }
                return
            }
            if outputOffset < output.count && !writeOutput() { return }
            if outputOffset >= output.count && !output.isEmpty {
                output = []
                outputOffset = 0
            }
            if closeAfterWrite && !busy && stream == nil {
                beginLinger(seconds: 0.5)
                continue
            }
            if !busy && stream == nil && eventIndex < events.count {
                processEvents()
                continue
            }
            guard isWaitingForClient else { return }
            guard inputReady else { break }
            guard reads < HTTPConnection.readBudget else {
                loop.pumpLater(self)
                return
            }
            reads += 1
            read()
        }
        if !isClosed && isWaitingForClient && phase == .idle { loop.addIdle(self) }
    }

    // MARK: - Reading

    private func read() {
        let result = loop.readBuffer.withUnsafeMutableBytes { Socket.receive(fd, into: $0) }
        switch result {
        case .wouldBlock:
            inputReady = false
        case .closed:
            close()
        case let .bytes(count):
            let now = Socket.now()
            lastActivity = now
            loop.removeIdle(self)
            let parsed = loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            let newPhase: Phase = parser.isIdle ? .idle : parser.isReadingBody ? .body : .head
            let completedOne = parsed.contains { if case .request = $0 { return true } else { return false } }
            if newPhase != phase || completedOne { phaseStarted = now }
            phase = newPhase
            events = parsed
            eventIndex = 0
        }
    }

    /// Processes parsed events in order until one needs the worker pool.
    private func processEvents() {
        while !busy && stream == nil && !closeAfterWrite && eventIndex < events.count {
            let event = events[eventIndex]
            eventIndex += 1
            switch event {
            case .continueExpected:
                // If the body already arrived with the head, the interim answer is moot.
                if eventIndex >= events.count { enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
            case let .request(request):
                dispatch(request)
            case let .failure(error):
                switch error {
                case .tooManyUploads: loop.count { $0.rejectedUploads += 1 }
                case .bodyNotStored: loop.count { $0.uploadsNotStored += 1 }
                default: loop.count { $0.parseErrors += 1 }
                }
                respondAndClose(error.response)
            }
        }
        if eventIndex >= events.count {
            events = []
            eventIndex = 0
        }
    }

    private func dispatch(_ request: HTTPRequest) {
        busy = true
        servedAny = true
        loop.removeIdle(self)
        let started = Socket.now()
        let handler = loop.server.handler
        let server = loop.server
        let loop = self.loop
        // While a request is at a worker nothing else writes to this client, so with
        // nothing queued ahead the worker sends the answer itself: one thread hand-off
        // less before the client has it. The loop then only does the bookkeeping.
        let mayWriteDirectly = outputOffset >= output.count
        // With nothing else received, a fully sent keep-alive answer needs no prompt
        // bookkeeping: the loop takes it up at its next wake-up (the client's next
        // request, or the clock), sparing a wake-up per request.
        let nothingPending = eventIndex >= events.count
        descriptorLock.lock()
        answerQueued = false
        eventWhileBusy = false
        descriptorLock.unlock()
        loop.pool.submit { [self] in
            let response = handler(request)
            var written: Written?
            if case .bytes = response.body {
                if mayWriteDirectly {
                    let bytes = HTTPConnection.serialize(response, for: request)
                    written = Written(bytes: bytes, sent: sendFromWorker(bytes))
                }
                server.onRequestCompleted?(request, response.status, Socket.now() - started)
            }
            let settled = nothingPending && HTTPConnection.keepsAlive(request, response)
                && written.map { $0.sent == $0.bytes.count } == true
            loop.execute(wake: !settled) { self.respond(to: request, with: response, started: started, written: written) }
            if settled {
                // The client may already have sent its next request and the loop seen
                // it while this one was busy: then it must not wait for the clock.
                descriptorLock.lock()
                answerQueued = true
                let seen = eventWhileBusy
                descriptorLock.unlock()
                if seen { loop.wakeUp() }
            }
        }
    }

    /// A response a worker already serialized and (partly) sent.
    private struct Written {
        var bytes: [UInt8]
        var sent: Int
    }

    /// Sends what the socket takes now; the loop queues the rest. Guarded against the
    /// loop closing the descriptor meanwhile (its number could be reused at once).
    private func sendFromWorker(_ bytes: [UInt8]) -> Int {
        descriptorLock.lock()
        defer { descriptorLock.unlock() }
        guard !descriptorClosed else { return 0 }
        var offset = 0
        while offset < bytes.count {
            let result = bytes.withUnsafeBytes { Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            guard case let .bytes(count) = result else { break }
            offset += count
        }
        return offset
    }

    // MARK: - Responding

    /// Whether the connection stays open after answering `request` with `response`.
    private static func keepsAlive(_ request: HTTPRequest, _ response: HTTPResponse) -> Bool {
        request.keepAlive && !response.headers.tokens(for: "Connection").contains("close")
    }

    /// The head and body of a byte response as they go on the wire.
    private static func serialize(_ response: HTTPResponse, for request: HTTPRequest) -> [UInt8] {
        guard case let .bytes(bytes) = response.body else { return [] }
        let isHead = request.method == "HEAD"
        var length = bytes.count
        if isHead, bytes.isEmpty, let declared = response.headers["Content-Length"].flatMap(Int.init) {
            length = declared
        }
        let sendsBody = !isHead && !HTTPResponse.forbidsBody(response.status)
        var out = HTTPResponse.head(status: response.status, headers: response.headers,
                                    contentLength: length, chunked: false, close: !keepsAlive(request, response))
        if sendsBody { out += bytes }
        return out
    }

    private func respond(to request: HTTPRequest, with response: HTTPResponse, started: Double, written: Written?) {
        guard !isClosed else {
            if case let .stream(body) = response.body, let onClose = body.onClose { loop.pool.submit(onClose) }
            return
        }
        busy = false
        // A next request already (partly) received gets its deadline from now.
        phaseStarted = Socket.now()
        let keepAlive = HTTPConnection.keepsAlive(request, response)
        switch response.body {
        case .bytes:
            if let written {
                if written.sent < written.bytes.count {
                    enqueue(Array(written.bytes[written.sent...]))
                } else {
                    lastActivity = Socket.now()
                }
            } else {
                enqueue(HTTPConnection.serialize(response, for: request))
            }
            if !keepAlive { closeAfterWrite = true }
        case let .stream(body):
            // HTTP/1.0 has no chunked coding: the body runs until close.
            let chunked = request.versionMinor >= 1
            let streamKeepAlive = keepAlive && chunked
            enqueue(HTTPResponse.head(status: response.status, headers: response.headers,
                                      contentLength: nil, chunked: chunked, close: !streamKeepAlive))
            let state = StreamState(body: body, request: request, status: response.status, started: started,
                                    chunked: chunked, keepAlive: streamKeepAlive)
            if request.method == "HEAD" || HTTPResponse.forbidsBody(response.status) {
                if !streamKeepAlive { closeAfterWrite = true }
                finishCallbacks(state)
            } else {
                openStream(state)
            }
        }
        pump()
    }

    /// An error answer that closes the connection once written.
    private func respondAndClose(_ response: HTTPResponse) {
        enqueue(HTTPConnection.closingBytes(response))
        closeAfterWrite = true
        events = []
        eventIndex = 0
    }

    static func closingBytes(_ response: HTTPResponse) -> [UInt8] {
        guard case let .bytes(body) = response.body else { return [] }
        return HTTPResponse.head(status: response.status, headers: response.headers, contentLength: body.count,
                                 chunked: false, close: true) + body
    }

    private func enqueue(_ bytes: [UInt8]) {
        if outputOffset >= output.count {
            output = bytes
            outputOffset = 0
            lastWriteProgress = Socket.now()
        } else {
            output += bytes
        }
    }

    // MARK: - Writing

    /// Writes queued output; false when the socket is full (the loop waits for the
    /// writable edge) or the client is gone (closed).
    private func writeOutput() -> Bool {
        while outputOffset < output.count {
            let result = output.withUnsafeBytes { raw in
                Socket.send(fd, UnsafeRawBufferPointer(rebasing: raw[outputOffset...]))
            }
            switch result {
            case let .bytes(count):
                outputOffset += count
                lastWriteProgress = Socket.now()
                lastActivity = lastWriteProgress
            case .wouldBlock:
                return false
            case .closed:
                close()
                return false
            }
        }
        return true
    }

    // MARK: - Closing

    /// Half-closes, then reads and discards what the client still sends for a moment,
    /// so the final response is not destroyed by a reset (nginx's lingering close).
    func beginLinger(seconds: Double) {
        loop.removeIdle(self)
        shutdown(fd, Int32(SHUT_WR))
        lingerDeadline = Socket.now() + seconds
        inputReady = true
    }

    private func drainWhileLingering() {
        while true {
            let result = loop.readBuffer.withUnsafeMutableBytes { Socket.receive(fd, into: $0) }
            switch result {
            case .wouldBlock:
                inputReady = false
                return
            case .closed:
                close()
                return
            case let .bytes(count):
                lingerDiscarded += count
                if lingerDiscarded > 1 << 20 { close(); return }
            }
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.removeIdle(self)
        loop.poller.remove(fd)
        descriptorLock.lock()
        descriptorClosed = true
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
        descriptorLock.unlock()
        if let stream {
            self.stream = nil
            endStream(stream)
        }
        output = []
        events = []
        loop.closed(self)
    }

    // MARK: - Deadlines

    func checkDeadlines(_ now: Double) {
        if let lingerDeadline {
            if now >= lingerDeadline { close() }
            return
        }
        if outputOffset < output.count {
            if now - lastWriteProgress > configuration.writeTimeout {
                loop.count { $0.writeTimeouts += 1 }
                close()
            }
            return
        }
        if busy { return }
        if let stream {
            if now - stream.lastSent >= configuration.streamHeartbeat, let heartbeat = stream.body.heartbeat {
                deliver(heartbeat, end: false, to: stream)
            }
            return
        }
        guard isWaitingForClient else { return }
        switch phase {
        case .idle:
            // A connection that never sent a request gets the header deadline, so
            // silent sockets do not sit for the whole keep-alive time.
            let limit = servedAny ? configuration.idleTimeout : min(configuration.idleTimeout, configuration.headerTimeout)
            if now - lastActivity > limit {
                loop.count { $0.idleTimeouts += 1 }
                close()
            }
        case .head:
            if now - phaseStarted > configuration.headerTimeout {
                loop.count { $0.headerTimeouts += 1 }
                timedOut()
            }
        case .body:
            // A large upload earns a second per `minUploadBytesPerSecond` received, so a
            // slow link finishes while a client that trickles bytes is still cut off.
            let earned = parser.spooledBodyBytes.map { Double($0) / Double(max(1, configuration.minUploadBytesPerSecond)) } ?? 0
            if now - phaseStarted > configuration.bodyTimeout + earned {
                loop.count { $0.bodyTimeouts += 1 }
                timedOut()
            }
        }
    }

    private func timedOut() {
        loop.removeIdle(self)
        respondAndClose(.error(408, code: "request_timeout", message: "the request was not received in time"))
        pump()
    }
}

// MARK: - Streams

extension HTTPConnection {
    final class StreamState {
        let body: HTTPStreamBody
        let request: HTTPRequest
        let status: Int
        let started: Double
        let chunked: Bool
        let keepAlive: Bool
        var handle: HTTPStream!
        var refreshing = false
        var lastSent: Double

        init(body: HTTPStreamBody, request: HTTPRequest, status: Int, started: Double, chunked: Bool, keepAlive: Bool) {
            self.body = body
            self.request = request
            self.status = status
            self.started = started
            self.chunked = chunked
            self.keepAlive = keepAlive
            lastSent = Socket.now()
        }
    }

    private func openStream(_ state: StreamState) {
        let loop = self.loop
        state.handle = HTTPStream { [weak self, weak state] bytes, end in
            loop.execute {
                guard let self, let state else { return }
                self.deliver(bytes, end: end, to: state)
            }
        }
        stream = state
        loop.streamOpened(self)
        state.refreshing = true
        loop.pool.submit { [handle = state.handle!] in
            state.body.open(handle)
            loop.execute { state.refreshing = false }
        }
    }

    /// Called on each tick of the loop's shared stream clock.
    func refreshStream() {
        guard let state = stream, let refresh = state.body.refresh, !state.refreshing,
              outputOffset >= output.count, state.handle.isOpen else { return }
        state.refreshing = true
        let loop = self.loop
        loop.pool.submit { [handle = state.handle!] in
            refresh(handle)
            loop.execute { state.refreshing = false }
        }
    }

    private func deliver(_ bytes: [UInt8], end: Bool, to state: StreamState) {
        guard !isClosed, stream === state else { return }
        if !bytes.isEmpty {
            if state.chunked {
                enqueue(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [13, 10])
            } else {
                enqueue(bytes)
            }
            state.lastSent = Socket.now()
        }
        if output.count - outputOffset > HTTPStream.maxQueuedBytes {
            loop.count { $0.writeTimeouts += 1 }
            close()
            return
        }
        if end {
            if state.chunked { enqueue(Array("0\r\n\r\n".utf8)) }
            stream = nil
            endStream(state)
            if !state.keepAlive { closeAfterWrite = true }
            phaseStarted = Socket.now()
        }
        pump()
    }

    /// The stream ended (finished, or the client went away): free it and tell its producer.
    private func endStream(_ state: StreamState) {
        loop.streamClosed(self)
        state.handle?.markClosed()
        finishCallbacks(state)
    }

    private func finishCallbacks(_ state: StreamState) {
        let server = loop.server
        loop.pool.submit {
            state.body.onClose?()
            server.onRequestCompleted?(state.request, state.status, Socket.now() - state.started)
        }
    }
}
