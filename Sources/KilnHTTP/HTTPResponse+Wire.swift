#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

extension HTTPResponse {
    /// Framing the server decides, never the handler.
    private static let serverOwned = ["content-length", "transfer-encoding", "connection"]

    /// The status line and header section.
    /// - Parameters:
    ///   - contentLength: for a byte body; nil with `chunked` false means "until close".
    static func head(status: Int, headers: HTTPHeaders, contentLength: Int?, chunked: Bool, close: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n".utf8
        var hasDate = false, hasServer = false
        for field in headers {
            // Names are tokens (ASCII), so ASCII case folding suffices.
            guard !field.name.isEmpty, field.name.utf8.allSatisfy(HTTPRequestParser.isTokenByte),
                  !serverOwned.contains(where: { HTTPHeaders.equalNames($0, field.name) }) else { continue }
            if HTTPHeaders.equalNames(field.name, "date") { hasDate = true }
            if HTTPHeaders.equalNames(field.name, "server") { hasServer = true }
            out += field.name.utf8
            out += ": ".utf8
            // No CR, LF or NUL may reach the wire (response splitting).
            for byte in field.value.utf8 where byte != 13 && byte != 10 && byte != 0 { out.append(byte) }
            out += "\r\n".utf8
        }
        if !hasDate {
            out += "Date: ".utf8
            out += currentHTTPDate().utf8
            out += "\r\n".utf8
        }
        if !hasServer { out += "Server: kiln\r\n".utf8 }
        if chunked {
            out += "Transfer-Encoding: chunked\r\n".utf8
        } else if let contentLength, !forbidsBody(status) {
            out += "Content-Length: \(contentLength)\r\n".utf8
        }
        if close { out += "Connection: close\r\n".utf8 }
        out += "\r\n".utf8
        return out
    }

    private static let dateLock = NSLock()
    nonisolated(unsafe) private static var dateCache: (second: time_t, text: String) = (-1, "")

    /// `httpDate()` for now, formatted once per second.
    static func currentHTTPDate() -> String {
        let now = time(nil)
        dateLock.lock()
        defer { dateLock.unlock() }
        if dateCache.second != now { dateCache = (now, httpDate(now)) }
        return dateCache.text
    }

    /// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func httpDate(_ seconds: time_t = time(nil)) -> String {
        var moment = seconds
        var parts = tm()
        gmtime_r(&moment, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
