import Foundation
import KilnTensor
import XCTest

final class RecurrentTests: XCTestCase {
    func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }

    /// Keras LSTM, one sample and one step at a time, in Double.
    func referenceLSTM(_ x: Tensor, _ k: Tensor, _ r: Tensor, _ bias: Tensor?) -> [[[Double]]] {
        let (n, t, f) = (x.shape[0], x.shape[1], x.shape[2]), u = r.shape[0]
        var out: [[[Double]]] = []
        for b in 0..<n {
            var h = [Double](repeating: 0, count: u), c = [Double](repeating: 0, count: u)
            var sequence: [[Double]] = []
            for s in 0..<t {
                var z = [Double](repeating: 0, count: 4 * u)
                for g in 0..<(4 * u) {
                    var v = bias.map { Double($0[flat: g]) } ?? 0
                    for i in 0..<f { v += Double(x[flat: (b * t + s) * f + i]) * Double(k[flat: i * 4 * u + g]) }
                    for i in 0..<u { v += h[i] * Double(r[flat: i * 4 * u + g]) }
                    z[g] = v
                }
                for j in 0..<u {
                    let input = sigmoid(z[j]), forget = sigmoid(z[u + j]), candidate = Foundation.tanh(z[2 * u + j]), output = sigmoid(z[3 * u + j])
                    c[j] = forget * c[j] + input * candidate
                    h[j] = output * Foundation.tanh(c[j])
                }
                sequence.append(h)
            }
            out.append(sequence)
        }
        return out
    }

    /// Keras GRU with reset_after=True, one sample and one step at a time, in Double.
    func referenceGRU(_ x: Tensor, _ k: Tensor, _ r: Tensor, _ bias: Tensor?) -> [[[Double]]] {
        let (n, t, f) = (x.shape[0], x.shape[1], x.shape[2]), u = r.shape[0]
        var out: [[[Double]]] = []
        for b in 0..<n {
            var h = [Double](repeating: 0, count: u)
            var sequence: [[Double]] = []
            for s in 0..<t {
                var inputPart = [Double](repeating: 0, count: 3 * u), recurrentPart = [Double](repeating: 0, count: 3 * u)
                for g in 0..<(3 * u) {
                    inputPart[g] = bias.map { Double($0[flat: g]) } ?? 0
                    recurrentPart[g] = bias.map { Double($0[flat: 3 * u + g]) } ?? 0
                    for i in 0..<f { inputPart[g] += Double(x[flat: (b * t + s) * f + i]) * Double(k[flat: i * 3 * u + g]) }
                    for i in 0..<u { recurrentPart[g] += h[i] * Double(r[flat: i * 3 * u + g]) }
                }
                var next = h
                for j in 0..<u {
                    let z = sigmoid(inputPart[j] + recurrentPart[j])
                    let reset = sigmoid(inputPart[u + j] + recurrentPart[u + j])
                    let candidate = Foundation.tanh(inputPart[2 * u + j] + reset * recurrentPart[2 * u + j])
                    next[j] = z * h[j] + (1 - z) * candidate
                }
                h = next
                sequence.append(h)
            }
            out.append(sequence)
        }
        return out
    }

    func compare(_ y: Tensor, _ reference: [[[Double]]], returnSequences: Bool, _ label: String) {
        let n = reference.count, t = reference[0].count, u = reference[0][0].count
        XCTAssertEqual(y.shape, returnSequences ? [n, t, u] : [n, u], label)
        for b in 0..<n { for s in (returnSequences ? 0 : t - 1)..<t { for j in 0..<u {
            let index = returnSequences ? (b * t + s) * u + j : b * u + j
            XCTAssertEqual(Double(y[flat: index]), reference[b][s][j], accuracy: 1e-5, "\(label) sample \(b) step \(s) unit \(j)")
        } } }
    }

    func testLSTMForwardMatchesStepByStepReference() throws {
        let x = randomTensor([3, 5, 4], seed: 1), k = randomTensor([4, 12], seed: 2), r = randomTensor([3, 12], seed: 3), bias = randomTensor([12], seed: 4)
        for returnSequences in [true, false] {
            let y = try Variable(x).lstm(kernel: Variable(k), recurrentKernel: Variable(r), bias: Variable(bias), returnSequences: returnSequences).value
            compare(y, referenceLSTM(x, k, r, bias), returnSequences: returnSequences, "lstm")
        }
        let noBias = try Variable(x).lstm(kernel: Variable(k), recurrentKernel: Variable(r), bias: nil, returnSequences: true).value
        compare(noBias, referenceLSTM(x, k, r, nil), returnSequences: true, "lstm without bias")
    }

    func testGRUForwardMatchesStepByStepReference() throws {
        let x = randomTensor([3, 5, 4], seed: 5), k = randomTensor([4, 9], seed: 6), r = randomTensor([3, 9], seed: 7), bias = randomTensor([2, 9], seed: 8)
        for returnSequences in [true, false] {
            let y = try Variable(x).gru(kernel: Variable(k), recurrentKernel: Variable(r), bias: Variable(bias), returnSequences: returnSequences).value
            compare(y, referenceGRU(x, k, r, bias), returnSequences: returnSequences, "gru")
        }
        let noBias = try Variable(x).gru(kernel: Variable(k), recurrentKernel: Variable(r), bias: nil, returnSequences: false).value
        compare(noBias, referenceGRU(x, k, r, nil), returnSequences: false, "gru without bias")
    }

    func testLSTMGradientsThroughTime() throws {
        let x = randomTensor([2, 3, 3], seed: 9), k = randomTensor([3, 8], seed: 10), r = randomTensor([2, 8], seed: 11), bias = randomTensor([8], seed: 12)
        for returnSequences in [true, false] {
            try checkGradients([x, k, r, bias], label: "lstm return_sequences=\(returnSequences)") { v in
                try v[0].lstm(kernel: v[1], recurrentKernel: v[2], bias: v[3], returnSequences: returnSequences)
            }
        }
    }

    func testGRUGradientsThroughTime() throws {
        let x = randomTensor([2, 3, 3], seed: 13), k = randomTensor([3, 6], seed: 14), r = randomTensor([2, 6], seed: 15), bias = randomTensor([2, 6], seed: 16)
        for returnSequences in [true, false] {
            try checkGradients([x, k, r, bias], label: "gru return_sequences=\(returnSequences)") { v in
                try v[0].gru(kernel: v[1], recurrentKernel: v[2], bias: v[3], returnSequences: returnSequences)
            }
        }
    }

    func testRecurrentShapeErrors() {
        let x = Variable(Tensor.zeros([2, 3, 4]))
        XCTAssertThrowsError(try x.lstm(kernel: Variable(Tensor.zeros([5, 8])), recurrentKernel: Variable(Tensor.zeros([2, 8])), bias: nil, returnSequences: true)) { error in
            XCTAssertEqual((error as! TensorError).shapes, [[2, 3, 4], [5, 8]])
        }
        XCTAssertThrowsError(try x.lstm(kernel: Variable(Tensor.zeros([4, 8])), recurrentKernel: Variable(Tensor.zeros([3, 8])), bias: nil, returnSequences: true))
        XCTAssertThrowsError(try x.lstm(kernel: Variable(Tensor.zeros([4, 8])), recurrentKernel: Variable(Tensor.zeros([2, 8])), bias: Variable(Tensor.zeros([2, 8])), returnSequences: true))
        XCTAssertThrowsError(try x.gru(kernel: Variable(Tensor.zeros([4, 6])), recurrentKernel: Variable(Tensor.zeros([2, 6])), bias: Variable(Tensor.zeros([6])), returnSequences: true))
        XCTAssertThrowsError(try Variable(Tensor.zeros([2, 4])).gru(kernel: Variable(Tensor.zeros([4, 6])), recurrentKernel: Variable(Tensor.zeros([2, 6])), bias: nil, returnSequences: true))
    }
}
