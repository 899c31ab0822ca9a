import Foundation
import KilnJSON
import KilnTensor

/// An element-wise formula over named inputs and trainable `params`, with numpy
/// broadcasting. Its derivative comes from the formula: each operation is an engine op
/// with its own analytic gradient.
///
///     {"type": "expression", "inputs": {"x": "image", "p": "protos"},
///      "expr": "exp((x - p) / c)", "params": {"c": {"shape": [], "init": 2.0, "trainable": false}}}
public struct Expression: Layer {
    public static let typeName = "expression"
    public static var arity: ClosedRange<Int> { 1...16 }

    public struct Param: Sendable {
        public var name: String
        public var shape: [Int]
        public var initializer: Initializer
        public var trainable: Bool
    }

    public let source: String
    public let aliases: [String]
    public let params: [Param]
    let tree: ExpressionNode
    /// The parsed formula, for exporters that translate it to other operator sets.
    public var formula: ExpressionNode { tree }
    /// The formula as one fused element-wise pass (forward and backward).
    let program: FusedProgram

    public init(_ fields: inout FieldReader) throws(SpecError) {
        guard let expr = try fields.string("expr") else {
            throw SpecError(.missingField, "is required", path: fields.fieldPath("expr"), node: fields.node)
        }
        source = expr
        // `inputs` as an object names each input; a single input is `x`.
        if let members = fields.object("inputs")?.objectMembers {
            aliases = members.map(\.0)
        } else if let list = fields.object("inputs")?.arrayValue, list.count > 1 {
            throw SpecError(.invalidField, "name the inputs with an object, e.g. {\"x\": \"dense_1\", \"p\": \"protos\"}", path: fields.fieldPath("inputs"), node: fields.node)
        } else {
            aliases = ["x"]
        }
        var params: [Param] = []
        if let p = fields.raw("params") {
            guard let members = p.objectMembers else {
                throw SpecError(.invalidField, "expected an object of named parameters", path: fields.fieldPath("params"), node: fields.node)
            }
            for (name, spec) in members {
                let path = "\(fields.fieldPath("params")).\(name)"
                var pf = try FieldReader(spec, path: path, node: fields.node)
                let shape = try pf.intList("shape") ?? []
                let initializer = try pf.raw("init").map { j throws(SpecError) in try Initializer.read(j, path: pf.fieldPath("init"), node: fields.node) } ?? .zeros
                let trainable = try pf.bool("trainable") ?? true
                try pf.finish()
                params.append(Param(name: name, shape: shape, initializer: initializer, trainable: trainable))
            }
        }
        self.params = params
        do {
            var parser = ExpressionParser(expr)
            tree = try parser.parse()
        } catch {
            throw SpecError(.invalidField, "\(error.message) at column \(error.column) in \"\(expr)\"", path: fields.fieldPath("expr"), node: fields.node)
        }
        let known = Set(aliases + params.map(\.name))
        for v in tree.variables where !known.contains(v) {
            throw SpecError(.invalidField, "unknown variable '\(v)' in \"\(expr)\"; known: \(known.sorted().joined(separator: ", "))\(Suggest.hint(v, Array(known)))", path: fields.fieldPath("expr"), node: fields.node)
        }
        // Compiled only once every variable is known to have an operand.
        program = FusedProgram(tree, leaves: aliases + params.map(\.name))
    }

    /// The formula and the params; the inputs (and their aliases) are the node's.
    public var config: [(String, JSON)] {
        var out: [(String, JSON)] = [("expr", .string(source))]
        if !params.isEmpty {
            out.append(("params", .object(params.map { p in
                (p.name, .object([("shape", JSON(p.shape)), ("init", p.initializer.json), ("trainable", JSON(p.trainable))]))
            })))
        }
        return out
    }

    public func outputShape(_ inputs: [NodeShape], _ node: NodeInfo) throws(SpecError) -> NodeShape {
        guard inputs.count == aliases.count else {
            throw node.error("the expression names \(aliases.count) inputs but \(inputs.count) are wired", field: "inputs", code: .invalidField)
        }
        return try broadcastShapes(inputs + params.map { NodeShape($0.shape, batched: false) }, node, "expression")
    }

    public func parameters(_ inputs: [NodeShape]) -> [ParameterSpec] {
        params.map { ParameterSpec($0.name, shape: $0.shape, initializer: $0.initializer, trainable: $0.trainable) }
    }

    /// The operands of each `mod(a, b)` in the formula that can be computed from
    /// `scope` alone (typically params and weight nodes, which have no batch axis), so
    /// a trainer can see how many values wrap.
    public func modOperands(_ scope: [String: Variable]) -> [(value: Tensor, modulus: Tensor)] {
        var found: [(Tensor, Tensor)] = []
        func walk(_ n: ExpressionNode) {
            switch n {
            case .number, .variable: return
            case let .unary(_, a): walk(a)
            case let .binary(op, a, b):
                if op == .mod, !a.variables.isEmpty, (a.variables + b.variables).allSatisfy({ scope[$0] != nil }),
                   let x = try? a.evaluate(scope), let m = try? b.evaluate(scope) {
                    found.append((x.value, m.value))
                }
                walk(a)
                walk(b)
            }
        }
        walk(tree)
        return found
    }

    public func forward(_ inputs: [Variable], _ w: [String: Variable], _ context: inout ForwardContext) throws(TensorError) -> Variable {
        try program.run(inputs + params.map { w[$0.name]! })
    }
}

// MARK: - The formula language

/// A parsed formula. Its operators are the closed enums of the element-wise table, so
/// every operator a tree can hold has a value and a derivative; a name the table lacks
/// is a parse error, never a fallback.
public indirect enum ExpressionNode: Sendable {
    case number(Float)
    case variable(String)
    case unary(UnaryFunction, ExpressionNode)
    case binary(BinaryFunction, ExpressionNode, ExpressionNode)

    public var variables: [String] {
        switch self {
        case .number: return []
        case let .variable(v): return [v]
        case let .unary(_, a): return a.variables
        case let .binary(_, a, b): return a.variables + b.variables
        }
    }

    /// The formula built from engine ops (each with its own checked gradient).
    func evaluate(_ scope: [String: Variable]) throws(TensorError) -> Variable {
        switch self {
        case let .number(n): return Variable(Tensor(scalar: n))
        case let .variable(v): return scope[v]!
        case let .unary(f, a): return try a.evaluate(scope).apply(f)
        case let .binary(f, a, b):
            let x = try a.evaluate(scope)
            // Constant right operands fold into cheaper ops.
            if case let .number(n) = b {
                switch f {
                case .mul: return x.affine(scale: n)
                case .div: return x.affine(scale: 1 / n)
                case .add: return x.affine(scale: 1, shift: n)
                case .sub: return x.affine(scale: 1, shift: -n)
                case .pow where n == 2: return x.square()
                case .pow, .mod, .min, .max: break
                }
            }
            return try x.apply(f, b.evaluate(scope))
        }
    }
}

/// What a function name in a formula calls: every one-argument function of the
/// element-wise table (unary minus is written `-x`), and pow, mod, min, max.
enum ExpressionFunction: Sendable {
    case unary(UnaryFunction)
    case binary(BinaryFunction)

    static let byName: [String: ExpressionFunction] = {
        var table: [String: ExpressionFunction] = [:]
        for f in UnaryFunction.allCases where f != .neg { table[f.rawValue] = .unary(f) }
        for f in [BinaryFunction.pow, .mod, .min, .max] { table[f.rawValue] = .binary(f) }
        return table
    }()

    static var names: [String] { byName.keys.sorted() }
}

struct ExpressionParseError: Error {
    var message: String
    var column: Int
}

/// Recursive descent: sum := product (('+'|'-') product)*; product := unary (('*'|'/') unary)*;
/// unary := '-' unary | power; power := atom ('^' unary)?; atom := number | name | name '(' args ')' | '(' sum ')'.
struct ExpressionParser {
    let chars: [Character]
    var index = 0
    var depth = 0

    init(_ text: String) { chars = Array(text) }

    func error(_ message: String) -> ExpressionParseError { ExpressionParseError(message: message, column: index + 1) }

    mutating func skipSpaces() { while index < chars.count, chars[index].isWhitespace { index += 1 } }

    mutating func parse() throws(ExpressionParseError) -> ExpressionNode {
        let tree = try sum()
        skipSpaces()
        guard index == chars.count else { throw error("unexpected '\(chars[index])'") }
        return tree
    }

    mutating func sum() throws(ExpressionParseError) -> ExpressionNode {
        var left = try product()
        while true {
            skipSpaces()
            guard index < chars.count, chars[index] == "+" || chars[index] == "-" else { return left }
            let op: BinaryFunction = chars[index] == "+" ? .add : .sub
            index += 1
            left = .binary(op, left, try product())
        }
    }

    mutating func product() throws(ExpressionParseError) -> ExpressionNode {
        var left = try unary()
        while true {
            skipSpaces()
            guard index < chars.count, chars[index] == "*" || chars[index] == "/" else { return left }
            let op: BinaryFunction = chars[index] == "*" ? .mul : .div
            index += 1
            left = .binary(op, left, try unary())
        }
    }

    mutating func unary() throws(ExpressionParseError) -> ExpressionNode {
        skipSpaces()
        if index < chars.count, chars[index] == "-" {
            index += 1
            return .unary(.neg, try unary())
        }
        return try power()
    }

    mutating func power() throws(ExpressionParseError) -> ExpressionNode {
        let base = try atom()
        skipSpaces()
        if index < chars.count, chars[index] == "^" {
            index += 1
            return .binary(.pow, base, try unary())
        }
        return base
    }

    mutating func atom() throws(ExpressionParseError) -> ExpressionNode {
        skipSpaces()
        depth += 1
        defer { depth -= 1 }
        guard depth < 200 else { throw error("expression nested too deeply") }
        guard index < chars.count else { throw error("unexpected end of expression") }
        let c = chars[index]
        if c == "(" {
            index += 1
            let inner = try sum()
            skipSpaces()
            guard index < chars.count, chars[index] == ")" else { throw error("expected ')'") }
            index += 1
            return inner
        }
        if c.isNumber || c == "." {
            let start = index
            while index < chars.count, chars[index].isNumber || chars[index] == "." { index += 1 }
            if index < chars.count, chars[index] == "e" || chars[index] == "E" {
                index += 1
                if index < chars.count, chars[index] == "+" || chars[index] == "-" { index += 1 }
                while index < chars.count, chars[index].isNumber { index += 1 }
            }
            let text = String(chars[start..<index])
            guard let v = Float(text), v.isFinite else {
                index = start
                throw error("invalid number '\(text)'")
            }
            return .number(v)
        }
        if c.isLetter || c == "_" {
            let start = index
            while index < chars.count, chars[index].isLetter || chars[index].isNumber || chars[index] == "_" { index += 1 }
            let name = String(chars[start..<index])
            skipSpaces()
            guard index < chars.count, chars[index] == "(" else { return .variable(name) }
            let column = start
            index += 1
            var args: [ExpressionNode] = [try sum()]
            skipSpaces()
            while index < chars.count, chars[index] == "," {
                index += 1
                args.append(try sum())
                skipSpaces()
            }
            guard index < chars.count, chars[index] == ")" else { throw error("expected ')' after the arguments of \(name)") }
            index += 1
            switch ExpressionFunction.byName[name] {
            case let .unary(f):
                guard args.count == 1 else { throw ExpressionParseError(message: "\(name) takes 1 argument, got \(args.count)", column: column + 1) }
                return .unary(f, args[0])
            case let .binary(f):
                guard args.count == 2 else { throw ExpressionParseError(message: "\(name) takes 2 arguments, got \(args.count)", column: column + 1) }
                return .binary(f, args[0], args[1])
            case nil:
                throw ExpressionParseError(message: "unknown function '\(name)'\(Suggest.hint(name, ExpressionFunction.names))", column: column + 1)
            }
        }
        throw error("unexpected '\(c)'")
    }
}
