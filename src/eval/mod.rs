//! Evaluation: the metrics and statistics of the seeds, equal to the reference implementations
//! (shared/docs/metrics.md; goldens from tools/oracle/eval_golden.py).
//!
//! * [`edt`] — exact Euclidean distance transform on anisotropic grids.
//! * [`surface`] — surface-distance's surfels, distances, Surface Dice, robust Hausdorff.
//! * [`seg`] — per-case Dice / Surface Dice / HD95 / ASSD / volumes for KiTS HECs and labels.
//! * [`cls`] — accuracy, confusion, per-class rates, ROC AUC, DeLong, bootstrap, permutation test.
//! * [`detection`] — lesion detection per connected component, by size stratum.
//! * [`reg`] — Dice of aligned phases beside the identity and centre-of-mass baselines.

pub mod cls;
pub mod cls_report;
pub mod detection;
pub mod edt;
pub mod reg;
pub mod seg;
pub mod surface;
mod surfel_normals;
