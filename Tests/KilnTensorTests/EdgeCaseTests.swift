import KilnTensor
import XCTest

final class EdgeCaseTests: XCTestCase {
    func testEmptyBatchesDoNotCrash() throws {
        let x = Variable(Tensor.zeros([0, 4, 4, 2]), requiresGrad: true)
        let y = try x.conv2d(kernel: Variable(Tensor.zeros([3, 3, 2, 3]), requiresGrad: true), padding: .same)
        XCTAssertEqual(y.shape, [0, 4, 4, 3])
        try y.sum().backward()
        XCTAssertEqual(try x.conv2dTranspose(kernel: Variable(Tensor.zeros([3, 3, 5, 2])), strides: (2, 2), padding: .same).shape, [0, 8, 8, 5])
        XCTAssertEqual(try x.maxPool2d(poolSize: (2, 2)).shape, [0, 2, 2, 2])
        XCTAssertEqual(try x.upsampling2d(size: (2, 2)).shape, [0, 8, 8, 2])
        let s = Variable(Tensor.zeros([0, 3, 2]), requiresGrad: true)
        let h = try s.lstm(kernel: Variable(Tensor.zeros([2, 4])), recurrentKernel: Variable(Tensor.zeros([1, 4])), bias: nil, returnSequences: false)
        XCTAssertEqual(h.shape, [0, 1])
        try h.sum().backward()
        XCTAssertEqual(try s.gru(kernel: Variable(Tensor.zeros([2, 3])), recurrentKernel: Variable(Tensor.zeros([1, 3])), bias: nil, returnSequences: true).shape, [0, 3, 1])
    }

    func testZeroSizedWeightsAreRejected() {
        let x = Variable(Tensor.zeros([1, 4, 4, 2]))
        XCTAssertThrowsError(try x.conv2d(kernel: Variable(Tensor.zeros([3, 3, 2, 0]))))
        XCTAssertThrowsError(try x.conv2d(kernel: Variable(Tensor.zeros([0, 3, 2, 1]))))
        XCTAssertThrowsError(try Variable(Tensor.zeros([1, 4, 4, 0])).conv2d(kernel: Variable(Tensor.zeros([3, 3, 0, 1]))))
        XCTAssertThrowsError(try x.conv2dTranspose(kernel: Variable(Tensor.zeros([3, 3, 0, 2]))))
        XCTAssertThrowsError(try Variable(Tensor.zeros([1, 3, 0])).lstm(kernel: Variable(Tensor.zeros([0, 4])), recurrentKernel: Variable(Tensor.zeros([1, 4])), bias: nil, returnSequences: true))
    }
}
