import Dispatch
@testable import KilnTensor
import Synchronization
import XCTest

/// `Parallel.perform` runs every iteration exactly once, from one caller or from many
/// at once (the pool takes one job at a time; the others run on Dispatch), with jobs
/// started inside jobs, and after the workers have gone to sleep.
final class WorkerPoolTests: XCTestCase {
    func testEveryIterationRunsOnceFromManyCallersAndNestedJobs() {
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for job in 0..<300 {
                let count = 1 + (caller + job) % 7
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { h in
                    let p = h.baseAddress!
                    Parallel.perform(count) { i in
                        p[i] += 1
                        if i == 0 && job % 50 == 0 {
                            // A job from inside a job.
                            var inner = [Int](repeating: 0, count: 3)
                            inner.withUnsafeMutableBufferPointer { q in
                                let r = q.baseAddress!
                                Parallel.perform(3) { r[$0] += 1 }
                            }
                            XCTAssertEqual(inner, [1, 1, 1])
                        }
                    }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: count), "caller \(caller) job \(job)")
                total.wrappingAdd(count, ordering: .relaxed)
            }
        }
        XCTAssertGreaterThan(total.load(ordering: .relaxed), 0)
    }

    func testJobsAfterTheWorkersSleep() {
        for round in 0..<5 {
            usleep(2_000)
            var hits = [Int](repeating: 0, count: 16)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress!
                Parallel.perform(16) { p[$0] += 1 }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: 16), "round \(round)")
        }
    }
}
