import Synchronization

/// Reference-counted storage for a tensor's elements: one contiguous, 64-byte aligned
/// Float32 buffer, returned to the `BufferPool` when the last tensor using it goes away.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        self.count = count
        pointer = BufferPool.take(bytes: max(count, 1) * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { BufferPool.give(UnsafeMutableRawPointer(pointer), bytes: max(count, 1) * MemoryLayout<Float>.stride) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

/// Freed tensor buffers, kept by size for the next tensor of that size.
///
/// A training step allocates the same sizes as the step before it (one set per batch
/// shape), so from the second step on every activation, gradient and temporary comes
/// from here: no allocation reaches the system allocator, and no fresh page is faulted
/// in and zeroed by the kernel. Small buffers (under `minimumBytes`) go straight to
/// malloc, whose own bins serve them well. The pool keeps at most `capacityBytes`;
/// `drain()` frees everything it keeps (when a job ends).
public enum BufferPool {
    public static let minimumBytes = 16 << 10
    static let alignment = 64

    struct State: ~Copyable {
        var free: [Int: [UnsafeMutableRawPointer]] = [:]
        var cachedBytes = 0
        var capacityBytes = 1 << 30
        var systemAllocations = 0
        var reuses = 0
    }
    static let state = Mutex(State())

    /// The most bytes kept for reuse (1 GiB unless set).
    public static var capacityBytes: Int {
        get { state.withLock { $0.capacityBytes } }
        set { state.withLock { $0.capacityBytes = max(0, newValue) } }
    }

    /// Buffers of at least `minimumBytes` taken from the system allocator so far, and
    /// those served from the pool instead.
    public static var statistics: (systemAllocations: Int, reuses: Int, cachedBytes: Int) {
        state.withLock { ($0.systemAllocations, $0.reuses, $0.cachedBytes) }
    }

    static func take(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes >= minimumBytes {
            let reused: UnsafeMutableRawPointer? = state.withLock { s in
                guard let p = s.free[bytes]?.popLast() else { s.systemAllocations += 1; return nil }
                s.cachedBytes -= bytes
                s.reuses += 1
                return p
            }
            if let reused { return reused }
        }
        return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: alignment)
    }

    static func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        if bytes >= minimumBytes {
            let kept = state.withLock { s in
                guard s.cachedBytes + bytes <= s.capacityBytes else { return false }
                s.free[bytes, default: []].append(pointer)
                s.cachedBytes += bytes
                return true
            }
            if kept { return }
        }
        pointer.deallocate()
    }

    /// Frees every kept buffer.
    public static func drain() {
        let all = state.withLock { s in
            let all = s.free.values.flatMap { $0 }
            s.free = [:]
            s.cachedBytes = 0
            return all
        }
        for p in all { p.deallocate() }
    }
}

/// A dense, row-major Float32 tensor with value semantics (copy on write).
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public private(set) var storage: TensorStorage

    /// An uninitialised tensor; callers must write every element.
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(shape: [Int], repeating value: Float = 0) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "\(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    public init(scalar: Float) { self.init(shape: [], values: [scalar]) }

    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var scalars: [Float] { Array(storage.buffer) }
    /// The single element of a one-element tensor.
    public var scalar: Float { precondition(count == 1); return storage.pointer[0] }

    public subscript(flat index: Int) -> Float {
        get { storage.pointer[index] }
        set { makeUnique(); storage.pointer[index] = newValue }
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(storage.buffer))
    }

    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        makeUnique()
        return try body(storage.buffer)
    }

    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage(count: storage.count)
            copy.pointer.update(from: storage.pointer, count: storage.count)
            storage = copy
        }
    }

    /// The same elements viewed with another shape of equal size (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var t = self
        t.shape = newShape
        return t
    }

    /// Whether every element is finite (no NaN or infinity).
    public var isFinite: Bool {
        let p = storage.pointer
        for i in 0..<count where !p[i].isFinite { return false }
        return true
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", …" : "")])"
    }
}
