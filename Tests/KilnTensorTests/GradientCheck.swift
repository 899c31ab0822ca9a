import KilnTensor
import XCTest

/// Compares the autodiff gradient of `f` with central finite differences, for every
/// element of every input, once on each kernel library that can run here (OpenBLAS,
/// oneDNN). The scalar checked is Σ f(x)·w for fixed random weights w, accumulated in
/// Double, so every output element contributes.
func checkGradients(
    _ inputs: [Tensor], label: String = "", epsilon: Float = 1e-3, tolerance: Double = 2e-2,
    file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Variable]) throws -> Variable
) rethrows {
    for library in Kernels.availableLibraries {
        try Kernels.with(.only(library)) {
            try checkGradientsOnce(inputs, label: "\(label) [\(library.rawValue)]", epsilon: epsilon, tolerance: tolerance,
                                   file: file, line: line, f)
        }
    }
}

/// `checkGradients` on the kernels of the current policy.
func checkGradientsOnce(
    _ inputs: [Tensor], label: String, epsilon: Float, tolerance: Double,
    file: StaticString, line: UInt,
    _ f: ([Variable]) throws -> Variable
) rethrows {
    var generator = SeededGenerator(seed: 7)
    let variables = inputs.map { Variable($0, requiresGrad: true) }
    let output = try f(variables)
    let weights = Tensor.uniform(output.shape, low: -1, high: 1, generator: &generator)
    output.backward(seed: weights)

    func objective(_ values: [Tensor]) throws -> Double {
        let y = try f(values.map { Variable($0) }).value
        var total = 0.0
        for i in 0..<y.count { total += Double(y[flat: i]) * Double(weights[flat: i]) }
        return total
    }

    for (index, input) in inputs.enumerated() {
        let analytic = variables[index].grad ?? Tensor.zeros(input.shape)
        XCTAssertEqual(analytic.shape, input.shape, "gradient shape of input \(index)", file: file, line: line)
        for e in 0..<input.count {
            var plus = inputs, minus = inputs
            plus[index][flat: e] += epsilon
            minus[index][flat: e] -= epsilon
            let numeric = (try objective(plus) - objective(minus)) / (2 * Double(epsilon))
            let a = Double(analytic[flat: e])
            let scale = max(1, abs(numeric), abs(a))
            if abs(a - numeric) > tolerance * scale {
                XCTFail("\(label) input \(index) element \(e): analytic \(a), numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

func randomTensor(_ shape: [Int], low: Float = -1, high: Float = 1, seed: UInt64 = 1) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return Tensor.uniform(shape, low: low, high: high, generator: &g)
}
