// The array names of Keras's datasets (`np.savez("mnist.npz", x_train=…, y_train=…,
// x_test=…, y_test=…)`, as keras.datasets.mnist ships them).

public enum KerasArrays {
    /// Recognises Keras's naming and returns train and test splits with Kiln's field
    /// names; nil when the fields are not named that way (any other name present).
    ///
    /// `x_*` becomes `image` when its rows are images — [height, width] rows gain a
    /// channel axis of 1, so mnist.npz matches the built-in `mnist` ([28, 28, 1]) — and
    /// `features` otherwise; `y_*` becomes `label`. `x`/`y` without a suffix are a train
    /// split alone. Dtypes are kept (mnist.npz: uint8 images and labels).
    /// - Throws: `DatasetError` when a split lacks x or y, or their row counts differ.
    public static func splits(_ fields: [String: DataArray]) throws(DatasetError) -> DatasetSplits? {
        let names = Set(fields.keys)
        let suffixed: Set<String> = ["x_train", "y_train", "x_test", "y_test"]
        let plain: Set<String> = ["x", "y"]
        let trainSuffix: String
        if names.isSubset(of: suffixed), names.contains("x_train") || names.contains("y_train") {
            trainSuffix = "_train"
        } else if names == plain {
            trainSuffix = ""
        } else {
            return nil
        }
        func split(_ suffix: String) throws(DatasetError) -> Dataset? {
            let x = fields["x\(suffix)"], y = fields["y\(suffix)"]
            if x == nil && y == nil { return nil }
            guard let x, let y else {
                throw DatasetError(field: x == nil ? "x\(suffix)" : "y\(suffix)", "is missing; Keras's naming pairs x\(suffix) with y\(suffix)")
            }
            guard x.rowCount == y.rowCount else {
                throw DatasetError(field: "y\(suffix)", "has \(y.rowCount) rows but x\(suffix) has \(x.rowCount)")
            }
            return try Dataset(fields: [name(of: x): images(x), "label": y])
        }
        guard let train = try split(trainSuffix) else { return nil }
        return DatasetSplits(train: train, test: trainSuffix.isEmpty ? nil : try split("_test"))
    }

    static func name(of x: DataArray) -> String { x.shape.count >= 3 ? "image" : "features" }

    /// [rows, h, w] → [rows, h, w, 1]; other shapes unchanged.
    static func images(_ x: DataArray) -> DataArray {
        guard x.shape.count == 3 else { return x }
        var out = x
        out.shape.append(1)
        return out
    }
}
