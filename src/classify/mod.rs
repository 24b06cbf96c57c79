//! Renal-mass subtype classification (seed 001, shared/docs/method.md A.3): a candle ResNet on
//! three contrast phases' largest-lesion slices, Grad-CAM explanations, and the exact input
//! preparation shared by inference and `nephrod export-crops`.
//!
//! * [`resnet`] — torchvision ResNet-18/34/50/101 in candle (BatchNorm folded at load), with
//!   the 1×1 input convolution and a 5-way head, from F16/F32 safetensors;
//! * [`grad_cam`] — Grad-CAM on layer4 through candle's autograd;
//! * [`settings`] — crop size, margins, window and normalisation (stored in the bundle);
//! * [`crop`] — per lesion and phase: largest-area axial slice, bounding rectangle, bilinear
//!   resize, in radiological orientation whatever the scan orientation;
//! * [`combine`] — phase triples (time order, leave-one-contrast-phase-out with four phases),
//!   probability averaging, benign vs malignant;
//! * [`bundle`] — classifier bundles (manifest + weights), import and verification;
//! * [`predict`] — a registered study's lesions → predictions and Grad-CAM overlays
//!   ([`overlay`]);
//! * [`dataset`] — labelled datasets and `.npy` output for `nephrod export-crops`.

pub mod bundle;
pub mod combine;
pub mod crop;
pub mod dataset;
pub mod error;
pub mod grad_cam;
pub mod overlay;
pub mod predict;
pub mod resnet;
mod resnet_blocks;
pub mod settings;

pub use error::ClassifyError;
pub use grad_cam::GradCam;
pub use resnet::{ResNet, ResNetConfig, ResNetDepth};
