import Foundation
import KilnData
import KilnJSON

/// `kiln-bench predict PORT MODEL LABEL [REQUESTS]`: p50/p99 latency of POST /predict
/// with one MNIST test image over one keep-alive connection. Also writes the request
/// body to bench/.predict-body.json for wrk.
func predictLatency(port: Int, model: String, label: String, requests: Int) throws {
    let test = try loadMNIST("t10k")
    let pixels = Array(test.fields["image"]!.values[0..<784])
    var rows: [JSON] = []
    for y in 0..<28 { rows.append(.array((0..<28).map { x in JSON.array([JSON(pixels[y * 28 + x])]) })) }
    let body = JSON.object([("model", .string(model)), ("instances", .array([.array(rows)]))]).serialized()
    try body.write(toFile: ProcessInfo.processInfo.environment["KILN_BENCH_BODY"] ?? "bench/.predict-body.json", atomically: true, encoding: .utf8)
    let request = Array("POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)

    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw BenchError("socket failed") }
    defer { close(fd) }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw BenchError("cannot connect to 127.0.0.1:\(port)") }

    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Sends one request and reads one whole response (Content-Length framed).
    func roundTrip() throws -> Int {
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, request.count - sent, 0) }
            guard n > 0 else { throw BenchError("send failed") }
            sent += n
        }
        var received: [UInt8] = []
        var status = 0
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { throw BenchError("connection closed") }
            received += buffer[0..<n]
            guard let end = find(received, [13, 10, 13, 10]) else { continue }
            let head = String(decoding: received[0..<end], as: UTF8.self).lowercased()
            status = Int(head.split(separator: " ")[1]) ?? 0
            var length = 0
            for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
            }
            if received.count >= end + 4 + length { break }
        }
        return status
    }
    guard try roundTrip() == 200 else { throw BenchError("POST /predict did not answer 200 (is model '\(model)' trained?)") }
    for _ in 0..<50 { _ = try roundTrip() }
    var times: [Double] = []
    times.reserveCapacity(requests)
    for _ in 0..<requests {
        let t0 = now()
        _ = try roundTrip()
        times.append((now() - t0) * 1000)
    }
    times.sort()
    let p50 = times[times.count / 2], p99 = times[min(times.count - 1, times.count * 99 / 100)]
    emit("predict_p50_\(label)", p50, "ms", [("requests", JSON(requests)), ("note", "one MNIST image, one keep-alive connection")])
    emit("predict_p99_\(label)", p99, "ms")
}

func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
        if Array(haystack[i..<(i + needle.count)]) == needle { return i }
    }
    return nil
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
