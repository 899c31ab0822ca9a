/// Credentials never leave in a URL Kiln writes or returns: the userinfo of
/// `scheme://user:pass@host/…` and the values of query parameters named like secrets
/// (`token`, `key`, `password`, `sig`, …) become `REDACTED`.
public enum Redact {
    static let secretNames = ["token", "key", "secret", "password", "passwd", "pwd", "sig", "signature", "auth", "credential", "session"]

    /// `text` with every URL in it redacted.
    public static func text(_ text: String) -> String {
        guard text.contains("://") else { return text }
        var out = ""
        var rest = Substring(text)
        while let marker = rest.range(of: "://") {
            // The scheme runs back from "://" over letters, digits, '+', '-' and '.'.
            var schemeStart = marker.lowerBound
            while schemeStart > rest.startIndex {
                let before = rest[rest.index(before: schemeStart)]
                guard before.isLetter || before.isNumber || "+-.".contains(before) else { break }
                schemeStart = rest.index(before: schemeStart)
            }
            out += rest[rest.startIndex..<schemeStart]
            // The URL ends at whitespace or a quote.
            let end = rest[marker.upperBound...].firstIndex { $0.isWhitespace || "\"'<>".contains($0) } ?? rest.endIndex
            out += url(String(rest[schemeStart..<end]))
            rest = rest[end...]
        }
        return out + rest
    }

    /// One URL with its credentials redacted.
    public static func url(_ url: String) -> String {
        guard let marker = url.range(of: "://") else { return url }
        let scheme = url[..<marker.upperBound]
        var rest = url[marker.upperBound...]
        let authorityEnd = rest.firstIndex { "/?#".contains($0) } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = "REDACTED@" + authority[authority.index(after: at)...] }
        rest = rest[authorityEnd...]
        guard let question = rest.firstIndex(of: "?") else { return String(scheme + authority + rest) }
        let path = rest[..<question]
        let fragmentStart = rest.firstIndex(of: "#") ?? rest.endIndex
        let query = rest[rest.index(after: question)..<max(fragmentStart, rest.index(after: question))]
        let pairs = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
            let name = pair[..<eq].lowercased()
            return secretNames.contains(where: { name.contains($0) }) ? "\(pair[..<eq])=REDACTED" : String(pair)
        }
        return String(scheme + authority + path) + "?" + pairs.joined(separator: "&") + String(rest[fragmentStart...])
    }
}
