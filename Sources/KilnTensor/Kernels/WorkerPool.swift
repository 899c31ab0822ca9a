import Dispatch
import Foundation
import Synchronization

/// The threads that run the split work of kernels (`Parallel.perform`): one per core
/// beside the caller, each woken by a semaphore of its own. A training step runs a
/// dozen split kernels; handing each to Dispatch's workers (on Linux an emulated work
/// queue) cost the MNIST MLP a quarter of its epoch (docs/engine.md). After a job a
/// worker polls for the next one briefly (`spinLimit` polls, about 2 µs here) before it
/// sleeps: longer polling measured slower whenever other processes wanted the cores.
///
/// One job at a time: a caller that finds the pool busy (another thread's job, or a job
/// started from inside a job) runs its iterations on Dispatch instead, as before.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool(workers: Parallel.cores - 1)

    /// Polls of an idle worker before it sleeps.
    static let spinLimit = 20_000

    private let workers: Int
    /// Held by the caller of the running job.
    private let busy = Atomic<Bool>(false)
    /// Odd while a job is open to workers; each job adds 2 in all.
    private let generation = Atomic<UInt64>(0)
    /// The next iteration to take, and the iterations done, of the current job.
    private let next = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    /// Workers inside the current job.
    private let active = Atomic<Int>(0)
    private nonisolated(unsafe) var count = 0
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    /// Per worker: `flag` is 1 while it sleeps (or is about to) on `semaphore`.
    private final class Sleep: Sendable {
        let flag = Atomic<Int>(0)
        let semaphore = DispatchSemaphore(value: 0)
    }
    private let sleeps: [Sleep]

    private init(workers: Int) {
        self.workers = Swift.max(0, workers)
        sleeps = (0..<self.workers).map { _ in Sleep() }
        for w in 0..<self.workers {
            let thread = Thread { [unowned self] in self.work(w) }
            thread.name = "kiln-worker-\(w + 1)"
            thread.start()
        }
    }

    /// Runs body(i) for i in 0..<iterations on the caller and the workers; returns when
    /// all are done. False (nothing run) when the pool is busy or has no workers.
    func perform(_ iterations: Int, _ body: (Int) -> Void) -> Bool {
        guard workers > 0, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        withoutActuallyEscaping(body) { body in
            self.body = body
            count = iterations
            next.store(0, ordering: .sequentiallyConsistent)
            finished.store(0, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)  // open
            for sleep in sleeps where sleep.flag.exchange(0, ordering: .sequentiallyConsistent) == 1 {
                sleep.semaphore.signal()
            }
            runIterations(body, iterations)
            while finished.load(ordering: .sequentiallyConsistent) < iterations {}
            generation.add(1, ordering: .sequentiallyConsistent)  // closed
            while active.load(ordering: .sequentiallyConsistent) > 0 {}
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
        return true
    }

    private func runIterations(_ body: (Int) -> Void, _ iterations: Int) {
        while true {
            let i = next.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue
            if i >= iterations { return }
            body(i)
            finished.wrappingAdd(1, ordering: .sequentiallyConsistent)
        }
    }

    /// Takes iterations of the open job; its copy of the body is released on return.
    @inline(never)
    private func join() {
        guard let body else { return }
        runIterations(body, count)
    }

    private func work(_ w: Int) {
        let sleep = sleeps[w]
        var joined: UInt64 = 0
        while true {
            var polls = 0
            var g = generation.load(ordering: .sequentiallyConsistent)
            while g & 1 == 0 || g == joined {
                polls += 1
                if polls >= WorkerPool.spinLimit {
                    sleep.flag.store(1, ordering: .sequentiallyConsistent)
                    g = generation.load(ordering: .sequentiallyConsistent)
                    if g & 1 == 1 && g != joined {
                        // A job opened meanwhile: stay awake, unless its caller already
                        // claimed the wake-up, whose signal must then be taken.
                        if sleep.flag.exchange(0, ordering: .sequentiallyConsistent) == 0 { sleep.semaphore.wait() }
                        break
                    }
                    sleep.semaphore.wait()
                    polls = 0
                }
                g = generation.load(ordering: .sequentiallyConsistent)
            }
            active.wrappingAdd(1, ordering: .sequentiallyConsistent)
            // Still open: its caller now waits for this worker before it returns, so
            // the body and count stay valid until `join` is done with them.
            if generation.load(ordering: .sequentiallyConsistent) == g { join() }
            joined = g
            active.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        }
    }
}
