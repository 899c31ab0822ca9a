/// A problem in a job spec that the user can fix. It carries the JSON path of the
/// offending field (`model.layers[4].kernel_size`), the node it belongs to, and for shape
/// problems the shapes involved.
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case invalidField = "invalid_field"
        case missingField = "missing_field"
        case unknownField = "unknown_field"
        case unknownType = "unknown_type"
        case unknownNode = "unknown_node"
        case duplicateName = "duplicate_name"
        case cycle
        case shapeMismatch = "shape_mismatch"
        case unusedInput = "unused_input"
        case tooLarge = "model_too_large"
        /// A well-formed model Kiln cannot run as given (a Keras Lambda, a custom layer
        /// class, an option Kiln's layer lacks); the message says what to write instead.
        case unsupportedLayer = "unsupported_layer"
    }

    public var code: Code
    public var message: String
    public var path: String
    public var node: String?

    public init(_ code: Code, _ message: String, path: String, node: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.node = node
    }

    public var description: String {
        let where_ = node.map { "node '\($0)' (\(path))" } ?? path
        return "\(where_): \(message)"
    }
}

/// "did you mean" suggestions by edit distance.
public enum Suggest {
    public static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, word.count / 3) ? best.0 : nil
    }

    public static func hint(_ word: String, _ candidates: [String]) -> String {
        closest(to: word, in: candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
