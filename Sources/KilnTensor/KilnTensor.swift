// KilnTensor
