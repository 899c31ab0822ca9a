// Downloads through libcurl: http and https only, no redirects, size and time capped.
import CCurl

public final class Downloader: Sendable {
    public let maxBytes: Int
    public let timeoutSeconds: Int

    private static let globalInit: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    public init(maxBytes: Int, timeoutSeconds: Int) {
        self.maxBytes = max(0, maxBytes)
        self.timeoutSeconds = max(1, timeoutSeconds)
    }

    /// Context shared with the write callback.
    private final class Sink {
        var bytes = [UInt8]()
        let limit: Int
        var exceeded = false
        init(limit: Int) { self.limit = limit }
    }

    /// Fetches `url` (an http:// or https:// URL) and returns the body. Fails, naming the
    /// URL, on any other scheme, a connection or transfer error, a redirect (never
    /// followed), an HTTP status other than 2xx, a body over `maxBytes`, or a timeout.
    public func fetch(_ url: String) throws(DatasetError) -> [UInt8] {
        let file = url.split(separator: "/").last.map(String.init)
        func fail(_ why: String) -> DatasetError { DatasetError(field: file, "download of \(Redact.url(url)) failed: \(Redact.text(why))") }

        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw DatasetError(field: file, "refusing to download \(Redact.url(url)): only http and https URLs are allowed")
        }
        guard !url.utf8.contains(where: { $0 < 0x21 || $0 == 0x7f }) else {
            throw DatasetError(field: file, "refusing to download \(Redact.url(url)): the URL contains spaces or control characters")
        }
        guard Downloader.globalInit, let curl = curl_easy_init() else { throw fail("could not initialise libcurl") }
        defer { curl_easy_cleanup(curl) }

        let sink = Sink(limit: maxBytes)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errorBuf in
            var ok = true
            ok = ok && kiln_curl_setopt_string(curl, CURLOPT_URL, url) == CURLE_OK
            ok = ok && kiln_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK
            ok = ok && kiln_curl_setopt_string(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0) == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1) == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_TIMEOUT, timeoutSeconds) == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, min(timeoutSeconds, 30)) == CURLE_OK
            // A stalled transfer (under 1 byte/s for a minute) fails before the overall timeout.
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_LOW_SPEED_LIMIT, 1) == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_LOW_SPEED_TIME, min(timeoutSeconds, 60)) == CURLE_OK
            ok = ok && kiln_curl_setopt_long(curl, CURLOPT_MAXFILESIZE, maxBytes) == CURLE_OK
            ok = ok && kiln_curl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, errorBuf.baseAddress) == CURLE_OK
            ok = ok && kiln_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, sinkPointer) == CURLE_OK
            ok = ok && kiln_curl_setopt_write_function(curl, { data, size, count, user in
                let sink = Unmanaged<Downloader.Sink>.fromOpaque(user!).takeUnretainedValue()
                let n = size * count
                if sink.bytes.count + n > sink.limit {
                    sink.exceeded = true
                    return 0 // aborts the transfer with CURLE_WRITE_ERROR
                }
                if n > 0, let data {
                    sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
                }
                return n
            }) == CURLE_OK
            guard ok else { return CURLE_FAILED_INIT }
            return curl_easy_perform(curl)
        }
        withExtendedLifetime(sink) {}

        if sink.exceeded || code == CURLE_FILESIZE_EXCEEDED {
            throw fail("the file is larger than the limit of \(maxBytes) bytes")
        }
        var status = 0
        _ = kiln_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        guard code == CURLE_OK else {
            let detail = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let summary = String(cString: curl_easy_strerror(code))
            switch code {
            case CURLE_OPERATION_TIMEDOUT:
                throw fail("timed out (limit \(timeoutSeconds) s)\(detail.isEmpty ? "" : ": \(detail)")")
            case CURLE_PARTIAL_FILE:
                throw fail("the connection closed before the whole file arrived (truncated transfer)")
            default:
                throw fail(detail.isEmpty ? summary : "\(summary): \(detail)")
            }
        }
        if (300..<400).contains(status) {
            throw fail("HTTP status \(status) (redirects are not followed; the mirror must serve the file directly)")
        }
        guard (200..<300).contains(status) else {
            throw fail("HTTP status \(status)\(status == 404 ? " (not found)" : "")")
        }
        return sink.bytes
    }
}
