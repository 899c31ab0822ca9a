import Foundation

/// Renews a claim's lease in the background while the job runs, and says when to stop.
///
/// Heartbeats every `interval` seconds (a third of the lease by default). The training
/// loop reads `shouldStop` between steps; `onEnd` is called once, on the keeper's
/// queue, when the job is cancelled or lost. A heartbeat that fails because the
/// database is unreachable is retried at the next tick; once the last renewed lease
/// has run out without a successful renewal the job counts as lost, because another
/// worker may already have claimed it.
public final class PostgresLeaseKeeper: @unchecked Sendable {
    public let claim: PostgresJobQueue.Claim
    public let lease: Double
    public let interval: Double
    private let queue: PostgresJobQueue
    private let onEnd: @Sendable (PostgresJobQueue.Ownership) -> Void
    private let lock = NSLock()
    private var current: PostgresJobQueue.Ownership
    private var leaseRunsOut: Date
    private var stopped = false
    private let timer: DispatchSourceTimer

    /// Starts renewing. The first heartbeat is one `interval` from now.
    public init(queue: PostgresJobQueue, claim: PostgresJobQueue.Claim, lease: Double, interval: Double? = nil,
                onEnd: @escaping @Sendable (PostgresJobQueue.Ownership) -> Void = { _ in }) {
        self.queue = queue
        self.claim = claim
        self.lease = lease
        self.interval = interval ?? lease / 3
        self.onEnd = onEnd
        let expiry = claim.job.leaseExpiresAt ?? Date().addingTimeInterval(lease)
        current = .owned(leaseExpiresAt: expiry)
        // Measured on this clock from now: the database's clock may differ from ours.
        leaseRunsOut = Date().addingTimeInterval(lease)
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "kiln-pg-lease-\(claim.id)"))
        timer.schedule(deadline: .now() + self.interval, repeating: self.interval)
        timer.setEventHandler { [weak self] in self?.tick() }
        timer.resume()
    }

    deinit { timer.cancel() }

    /// The last ownership seen.
    public var ownership: PostgresJobQueue.Ownership { lock.lock(); defer { lock.unlock() }; return current }

    /// True once the job was cancelled or lost: stop and write nothing more.
    public var shouldStop: Bool {
        if case .owned = ownership { return false }
        return true
    }

    /// Stops renewing (the job finished, or the worker gives it back).
    public func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        if first { timer.cancel() }
    }

    private func tick() {
        lock.lock()
        if stopped { lock.unlock(); return }
        lock.unlock()
        let started = Date()
        var ended: PostgresJobQueue.Ownership?
        do {
            let seen = try queue.heartbeat(claim, lease: lease)
            lock.lock()
            current = seen
            if case .owned = seen { leaseRunsOut = started.addingTimeInterval(lease) } else { ended = seen }
            lock.unlock()
        } catch {
            lock.lock()
            if Date() >= leaseRunsOut {
                current = .lost
                ended = .lost
            }
            lock.unlock()
        }
        if let ended {
            stop()
            onEnd(ended)
        }
    }
}
