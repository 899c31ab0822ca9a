#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension HTTPResponse {
    /// Framing the server decides, never the handler.
    private static let serverOwned: Set<String> = ["content-length", "transfer-encoding", "connection"]

    /// The status line and header section.
    /// - Parameters:
    ///   - contentLength: for a byte body; nil with `chunked` false means "until close".
    static func head(status: Int, headers: HTTPHeaders, contentLength: Int?, chunked: Bool, close: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        var hasDate = false, hasServer = false
        for field in headers {
            let lower = field.name.lowercased()
            guard !serverOwned.contains(lower), !field.name.isEmpty,
                  field.name.utf8.allSatisfy(HTTPRequestParser.isTokenByte) else { continue }
            if lower == "date" { hasDate = true }
            if lower == "server" { hasServer = true }
            // No CR, LF or NUL may reach the wire (response splitting).
            let value = String(field.value.unicodeScalars.filter { $0 != "\r" && $0 != "\n" && $0 != "\0" }.map(Character.init))
            text += "\(field.name): \(value)\r\n"
        }
        if !hasDate { text += "Date: \(httpDate())\r\n" }
        if !hasServer { text += "Server: kiln\r\n" }
        if chunked {
            text += "Transfer-Encoding: chunked\r\n"
        } else if let contentLength, !forbidsBody(status) {
            text += "Content-Length: \(contentLength)\r\n"
        }
        if close { text += "Connection: close\r\n" }
        text += "\r\n"
        return Array(text.utf8)
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
