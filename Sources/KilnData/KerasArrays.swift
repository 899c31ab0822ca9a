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
        var shaped = fields
        for (k, v) in fields where k.hasPrefix("x") { shaped[k] = images(v) }
        guard let pairs = try pairs(shaped) else { return nil }
        return DatasetSplits(train: try Dataset(fields: pairs.train), test: try pairs.test.map { f throws(DatasetError) in try Dataset(fields: f) })
    }

    /// `splits` for arrays known by their shapes only: the fields of each split under
    /// Kiln's names, checked alike. Images must already have their channel axis
    /// (`stagedShape` gives it while staging).
    public static func pairs<A: ShapedArray>(_ fields: [String: A]) throws(DatasetError) -> (train: [String: A], test: [String: A]?)? {
        guard let trainSuffix = trainSuffix(Set(fields.keys)) else { return nil }
        func split(_ suffix: String) throws(DatasetError) -> [String: A]? {
            let x = fields["x\(suffix)"], y = fields["y\(suffix)"]
            if x == nil && y == nil { return nil }
            guard let x, let y else {
                throw DatasetError(field: x == nil ? "x\(suffix)" : "y\(suffix)", "is missing; Keras's naming pairs x\(suffix) with y\(suffix)")
            }
            guard x.rowCount == y.rowCount else {
                throw DatasetError(field: "y\(suffix)", "has \(y.rowCount) rows but x\(suffix) has \(x.rowCount)")
            }
            return [name(of: x.shape): x, "label": y]
        }
        guard let train = try split(trainSuffix) else { return nil }
        return (train, trainSuffix.isEmpty ? nil : try split("_test"))
    }

    /// The suffix of the train arrays ("_train", or "" for plain `x`/`y`) when `names`
    /// follow Keras's naming; nil otherwise.
    static func trainSuffix(_ names: Set<String>) -> String? {
        let suffixed: Set<String> = ["x_train", "y_train", "x_test", "y_test"]
        if names.isSubset(of: suffixed), names.contains("x_train") || names.contains("y_train") { return "_train" }
        if names == ["x", "y"] { return "" }
        return nil
    }

    /// The shape a member is staged with: Keras's [rows, h, w] images gain a channel axis.
    public static func stagedShape(fields: Set<String>, field: String, shape: [Int]) -> [Int] {
        trainSuffix(fields) != nil && field.hasPrefix("x") && shape.count == 3 ? shape + [1] : shape
    }

    static func name(of shape: [Int]) -> String { shape.count >= 3 ? "image" : "features" }

    /// [rows, h, w] → [rows, h, w, 1]; other shapes unchanged.
    static func images(_ x: DataArray) -> DataArray {
        guard x.shape.count == 3 else { return x }
        var out = x
        out.shape.append(1)
        return out
    }
}
