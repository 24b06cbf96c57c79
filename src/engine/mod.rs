//! nephrod's small tensor engine: the 3-D operations a U-Net and an affine spatial transformer
//! need, with a CPU backend (always present) and a CUDA backend (`kernels/*.cu`, optional).
//!
//! # Layout and types
//! * Activations are [`Tensor`]s of shape **(N, C, D, H, W)**, f32, contiguous, W fastest:
//!   `offset = (((n·C + c)·D + d)·H + h)·W + w`. For a volume from `crate::volume`, D = k
//!   (slices), H = j (rows), W = i (columns) — the same memory order as `Volume`.
//! * Convolution weights are (O, I, kD, kH, kW), PyTorch's order; transposed-convolution
//!   weights are (I, O, kD, kH, kW), also PyTorch's order.
//! * Weights may be stored as f16 (see `weights`); arithmetic is f32 everywhere.
//!
//! # Backends
//! [`Backend`] is implemented by the CPU backend and, when built with CUDA support and a
//! driver is present, the CUDA backend. [`reference`] holds naive, obviously-correct
//! implementations of every op: the oracle the backends are tested against, never used for
//! production work.

pub mod backend;
pub mod cpu;
pub mod cpu_pointwise;
pub mod cuda;
pub mod ops;
pub mod reference;
pub mod tensor;
pub mod weights;

pub use backend::{Backend, CpuBackend};
pub use cuda::select_backend;
pub use ops::{Activation, Conv3d, ConvTranspose3d};
pub use reference::Interp;
pub use tensor::{f16_from_f64, Element, Tensor, TensorF16};

/// Errors of engine operations. Each names the op and the shapes involved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("{op}: {message} (shapes {shapes:?})")]
    Shape {
        op: &'static str,
        message: String,
        shapes: Vec<[usize; 5]>,
    },
    #[error("tensor data length {got} does not match shape {shape:?}")]
    DataLength { shape: [usize; 5], got: usize },
    #[error("{op}: {backend} device failure: {message}")]
    Device {
        op: &'static str,
        backend: &'static str,
        message: String,
    },
    #[error("{op}: not supported by the {backend} backend: {why}")]
    Unsupported {
        op: &'static str,
        backend: &'static str,
        why: String,
    },
}

impl EngineError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Shape { .. } => "shape",
            EngineError::DataLength { .. } => "data_length",
            EngineError::Unsupported { .. } => "unsupported",
            EngineError::Device { .. } => "device",
        }
    }
}

pub(crate) fn shape_err(
    op: &'static str,
    message: impl Into<String>,
    shapes: &[[usize; 5]],
) -> EngineError {
    EngineError::Shape {
        op,
        message: message.into(),
        shapes: shapes.to_vec(),
    }
}
