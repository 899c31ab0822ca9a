import Foundation
import KilnJSON

/// Lets an idle worker sleep until there may be work: a `kiln_jobs` notification with
/// status "queued" (or a listener reconnect, after which notifications may have been
/// missed) wakes it at once; otherwise it retries the claim every `safetyInterval`
/// seconds, which also picks up leases that expired without anyone saying so.
public final class PostgresQueueWaiter: @unchecked Sendable {
    public let queue: PostgresJobQueue
    public let safetyInterval: Double
    private let condition = NSCondition()
    /// Bumped on every wake-up, so a notice that arrives during a claim is not lost.
    private var generation = 0
    private var listener: PostgresListener?

    /// Opens the listener connection.
    /// - Throws: `.connection` when the database cannot be reached.
    public init(queue: PostgresJobQueue, safetyInterval: Double = 5) throws {
        self.queue = queue
        self.safetyInterval = safetyInterval
        listener = try PostgresListener(url: queue.pool.url, channels: [PostgresJobQueue.Channel.jobs],
                                        onReconnect: { [weak self] in self?.wake() }) { [weak self] _, payload in
            // Only new or released jobs make work; other status changes do not.
            if (try? JSON.parse(payload))?["status"]?.stringValue == "queued" { self?.wake() }
        }
    }

    deinit { listener?.stop() }

    /// Stops listening; waiting calls return at their deadline.
    public func stop() {
        listener?.stop()
        wake()
    }

    /// Wakes the waiting workers (the listener calls it; a local enqueue may too).
    public func wake() {
        condition.lock()
        generation += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Claims a job, waiting for one until `deadline`.
    /// - Returns: the claim, or nil at the deadline.
    public func nextClaim(node: String, lease: Double, until deadline: Date) throws -> PostgresJobQueue.Claim? {
        while true {
            condition.lock()
            let seen = generation
            condition.unlock()
            if let claim = try queue.claim(node: node, lease: lease) { return claim }
            let now = Date()
            if now >= deadline { return nil }
            let wakeAt = min(deadline, now.addingTimeInterval(safetyInterval))
            condition.lock()
            while generation == seen && Date() < wakeAt {
                if !condition.wait(until: wakeAt) { break }
            }
            condition.unlock()
        }
    }
}
