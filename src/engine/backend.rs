//! The `Backend` trait: the ops a network and the registration run, on host tensors.
//!
//! Every backend takes and returns host [`Tensor`]s (a device backend uploads and downloads
//! inside the call for now; device-resident execution comes with the segmentation graph).
//! An op a backend cannot run returns [`EngineError::Unsupported`] — never a silent fallback.

use super::cpu_pointwise;
use super::ops::{Activation, Conv3d, ConvTranspose3d};
use super::reference::Interp;
use super::tensor::Tensor;
use super::EngineError;

/// Operations every backend provides (semantics: [`super::reference`]).
pub trait Backend: Send + Sync {
    /// Short name for logs ("cpu", "cuda").
    fn name(&self) -> &'static str;
    fn conv3d(&self, x: &Tensor, conv: &Conv3d) -> Result<Tensor, EngineError>;
    fn conv_transpose3d(&self, x: &Tensor, conv: &ConvTranspose3d) -> Result<Tensor, EngineError>;
    fn instance_norm_act(
        &self,
        x: &Tensor,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        act: Activation,
    ) -> Result<Tensor, EngineError>;
    /// [`Backend::instance_norm_act`] on a tensor the caller gives up (a backend may reuse
    /// its memory; the default copies).
    fn instance_norm_act_owned(
        &self,
        x: Tensor,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        act: Activation,
    ) -> Result<Tensor, EngineError> {
        self.instance_norm_act(&x, gamma, beta, eps, act)
    }
    fn concat_channels(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError>;
    fn softmax_channels(&self, x: &Tensor) -> Result<Tensor, EngineError>;
    fn sigmoid(&self, x: &Tensor) -> Result<Tensor, EngineError>;
    fn argmax_channels(&self, x: &Tensor) -> Result<Vec<u32>, EngineError>;
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError>;
    fn scale(&self, a: &Tensor, s: f32) -> Result<Tensor, EngineError>;
    fn accumulate_patch(
        &self,
        acc: &mut Tensor,
        weight_sum: &mut [f32],
        patch: &Tensor,
        gaussian: &[f32],
        offset: [usize; 3],
    ) -> Result<(), EngineError>;
    fn resample_affine(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        out_dhw: [usize; 3],
        interp: Interp,
    ) -> Result<Tensor, EngineError>;
    fn resample_affine_grad(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        upstream: &Tensor,
    ) -> Result<[[f64; 4]; 3], EngineError>;
}

/// The CPU backend. Ops without an optimised CPU kernel yet run the reference.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn conv3d(&self, x: &Tensor, conv: &Conv3d) -> Result<Tensor, EngineError> {
        super::cpu::conv3d(x, conv)
    }
    fn conv_transpose3d(&self, x: &Tensor, conv: &ConvTranspose3d) -> Result<Tensor, EngineError> {
        super::cpu::conv_transpose3d(x, conv)
    }
    fn instance_norm_act(
        &self,
        x: &Tensor,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        act: Activation,
    ) -> Result<Tensor, EngineError> {
        cpu_pointwise::instance_norm_act(x, gamma, beta, eps, act)
    }
    fn instance_norm_act_owned(
        &self,
        x: Tensor,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        act: Activation,
    ) -> Result<Tensor, EngineError> {
        cpu_pointwise::instance_norm_act_in_place(x, gamma, beta, eps, act)
    }
    fn concat_channels(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
        cpu_pointwise::concat_channels(a, b)
    }
    fn softmax_channels(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(cpu_pointwise::softmax_channels(x))
    }
    fn sigmoid(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(cpu_pointwise::sigmoid(x))
    }
    fn argmax_channels(&self, x: &Tensor) -> Result<Vec<u32>, EngineError> {
        Ok(cpu_pointwise::argmax_channels(x))
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
        cpu_pointwise::add(a, b)
    }
    fn scale(&self, a: &Tensor, s: f32) -> Result<Tensor, EngineError> {
        Ok(cpu_pointwise::scale(a, s))
    }
    fn accumulate_patch(
        &self,
        acc: &mut Tensor,
        weight_sum: &mut [f32],
        patch: &Tensor,
        gaussian: &[f32],
        offset: [usize; 3],
    ) -> Result<(), EngineError> {
        cpu_pointwise::accumulate_patch(acc, weight_sum, patch, gaussian, offset)
    }
    fn resample_affine(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        out_dhw: [usize; 3],
        interp: Interp,
    ) -> Result<Tensor, EngineError> {
        Ok(cpu_pointwise::resample_affine(x, theta, out_dhw, interp))
    }
    fn resample_affine_grad(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        upstream: &Tensor,
    ) -> Result<[[f64; 4]; 3], EngineError> {
        cpu_pointwise::resample_affine_grad(x, theta, upstream)
    }
}
