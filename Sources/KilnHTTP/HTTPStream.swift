import Foundation

/// A streamed response body (server-sent events) that the server's event loop drives:
/// no thread waits on it and it has no timer of its own.
///
/// `open` runs once on the worker pool after the head is queued. A producer that is
/// told about new data sends it from any thread with `HTTPStream.send`; one that
/// samples state gives `refresh`, which the loop calls on the worker pool at each tick
/// of the server's one shared stream clock (`streamRefreshInterval`), never twice at
/// once for a stream and never while the client still has unsent bytes (backpressure).
/// The loop writes a comment line after `streamHeartbeat` seconds of silence, and
/// closes the stream the moment the peer goes away (half-close, reset or a failed
/// write); `onClose` then runs once, on the worker pool, whatever ended it.
public struct HTTPStreamBody {
    public var open: (HTTPStream) -> Void
    public var refresh: ((HTTPStream) -> Void)?
    public var onClose: (() -> Void)?
    /// Sent after `streamHeartbeat` seconds of silence; an SSE comment by default, nil for none.
    public var heartbeat: [UInt8]? = Array(": keep-alive\n\n".utf8)

    public init(open: @escaping (HTTPStream) -> Void = { _ in }, refresh: ((HTTPStream) -> Void)? = nil,
                onClose: (() -> Void)? = nil) {
        self.open = open
        self.refresh = refresh
        self.onClose = onClose
    }

    /// A sampling producer: `refresh` also runs at open.
    public static func refreshing(onClose: (() -> Void)? = nil, _ refresh: @escaping (HTTPStream) -> Void) -> HTTPStreamBody {
        HTTPStreamBody(open: refresh, refresh: refresh, onClose: onClose)
    }
}

/// The sending end of one streamed response. Safe to use from any thread.
public final class HTTPStream: @unchecked Sendable {
    /// The most a producer may queue ahead of a slow client before the stream is dropped.
    public static let maxQueuedBytes = 4 << 20

    private let lock = NSLock()
    private var closed = false
    private var finished = false
    /// Hands bytes (and whether they end the body) to the loop; set by the server.
    let deliver: ([UInt8], Bool) -> Void

    init(deliver: @escaping ([UInt8], Bool) -> Void) {
        self.deliver = deliver
    }

    /// False once the client is gone, the body finished, or the server stopped.
    public var isOpen: Bool {
        lock.lock(); defer { lock.unlock() }
        return !closed && !finished
    }

    /// Queues `bytes` as one chunk of the body.
    /// - Returns: false once the stream is closed; the producer should stop.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        lock.lock()
        guard !closed && !finished else { lock.unlock(); return false }
        lock.unlock()
        if !bytes.isEmpty { deliver(bytes, false) }   // an empty chunk would end the body
        return true
    }

    /// Ends the body after `bytes`; later sends are ignored.
    public func finish(_ bytes: [UInt8] = []) {
        lock.lock()
        guard !closed && !finished else { lock.unlock(); return }
        finished = true
        lock.unlock()
        deliver(bytes, true)
    }

    /// Called by the loop when the stream ends for any reason.
    func markClosed() {
        lock.lock()
        closed = true
        lock.unlock()
    }
}
