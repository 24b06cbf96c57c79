//! One CT volume → a label map on the same voxel grid, the way `nnUNetv2_predict` computes it
//! for an imported model bundle (shared/docs/nnunet-inference.md §3–§5):
//! reader array ([`super::reader`]) → preprocessing ([`super::preprocess`]) → per fold the
//! network over the sliding window ([`super::unet`], [`super::sliding_window`]) → fold average
//! (f16) → export (resample logits to the cropped shape, decode labels, un-crop, un-transpose)
//! → back to the volume's voxel order.
//!
//! The output `Volume<u8>` has exactly the input's dims and geometry. Cascade stages (a
//! previous stage's segmentation as extra input) are not run here yet: a typed error says so.

use crate::engine::Backend;
use crate::models::bundle::Bundle;
use crate::segment::preprocess::{
    logits_to_cropped_shape, preprocess, uncrop_and_untranspose, PreprocessError,
};
use crate::segment::reader::to_reader_array;
use crate::segment::sliding_window::{
    average_folds, decode_labels, predict_sliding_window, SlidingWindowError,
};
use crate::segment::unet::{UNet, UNetError};
use crate::volume::{Volume, VolumeError};

/// Why segmentation failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("this model is a cascade stage (needs the segmentation of {0}); cascades are not supported yet")]
    Cascade(String),
    #[error("the model needs {0} input channels; nephrod segments single-channel CT")]
    Channels(usize),
    #[error("a label value {0} does not fit the u8 label map")]
    Label(u16),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Network(#[from] UNetError),
    #[error(transparent)]
    SlidingWindow(#[from] SlidingWindowError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Options a user may change.
#[derive(Debug, Clone, Copy)]
pub struct SegmentOptions {
    /// Mirroring test-time augmentation over the model's allowed axes (nnU-Net's default).
    pub mirroring: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self { mirroring: true }
    }
}

/// Progress of a segmentation: tiles done over all folds, and the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// Segments `volume` (HU) with `bundle` on `backend`.
pub fn segment_volume(
    volume: &Volume<f32>,
    bundle: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Volume<u8>, SegmentError> {
    let plan = &bundle.manifest.plan;
    if let Some(prev) = &plan.previous_stage {
        return Err(SegmentError::Cascade(prev.clone()));
    }
    if plan.architecture.input_channels != 1 || plan.preprocessing.normalization.len() != 1 {
        return Err(SegmentError::Channels(plan.architecture.input_channels));
    }
    let array = to_reader_array(volume, plan.reader);
    let map = array.map;
    let pre = preprocess(vec![array.data], array.shape, array.spacing_mm, plan)?;
    let heads = plan.outputs.channels();
    let mirror: Vec<usize> = if options.mirroring {
        plan.sliding_window.mirror_axes.clone()
    } else {
        Vec::new()
    };
    let folds = bundle.weights.len();
    let mut fold_logits = Vec::with_capacity(folds);
    for (k, weights) in bundle.weights.iter().enumerate() {
        let net = UNet::new(&plan.architecture, weights)?;
        let mut run = |x: &crate::engine::Tensor| net.forward(backend, x);
        let logits = predict_sliding_window(
            &pre.data,
            &plan.sliding_window,
            heads,
            &mirror,
            &mut run,
            &mut |done, total| {
                progress(Progress {
                    done: k * total + done,
                    total: folds * total,
                })
            },
        )?;
        fold_logits.push(logits);
    }
    let logits = average_folds(fold_logits)?;
    let logits = logits_to_cropped_shape(&logits, &pre.properties, plan)?;
    let labels = decode_labels(&logits, &plan.outputs);
    drop(logits);
    let (reader_labels, _) = uncrop_and_untranspose(&labels, &pre.properties, plan)?;
    let mut bytes = Vec::with_capacity(reader_labels.len());
    for l in reader_labels {
        bytes.push(u8::try_from(l).map_err(|_| SegmentError::Label(l))?);
    }
    let voxels =
        map.to_volume_order(&bytes)
            .ok_or(SegmentError::Preprocess(PreprocessError::Length {
                got: bytes.len(),
                shape: map.shape(),
            }))?;
    Ok(Volume::new(
        volume.dims(),
        volume.geometry().clone(),
        voxels,
    )?)
}
