//! What nnU-Net-compatible inference needs to know about a trained model, as typed values:
//! the network ([`UNetArchitecture`]), the preprocessing ([`Preprocessing`]), the sliding window
//! ([`SlidingWindow`]) and the outputs ([`OutputHeads`]). The importer
//! (`crate::models`) fills an [`InferencePlan`] from nnU-Net's plans.json, dataset.json and
//! checkpoint and stores it in the bundle manifest (serde, JSON); the segmentation pipeline
//! reads it back. Field meanings follow shared/docs/nnunet-inference.md (§ numbers below).
//!
//! Axis convention: every per-axis array here is in nnU-Net's *transposed* array order
//! (after `transpose_forward`), which for the engine is (D, H, W) of the network input; spacings
//! are in mm. Image axes before the transpose are the reader's array axes ([`ReaderAxes`]).

use serde::{Deserialize, Serialize};

/// The full description of one nnU-Net configuration (e.g. `3d_fullres`) as nephrod runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferencePlan {
    /// nnU-Net dataset name, e.g. "Dataset220_KiTS2023".
    pub dataset_name: String,
    /// Configuration name, e.g. "3d_fullres", "3d_cascade_fullres".
    pub configuration: String,
    pub reader: ReaderAxes,
    /// `transpose_forward` of plans.json: array axis `i` after the transpose is reader axis
    /// `transpose_forward[i]`.
    pub transpose_forward: [usize; 3],
    /// `transpose_backward` of plans.json (the inverse permutation).
    pub transpose_backward: [usize; 3],
    pub preprocessing: Preprocessing,
    pub architecture: UNetArchitecture,
    pub sliding_window: SlidingWindow,
    pub outputs: OutputHeads,
    /// Cascade: the configuration whose segmentation is an extra input (§6), e.g. "3d_lowres".
    pub previous_stage: Option<String>,
    /// Weight sets averaged as logits (§4.6), one per fold, in the order given at import.
    pub folds: Vec<String>,
    /// nnU-Net's own post-processing (`postprocessing.json` of `nnUNetv2_find_best_configuration`,
    /// §7), applied in order to the final label map; empty when the model has none.
    #[serde(default)]
    pub postprocessing: Vec<KeepLargestComponent>,
}

/// `remove_all_but_largest_component_from_segmentation(seg, labels_or_regions)` (§7): voxels
/// of the union of `labels` outside its largest 26-connected component(s) become background
/// (every component of the largest size is kept when several tie). A region entry in nnU-Net's
/// kwargs is the union of its labels too, so only the label set matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepLargestComponent {
    /// Label values (sorted, no duplicates, never 0).
    pub labels: Vec<u16>,
}

/// How nnU-Net's reader turns an image file into an array (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderAxes {
    /// `SimpleITKIO`: array `[z, y, x]` of the file's voxel grid, no reorientation.
    SimpleItk,
    /// `NibabelIO`: array `[x, y, z]` of the file's voxel grid transposed to `[z, y, x]`.
    Nibabel,
    /// `NibabelIOWithReorient`: reoriented to the closest RAS axes first, then as `Nibabel`.
    NibabelWithReorient,
}

/// Intensity normalisation of one input channel (§3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Normalization {
    /// `CTNormalization`: clip to [p0.5, p99.5], subtract mean, divide by max(std, 1e-8); all in
    /// f32 with these values rounded to f32 first.
    Ct {
        mean: f64,
        std: f64,
        percentile_00_5: f64,
        percentile_99_5: f64,
    },
    /// `ZScoreNormalization` over the image (or over the non-zero mask when `use_mask`).
    ZScore { use_mask: bool },
}

/// nnU-Net's `resample_data_or_seg_to_shape` settings (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResamplingSettings {
    /// Spline order in-plane / for 3-D resizing (3 for data, 1 for probabilities and segs).
    pub order: u8,
    /// Order along the separate (low-resolution) axis when resampling separately (0).
    pub order_z: u8,
    /// `force_separate_z`: `None` = decide by the anisotropy rule (threshold 3).
    pub force_separate_z: Option<bool>,
}

/// Everything between the reader's array and the network input (§3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Target spacing in mm, transposed order.
    pub spacing_mm: [f64; 3],
    /// One entry per image channel (dataset.json `channel_names` order).
    pub normalization: Vec<Normalization>,
    pub resample_data: ResamplingSettings,
    pub resample_seg: ResamplingSettings,
    pub resample_probabilities: ResamplingSettings,
}

/// The U-Net family nephrod can run (§1.4–1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkClass {
    /// `dynamic_network_architectures...PlainConvUNet`.
    PlainConvUNet,
    /// `dynamic_network_architectures...ResidualEncoderUNet` (BasicBlockD encoder).
    ResidualEncoderUNet,
}

/// Non-linearity after each normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Nonlinearity {
    LeakyRelu { negative_slope: f32 },
    Relu,
}

/// A 3-D nnU-Net network (deep supervision off: only the highest-resolution head is used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetArchitecture {
    pub class: NetworkClass,
    /// Image channels plus, for a cascade stage, one per foreground label (§6).
    pub input_channels: usize,
    /// Output heads: labels incl. background (softmax) or regions (sigmoid).
    pub output_channels: usize,
    pub features_per_stage: Vec<usize>,
    /// Kernel size per stage, (D, H, W).
    pub kernel_sizes: Vec<[usize; 3]>,
    /// Stride of the first conv of each stage, (D, H, W); stage 0 is usually 1.
    pub strides: Vec<[usize; 3]>,
    /// Convs per encoder stage (PlainConvUNet) or residual blocks per stage (ResEnc).
    pub n_conv_per_stage: Vec<usize>,
    /// Convs per decoder stage, lowest resolution first (length = stages − 1).
    pub n_conv_per_stage_decoder: Vec<usize>,
    pub conv_bias: bool,
    /// InstanceNorm3d epsilon (1e-5); nnU-Net's norm is always affine.
    pub norm_eps: f64,
    pub nonlinearity: Nonlinearity,
}

/// Sliding-window prediction settings (§4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// Patch size (D, H, W) in voxels.
    pub patch_size: [usize; 3],
    /// Tile step as a fraction of the patch (0.5).
    pub step_size: f64,
    /// Gaussian sigma as a fraction of the patch (1/8) and its value scaling factor (10).
    pub gaussian_sigma_scale: f64,
    pub gaussian_value_scale: f64,
    /// `inference_allowed_mirroring_axes` from the checkpoint (array axes 0..3); empty = none.
    pub mirror_axes: Vec<usize>,
    /// Accumulators and logits in f16, as nnU-Net does (§4.5).
    pub accumulate_f16: bool,
}

/// How output channels become labels (§2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutputHeads {
    /// One channel per label (index = label value, 0 = background), argmax.
    Labels { names: Vec<String> },
    /// One sigmoid channel per region, in dataset.json order; `class_order[i]` is the label
    /// written where region `i` fires (later regions overwrite earlier ones).
    Regions {
        names: Vec<String>,
        /// Label values each region covers.
        members: Vec<Vec<u16>>,
        class_order: Vec<u16>,
    },
}

impl OutputHeads {
    /// Number of network output channels.
    pub fn channels(&self) -> usize {
        match self {
            OutputHeads::Labels { names } => names.len(),
            OutputHeads::Regions { names, .. } => names.len(),
        }
    }

    /// nnU-Net's `LabelManager.foreground_labels`: every label value except 0, ascending
    /// (for regions, the union of their members). A cascade stage gets one input channel per
    /// entry (§6).
    pub fn foreground_labels(&self) -> Vec<u16> {
        let mut labels: Vec<u16> = match self {
            OutputHeads::Labels { names } => (1..names.len() as u16).collect(),
            OutputHeads::Regions { members, .. } => members.iter().flatten().copied().collect(),
        };
        labels.retain(|&l| l != 0);
        labels.sort_unstable();
        labels.dedup();
        labels
    }
}
