import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KilnJSON

/// The commands that talk to a running server (`kiln jobs …`, `kiln predict --server`):
/// its address from `--server` or `KILN_SERVER`, the token from `KILN_AUTH_TOKEN`.
struct ServerClient {
    let base: String
    let token: String?

    init(server: String?, environment: [String: String]) {
        var url = server ?? environment["KILN_SERVER"] ?? "http://127.0.0.1:8080"
        if !url.contains("://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        base = url
        token = environment["KILN_AUTH_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// One call; its status and body. Transport failures throw.
    func call(_ method: String, _ path: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        guard let url = URL(string: base + path) else { throw Failure(description: "not a URL: \(base + path)") }
        var request = URLRequest(url: url, timeoutInterval: 60)
        request.httpMethod = method
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        final class Box: @unchecked Sendable { var result: Result<(Int, Data), Error> = .failure(Failure(description: "no answer")) }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.result = .failure(Failure(description: "\(method) \(base + path): \(error.localizedDescription)"))
            } else {
                box.result = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
            }
            done.signal()
        }.resume()
        done.wait()
        return try box.result.get()
    }

    /// Prints the answer (pretty JSON when it is JSON) and gives the exit code: 0 for
    /// 2xx, 1 otherwise.
    func show(_ answer: (status: Int, body: Data)) -> Int32 {
        if let json = try? JSON.parse([UInt8](answer.body)) {
            print(json.serialized(pretty: true))
        } else {
            print(String(decoding: answer.body, as: UTF8.self))
        }
        return (200..<300).contains(answer.status) ? 0 : 1
    }

    /// `kiln jobs [list]`: one line per job.
    func list() throws -> Int32 {
        let answer = try call("GET", "/jobs")
        guard answer.status == 200, let jobs = try? JSON.parse([UInt8](answer.body))["jobs"]?.arrayValue else { return show(answer) }
        print("ID                          NAME                  STATUS      EPOCH")
        for job in jobs {
            let id = job["id"]?.stringValue ?? "", name = job["name"]?.stringValue ?? "", status = job["status"]?.stringValue ?? ""
            let progress = "\(job["progress"]?["epoch"]?.intValue ?? 0)/\(job["progress"]?["epochs"]?.intValue ?? 0)"
            print(id.padding(toLength: 28, withPad: " ", startingAt: 0) + name.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + status.padding(toLength: 12, withPad: " ", startingAt: 0) + progress)
        }
        return 0
    }

    /// `kiln jobs metrics ID --follow`: each new epoch as a JSON line until the job ends.
    func follow(_ id: String) throws -> Int32 {
        var printed = 0
        while true {
            let metrics = try call("GET", "/jobs/\(id)/metrics")
            guard metrics.status == 200, let json = try? JSON.parse([UInt8](metrics.body)) else { return show(metrics) }
            let epochs = json["epochs"]?.arrayValue ?? []
            while printed < epochs.count {
                print(epochs[printed].serialized())
                printed += 1
            }
            fflush(stdout)
            let job = try call("GET", "/jobs/\(id)")
            guard job.status == 200, let status = try? JSON.parse([UInt8](job.body))["status"]?.stringValue else { return show(job) }
            if ["succeeded", "failed", "cancelled"].contains(status) {
                FileHandle.standardError.write(Data("job \(id) \(status)\n".utf8))
                return status == "succeeded" ? 0 : 1
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }
}
