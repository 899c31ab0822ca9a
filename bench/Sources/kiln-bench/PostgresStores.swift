import Foundation
import KilnGraph
import KilnJSON
import KilnPostgres
import KilnService
import KilnSpec
import KilnTrain

/// `kiln-bench pg-commit URL DIR [COMMITS] [EPOCH_SECONDS]`: what an epoch's commit
/// (`JobStore.commitEpoch`: checkpoint, optimizer state, metrics) costs on the data
/// directory and on PostgreSQL, for the 16-512-512-1 model of bench/pg-cluster.sh
/// (1.1 MB of weights, 2.2 MB of Adam state). COMMITS of each, interleaved, on a job
/// claimed as a worker would; the medians, and their difference as a share of an
/// epoch of EPOCH_SECONDS (the data-directory epoch that bench/pg-cluster.sh measured).
func postgresCommit(url: String, directory: String, commits: Int, epochSeconds: Double?) throws {
    let specJSON: JSON = [
        "name": "commit",
        "model": ["inputs": ["x": [16]], "layers": [["type": "dense", "units": 512, "activation": "relu"],
                                                    ["type": "dense", "units": 512, "activation": "relu"],
                                                    ["type": "dense", "units": 1, "name": "y"]]],
        "data": ["fields": ["x": [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], "y": [[0]]]],
        "train": ["epochs": 1, "batch_size": 1, "optimizer": ["type": "adam"], "losses": [["node": "y", "type": "mse", "target": "y"]]],
    ]
    let spec = try JobSpec(json: specJSON)
    let model = CompiledModel(graph: spec.model, seed: 1)
    let database = try PostgresDatabase(url: url)
    let stores: [(String, JobStore, ArtifactStore)] = [
        ("data_directory", try DirectoryJobStore(directory: directory), try DirectoryArtifactStore(directory: directory)),
        ("postgresql", PostgresJobStore(database: database, node: "bench", lease: 30), PostgresArtifactStore(database: database)),
    ]
    var ids: [String] = []
    for (_, jobs, artifacts) in stores {
        let job = Job(id: jobs.newID(), name: "commit", epochs: commits, specHash: "bench", seed: 1)
        try jobs.create(job, spec: spec)
        guard try jobs.claim(node: "bench")?.id == job.id else { throw BenchError("the bench job was not claimed") }
        try artifacts.writeGraph(job.id, spec.model.json)
        ids.append(job.id)
    }
    var times: [[Double]] = [[], []]
    for epoch in 1...commits {
        for (i, (_, jobs, artifacts)) in stores.enumerated() {
            let metrics: JSON = ["epoch": JSON(epoch), "loss": 0.5]
            let start = now()
            // Encoding is part of the commit as the scheduler does it; it costs the same on both.
            let weights = Checkpoint.encode(model, metadata: ["job": ids[i], "epoch": String(epoch), "metrics": metrics.serialized()])
            let optimizer = [UInt8](repeating: UInt8(epoch & 0xFF), count: 2 * weights.count)
            try jobs.commitEpoch(ids[i], metrics: metrics, warnings: [], weights: weights, optimizer: optimizer, artifacts: artifacts)
            times[i].append(now() - start)
        }
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    let directoryMS = median(times[0]) * 1000, postgresMS = median(times[1]) * 1000
    var line: [(String, JSON)] = [("figure", "epoch_commit_ms"), ("commits", JSON(commits)),
                                  ("checkpoint_bytes", JSON(Checkpoint.encode(model, metadata: [:]).count * 3)),
                                  ("data_directory_ms", .number((directoryMS * 10).rounded() / 10)),
                                  ("postgresql_ms", .number((postgresMS * 10).rounded() / 10))]
    if let epochSeconds, epochSeconds > 0 {
        line.append(("epoch_seconds", .number((epochSeconds * 1000).rounded() / 1000)))
        line.append(("overhead_percent", .number(((postgresMS - directoryMS) / 10 / epochSeconds * 10).rounded() / 10)))
        line.append(("target_percent", 5))
    }
    print(JSONValue(line))
    database.shutdown()
}

private func JSONValue(_ members: [(String, JSON)]) -> String { JSON.object(members).serialized() }
