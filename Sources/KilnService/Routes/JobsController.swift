import Foundation
import KilnData
import KilnGraph
import KilnHTTP
import KilnJSON
import KilnSpec
import KilnTrain

/// `/validate` and `/jobs`: a spec is decoded once per request, and the typed value
/// goes to the scheduler and the store.
struct JobsController {
    let service: Service

    func register(_ router: Router) {
        router.add("POST", "/validate", changesState: false) { request in try validate(request) }
        router.add("POST", "/jobs") { request in try create(request) }
        router.add("GET", "/jobs") { _ in .json(200, ["jobs": .array(service.jobs.all().reversed().map(\.json))]) }
        // The job page when a browser asks for HTML (Dashboard.swift), its JSON otherwise.
        router.add("GET", "/jobs/:id") { request in try service.jobResource(request) }
        router.add("GET", "/jobs/:id/spec") { request in
            let job = try job(request)
            guard let spec = service.jobs.spec(job.id) else {
                throw ServiceError(.internalError, code: "spec_missing", "the stored spec of job \(job.id) is missing")
            }
            return .json(200, spec)
        }
        router.add("DELETE", "/jobs/:id") { request in try cancel(request) }
        router.add("POST", "/jobs/:id/resume") { request in try resume(request) }
        router.add("GET", "/jobs/:id/metrics") { request in
            let job = try job(request)
            if let follow = request.query["follow"], follow == "1" || follow == "true" { return service.followMetrics(job.id) }
            return .json(200, service.jobs.metrics(job.id))
        }
    }

    func job(_ request: HTTPRequest) throws -> Job { try service.job(request) }

    /// A model alone validates: what training would still need comes back as `notes`.
    func validate(_ request: HTTPRequest) throws -> HTTPResponse {
        .json(200, try decodeSpec(request, for: .validation).validation)
    }

    func decodeSpec(_ request: HTTPRequest, for purpose: JobSpec.Purpose = .training) throws -> JobSpec {
        try service.decodeSpec(try RequestBody.json(request), for: purpose)
    }

    func create(_ request: HTTPRequest) throws -> HTTPResponse {
        let spec = try decodeSpec(request)
        // Inline data travels with the spec: check it now, so bad data is a 400, not a failed job.
        if spec.data.fields != nil {
            do {
                _ = try TrainingData.resolve(spec, catalog: nil)
            } catch {
                throw ServiceError(.invalid, code: "invalid_data", error.description, path: error.field.map { "data.fields.\($0)" } ?? "data")
            }
        }
        let canonical = spec.json.serialized(sortedKeys: true)
        let job = Job(id: service.jobs.newID(), name: spec.name, epochs: spec.train.epochs,
                      specHash: SHA256.hex(Array(canonical.utf8)), seed: spec.train.seed)
        try service.scheduler.submit(job, spec: spec)
        Log.info("job_created", [("id", .string(job.id)), ("name", .string(job.name))])
        let body = (service.jobs.job(job.id)?.json ?? job.json).setting("summary", to: spec.summary)
        return .json(201, body, headers: HTTPHeaders([("Location", "/jobs/\(job.id)")]))
    }

    /// A failed or cancelled job goes back to the queue and continues from its last
    /// checkpoint (after the disk filled up, or a dataset was missing).
    func resume(_ request: HTTPRequest) throws -> HTTPResponse {
        let job = try job(request)
        guard job.status == .failed || job.status == .cancelled else {
            throw ServiceError(.conflict, code: "job_not_resumable", "job \(job.id) is \(job.status.rawValue); only a failed or cancelled job can be resumed")
        }
        guard service.scheduler.hasRoom else {
            throw ServiceError(.unavailable, code: "queue_full", "the job queue is full; try again later", retryAfter: 30)
        }
        try service.jobs.update(job.id) { $0.status = .queued; $0.error = nil; $0.finishedAt = nil }
        Log.info("job_resumed_by_request", [("id", .string(job.id)), ("epoch", JSON(job.epoch))])
        service.scheduler.wake()
        return .json(202, service.jobs.job(job.id)?.json ?? job.json)
    }

    /// A queued or running job is cancelled (202); a finished one is removed with its
    /// artifacts (200).
    func cancel(_ request: HTTPRequest) throws -> HTTPResponse {
        let job = try job(request)
        guard job.isFinished else {
            _ = try service.scheduler.cancel(job.id)
            return .json(202, service.jobs.job(job.id)?.json ?? job.json)
        }
        try service.removeJob(job)
        return .json(200, ["id": .string(job.id), "deleted": true])
    }
}
