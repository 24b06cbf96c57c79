//! One CT volume → a label map on the same voxel grid, the way `nnUNetv2_predict` computes it
//! for an imported model bundle (shared/docs/nnunet-inference.md §3–§5):
//! reader array ([`super::reader`]) → preprocessing ([`super::preprocess`]) → per fold the
//! network over the sliding window ([`super::unet`], [`super::sliding_window`]) → fold average
//! (f16) → export (resample logits to the cropped shape, decode labels, un-crop, un-transpose)
//! → back to the volume's voxel order.
//!
//! The output `Volume<u8>` has exactly the input's dims and geometry, and so do the class
//! probability maps of [`segment_stage`] (nnU-Net's
//! `--save_probabilities`).
//!
//! Memory (measured for a 600×512×512 CT, 4 heads: 2.9 GB peak RSS with a borrowed volume):
//! while tiles run, the pipeline holds the network input (f32, one value per voxel and input
//! channel), the f16 logit accumulator (one per voxel and head) and the f16 weight sum (one per
//! voxel), plus one tile's activations; folds are averaged as they finish, and the input CT is
//! freed first when it is handed over owned.
//!
//! Cascades (§6): a `3d_cascade_fullres` bundle takes the previous stage's label map (on the
//! same grid as the CT) as extra one-hot input channels; [`segment_volume_with_previous`] runs
//! one such stage, [`segment_cascade`] runs `3d_lowres` and then the cascade stage, as
//! `nnUNetv2_predict` does with `-prev_stage_predictions`.

use std::borrow::Cow;

use crate::engine::{Backend, TensorF16};
use crate::models::bundle::Bundle;
use crate::segment::nnunet_postprocess::apply_keep_largest;
use crate::segment::plan::OutputHeads;
use crate::segment::preprocess::{
    logits_to_cropped_shape, preprocess_case, uncrop_and_untranspose, uncrop_and_untranspose_with,
    PreprocessError, Preprocessed,
};
use crate::segment::reader::to_reader_array;
use crate::segment::sliding_window::{
    decode_labels, predict_sliding_window, FoldAverage, SlidingWindowError,
};
use crate::segment::unet::{UNet, UNetError};
use crate::volume::{Volume, VolumeError};

/// Why segmentation failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("this model is a cascade stage: it needs the segmentation of {0} (give the previous stage's model)")]
    Cascade(String),
    #[error("the previous stage's model is {got:?}, but this cascade stage needs {want:?}")]
    CascadeMismatch { want: String, got: String },
    #[error("the previous stage's label map has dims {got:?}, the CT {want:?}")]
    PreviousDims { want: [usize; 3], got: [usize; 3] },
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
    /// Apply the bundle's nnU-Net post-processing rules (from postprocessing.json) to the
    /// final label map. A cascade's first stage is never post-processed (nnU-Net feeds the raw
    /// prediction to the next stage).
    pub nnunet_postprocessing: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            mirroring: true,
            nnunet_postprocessing: true,
        }
    }
}

/// Progress of a segmentation: tiles done over all folds, and the total, of one stage
/// (`stage` 0 for a single model, 1 and 2 for the two stages of a cascade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: u8,
    pub done: usize,
    pub total: usize,
}

/// Segments `volume` (HU) with `bundle` on `backend` (not a cascade stage).
pub fn segment_volume(
    volume: &Volume<f32>,
    bundle: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Volume<u8>, SegmentError> {
    segment_volume_with_previous(
        Cow::Borrowed(volume),
        None,
        bundle,
        backend,
        options,
        progress,
    )
}

/// Runs a cascade: `lowres` (e.g. `3d_lowres`) on `volume`, then `fullres` (the
/// `3d_cascade_fullres` stage whose `previous_stage` names `lowres`'s configuration) with that
/// label map as extra input. Returns (previous stage's labels, final labels). Progress is
/// reported as stage 1, then stage 2.
pub fn segment_cascade(
    volume: &Volume<f32>,
    lowres: &Bundle,
    fullres: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Volume<u8>, Volume<u8>), SegmentError> {
    let low = cascade_first_stage(volume, lowres, fullres, backend, options, progress)?;
    let full = segment_volume_with_previous(
        Cow::Borrowed(volume),
        Some(&low),
        fullres,
        backend,
        options,
        &mut |p| progress(Progress { stage: 2, ..p }),
    )?;
    Ok((low, full))
}

/// The first stage of a cascade (see [`segment_cascade`]), after checking that `lowres` is the
/// stage `fullres` names; never post-processed (nnU-Net feeds the raw prediction on).
/// Progress is reported as stage 1.
pub fn cascade_first_stage(
    volume: &Volume<f32>,
    lowres: &Bundle,
    fullres: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Volume<u8>, SegmentError> {
    let want =
        fullres
            .manifest
            .plan
            .previous_stage
            .clone()
            .ok_or(SegmentError::CascadeMismatch {
                want: "(none: not a cascade stage)".into(),
                got: lowres.manifest.plan.configuration.clone(),
            })?;
    let (lp, fp) = (&lowres.manifest.plan, &fullres.manifest.plan);
    if lp.configuration != want || lp.dataset_name != fp.dataset_name {
        return Err(SegmentError::CascadeMismatch {
            want: format!("{} of {}", want, fp.dataset_name),
            got: format!("{} of {}", lp.configuration, lp.dataset_name),
        });
    }
    let first = SegmentOptions {
        nnunet_postprocessing: false,
        ..options
    };
    segment_volume_with_previous(
        Cow::Borrowed(volume),
        None,
        lowres,
        backend,
        first,
        &mut |p| progress(Progress { stage: 1, ..p }),
    )
}

/// Segments `volume` (HU) with `bundle`; `previous` is the previous stage's label map (same
/// dims as `volume`) when `bundle` is a cascade stage, else `None`. An owned `volume` is freed
/// as soon as the reader array is made (peak memory: see the module doc).
pub fn segment_volume_with_previous(
    volume: Cow<'_, Volume<f32>>,
    previous: Option<&Volume<u8>>,
    bundle: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Volume<u8>, SegmentError> {
    segment_stage(volume, previous, bundle, backend, options, false, progress).map(|(l, _)| l)
}

/// One probability volume per output channel.
pub type ProbabilityMaps = Vec<Volume<f32>>;

/// Class probabilities from logits `[1, C, …]` (see [`segment_volume_with_probabilities`]).
fn probabilities(logits: &TensorF16, heads: &OutputHeads) -> Vec<Vec<f32>> {
    let channels = logits.shape()[1];
    let mut p: Vec<Vec<f32>> = (0..channels)
        .map(|c| logits.channel(0, c).iter().map(|v| v.to_f32()).collect())
        .collect();
    match heads {
        OutputHeads::Labels { .. } => {
            for i in 0..logits.spatial_len() {
                let max = p.iter().map(|c| c[i]).fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for c in p.iter_mut() {
                    c[i] = (c[i] - max).exp();
                    sum += c[i];
                }
                for c in p.iter_mut() {
                    c[i] /= sum;
                }
            }
        }
        OutputHeads::Regions { .. } => {
            for v in p.iter_mut().flatten() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
    }
    p
}

/// [`segment_volume_with_previous`] that, with `want_probabilities`, also returns the class
/// probabilities nnU-Net's `--save_probabilities` writes: one volume per output channel
/// (softmax over labels, or each region's sigmoid), on the input's grid, from the
/// fold-averaged logits resampled to the cropped shape; outside nnU-Net's crop box background
/// is 1 and every other label 0 (regions: 0). They precede nnU-Net's post-processing, as
/// nnU-Net's do.
pub fn segment_stage(
    volume: Cow<'_, Volume<f32>>,
    previous: Option<&Volume<u8>>,
    bundle: &Bundle,
    backend: &dyn Backend,
    options: SegmentOptions,
    want_probabilities: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Volume<u8>, Option<ProbabilityMaps>), SegmentError> {
    let plan = &bundle.manifest.plan;
    match (&plan.previous_stage, previous) {
        (Some(prev), None) => return Err(SegmentError::Cascade(prev.clone())),
        (None, Some(_)) => return Err(PreprocessError::UnexpectedPreviousStage.into()),
        _ => {}
    }
    let extra = match previous {
        Some(_) => plan.outputs.foreground_labels().len(),
        None => 0,
    };
    if plan.architecture.input_channels != 1 + extra || plan.preprocessing.normalization.len() != 1
    {
        return Err(SegmentError::Channels(plan.architecture.input_channels));
    }
    let array = to_reader_array(&volume, plan.reader);
    let map = array.map;
    let (dims, geometry) = (volume.dims(), volume.geometry().clone());
    let previous_array = match previous {
        Some(p) => {
            if p.dims() != volume.dims() {
                return Err(SegmentError::PreviousDims {
                    want: volume.dims(),
                    got: p.dims(),
                });
            }
            let labels: Vec<u16> = p.data().iter().map(|&l| u16::from(l)).collect();
            let lv = Volume::new(p.dims(), geometry.clone(), labels)?;
            Some(to_reader_array(&lv, plan.reader).data)
        }
        None => None,
    };
    drop(volume);
    let pre = preprocess_case(
        vec![array.data],
        previous_array.as_deref(),
        array.shape,
        array.spacing_mm,
        plan,
    )?;
    drop(previous_array);
    let heads = plan.outputs.channels();
    let mirror: Vec<usize> = if options.mirroring {
        plan.sliding_window.mirror_axes.clone()
    } else {
        Vec::new()
    };
    let folds = bundle.weights.len();
    let mut average = FoldAverage::default();
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
                    stage: 0,
                    done: k * total + done,
                    total: folds * total,
                })
            },
        )?;
        average.add(logits)?;
    }
    let Preprocessed {
        data: network_input,
        properties,
    } = pre;
    drop(network_input);
    let logits = average.finish()?;
    let logits = logits_to_cropped_shape(logits, &properties, plan)?;
    let labels = decode_labels(&logits, &plan.outputs);
    let cropped_probabilities = want_probabilities.then(|| probabilities(&logits, &plan.outputs));
    drop(logits);
    let length_error = |got: usize| {
        SegmentError::Preprocess(PreprocessError::Length {
            got,
            shape: map.shape(),
        })
    };
    let mut probability_volumes = None;
    if let Some(channels) = cropped_probabilities {
        let background_is_one = matches!(plan.outputs, OutputHeads::Labels { .. });
        let mut out = Vec::with_capacity(channels.len());
        for (c, values) in channels.iter().enumerate() {
            let fill = if background_is_one && c == 0 {
                1.0
            } else {
                0.0
            };
            let (reader, _) = uncrop_and_untranspose_with(values, fill, &properties, plan)?;
            let voxels = map
                .to_volume_order(&reader)
                .ok_or_else(|| length_error(reader.len()))?;
            out.push(Volume::new(dims, geometry.clone(), voxels)?);
        }
        probability_volumes = Some(out);
    }
    let (reader_labels, _) = uncrop_and_untranspose(&labels, &properties, plan)?;
    let mut bytes = Vec::with_capacity(reader_labels.len());
    for l in reader_labels {
        bytes.push(u8::try_from(l).map_err(|_| SegmentError::Label(l))?);
    }
    let mut voxels = map
        .to_volume_order(&bytes)
        .ok_or_else(|| length_error(bytes.len()))?;
    if options.nnunet_postprocessing {
        apply_keep_largest(
            &mut voxels,
            [dims[2], dims[1], dims[0]],
            &plan.postprocessing,
        );
    }
    Ok((Volume::new(dims, geometry, voxels)?, probability_volumes))
}
