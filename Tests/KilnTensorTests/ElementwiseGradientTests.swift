import KilnTensor
import XCTest

final class ElementwiseGradientTests: XCTestCase {
    let x = randomTensor([3, 4], seed: 1)
    let positive = randomTensor([3, 4], low: 0.5, high: 2, seed: 2)

    func testUnaryGradients() throws {
        let ops: [(String, Tensor, (Variable) -> Variable)] = [
            ("neg", x, { $0.neg() }), ("exp", x, { $0.exp() }), ("log", positive, { $0.log() }),
            ("sqrt", positive, { $0.sqrt() }), ("abs", x, { $0.abs() }), ("square", x, { $0.square() }),
            ("sin", x, { $0.sin() }), ("cos", x, { $0.cos() }), ("tanh", x, { $0.tanh() }),
            ("sigmoid", x, { $0.sigmoid() }), ("relu", x, { $0.relu() }), ("leaky_relu", x, { $0.leakyRelu() }),
            ("elu", x, { $0.elu() }), ("selu", x, { $0.selu() }), ("gelu", x, { $0.gelu() }),
            ("softplus", x, { $0.softplus() }), ("affine", x, { $0.affine(scale: 3, shift: 1) }),
        ]
        for (name, input, op) in ops {
            checkGradients([input], label: name) { v in op(v[0]) }
        }
    }

    /// Every function of the element-wise table, on a domain where it is smooth: its
    /// derivative against finite differences of its value. A new function must be given
    /// a domain here (the switches have no default), so it cannot go unchecked.
    func testEveryTableFunctionsDerivative() throws {
        for f in UnaryFunction.allCases {
            let input: Tensor
            switch f {
            case .log, .sqrt: input = positive
            case .floor: input = randomTensor([3, 4], low: 0.1, high: 0.9, seed: 8)
            case .neg, .exp, .abs, .square, .sin, .cos, .tanh, .sigmoid, .relu, .elu, .selu, .gelu, .softplus, .leakyRelu: input = x
            }
            checkGradients([input], label: f.rawValue) { v in v[0].apply(f) }
        }
        for f in BinaryFunction.allCases {
            var a = randomTensor([3, 4], seed: 3), b = randomTensor([4], seed: 4)
            switch f {
            case .div: b = randomTensor([4], low: 0.5, high: 2, seed: 5)
            case .pow: a = randomTensor([3, 4], low: 0.5, high: 2, seed: 6)
            // Away from the wrap points: a/b stays inside (0, 1).
            case .mod: (a, b) = (randomTensor([3, 4], low: 0.1, high: 0.9, seed: 6), randomTensor([4], low: 1.5, high: 2, seed: 5))
            case .add, .sub, .mul, .min, .max: break
            }
            try checkGradients([a, b], label: f.rawValue) { v in try v[0].apply(f, v[1]) }
        }
    }

    func testFloorHasZeroGradient() {
        let v = Variable(Tensor(shape: [3], values: [0.5, 1.5, -2.3]), requiresGrad: true)
        let y = v.floor()
        XCTAssertEqual(y.value.scalars, [0, 1, -3])
        y.backward()
        XCTAssertEqual(v.grad?.scalars, [0, 0, 0])
    }

    func testBinaryGradientsWithBroadcasting() throws {
        // Same shape, a batchless weight row, a column, and a scalar.
        let shapes: [([Int], [Int])] = [([3, 4], [3, 4]), ([3, 4], [4]), ([3, 1], [1, 4]), ([2, 3, 4], []), ([4], [2, 3, 4])]
        for (sa, sb) in shapes {
            let a = randomTensor(sa, seed: 3), b = randomTensor(sb, seed: 4)
            let bPositive = randomTensor(sb, low: 0.5, high: 2, seed: 5)
            let aPositive = randomTensor(sa, low: 0.5, high: 2, seed: 6)
            try checkGradients([a, b]) { v in try v[0].add(v[1]) }
            try checkGradients([a, b]) { v in try v[0].sub(v[1]) }
            try checkGradients([a, b]) { v in try v[0].mul(v[1]) }
            try checkGradients([a, bPositive]) { v in try v[0].div(v[1]) }
            try checkGradients([aPositive, b]) { v in try v[0].pow(v[1]) }
            try checkGradients([a, b]) { v in try v[0].minimum(v[1]) }
            try checkGradients([a, b]) { v in try v[0].maximum(v[1]) }
        }
    }

    func testFlooredModMatchesPythonAndHasItsGradient() throws {
        let a = Variable(Tensor(shape: [4], values: [5, -5, 5, -5]), requiresGrad: true)
        let b = Variable(Tensor(shape: [4], values: [3, 3, -3, -3]), requiresGrad: true)
        let y = try a.mod(b)
        XCTAssertEqual(y.value.scalars, [2, 1, -1, -2])  // Python: 5%3, -5%3, 5%-3, -5%-3
        y.backward()
        XCTAssertEqual(a.grad?.scalars, [1, 1, 1, 1])
        XCTAssertEqual(b.grad?.scalars, [-1, 2, 2, -1])  // −floor(a/b)
        // Away from the wrap points the finite difference agrees.
        let av = Tensor(shape: [3], values: [1.3, 4.6, -2.2]), bv = Tensor(shape: [3], values: [2.5, 2.0, 1.5])
        try checkGradients([av, bv]) { v in try v[0].mod(v[1]) }
    }

    func testBroadcastErrorNamesBothShapes() {
        let a = Variable(Tensor.zeros([3, 4])), b = Variable(Tensor.zeros([5]))
        XCTAssertThrowsError(try a.add(b)) { error in
            let e = error as! TensorError
            XCTAssertEqual(e.shapes, [[3, 4], [5]])
            XCTAssertTrue(e.description.contains("[3, 4]") && e.description.contains("[5]"), e.description)
        }
    }
}
