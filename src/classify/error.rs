//! The classifier's error type. Every variant names the step that failed and carries what is
//! needed to act on it (weight-file path, tensor name, shapes, the candle op). Inputs and files
//! never cause a panic in `classify`: they give one of these.

use std::path::PathBuf;

/// Errors of [`crate::classify`]: loading weights, checking inputs, running the network.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The weight file could not be opened, mapped or its safetensors header parsed.
    #[error("{}: cannot open classifier weights: {source}", path.display())]
    OpenWeights {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// A tensor the configuration needs is not in the file.
    #[error("{}: tensor {name:?} is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    /// A tensor has a shape other than the configuration needs.
    #[error("{}: tensor {name:?} has shape {found:?}, expected {expected:?}", path.display())]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype the classifier does not read (F16 and F32 are read).
    #[error("{}: tensor {name:?} has dtype {dtype}, expected F16 or F32", path.display())]
    TensorDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// The file holds a tensor the configuration does not use (`*.num_batches_tracked` excepted).
    #[error("{}: unexpected tensor {name:?} for this configuration", path.display())]
    UnexpectedTensor { path: PathBuf, name: String },
    /// Reading or converting one tensor failed.
    #[error("{}: cannot read tensor {name:?}: {source}", path.display())]
    ReadTensor {
        path: PathBuf,
        name: String,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// The image buffer does not hold n×3×h×w values, or a size is zero.
    #[error("input of {len} values does not match n={n} × 3 × h={h} × w={w} (all sizes ≥ 1)")]
    InputShape {
        len: usize,
        n: usize,
        h: usize,
        w: usize,
    },
    /// A class index outside the head's classes.
    #[error("class {class} out of range: the head has {num_classes} classes")]
    ClassOutOfRange { class: usize, num_classes: usize },
    /// A configuration the network cannot be built from (e.g. zero classes).
    #[error("invalid classifier configuration: {reason}")]
    Config { reason: String },
    /// The prepared inputs or the network's outputs are inconsistent (a bug, reported).
    #[error("classifier input: {0}")]
    Input(String),
    /// A candle operation failed while running the network.
    #[error("classifier op {op} failed: {source}")]
    Compute {
        op: &'static str,
        #[source]
        source: Box<candle_core::Error>,
    },
}

impl ClassifyError {
    /// A short, stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ClassifyError::OpenWeights { .. } => "open_weights",
            ClassifyError::MissingTensor { .. } => "missing_tensor",
            ClassifyError::TensorShape { .. } => "tensor_shape",
            ClassifyError::TensorDtype { .. } => "tensor_dtype",
            ClassifyError::UnexpectedTensor { .. } => "unexpected_tensor",
            ClassifyError::ReadTensor { .. } => "read_tensor",
            ClassifyError::InputShape { .. } => "input_shape",
            ClassifyError::ClassOutOfRange { .. } => "class_out_of_range",
            ClassifyError::Config { .. } => "config",
            ClassifyError::Input(_) => "input",
            ClassifyError::Compute { .. } => "compute",
        }
    }

    /// Wraps a candle error of the op `op` (for `map_err`).
    pub(crate) fn compute(op: &'static str) -> impl FnOnce(candle_core::Error) -> ClassifyError {
        move |source| ClassifyError::Compute {
            op,
            source: Box::new(source),
        }
    }
}
