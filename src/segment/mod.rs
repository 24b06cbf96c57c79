//! Segmentation: nnU-Net v2 compatible inference (shared/docs/nnunet-inference.md) on nephrod's
//! engine, and the post-processing of seed 004.
//!
//! * [`plan`] — the typed description of a trained model that inference needs.
//! * [`reader`] — a volume as nnU-Net's reader classes give it to the model, and back.
//! * [`preprocess`] — transpose, crop to non-zero, normalisation (§3.2–3.4).
//! * [`resample`] — nnU-Net's resampling, bit-exact in f64 (§3.5).
//! * [`unet`] — PlainConvUNet / ResidualEncoderUNet forward on an engine backend (§1.5–1.6).
//! * [`sliding_window`] — tiles, Gaussian, mirroring TTA, fp16 aggregation, folds (§4).
//! * [`instances`] — per-lesion side, pole, volume, axial diameter and centre.
//! * [`pipeline`] — a CT volume and a model bundle → a label map on the same grid.
//! * [`model`] — the segmentation model the appliance runs: one bundle or a cascade pair.
//! * [`postprocess`] — seed 004's connected-component rules (method.md C.5).
//! * [`nnunet_postprocess`] — nnU-Net's own keep-largest-component rules (§7).

pub mod instances;
pub mod model;
pub mod nnunet_postprocess;
pub mod pipeline;
pub mod plan;
pub mod postprocess;
pub mod preprocess;
pub mod reader;
pub mod resample;
pub mod sliding_window;
pub mod unet;
