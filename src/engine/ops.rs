//! Parameters of engine operations (shared by every backend and the reference).

use super::tensor::{Element, Tensor};
use super::{shape_err, EngineError};

/// Element-wise activation fused after a normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// `x` if `x ≥ 0` else `slope · x` (nnU-Net uses slope 0.01).
    LeakyRelu(f32),
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => {
                if x >= 0.0 {
                    x
                } else {
                    s * x
                }
            }
        }
    }
}

/// A 3-D convolution: weight (O, I, kD, kH, kW), optional bias (O), stride and zero padding
/// per axis (D, H, W). Output size per axis: `(in + 2·pad − k) / stride + 1`. Weights are
/// stored as f32 (default) or f16 (`Conv3d<half::f16>`, the CUDA `*_f16w` kernels).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv3d<W: Element = f32> {
    pub weight: Tensor<W>,
    pub bias: Option<Vec<f32>>,
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl<W: Element> Conv3d<W> {
    /// Output shape for input `x`, or a shape error.
    pub fn output_shape(&self, x: [usize; 5]) -> Result<[usize; 5], EngineError> {
        let w = self.weight.shape();
        if w[1] != x[1] {
            return Err(shape_err(
                "conv3d",
                "input channels differ from the weight's",
                &[x, w],
            ));
        }
        if let Some(b) = &self.bias {
            if b.len() != w[0] {
                return Err(shape_err(
                    "conv3d",
                    "bias length differs from output channels",
                    &[x, w],
                ));
            }
        }
        let mut out = [x[0], w[0], 0, 0, 0];
        for a in 0..3 {
            let k = w[2 + a];
            let s = self.stride[a];
            if k == 0 || k > 5 || s == 0 || s > 2 {
                return Err(shape_err(
                    "conv3d",
                    "kernel must be 1–5 and stride 1–2 per axis",
                    &[x, w],
                ));
            }
            let span = x[2 + a] + 2 * self.padding[a];
            if span < k {
                return Err(shape_err(
                    "conv3d",
                    "input smaller than the kernel",
                    &[x, w],
                ));
            }
            out[2 + a] = (span - k) / s + 1;
        }
        Ok(out)
    }
}

/// A 3-D transposed convolution: weight (I, O, kD, kH, kW), optional bias (O), stride and
/// padding per axis. Output size per axis: `(in − 1)·stride − 2·pad + k`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose3d<W: Element = f32> {
    pub weight: Tensor<W>,
    pub bias: Option<Vec<f32>>,
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl<W: Element> ConvTranspose3d<W> {
    pub fn output_shape(&self, x: [usize; 5]) -> Result<[usize; 5], EngineError> {
        let w = self.weight.shape();
        if w[0] != x[1] {
            return Err(shape_err(
                "conv_transpose3d",
                "input channels differ from the weight's",
                &[x, w],
            ));
        }
        if let Some(b) = &self.bias {
            if b.len() != w[1] {
                return Err(shape_err(
                    "conv_transpose3d",
                    "bias length differs from output channels",
                    &[x, w],
                ));
            }
        }
        let mut out = [x[0], w[1], 0, 0, 0];
        for a in 0..3 {
            if x[2 + a] == 0 || self.stride[a] == 0 {
                return Err(shape_err(
                    "conv_transpose3d",
                    "empty input axis or zero stride",
                    &[x, w],
                ));
            }
            let full = (x[2 + a] - 1) * self.stride[a] + w[2 + a];
            if full < 2 * self.padding[a] + 1 {
                return Err(shape_err(
                    "conv_transpose3d",
                    "bad stride, padding or empty input",
                    &[x, w],
                ));
            }
            out[2 + a] = full - 2 * self.padding[a];
        }
        Ok(out)
    }
}
