import Foundation
import KilnJSON

/// A blocking HTTP/1.1 client over a loopback socket, one request per connection, for
/// end-to-end tests against a real server.
struct HTTPTestClient {
    let port: Int

    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var json: JSON? { try? JSON.parse(body) }
    }

    func request(_ method: String, _ path: String, body: [UInt8] = [], headers: [String: String] = [:]) throws -> Response {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        let raw = try exchange(Array(text.utf8) + body)
        return try parse(raw)
    }

    func json(_ method: String, _ path: String, _ body: JSON? = nil) throws -> Response {
        try request(method, path, body: body.map { Array($0.serialized().utf8) } ?? [], headers: body == nil ? [:] : ["Content-Type": "application/json"])
    }

    func exchange(_ bytes: [UInt8]) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may answer early (413) and close
            sent += n
        }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    func parse(_ raw: [UInt8]) throws -> Response {
        guard let end = raw.indices.first(where: { i in i + 3 < raw.count && raw[i] == 13 && raw[i + 1] == 10 && raw[i + 2] == 13 && raw[i + 3] == 10 }) else {
            throw POSIXError(.EBADMSG)
        }
        let head = String(decoding: raw[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        var lines = head[...]
        // Skip interim 100 Continue responses.
        while let first = lines.first, first.hasPrefix("HTTP/1.1 100") { lines = lines.dropFirst(2) }
        let status = Int(lines.first!.split(separator: " ")[1])!
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Response(status: status, headers: headers, body: Array(raw[(end + 4)...]))
    }
}
