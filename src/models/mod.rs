//! Model bundles: nephrod's on-disk model format (f16 safetensors + manifest), importers for
//! trained nnU-Net v2 models, verification.
//!
//! * [`torch_checkpoint`] — reads PyTorch `.pth` checkpoints (zip + restricted pickle) in Rust.
//! * [`nnunet`] — plans.json / dataset.json → [`crate::segment::plan::InferencePlan`].
//! * [`nnunet_postprocessing`] — nnU-Net's postprocessing.json → keep-largest-component rules.
//! * [`bundle`] — the bundle layout, manifest, writing and verified loading.

pub mod bundle;
pub mod nnunet;
pub mod nnunet_postprocessing;
pub mod torch_checkpoint;
