import KilnGraph
import KilnJSON
import KilnTensor

/// A model's weights as a safetensors file, named by their checkpoint keys, with what
/// they are (job, epoch, the graph's hash, the epoch's metrics) in its metadata. The
/// one place checkpoints are written and read.
public enum Checkpoint {
    /// The weights of `model` in graph order.
    public static func encode(_ model: CompiledModel, metadata: [String: String]) -> [UInt8] {
        Safetensors.encode(model.weightNames.map { ($0, model.weights[$0]!.value) }, metadata: metadata)
    }

    /// Loads every weight whose name and shape match; returns the names restored and
    /// the file's metadata.
    @discardableResult
    public static func load(_ bytes: [UInt8], into model: CompiledModel) throws -> (restored: Set<String>, metadata: [String: String]) {
        let (tensors, metadata) = try Safetensors.decode(bytes)
        var restored = Set<String>()
        for (name, t) in tensors where model.load(name, t) { restored.insert(name) }
        return (restored, metadata)
    }

    /// The metadata alone (the header of the file).
    public static func metadata(_ bytes: [UInt8]) throws -> [String: String] {
        try Safetensors.decode(bytes).metadata
    }

    /// The optimizer's moments at an epoch, for resuming.
    public static func encodeOptimizer(_ optimizer: Optimizer, epoch: Int) -> [UInt8] {
        let state = optimizer.state
        return Safetensors.encode(state.tensors, metadata: ["epoch": String(epoch), "iterations": String(state.iterations)])
    }

    /// Restores the optimizer's moments if they belong to `epoch`; false otherwise.
    public static func restoreOptimizer(_ bytes: [UInt8], into optimizer: Optimizer, epoch: Int, model: CompiledModel) -> Bool {
        guard let (tensors, metadata) = try? Safetensors.decode(bytes), metadata["epoch"] == String(epoch) else { return false }
        optimizer.restore(tensors, iterations: Int(metadata["iterations"] ?? "0") ?? 0, weights: model.weights.mapValues(\.value.shape))
        return true
    }
}
