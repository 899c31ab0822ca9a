/// Keras's names for losses and metrics — class names (`SparseCategoricalCrossentropy`),
/// function names (`sparse_categorical_crossentropy`) and short aliases (`mse`, `kld`) —
/// mapped to Kiln's own, so a `compile()` call's names work unchanged.
public enum KerasNames {
    /// Kiln's loss name for a Keras loss name, or nil when Keras has no such loss.
    public static func loss(_ name: String) -> String? { losses[key(name)] }

    /// Kiln's metric name for a Keras metric name, or nil when Keras has no such metric.
    /// Kiln's names are the keys Keras's History uses (`sparse_categorical_accuracy`).
    public static func metric(_ name: String) -> String? { metrics[key(name)] }

    /// Case and underscores do not matter: `SparseCategoricalCrossentropy`,
    /// `sparse_categorical_crossentropy` and `sparsecategoricalcrossentropy` are one name.
    static func key(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { $0 != "_" })
    }

    static let losses: [String: String] = table([
        "categorical_crossentropy": ["categorical_crossentropy", "CategoricalCrossentropy"],
        "sparse_categorical_crossentropy": ["sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"],
        "binary_crossentropy": ["binary_crossentropy", "BinaryCrossentropy"],
        "mse": ["mse", "mean_squared_error", "MeanSquaredError"],
        "mae": ["mae", "mean_absolute_error", "MeanAbsoluteError"],
        "mape": ["mape", "mean_absolute_percentage_error", "MeanAbsolutePercentageError"],
        "msle": ["msle", "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError"],
        "huber": ["huber", "huber_loss", "Huber"],
        "log_cosh": ["log_cosh", "logcosh", "LogCosh"],
        "cosine": ["cosine", "cosine_similarity", "CosineSimilarity"],
        "kl_divergence": ["kl_divergence", "kld", "kullback_leibler_divergence", "KLDivergence"],
        "poisson": ["poisson", "Poisson"],
        "hinge": ["hinge", "Hinge"],
        "squared_hinge": ["squared_hinge", "SquaredHinge"],
        "categorical_hinge": ["categorical_hinge", "CategoricalHinge"],
    ])

    static let metrics: [String: String] = table([
        "accuracy": ["accuracy", "acc", "Accuracy"],
        "categorical_accuracy": ["categorical_accuracy", "CategoricalAccuracy"],
        "sparse_categorical_accuracy": ["sparse_categorical_accuracy", "SparseCategoricalAccuracy"],
        "binary_accuracy": ["binary_accuracy", "BinaryAccuracy"],
        "top_k_categorical_accuracy": ["top_k_categorical_accuracy", "TopKCategoricalAccuracy"],
        "sparse_top_k_categorical_accuracy": ["sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy"],
        "mse": ["mse", "mean_squared_error", "MeanSquaredError"],
        "mae": ["mae", "mean_absolute_error", "MeanAbsoluteError"],
        "root_mean_squared_error": ["rmse", "root_mean_squared_error", "RootMeanSquaredError"],
        "auc": ["auc", "AUC"],
        "precision": ["precision", "Precision"],
        "recall": ["recall", "Recall"],
    ])

    static func table(_ groups: [String: [String]]) -> [String: String] {
        var out: [String: String] = [:]
        for (kiln, aliases) in groups {
            for alias in aliases + [kiln] { out[key(alias)] = kiln }
        }
        return out
    }
}
