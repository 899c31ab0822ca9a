import KilnTensor
import XCTest

// Slow, obvious loops written straight from the definitions; the fast kernels are
// checked against them.

/// TensorFlow's window rule along one axis: (output length, padding before).
func referenceWindow(_ input: Int, kernel: Int, stride: Int, dilation: Int, same: Bool) -> (Int, Int) {
    let effective = (kernel - 1) * dilation + 1
    if !same { return ((input - effective) / stride + 1, 0) }
    let out = (input + stride - 1) / stride
    return (out, max((out - 1) * stride + effective - input, 0) / 2)
}

/// y[n,oy,ox,f] = Σ x[n, oy·s − pad + ky·d, ox·s − pad + kx·d, c] · k[ky,kx,c,f]; the
/// kernel may be per sample ([N,kh,kw,c,f]).
func referenceConv2d(_ x: Tensor, _ k: Tensor, strides: (Int, Int), dilation: (Int, Int), same: Bool) -> Tensor {
    let perSample = k.rank == 5
    let ks = perSample ? Array(k.shape.dropFirst()) : k.shape
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (kh, kw, f) = (ks[0], ks[1], ks[3])
    let (oh, pt) = referenceWindow(h, kernel: kh, stride: strides.0, dilation: dilation.0, same: same)
    let (ow, pl) = referenceWindow(w, kernel: kw, stride: strides.1, dilation: dilation.1, same: same)
    var y = Tensor.zeros([n, oh, ow, f])
    let kernelSize = kh * kw * c * f
    for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for o in 0..<f {
        var total: Float = 0
        for ky in 0..<kh { for kx in 0..<kw {
            let iy = oy * strides.0 - pt + ky * dilation.0, ix = ox * strides.1 - pl + kx * dilation.1
            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
            for ci in 0..<c {
                let kIndex = (perSample ? b * kernelSize : 0) + ((ky * kw + kx) * c + ci) * f + o
                total += x[flat: ((b * h + iy) * w + ix) * c + ci] * k[flat: kIndex]
            }
        } }
        y[flat: ((b * oh + oy) * ow + ox) * f + o] = total
    } } } }
    return y
}

/// Keras `deconv_output_length` and TensorFlow's padding for the transposed convolution.
func referenceTransposeWindow(_ input: Int, kernel: Int, stride: Int, same: Bool, outputPadding: Int?) -> (Int, Int) {
    let length: Int
    if let op = outputPadding {
        length = (input - 1) * stride + kernel - 2 * (same ? kernel / 2 : 0) + op
    } else {
        length = same ? input * stride : input * stride + max(kernel - stride, 0)
    }
    return (length, same ? max((input - 1) * stride + kernel - length, 0) / 2 : 0)
}

/// Scatter form: every input pixel adds x · k[ky,kx,f,c] at oy = iy·s − pad + ky.
func referenceConv2dTranspose(_ x: Tensor, _ k: Tensor, strides: (Int, Int), same: Bool, outputPadding: (Int, Int)?) -> Tensor {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (kh, kw, f) = (k.shape[0], k.shape[1], k.shape[2])
    let (oh, pt) = referenceTransposeWindow(h, kernel: kh, stride: strides.0, same: same, outputPadding: outputPadding?.0)
    let (ow, pl) = referenceTransposeWindow(w, kernel: kw, stride: strides.1, same: same, outputPadding: outputPadding?.1)
    var y = Tensor.zeros([n, oh, ow, f])
    for b in 0..<n { for iy in 0..<h { for ix in 0..<w { for ci in 0..<c {
        let v = x[flat: ((b * h + iy) * w + ix) * c + ci]
        for ky in 0..<kh { for kx in 0..<kw {
            let oy = iy * strides.0 - pt + ky, ox = ix * strides.1 - pl + kx
            guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
            for o in 0..<f { y[flat: ((b * oh + oy) * ow + ox) * f + o] += v * k[flat: ((ky * kw + kx) * f + o) * c + ci] }
        } }
    } } } }
    return y
}

func assertClose(_ a: Tensor, _ b: Tensor, tolerance: Float = 1e-4, _ label: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    guard a.shape == b.shape else {
        XCTFail("\(label): shape \(a.shape) vs \(b.shape)", file: file, line: line)
        return
    }
    for i in 0..<a.count where abs(a[flat: i] - b[flat: i]) > tolerance * max(1, abs(b[flat: i])) {
        XCTFail("\(label): element \(i) is \(a[flat: i]), expected \(b[flat: i])", file: file, line: line)
        return
    }
}

/// Max or mean over each window, counting only pixels inside the image.
func referencePool(_ x: Tensor, pool: (Int, Int), strides: (Int, Int), same: Bool, max useMax: Bool) -> Tensor {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oh, pt) = referenceWindow(h, kernel: pool.0, stride: strides.0, dilation: 1, same: same)
    let (ow, pl) = referenceWindow(w, kernel: pool.1, stride: strides.1, dilation: 1, same: same)
    var y = Tensor.zeros([n, oh, ow, c])
    for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ci in 0..<c {
        var values: [Float] = []
        for ky in 0..<pool.0 { for kx in 0..<pool.1 {
            let iy = oy * strides.0 - pt + ky, ix = ox * strides.1 - pl + kx
            if iy >= 0, iy < h, ix >= 0, ix < w { values.append(x[flat: ((b * h + iy) * w + ix) * c + ci]) }
        } }
        y[flat: ((b * oh + oy) * ow + ox) * c + ci] = useMax ? values.max()! : values.reduce(0, +) / Float(values.count)
    } } } }
    return y
}
