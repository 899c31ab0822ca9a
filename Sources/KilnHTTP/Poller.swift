#if canImport(Glibc)
import Glibc
import CKilnPoll
#elseif canImport(Darwin)
import Darwin
#endif

/// Readiness of one descriptor, as the poller reports it.
struct PollEvent {
    var fd: Int32
    var readable: Bool
    var writable: Bool
    /// The peer closed its sending side (EPOLLRDHUP / EV_EOF on read).
    var peerClosed: Bool
    /// The connection is gone or failed (EPOLLHUP / EPOLLERR).
    var failed: Bool
}

/// What the loop wants to hear about a descriptor. Level-triggered: a condition is
/// reported until it is handled or the interest is dropped.
struct PollInterest: Equatable {
    var read = false
    var write = false
    /// Report the peer's half-close even while not reading (streams, busy requests).
    var peerClose = false
}

/// epoll on Linux, kqueue on BSD and macOS, plus a wakeup descriptor so other threads
/// can interrupt `wait`.
final class Poller {
    private let handle: Int32
    #if os(Linux)
    private let wakeFD: Int32
    private var events = [epoll_event](repeating: epoll_event(), count: 1024)
    #else
    private var wakePipe: [Int32] = [-1, -1]
    private var events = [kevent](repeating: kevent(), count: 1024)
    private var registered: [Int32: PollInterest] = [:]
    #endif

    init() throws {
        #if os(Linux)
        handle = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard handle >= 0 else { throw HTTPServerError(message: "epoll_create1(): \(Socket.errorText())") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw HTTPServerError(message: "eventfd(): \(Socket.errorText())") }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        epoll_ctl(handle, EPOLL_CTL_ADD, wakeFD, &event)
        #else
        handle = kqueue()
        guard handle >= 0 else { throw HTTPServerError(message: "kqueue(): \(Socket.errorText())") }
        guard pipe(&wakePipe) == 0 else { throw HTTPServerError(message: "pipe(): \(Socket.errorText())") }
        for fd in wakePipe { Socket.setNonBlocking(fd) }
        var change = kevent(ident: UInt(wakePipe[0]), filter: Int16(EVFILT_READ), flags: UInt16(EV_ADD), fflags: 0, data: 0, udata: nil)
        kevent(handle, &change, 1, nil, 0, nil)
        #endif
    }

    deinit {
        close(handle)
        #if os(Linux)
        close(wakeFD)
        #else
        close(wakePipe[0])
        close(wakePipe[1])
        #endif
    }

    /// Interrupts a `wait` in progress (or the next one); any thread.
    func wake() {
        #if os(Linux)
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        #else
        var byte: UInt8 = 1
        _ = write(wakePipe[1], &byte, 1)
        #endif
    }

    /// Registers a connection once for input, output and the peer's half-close, each
    /// reported as an edge (when it becomes ready), so the interest never changes.
    func addEdgeTriggered(_ fd: Int32) {
        #if os(Linux)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        event.data.fd = fd
        epoll_ctl(handle, EPOLL_CTL_ADD, fd, &event)
        #else
        registered[fd] = PollInterest(read: true, write: true, peerClose: true)
        let flags = UInt16(EV_ADD | EV_CLEAR)
        let changes = [kevent(ident: UInt(fd), filter: Int16(EVFILT_READ), flags: flags, fflags: 0, data: 0, udata: nil),
                       kevent(ident: UInt(fd), filter: Int16(EVFILT_WRITE), flags: flags, fflags: 0, data: 0, udata: nil)]
        kevent(handle, changes, Int32(changes.count), nil, 0, nil)
        #endif
    }

    /// Registers a level-triggered descriptor (the listener).
    func add(_ fd: Int32, _ interest: PollInterest) {
        #if os(Linux)
        var event = epoll_event()
        event.events = Poller.mask(interest)
        event.data.fd = fd
        epoll_ctl(handle, EPOLL_CTL_ADD, fd, &event)
        #else
        registered[fd] = PollInterest()
        modify(fd, interest)
        #endif
    }

    func modify(_ fd: Int32, _ interest: PollInterest) {
        #if os(Linux)
        var event = epoll_event()
        event.events = Poller.mask(interest)
        event.data.fd = fd
        epoll_ctl(handle, EPOLL_CTL_MOD, fd, &event)
        #else
        let old = registered[fd] ?? PollInterest()
        var changes: [kevent] = []
        let wantsRead = interest.read || interest.peerClose
        if wantsRead != (old.read || old.peerClose) {
            changes.append(kevent(ident: UInt(fd), filter: Int16(EVFILT_READ), flags: UInt16(wantsRead ? EV_ADD : EV_DELETE),
                                  fflags: 0, data: 0, udata: nil))
        }
        if interest.write != old.write {
            changes.append(kevent(ident: UInt(fd), filter: Int16(EVFILT_WRITE), flags: UInt16(interest.write ? EV_ADD : EV_DELETE),
                                  fflags: 0, data: 0, udata: nil))
        }
        registered[fd] = interest
        if !changes.isEmpty { kevent(handle, changes, Int32(changes.count), nil, 0, nil) }
        #endif
    }

    /// Forgets `fd`; call before closing it.
    func remove(_ fd: Int32) {
        #if os(Linux)
        var event = epoll_event()
        epoll_ctl(handle, EPOLL_CTL_DEL, fd, &event)
        #else
        modify(fd, PollInterest())
        registered[fd] = nil
        #endif
    }

    /// Waits up to `timeout` seconds and collects ready descriptors into `ready` (the
    /// wakeup is consumed here and not reported).
    func wait(timeout: Double, into ready: inout [PollEvent]) {
        wait(timeout: timeout) { ready.append($0) }
    }

    private func wait(timeout: Double, _ body: (PollEvent) -> Void) {
        let milliseconds = Int32(max(0, min(timeout * 1000, 60_000)).rounded(.up))
        #if os(Linux)
        let count = epoll_wait(handle, &events, Int32(events.count), milliseconds)
        guard count > 0 else { return }
        for index in 0..<Int(count) {
            let event = events[index]
            let fd = event.data.fd
            if fd == wakeFD {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                continue
            }
            let flags = event.events
            body(PollEvent(fd: fd,
                           readable: flags & EPOLLIN.rawValue != 0,
                           writable: flags & EPOLLOUT.rawValue != 0,
                           peerClosed: flags & EPOLLRDHUP.rawValue != 0,
                           failed: flags & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0))
        }
        #else
        var spec = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int(milliseconds % 1000) * 1_000_000)
        let count = kevent(handle, nil, 0, &events, Int32(events.count), &spec)
        guard count > 0 else { return }
        for index in 0..<Int(count) {
            let event = events[index]
            let fd = Int32(event.ident)
            if fd == wakePipe[0] {
                var scratch = [UInt8](repeating: 0, count: 64)
                _ = read(wakePipe[0], &scratch, scratch.count)
                continue
            }
            let interest = registered[fd] ?? PollInterest()
            let isRead = event.filter == Int16(EVFILT_READ)
            let eof = event.flags & UInt16(EV_EOF) != 0
            body(PollEvent(fd: fd,
                           readable: isRead && interest.read,
                           writable: event.filter == Int16(EVFILT_WRITE),
                           peerClosed: isRead && eof,
                           failed: event.flags & UInt16(EV_ERROR) != 0 || (!isRead && eof)))
        }
        #endif
    }

    #if os(Linux)
    private static func mask(_ interest: PollInterest) -> UInt32 {
        var mask: UInt32 = 0
        if interest.read { mask |= EPOLLIN.rawValue }
        if interest.write { mask |= EPOLLOUT.rawValue }
        if interest.peerClose { mask |= EPOLLRDHUP.rawValue }
        return mask
    }
    #endif
}
