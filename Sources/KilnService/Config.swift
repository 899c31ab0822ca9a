import Foundation
import KilnData
import KilnJSON
import KilnTensor

/// Service settings: `config/kiln.json` (or `--config`), then the environment
/// (`KILN_PORT`, `KILN_HOST`, `KILN_DATA_DIR`, `KILN_DATASET_MIRROR`, `KILN_AUTH_TOKEN`),
/// then command-line flags, each overriding the one before.
public struct Config: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var dataDirectory = "data"
    public var datasetMirror = "https://ossci-datasets.s3.amazonaws.com"
    /// SHA-256 digests that replace the built-in ones, by `<dataset>/<file>`, for a
    /// mirror that serves its own copies.
    public var datasetChecksums: [String: String] = [:]
    public var authToken: String?
    /// What the token guards: `writes` (calls that change state) or `all` (every call
    /// but `/healthz`).
    var authScope = AuthMiddleware.Scope.writes
    /// Finished jobs older than this many days are removed (none when nil).
    public var keepJobsDays: Double?
    /// Only the newest this many finished jobs of each name are kept (all when nil).
    public var keepLastPerName: Int?
    /// Shown on the jobs this node runs.
    public var nodeName = Config.defaultNodeName()
    /// `postgresql://user@host:port/db`: jobs, artifacts and datasets live in this
    /// database, shared by every node (docs/cluster.md); nil keeps them in `data_dir`.
    public var databaseURL: String?
    /// What this node does: everything, only HTTP (`api`), or training too (`worker`).
    public enum Role: String, Sendable { case all, api, worker }
    public var role = Role.all
    /// Seconds a worker's claim on a job lasts without a heartbeat (database only).
    public var leaseSeconds = 10.0
    public var maxConcurrentJobs = 1
    public var maxQueuedJobs = 100
    public var maxBodyBytes = 64 << 20
    public var maxParameters = 100_000_000
    public var maxPredictBatch = 4096
    /// Which library runs matrix and convolution kernels: `auto` (the measured table),
    /// `openblas` or `onednn`; nil leaves `KILN_KERNELS` (or auto) in force.
    public var kernels: String?
    /// What an upload may be, and decompress to, in bytes (and no member past 200× its size).
    public var maxDatasetBytes = 2 << 30
    /// Dataset uploads received or being read at once; past it, 503 with Retry-After.
    public var maxConcurrentUploads = 4
    /// The nice value of training threads (0–19): above 0, predictions and the HTTP
    /// core take the cores first when both want them (DESIGN.md: predictions never
    /// wait behind training).
    public var trainingNice = 10
    /// HTTP connection limits and deadlines (seconds); see `HTTPServerConfiguration`.
    public var maxConnections = 16384
    public var maxConnectionsPerAddress = 0
    public var headerTimeout = 10.0
    public var bodyTimeout = 60.0
    public var idleTimeout = 60.0
    public var writeTimeout = 30.0
    /// Handler threads; 0 picks two per core (at least four).
    public var workerThreads = 0
    /// `debug`, `info`, `warning` or `error`; one line per request only at `debug`.
    public var logLevel = "info"

    public init() {}

    public struct ConfigError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Reads a config file; a missing file is an error only when `required`.
    public mutating func apply(file path: String, required: Bool) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            if required { throw ConfigError(message: "config file \(path) not found") }
            return
        }
        let json: JSON
        do { json = try JSON.parse([UInt8](data)) } catch { throw ConfigError(message: "\(path): \(error)") }
        guard let members = json.objectMembers else { throw ConfigError(message: "\(path): expected an object") }
        for (key, value) in members {
            switch key {
            case "host": host = try string(value, key, path)
            case "port": port = try int(value, key, path)
            case "data_dir": dataDirectory = try string(value, key, path)
            case "dataset_mirror": datasetMirror = try string(value, key, path)
            case "dataset_checksums":
                guard let members = value.objectMembers else { throw ConfigError(message: "\(path): dataset_checksums must be an object of file → SHA-256") }
                for (file, digest) in members {
                    guard let hex = digest.stringValue, hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                        throw ConfigError(message: "\(path): dataset_checksums.\(file) must be a SHA-256 in hex")
                    }
                    datasetChecksums[file] = hex
                }
            case "max_concurrent_jobs": maxConcurrentJobs = try int(value, key, path)
            case "max_queued_jobs": maxQueuedJobs = try int(value, key, path)
            case "max_body_bytes": maxBodyBytes = try int(value, key, path)
            case "max_parameters": maxParameters = try int(value, key, path)
            case "max_predict_batch": maxPredictBatch = try int(value, key, path)
            case "max_dataset_bytes": maxDatasetBytes = try int(value, key, path)
            case "max_concurrent_uploads": maxConcurrentUploads = try int(value, key, path)
            case "training_nice": trainingNice = try int(value, key, path)
            case "kernels":
                let name = try string(value, key, path)
                guard KernelPolicy(name: name) != nil else { throw ConfigError(message: "\(path): kernels must be auto, openblas or onednn, got '\(name)'") }
                kernels = name
            case "auth_scope":
                guard let scope = AuthMiddleware.Scope(rawValue: try string(value, key, path)) else {
                    throw ConfigError(message: "\(path): auth_scope must be 'writes' or 'all'")
                }
                authScope = scope
            case "node_name": nodeName = try string(value, key, path)
            case "database_url":
                let url = try string(value, key, path)
                databaseURL = url.isEmpty ? nil : url
            case "role":
                let name = try string(value, key, path)
                guard let r = Role(rawValue: name) else { throw ConfigError(message: "\(path): role must be all, api or worker, got '\(name.prefix(32))'") }
                role = r
            case "lease_seconds": leaseSeconds = try seconds(value, key, path)
            case "keep_jobs_days":
                guard let days = value.doubleValue, days > 0 else { throw ConfigError(message: "\(path): keep_jobs_days must be a positive number") }
                keepJobsDays = days
            case "keep_last_per_name":
                guard let n = value.intValue, n >= 1 else { throw ConfigError(message: "\(path): keep_last_per_name must be at least 1") }
                keepLastPerName = n
            case "max_connections": maxConnections = try int(value, key, path)
            case "max_connections_per_address": maxConnectionsPerAddress = try int(value, key, path)
            case "header_timeout_seconds": headerTimeout = try seconds(value, key, path)
            case "body_timeout_seconds": bodyTimeout = try seconds(value, key, path)
            case "idle_timeout_seconds": idleTimeout = try seconds(value, key, path)
            case "write_timeout_seconds": writeTimeout = try seconds(value, key, path)
            case "worker_threads": workerThreads = try int(value, key, path)
            case "log_level": logLevel = try string(value, key, path)
            default: throw ConfigError(message: "\(path): unknown setting '\(key)'")
            }
        }
    }

    public mutating func apply(environment env: [String: String]) throws {
        if let v = env["KILN_HOST"] { host = v }
        if let v = env["KILN_PORT"] {
            guard let p = Int(v) else { throw ConfigError(message: "KILN_PORT must be a number, got '\(v)'") }
            port = p
        }
        if let v = env["KILN_DATA_DIR"] { dataDirectory = v }
        if let v = env["KILN_DATASET_MIRROR"] { datasetMirror = v }
        if let v = env["KILN_AUTH_TOKEN"], !v.isEmpty { authToken = v }
        if let v = env["KILN_AUTH_SCOPE"] {
            guard let scope = AuthMiddleware.Scope(rawValue: v) else { throw ConfigError(message: "KILN_AUTH_SCOPE must be 'writes' or 'all', got '\(v)'") }
            authScope = scope
        }
        if let v = env["KILN_NODE_NAME"], !v.isEmpty { nodeName = v }
        if let v = env["KILN_LOG_LEVEL"] { logLevel = v }
        if let v = env["KILN_DATABASE_URL"] { databaseURL = v.isEmpty ? nil : v }
        if let v = env["KILN_ROLE"] {
            guard let r = Role(rawValue: v) else { throw ConfigError(message: "KILN_ROLE must be all, api or worker, got '\(v.prefix(32))'") }
            role = r
        }
        let integers: [(String, WritableKeyPath<Config, Int>)] = [
            ("KILN_MAX_CONNECTIONS", \.maxConnections), ("KILN_MAX_CONNECTIONS_PER_ADDRESS", \.maxConnectionsPerAddress),
            ("KILN_WORKER_THREADS", \.workerThreads), ("KILN_TRAINING_NICE", \.trainingNice),
        ]
        for (name, key) in integers {
            guard let v = env[name] else { continue }
            guard let number = Int(v) else { throw ConfigError(message: "\(name) must be an integer, got '\(v)'") }
            self[keyPath: key] = number
        }
        let durations: [(String, WritableKeyPath<Config, Double>)] = [
            ("KILN_HEADER_TIMEOUT", \.headerTimeout), ("KILN_BODY_TIMEOUT", \.bodyTimeout),
            ("KILN_IDLE_TIMEOUT", \.idleTimeout), ("KILN_WRITE_TIMEOUT", \.writeTimeout),
            ("KILN_LEASE_SECONDS", \.leaseSeconds),
        ]
        for (name, key) in durations {
            guard let v = env[name] else { continue }
            guard let number = Double(v), number > 0, number.isFinite else {
                throw ConfigError(message: "\(name) must be a positive number of seconds, got '\(v)'")
            }
            self[keyPath: key] = number
        }
    }

    public func validate() throws {
        guard (0...65535).contains(port) else { throw ConfigError(message: "port \(port) is out of range") }
        guard maxConcurrentJobs >= 1 else { throw ConfigError(message: "max_concurrent_jobs must be at least 1") }
        guard maxConnections >= 1 else { throw ConfigError(message: "max_connections must be at least 1") }
        guard maxConcurrentUploads >= 1 else { throw ConfigError(message: "max_concurrent_uploads must be at least 1") }
        guard (0...19).contains(trainingNice) else { throw ConfigError(message: "training_nice must be 0 (no change) to 19, got \(trainingNice)") }
        guard maxConnectionsPerAddress >= 0 else { throw ConfigError(message: "max_connections_per_address must be 0 (no limit) or more") }
        guard workerThreads >= 0 else { throw ConfigError(message: "worker_threads must be 0 (automatic) or more") }
        guard Log.Level(name: logLevel) != nil else {
            throw ConfigError(message: "log_level must be debug, info, warning or error, got '\(logLevel)'")
        }
        guard leaseSeconds >= 3 else { throw ConfigError(message: "lease_seconds must be at least 3 (a running job heartbeats every 2 s)") }
        if let url = databaseURL {
            let scheme = url.lowercased()
            guard scheme.hasPrefix("postgresql://") || scheme.hasPrefix("postgres://") else {
                throw ConfigError(message: "database_url must be a postgresql:// URL, got '\(Redact.url(url))'")
            }
        } else if role != .all {
            throw ConfigError(message: "role '\(role.rawValue)' needs database_url: without a shared database one node does everything")
        }
        let lower = datasetMirror.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw ConfigError(message: "dataset_mirror must be an http or https URL, got '\(Redact.url(datasetMirror))'")
        }
    }

    /// The host name and process id.
    static func defaultNodeName() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    private func string(_ v: JSON, _ key: String, _ path: String) throws -> String {
        guard let s = v.stringValue else { throw ConfigError(message: "\(path): \(key) must be a string") }
        return s
    }

    private func seconds(_ v: JSON, _ key: String, _ path: String) throws -> Double {
        guard let d = v.doubleValue, d > 0, d.isFinite else { throw ConfigError(message: "\(path): \(key) must be a positive number of seconds") }
        return d
    }

    private func int(_ v: JSON, _ key: String, _ path: String) throws -> Int {
        guard let i = v.intValue else { throw ConfigError(message: "\(path): \(key) must be an integer") }
        return i
    }
}
