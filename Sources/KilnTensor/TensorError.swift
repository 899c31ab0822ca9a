/// A problem with the data given to the engine that a user can cause: shapes that do
/// not fit together, or values that are not finite. It names the op and the shapes.
public struct TensorError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case shapeMismatch, invalidArgument, nonFinite }
    public var kind: Kind
    public var op: String
    public var message: String
    public var shapes: [[Int]]

    public init(_ kind: Kind, op: String, _ message: String, shapes: [[Int]] = []) {
        self.kind = kind
        self.op = op
        self.message = message
        self.shapes = shapes
    }

    public var description: String { "\(op): \(message)" }

    /// A shape mismatch between two operands of `op`.
    public static func mismatch(_ op: String, _ a: [Int], _ b: [Int], _ why: String) -> TensorError {
        shapes(op, a, b, why)
    }

    static func shapes(_ op: String, _ a: [Int], _ b: [Int], _ why: String) -> TensorError {
        TensorError(.shapeMismatch, op: op, "\(why): \(a) and \(b)", shapes: [a, b])
    }
}
