import Foundation

/// A fixed set of threads running handlers, so a request costs a queue entry, not a
/// thread. The queue holds at most one task per connection or stream, so it is bounded
/// by the connection cap.
final class WorkerPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var tasks: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var running = 0
    private let threadCount: Int

    init(threads: Int, name: String) {
        threadCount = max(1, threads)
        for index in 0..<threadCount {
            let thread = Thread { [self] in
                Socket.nameCurrentThread("kiln-worker-\(index)")
                work()
            }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 8 << 20   // handlers parse and compile user input
            running += 1
            thread.start()
        }
    }

    func submit(_ task: @escaping () -> Void) {
        condition.lock()
        tasks.append(task)
        condition.signal()
        condition.unlock()
    }

    /// Lets queued tasks finish, then ends the threads (waits at most `seconds`).
    func shutdown(waiting seconds: Double = 2) {
        condition.lock()
        stopping = true
        condition.broadcast()
        let deadline = Date().addingTimeInterval(seconds)
        while running > 0 && condition.wait(until: deadline) {}
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while head == tasks.count && !stopping { condition.wait() }
            if head == tasks.count {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let task = tasks[head]
            head += 1
            if head == tasks.count {
                tasks.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024 && head * 2 > tasks.count {
                tasks.removeFirst(head)
                head = 0
            }
            condition.unlock()
            task()
        }
    }
}
