import Foundation
import KilnJSON
import KilnTestSupport

/// One request per connection over `RawHTTPClient`, with JSON conveniences for the
/// service tests.
struct HTTPTestClient {
    let port: Int

    struct Response {
        var status: Int
        /// Header names lower-cased.
        var headers: [String: String]
        var body: [UInt8]
        var json: JSON? { try? JSON.parse(body) }
    }

    func request(_ method: String, _ path: String, body: [UInt8] = [], headers: [String: String] = [:]) throws -> Response {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        let client = try RawHTTPClient(port: port)
        // The server may answer early (413) and close before reading the whole body.
        _ = client.send(Array(text.utf8) + body)
        var response = try client.readResponse(timeout: 120)
        while response.status == 100 { response = try client.readResponse(timeout: 120) }
        var lowered: [String: String] = [:]
        for (k, v) in response.headers { lowered[k.lowercased()] = v }
        return Response(status: response.status, headers: lowered, body: response.body)
    }

    func json(_ method: String, _ path: String, _ body: JSON? = nil) throws -> Response {
        try request(method, path, body: body.map { Array($0.serialized().utf8) } ?? [], headers: body == nil ? [:] : ["Content-Type": "application/json"])
    }
}
