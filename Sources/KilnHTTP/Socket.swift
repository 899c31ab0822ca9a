#if canImport(Glibc)
import Glibc
import CKilnPoll
#elseif canImport(Darwin)
import Darwin
#endif

/// Non-blocking socket helpers for the event loop. Deadlines are monotonic seconds.
enum Socket {
    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// What one non-blocking read or write did.
    enum Transfer {
        case bytes(Int)
        case wouldBlock
        /// End of stream (read) or a dead peer (EPIPE, ECONNRESET, ...).
        case closed
    }

    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Transfer {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return .bytes(count) }
            if count == 0 { return .closed }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            return .closed
        }
    }

    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Transfer {
        while true {
            #if canImport(Glibc)
            let flags = Int32(MSG_NOSIGNAL)
            #else
            let flags: Int32 = 0   // SO_NOSIGPIPE is set on accepted sockets
            #endif
            let count = sendToSocket(fd, bytes.baseAddress, bytes.count, flags)
            if count >= 0 { return .bytes(count) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            return .closed
        }
    }

    private static func sendToSocket(_ fd: Int32, _ base: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int {
        #if canImport(Glibc)
        return Glibc.send(fd, base, count, flags)
        #else
        return Darwin.send(fd, base, count, flags)
        #endif
    }

    /// Reads and discards whatever is already queued, so closing does not reset the
    /// connection (and destroy a response still in flight) because of unread input.
    static func discardPending(_ fd: Int32, maxBytes: Int = 1 << 16) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        var discarded = 0
        while discarded < maxBytes {
            let result = scratch.withUnsafeMutableBytes { receive(fd, into: $0) }
            guard case let .bytes(count) = result else { return }
            discarded += count
        }
    }

    /// Names the calling thread (seen in /proc, top -H and profilers; 15 characters).
    static func nameCurrentThread(_ name: String) {
        #if canImport(Glibc)
        kiln_name_thread(name)
        #else
        _ = pthread_setname_np(String(name.prefix(63)))
        #endif
    }

    /// Raises the soft limit on open descriptors to the hard limit, so the connection
    /// cap, not the process default (often 1024), bounds how many clients can wait.
    /// - Returns: the soft limit in force afterwards.
    @discardableResult
    static func raiseDescriptorLimit() -> Int {
        var limits = rlimit()
        guard getrlimit(resourceNoFile, &limits) == 0 else { return 1024 }
        if limits.rlim_cur < limits.rlim_max {
            var raised = limits
            raised.rlim_cur = limits.rlim_max
            #if canImport(Darwin)
            raised.rlim_cur = min(limits.rlim_max, rlim_t(OPEN_MAX))
            #endif
            if setrlimit(resourceNoFile, &raised) == 0 { limits = raised }
        }
        return limits.rlim_cur > rlim_t(Int32.max) ? Int(Int32.max) : Int(limits.rlim_cur)
    }

    #if canImport(Glibc)
    private static let resourceNoFile = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resourceNoFile = RLIMIT_NOFILE
    #endif
}
