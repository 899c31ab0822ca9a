import Foundation
import KilnJSON

/// A job's record as stored in `jobs/<id>/job.json` and shown by `GET /jobs/{id}`.
public struct Job: Sendable {
    public enum Status: String, Sendable { case queued, running, succeeded, failed, cancelled }

    public var id: String
    public var name: String
    public var status: Status
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var epoch = 0
    public var epochs: Int
    public var step = 0
    public var steps = 0
    public var error: String?
    public var specHash: String
    public var dataHash: String?
    public var seed: UInt64
    public var version = Kiln.version
    /// The node that runs (or ran) the job.
    public var node: String?

    public var isFinished: Bool { status == .succeeded || status == .failed || status == .cancelled }

    static let dates: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    /// Seconds left, from the pace so far.
    var eta: Double? {
        guard status == .running, let started = startedAt, steps > 0, epochs > 0 else { return nil }
        let done = Double(max(epoch - 1, 0) * steps + step) / Double(epochs * steps)
        guard done > 0 else { return nil }
        return (Date().timeIntervalSince(started) * (1 - done) / done).rounded()
    }

    public var json: JSON {
        var m: [(String, JSON)] = [
            ("id", .string(id)), ("name", .string(name)), ("status", .string(status.rawValue)),
            ("created_at", .string(Job.dates.string(from: createdAt))),
        ]
        if let startedAt { m.append(("started_at", .string(Job.dates.string(from: startedAt)))) }
        if let finishedAt { m.append(("finished_at", .string(Job.dates.string(from: finishedAt)))) }
        var progress: [(String, JSON)] = [("epoch", JSON(epoch)), ("epochs", JSON(epochs)), ("step", JSON(step)), ("steps", JSON(steps))]
        if let eta { progress.append(("eta_seconds", .number(eta))) }
        m.append(("progress", .object(progress)))
        if let error { m.append(("error", .string(error))) }
        m += [("spec_hash", .string(specHash)), ("seed", JSON(Int(seed))), ("kiln_version", .string(version))]
        if let dataHash { m.append(("data_hash", .string(dataHash))) }
        if let node { m.append(("node", .string(node))) }
        return .object(m)
    }

    public init(id: String, name: String, epochs: Int, specHash: String, seed: UInt64) {
        self.id = id
        self.name = name
        status = .queued
        createdAt = Date()
        self.epochs = epochs
        self.specHash = specHash
        self.seed = seed
    }

    public init?(json: JSON) {
        guard let id = json["id"]?.stringValue, let name = json["name"]?.stringValue,
              let status = json["status"]?.stringValue.flatMap(Status.init(rawValue:)),
              let created = json["created_at"]?.stringValue.flatMap(Job.dates.date(from:)) else { return nil }
        self.id = id
        self.name = name
        self.status = status
        createdAt = created
        startedAt = json["started_at"]?.stringValue.flatMap(Job.dates.date(from:))
        finishedAt = json["finished_at"]?.stringValue.flatMap(Job.dates.date(from:))
        epoch = json["progress"]?["epoch"]?.intValue ?? 0
        epochs = json["progress"]?["epochs"]?.intValue ?? 0
        step = json["progress"]?["step"]?.intValue ?? 0
        steps = json["progress"]?["steps"]?.intValue ?? 0
        error = json["error"]?.stringValue
        specHash = json["spec_hash"]?.stringValue ?? ""
        dataHash = json["data_hash"]?.stringValue
        seed = UInt64(json["seed"]?.intValue ?? 0)
        version = json["kiln_version"]?.stringValue ?? Kiln.version
        node = json["node"]?.stringValue
    }
}

public enum Kiln {
    public static let version = "0.1.0"
}
