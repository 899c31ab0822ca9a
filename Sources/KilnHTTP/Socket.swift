#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Blocking-socket helpers with poll()-based deadlines. Deadlines are monotonic seconds.
enum Socket {
    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    /// Waits until `fd` has `events` ready, the deadline passes (false), or an error.
    static func wait(_ fd: Int32, for events: Int16, until deadline: Double) -> Bool {
        while true {
            let remaining = deadline - now()
            if remaining <= 0 { return false }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let milliseconds = Int32(min(remaining * 1000 + 1, Double(Int32.max)))
            let result = poll(&descriptor, 1, milliseconds)
            if result > 0 { return true }   // readable, writable, or hung up: the next call says which
            if result < 0 && errno != EINTR { return false }
        }
    }

    /// Reads what is available, waiting at most until the deadline. nil on timeout,
    /// 0 on end of stream or error.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, until deadline: Double) -> Int? {
        guard wait(fd, for: Int16(POLLIN), until: deadline) else { return nil }
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if count >= 0 { return count }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                guard wait(fd, for: Int16(POLLIN), until: deadline) else { return nil }
                continue
            }
            return 0
        }
    }

    /// Sends everything, handling partial sends; false if the peer is gone (EPIPE,
    /// ECONNRESET) or does not take the bytes before the deadline.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], until deadline: Double) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let sent = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                if sent > 0 { offset += sent; continue }
                if sent < 0 && errno == EINTR { continue }
                if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return false }
                    continue
                }
                return false
            }
            return true
        }
    }

    /// Half-closes, then reads and discards what the client still sends for a moment,
    /// so a final response is not destroyed by a reset (nginx's lingering close). The
    /// caller still closes `fd`.
    static func drainBeforeClose(_ fd: Int32, seconds: Double = 1, maxBytes: Int = 1 << 20) {
        shutdown(fd, Int32(SHUT_WR))
        let deadline = now() + seconds
        var discarded = 0
        var buffer = [UInt8](repeating: 0, count: 16384)
        while discarded < maxBytes {
            let count = buffer.withUnsafeMutableBytes { read(fd, into: $0, until: deadline) }
            guard let count, count > 0 else { break }
            discarded += count
        }
    }
}
