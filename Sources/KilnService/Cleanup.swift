import Foundation
import KilnData
import KilnJSON

/// Removing what users are done with: finished jobs with their artifacts, uploaded
/// datasets, and the retention rules of the config (`keep_jobs_days`,
/// `keep_last_per_name`) applied at start and every hour.
extension Service {
    /// Jobs whose spec names `job`'s model in `init_from` (by id, or by name while it is
    /// the model that name resolves to).
    func jobsInitialisedFrom(_ job: Job) -> [String] {
        let latestOfName = jobs.resolveModel(job.name)?.id == job.id
        return jobs.all().filter { other in
            guard other.id != job.id, let from = jobs.spec(other.id)?["init_from"]?.stringValue else { return false }
            return from == job.id || (from == job.name && latestOfName)
        }.map(\.id)
    }

    /// Removes a finished job, its metrics and its model artifacts.
    func removeJob(_ job: Job) throws {
        guard job.isFinished else {
            throw ServiceError(.conflict, code: "job_active", "job \(job.id) is \(job.status.rawValue); cancel it first")
        }
        let users = jobsInitialisedFrom(job)
        guard users.isEmpty else {
            throw ServiceError(.conflict, code: "model_in_use", "job \(job.id)'s model is the init_from of \(users.joined(separator: ", ")); remove those first")
        }
        try artifacts.remove(job.id)
        try jobs.remove(job.id)
        predictor.forget(job.id)
        metrics.inference.forget(version: job.id)
        Log.info("job_removed", [("id", .string(job.id)), ("name", .string(job.name))])
    }

    /// Removes an uploaded dataset unless a queued or running job reads it.
    func removeDataset(_ idOrName: String) throws -> JSON {
        guard StoredName.isValid(idOrName), let record = datasets.record(idOrName), let id = record["id"]?.stringValue else {
            throw ServiceError(.notFound, code: "dataset_not_found", "no dataset with id or name '\(idOrName.prefix(64))'")
        }
        let name = record["name"]?.stringValue
        let users = jobs.all().filter { job in
            guard !job.isFinished, let ref = jobs.spec(job.id)?["data"]?["dataset"]?.stringValue else { return false }
            return ref == id || (ref == name && datasets.record(ref)?["id"]?.stringValue == id)
        }.map(\.id)
        guard users.isEmpty else {
            throw ServiceError(.conflict, code: "dataset_in_use", "dataset \(id) is read by \(users.count == 1 ? "job" : "jobs") \(users.joined(separator: ", ")), which \(users.count == 1 ? "is" : "are") queued or running")
        }
        try datasets.remove(id: id)
        Log.info("dataset_removed", [("id", .string(id))])
        return record
    }

    /// Adds a field to an uploaded dataset unless a queued or running job reads it.
    func addField(to idOrName: String, field: String, train: StagedArray, test: StagedArray?) throws -> JSON {
        guard StoredName.isValid(idOrName), let record = datasets.record(idOrName), let id = record["id"]?.stringValue else {
            throw ServiceError(.notFound, code: "dataset_not_found", "no dataset with id or name '\(idOrName.prefix(64))'")
        }
        return try datasets.addField(id: id, field: field, train: train, test: test)
    }

    /// Finished jobs past the retention rules, oldest first: older than `keep_jobs_days`,
    /// or beyond the newest `keep_last_per_name` of their name.
    func expiredJobs(now: Date = Date()) -> [Job] {
        let finished = jobs.all().filter(\.isFinished)
        var expired: [String: Job] = [:]
        if let days = config.keepJobsDays {
            for job in finished where now.timeIntervalSince(job.finishedAt ?? job.createdAt) > days * 86400 { expired[job.id] = job }
        }
        if let keep = config.keepLastPerName {
            for (_, group) in Dictionary(grouping: finished, by: \.name) {
                let newestFirst = group.sorted { ($0.finishedAt ?? $0.createdAt) > ($1.finishedAt ?? $1.createdAt) }
                for job in newestFirst.dropFirst(keep) { expired[job.id] = job }
            }
        }
        return expired.values.sorted { ($0.finishedAt ?? $0.createdAt) < ($1.finishedAt ?? $1.createdAt) }
    }

    /// Applies the retention rules; a job another job's `init_from` names is kept.
    @discardableResult
    func applyRetention() -> Int {
        var removed = 0
        for job in expiredJobs() {
            do {
                try removeJob(job)
                removed += 1
            } catch let e as ServiceError where e.code == "model_in_use" {
                continue
            } catch {
                Log.error("retention_failed", [("id", .string(job.id)), ("error", .string("\(error)"))])
            }
        }
        if removed > 0 { Log.info("retention", [("removed", JSON(removed))]) }
        return removed
    }
}
