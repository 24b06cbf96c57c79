//! Model bundles: nephrod's on-disk model format (f16 safetensors + manifest), importers for
//! trained nnU-Net v2 models, verification.
//!
//! * [`torch_checkpoint`] — reads PyTorch `.pth` checkpoints (zip + restricted pickle) in Rust.
//! * [`nnunet`] — plans.json / dataset.json → [`crate::segment::plan::InferencePlan`].
//! * [`nnunet_postprocessing`] — nnU-Net's postprocessing.json → keep-largest-component rules.
//! * [`bundle`] — the bundle layout, manifest, writing and verified loading.
//! * [`loaded`] — a model folder of either kind, opened by its own loader.
//! * [`signing`] — Ed25519 keys and manifest signatures.
//! * [`archive`] — a package shipped as one `.tar`, unpacked safely before verification.
//! * [`package`] — signed packages: manifest.toml over every file's SHA-256, verification.
//! * [`self_check`] — the install-time run on the built-in phantom against the vendor's record.
//! * [`store`] — installed packages, the active set, activation/rollback/removal.

pub mod archive;
pub mod bundle;
pub mod loaded;
pub mod nnunet;
pub mod nnunet_postprocessing;
pub mod package;
pub mod self_check;
pub mod signing;
pub mod store;
pub mod torch_checkpoint;
