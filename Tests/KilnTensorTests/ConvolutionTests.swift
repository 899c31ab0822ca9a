import KilnTensor
import XCTest

final class ConvolutionTests: XCTestCase {
    typealias Case = (input: [Int], kernel: (Int, Int), strides: (Int, Int), dilation: (Int, Int), same: Bool)
    let cases: [Case] = [
        ([2, 5, 5, 3], (3, 3), (1, 1), (1, 1), false),
        ([2, 5, 5, 3], (3, 3), (1, 1), (1, 1), true),
        ([1, 6, 7, 2], (3, 2), (2, 2), (1, 1), true),
        ([1, 7, 6, 2], (2, 3), (2, 3), (1, 1), false),
        ([2, 6, 6, 1], (3, 3), (1, 1), (2, 2), true),
        ([1, 7, 7, 2], (2, 2), (2, 1), (2, 1), false),
        ([1, 4, 4, 2], (4, 4), (3, 3), (1, 1), true),
    ]

    func testConv2dForwardMatchesNaiveLoops() throws {
        for library in Kernels.availableLibraries {
            try Kernels.with(.only(library)) { try conv2dForwardMatchesNaiveLoops() }
        }
    }

    func conv2dForwardMatchesNaiveLoops() throws {
        for (i, c) in cases.enumerated() {
            let x = randomTensor(c.input, seed: UInt64(i + 1))
            let k = randomTensor([c.kernel.0, c.kernel.1, c.input[3], 4], seed: UInt64(i + 50))
            let y = try Variable(x).conv2d(kernel: Variable(k), strides: c.strides, padding: c.same ? .same : .valid, dilation: c.dilation)
            assertClose(y.value, referenceConv2d(x, k, strides: c.strides, dilation: c.dilation, same: c.same), "case \(i)")
        }
    }

    func testConv2dGradients() throws {
        for (i, c) in cases.enumerated() where i % 2 == 0 || i == 5 {
            let x = randomTensor(c.input, seed: UInt64(i + 1)), k = randomTensor([c.kernel.0, c.kernel.1, c.input[3], 2], seed: UInt64(i + 9))
            try checkGradients([x, k], label: "conv2d case \(i)") { v in
                try v[0].conv2d(kernel: v[1], strides: c.strides, padding: c.same ? .same : .valid, dilation: c.dilation)
            }
        }
    }

    func testConv2dWithFusedBiasAndReluEqualsTheOpsInTurnAndHasCheckedGradients() throws {
        for (i, c) in cases.enumerated() where i % 3 == 0 {
            let x = randomTensor(c.input, seed: UInt64(i + 1)), k = randomTensor([c.kernel.0, c.kernel.1, c.input[3], 3], seed: UInt64(i + 9))
            let b = randomTensor([3], seed: UInt64(i + 30))
            let padding: Padding = c.same ? .same : .valid
            for library in Kernels.availableLibraries {
                try Kernels.with(.only(library)) {
                    let fused = try Variable(x).conv2d(kernel: Variable(k), strides: c.strides, padding: padding, dilation: c.dilation, bias: Variable(b), relu: true)
                    let plain = try Variable(x).conv2d(kernel: Variable(k), strides: c.strides, padding: padding, dilation: c.dilation).add(Variable(b)).relu()
                    if library == .openblas {
                        XCTAssertEqual(fused.value.scalars, plain.value.scalars, "case \(i)")
                    } else {
                        assertClose(fused.value, plain.value, tolerance: 1e-5, "case \(i) \(library)")
                    }
                }
            }
            try checkGradients([x, k, b], label: "conv2d + bias + relu case \(i)") { v in
                try v[0].conv2d(kernel: v[1], strides: c.strides, padding: padding, dilation: c.dilation, bias: v[2], relu: true)
            }
        }
        XCTAssertThrowsError(try Variable(Tensor.zeros([1, 4, 4, 3])).conv2d(kernel: Variable(Tensor.zeros([3, 3, 3, 4])), bias: Variable(Tensor.zeros([3]))))
    }

    func testConv2dInSampleChunksMatchesOneChunk() throws {
        // A patch budget of one sample's patches: every product runs per sample, and the
        // forward patches are not kept for the kernel gradient.
        let x = randomTensor([3, 5, 5, 2], seed: 40), k = randomTensor([3, 3, 2, 2], seed: 41)
        let whole = try Variable(x).conv2d(kernel: Variable(k), padding: .same).value
        let saved = ConvolutionPlan.patchBudget
        ConvolutionPlan.patchBudget = 25 * 18
        defer { ConvolutionPlan.patchBudget = saved }
        XCTAssertEqual(try Variable(x).conv2d(kernel: Variable(k), padding: .same).value.scalars, whole.scalars)
        try checkGradients([x, k], label: "conv2d in chunks") { v in try v[0].conv2d(kernel: v[1], padding: .same) }
    }

    func testConv2dShapeErrors() {
        let x = Variable(Tensor.zeros([1, 4, 4, 3]))
        XCTAssertThrowsError(try x.conv2d(kernel: Variable(Tensor.zeros([3, 3, 2, 4])))) { error in
            XCTAssertEqual((error as! TensorError).shapes, [[1, 4, 4, 3], [3, 3, 2, 4]])
        }
        XCTAssertThrowsError(try x.conv2d(kernel: Variable(Tensor.zeros([5, 5, 3, 4]))))  // valid window too large
        XCTAssertThrowsError(try x.conv2d(kernel: Variable(Tensor.zeros([3, 3, 3, 4])), strides: (0, 1)))
        XCTAssertThrowsError(try Variable(Tensor.zeros([4, 4, 3])).conv2d(kernel: Variable(Tensor.zeros([3, 3, 3, 4]))))
        XCTAssertNoThrow(try x.conv2d(kernel: Variable(Tensor.zeros([5, 5, 3, 4])), padding: .same))
    }

    func testLargeBatchIsSplitIntoChunksCorrectly() throws {
        // Enough samples that the patch matrix is built in several chunks.
        let x = randomTensor([40, 24, 24, 32], seed: 3), k = randomTensor([3, 3, 32, 1], seed: 4)
        let y = try Variable(x).conv2d(kernel: Variable(k), padding: .same).value
        assertClose(y, referenceConv2d(x, k, strides: (1, 1), dilation: (1, 1), same: true), "chunked")
    }

    func testPerSampleAndConditionalConvolution() throws {
        let x = randomTensor([3, 5, 5, 2], seed: 11)
        let perSample = randomTensor([3, 3, 3, 2, 2], seed: 12)
        let y = try Variable(x).conv2dPerSample(kernels: Variable(perSample), padding: .same)
        assertClose(y.value, referenceConv2d(x, perSample, strides: (1, 1), dilation: (1, 1), same: true), "per-sample")
        try checkGradients([x, perSample], label: "conv2d per sample") { v in try v[0].conv2dPerSample(kernels: v[1], strides: (2, 1), padding: .same) }

        // Class-conditional: sample b uses kernels[label b].
        let classKernels = randomTensor([4, 3, 3, 2, 2], seed: 13)
        let labels = try Tensor.oneHot(Tensor(shape: [3], values: [2, 0, 2]), classes: 4)
        let z = try Variable(x).conditionalConv2d(classes: Variable(labels), kernels: Variable(classKernels))
        for (b, label) in [2, 0, 2].enumerated() {
            let xb = try Variable(x).slice(axis: 0, start: b, end: b + 1).value
            let kb = try Variable(classKernels).slice(axis: 0, start: label, end: label + 1).reshape([3, 3, 2, 2]).value
            let zb = try z.slice(axis: 0, start: b, end: b + 1).value
            assertClose(zb, referenceConv2d(xb, kb, strides: (1, 1), dilation: (1, 1), same: false), "class sample \(b)")
        }
        try checkGradients([x, classKernels], label: "conditional conv2d") { v in
            try v[0].conditionalConv2d(classes: Variable(labels), kernels: v[1], padding: .same)
        }
        XCTAssertThrowsError(try Variable(x).conditionalConv2d(classes: Variable(Tensor.zeros([3, 5])), kernels: Variable(classKernels)))
    }

    typealias TransposeCase = (input: [Int], kernel: (Int, Int), strides: (Int, Int), same: Bool, outputPadding: (Int, Int)?)
    let transposeCases: [TransposeCase] = [
        ([2, 3, 3, 2], (3, 3), (1, 1), false, nil),
        ([1, 3, 4, 2], (3, 3), (2, 2), true, nil),
        ([1, 3, 3, 1], (5, 5), (2, 2), true, nil),
        ([1, 3, 2, 2], (3, 2), (2, 3), false, nil),
        ([1, 3, 3, 2], (3, 3), (2, 2), false, (1, 1)),
        ([1, 3, 3, 2], (3, 3), (3, 2), true, (2, 1)),
        ([1, 2, 2, 1], (2, 2), (3, 3), false, nil),  // kernel smaller than stride
        ([1, 3, 3, 1], (4, 4), (2, 2), true, nil),
    ]

    func testConv2dTransposeForwardMatchesNaiveLoops() throws {
        for (i, c) in transposeCases.enumerated() {
            let x = randomTensor(c.input, seed: UInt64(i + 20)), k = randomTensor([c.kernel.0, c.kernel.1, 3, c.input[3]], seed: UInt64(i + 30))
            let y = try Variable(x).conv2dTranspose(kernel: Variable(k), strides: c.strides, padding: c.same ? .same : .valid, outputPadding: c.outputPadding)
            assertClose(y.value, referenceConv2dTranspose(x, k, strides: c.strides, same: c.same, outputPadding: c.outputPadding), "transpose case \(i)")
        }
    }

    func testConv2dTransposeGradients() throws {
        for (i, c) in transposeCases.enumerated() where i != 2 {
            let x = randomTensor(c.input, seed: UInt64(i + 20)), k = randomTensor([c.kernel.0, c.kernel.1, 2, c.input[3]], seed: UInt64(i + 30))
            try checkGradients([x, k], label: "conv2d_transpose case \(i)") { v in
                try v[0].conv2dTranspose(kernel: v[1], strides: c.strides, padding: c.same ? .same : .valid, outputPadding: c.outputPadding)
            }
        }
    }

    func testConv2dTransposeIsTheAdjointOfConv2d() throws {
        // ⟨conv2d(u, k), v⟩ = ⟨u, conv2d_transpose(v, k)⟩ when the sizes correspond.
        let u = randomTensor([2, 8, 8, 3], seed: 40), k = randomTensor([5, 5, 3, 4], seed: 41), v = randomTensor([2, 4, 4, 4], seed: 42)
        let forward = try Variable(u).conv2d(kernel: Variable(k), strides: (2, 2), padding: .same).value
        let back = try Variable(v).conv2dTranspose(kernel: Variable(k), strides: (2, 2), padding: .same).value
        XCTAssertEqual(back.shape, u.shape)
        let lhs = zip(forward.scalars, v.scalars).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        let rhs = zip(u.scalars, back.scalars).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-3 * max(1, abs(lhs)))
    }

    func testDilatedConv2dTransposeIsTheAdjointOfDilatedConv2d() throws {
        let u = randomTensor([1, 7, 7, 2], seed: 43), k = randomTensor([3, 3, 2, 3], seed: 44), v = randomTensor([1, 7, 7, 3], seed: 45)
        let forward = try Variable(u).conv2d(kernel: Variable(k), padding: .same, dilation: (2, 2)).value
        let back = try Variable(v).conv2dTranspose(kernel: Variable(k), padding: .same, dilation: (2, 2)).value
        XCTAssertEqual(back.shape, u.shape)
        let lhs = zip(forward.scalars, v.scalars).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        let rhs = zip(u.scalars, back.scalars).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-3 * max(1, abs(lhs)))
        try checkGradients([v, k], label: "dilated conv2d_transpose") { w in
            try w[0].conv2dTranspose(kernel: w[1], strides: (2, 1), padding: .valid, dilation: (2, 2))
        }
    }

    func testConv2dTransposeShapesOfWorkloadW7() throws {
        let x = Variable(Tensor.zeros([1, 4, 4, 256]))
        let k = Variable(Tensor.zeros([5, 5, 64, 256]))
        XCTAssertEqual(try x.conv2dTranspose(kernel: k, strides: (2, 2), padding: .same).shape, [1, 8, 8, 64])
        XCTAssertEqual(try x.conv2dTranspose(kernel: k, strides: (2, 2), padding: .valid).shape, [1, 11, 11, 64])
        XCTAssertThrowsError(try x.conv2dTranspose(kernel: k, strides: (2, 2), outputPadding: (2, 0))) { error in
            XCTAssertTrue((error as! TensorError).description.contains("output_padding"))
        }
        XCTAssertThrowsError(try x.conv2dTranspose(kernel: Variable(Tensor.zeros([5, 5, 64, 3]))))
    }
}
