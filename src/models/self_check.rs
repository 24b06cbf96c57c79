//! The install-time self-check: a model runs on nephrod's built-in phantom and its output must
//! match what the vendor recorded when signing the package, within stated bounds.
//!
//! # The phantom
//! Case 0 of seed [`PHANTOM_SEED`]: two kidneys, two tumours (no cysts, none tiny), all four
//! phases, the small study size. It is generated in memory; nothing is read from disk.
//!
//! # What runs
//! * segmentation: the model on the reference (portal) phase, without mirroring and without
//!   post-processing; the record is the label map (run-length encoded, reader order i fastest).
//! * classification: every phase resampled onto the reference grid through the phantom's true
//!   transform, the truth label map of the reference phase, and the classifier on each truth
//!   tumour; the record is every lesion's class probabilities.
//!
//! # Bounds (stated in README.md "Model store")
//! * segmentation: at most [`MAX_LABEL_DISAGREEMENT`] of all voxels may carry another label
//!   than recorded;
//! * classification: the same lesions, and no probability differs by more than
//!   [`MAX_PROBABILITY_ERROR`].
//!
//! On the same CPU build the outputs are identical; the bounds leave room for the GPU backend's
//! different summation order (fp32, see `engine::cuda`), not for a different model.

use serde::{Deserialize, Serialize};

use crate::classify::crop::PhaseView;
use crate::classify::predict::{classify_study, Outcome, PredictOptions};
use crate::engine::Backend;
use crate::models::loaded::{LoadedModel, Role};
use crate::phantom::acquisition::{AcquisitionOptions, StudySize};
use crate::phantom::anatomy::AnatomyOptions;
use crate::phantom::{generate_case, CaseOptions};
use crate::register::resample_image;
use crate::segment::pipeline::SegmentOptions;
use crate::volume::Volume;

/// The self-check record's file name inside a package.
pub const SELF_CHECK_FILE: &str = "self_check.json";
const SCHEMA: &str = "nephrod.self-check";
const SCHEMA_VERSION: u32 = 1;
/// Seed of the built-in phantom.
pub const PHANTOM_SEED: u64 = 20_261_206;
/// Largest fraction of voxels whose label may differ from the record.
pub const MAX_LABEL_DISAGREEMENT: f64 = 0.005;
/// Largest absolute difference of a class probability from the record.
pub const MAX_PROBABILITY_ERROR: f64 = 0.01;

/// One classified lesion of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionRecord {
    /// Voxels of the lesion in the reference label map (identifies it).
    pub voxels: usize,
    pub probabilities: Vec<f64>,
}

/// The output of a self-check run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheckRecord {
    pub schema: String,
    pub schema_version: u32,
    pub role: Role,
    pub phantom_seed: u64,
    pub nephrod_version: String,
    /// segmentation: label map dims (i, j, k) and `[label, run length]` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<[usize; 3]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_runs: Vec<[u64; 2]>,
    /// classification: per truth tumour, in the classifier's lesion order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lesions: Vec<LesionRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    #[error("the self-check could not run: {0}")]
    Run(String),
    #[error("the self-check record is unusable: {0}")]
    Record(String),
    #[error("self-check failed: {0}")]
    OutOfBound(String),
}

fn run_err(e: impl std::fmt::Display) -> SelfCheckError {
    SelfCheckError::Run(e.to_string())
}

/// The built-in phantom (see the module doc).
fn phantom() -> Result<crate::phantom::GeneratedCase, SelfCheckError> {
    let mut anatomy = AnatomyOptions {
        single_kidney_probability: 0.0,
        lesion_count_weights: [0.0, 0.0, 1.0, 0.0],
        tiny_lesion_probability: 0.0,
        ..AnatomyOptions::default()
    };
    anatomy.class_weights[5] = 0.0;
    let opts = CaseOptions {
        anatomy,
        acquisition: AcquisitionOptions {
            size: StudySize::Small,
            orientation_variants: false,
            all_phases: true,
        },
    };
    generate_case(PHANTOM_SEED, 0, &opts).map_err(run_err)
}

/// Runs `model` on the built-in phantom with `backend`.
pub fn run(model: &LoadedModel, backend: &dyn Backend) -> Result<SelfCheckRecord, SelfCheckError> {
    let case = phantom()?;
    let reference = case
        .phases
        .iter()
        .position(|p| p.phase == case.acquisition.reference)
        .ok_or_else(|| run_err("the phantom has no reference phase"))?;
    let mut record = SelfCheckRecord {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        role: model.role(),
        phantom_seed: PHANTOM_SEED,
        nephrod_version: env!("CARGO_PKG_VERSION").into(),
        dims: None,
        label_runs: Vec::new(),
        lesions: Vec::new(),
    };
    match model {
        LoadedModel::Segmentation(model) => {
            let labels = model
                .segment(
                    &case.phases[reference].hu,
                    backend,
                    SegmentOptions {
                        mirroring: false,
                        nnunet_postprocessing: false,
                    },
                    &mut |_| {},
                )
                .map_err(run_err)?;
            record.dims = Some(labels.dims());
            record.label_runs = run_lengths(labels.data());
        }
        LoadedModel::Classification(bundle) => {
            let ref_phase = &case.phases[reference];
            let target = ref_phase.labels.geometry().clone();
            let dims = ref_phase.labels.dims();
            let mut cts: Vec<(crate::dicom::phase::Phase, Volume<f32>)> = Vec::new();
            for (p, acq) in case.phases.iter().zip(&case.acquisition.phases) {
                let ct = resample_image(
                    backend,
                    &p.hu,
                    &acq.from_reference.to_matrix(),
                    &target,
                    dims,
                )
                .map_err(run_err)?;
                cts.push((p.phase, ct));
            }
            let views: Vec<PhaseView> = cts
                .iter()
                .map(|(phase, ct)| PhaseView {
                    phase: *phase,
                    ct,
                    labels: &ref_phase.labels,
                })
                .collect();
            let found =
                classify_study(bundle, &ref_phase.labels, &views, PredictOptions::default())
                    .map_err(run_err)?;
            for d in found {
                let Outcome::Classified(p) = d.outcome else {
                    return Err(run_err("a phantom tumour was not classified"));
                };
                record.lesions.push(LesionRecord {
                    voxels: d.lesion.voxels,
                    probabilities: p.probabilities,
                });
            }
            if record.lesions.is_empty() {
                return Err(run_err("the phantom has no tumour to classify"));
            }
        }
    }
    Ok(record)
}

/// `[value, count]` runs of `data`.
pub fn run_lengths(data: &[u8]) -> Vec<[u64; 2]> {
    let mut runs: Vec<[u64; 2]> = Vec::new();
    for &v in data {
        match runs.last_mut() {
            Some(r) if r[0] == u64::from(v) => r[1] += 1,
            _ => runs.push([u64::from(v), 1]),
        }
    }
    runs
}

/// Expands runs into `n` labels; `None` when they do not add up to `n` or a value is not a
/// byte.
fn expand(runs: &[[u64; 2]], n: usize) -> Option<Vec<u8>> {
    let total: u64 = runs.iter().map(|r| r[1]).sum();
    if total != n as u64 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for &[v, c] in runs {
        let v = u8::try_from(v).ok()?;
        out.extend(std::iter::repeat_n(v, usize::try_from(c).ok()?));
    }
    Some(out)
}

/// Compares a fresh run with the recorded one; `Ok` holds a one-line summary.
pub fn compare(
    expected: &SelfCheckRecord,
    actual: &SelfCheckRecord,
) -> Result<String, SelfCheckError> {
    if expected.schema != SCHEMA || expected.schema_version != SCHEMA_VERSION {
        return Err(SelfCheckError::Record(format!(
            "schema {} version {} is not {SCHEMA} version {SCHEMA_VERSION}",
            expected.schema, expected.schema_version
        )));
    }
    if expected.role != actual.role || expected.phantom_seed != actual.phantom_seed {
        return Err(SelfCheckError::Record(format!(
            "recorded for a {} model on phantom seed {}, this is a {} model on seed {}",
            expected.role.as_str(),
            expected.phantom_seed,
            actual.role.as_str(),
            actual.phantom_seed
        )));
    }
    match actual.role {
        Role::Segmentation => {
            let (Some(de), Some(da)) = (expected.dims, actual.dims) else {
                return Err(SelfCheckError::Record("no label map dims".into()));
            };
            if de != da {
                return Err(SelfCheckError::OutOfBound(format!(
                    "label map dims {da:?}, recorded {de:?}"
                )));
            }
            let n = de.iter().product::<usize>();
            let e = expand(&expected.label_runs, n)
                .ok_or_else(|| SelfCheckError::Record("label runs do not match the dims".into()))?;
            let a = expand(&actual.label_runs, n)
                .ok_or_else(|| SelfCheckError::Run("label runs do not match the dims".into()))?;
            let differ = e.iter().zip(&a).filter(|(x, y)| x != y).count();
            let fraction = differ as f64 / n.max(1) as f64;
            let foreground = e.iter().filter(|&&v| v != 0).count();
            if fraction > MAX_LABEL_DISAGREEMENT {
                return Err(SelfCheckError::OutOfBound(format!(
                    "{differ} of {n} voxels ({:.3} %) carry another label than recorded (bound {:.3} %)",
                    100.0 * fraction,
                    100.0 * MAX_LABEL_DISAGREEMENT
                )));
            }
            Ok(format!(
                "segmentation of the built-in phantom: {differ} of {n} voxels differ from the \
                 record ({foreground} foreground voxels recorded; bound {:.3} % of voxels)",
                100.0 * MAX_LABEL_DISAGREEMENT
            ))
        }
        Role::Classification => {
            if expected.lesions.len() != actual.lesions.len()
                || expected.lesions.iter().zip(&actual.lesions).any(|(e, a)| {
                    e.voxels != a.voxels || e.probabilities.len() != a.probabilities.len()
                })
            {
                return Err(SelfCheckError::OutOfBound(format!(
                    "{} lesions classified, {} recorded (or their sizes differ)",
                    actual.lesions.len(),
                    expected.lesions.len()
                )));
            }
            let worst = expected
                .lesions
                .iter()
                .zip(&actual.lesions)
                .flat_map(|(e, a)| e.probabilities.iter().zip(&a.probabilities))
                .map(|(x, y)| (x - y).abs())
                // f64::max ignores NaN: count a NaN as the worst possible difference.
                .map(|d| if d.is_nan() { f64::INFINITY } else { d })
                .fold(0.0, f64::max);
            if worst > MAX_PROBABILITY_ERROR {
                return Err(SelfCheckError::OutOfBound(format!(
                    "a class probability differs by {worst:.4} from the record (bound {MAX_PROBABILITY_ERROR})"
                )));
            }
            Ok(format!(
                "classification of {} phantom tumours: largest probability difference {worst:.2e} \
                 (bound {MAX_PROBABILITY_ERROR})",
                actual.lesions.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(runs: Vec<[u64; 2]>, dims: [usize; 3]) -> SelfCheckRecord {
        SelfCheckRecord {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            role: Role::Segmentation,
            phantom_seed: PHANTOM_SEED,
            nephrod_version: String::new(),
            dims: Some(dims),
            label_runs: runs,
            lesions: Vec::new(),
        }
    }

    #[test]
    fn run_lengths_round_trip() {
        let data = [0u8, 0, 1, 1, 1, 0, 2, 2, 0];
        let runs = run_lengths(&data);
        assert_eq!(runs, vec![[0, 2], [1, 3], [0, 1], [2, 2], [0, 1]]);
        assert_eq!(expand(&runs, 9).unwrap(), data);
        assert!(expand(&runs, 10).is_none());
        assert!(expand(&[[300, 9]], 9).is_none());
    }

    #[test]
    fn label_disagreement_is_bounded() {
        // 10 000 voxels: 50 differing is exactly the bound, 51 is over it.
        let n = 10_000u64;
        let e = seg(vec![[0, n]], [100, 100, 1]);
        let ok = seg(vec![[1, 50], [0, n - 50]], [100, 100, 1]);
        let over = seg(vec![[1, 51], [0, n - 51]], [100, 100, 1]);
        assert!(compare(&e, &ok).is_ok());
        assert!(matches!(
            compare(&e, &over),
            Err(SelfCheckError::OutOfBound(_))
        ));
        let other_dims = seg(vec![[0, n]], [10, 1000, 1]);
        assert!(matches!(
            compare(&e, &other_dims),
            Err(SelfCheckError::OutOfBound(_))
        ));
    }

    #[test]
    fn probabilities_are_bounded() {
        let mk = |p: Vec<f64>| SelfCheckRecord {
            role: Role::Classification,
            dims: None,
            label_runs: Vec::new(),
            lesions: vec![LesionRecord {
                voxels: 40,
                probabilities: p,
            }],
            ..seg(Vec::new(), [0, 0, 0])
        };
        let e = mk(vec![0.5, 0.5]);
        assert!(compare(&e, &mk(vec![0.505, 0.495])).is_ok());
        assert!(compare(&e, &mk(vec![0.52, 0.48])).is_err());
        assert!(compare(&e, &mk(vec![f64::NAN, 0.5])).is_err());
        let seg_record = seg(vec![[0, 1]], [1, 1, 1]);
        assert!(matches!(
            compare(&e, &seg_record),
            Err(SelfCheckError::Record(_))
        ));
    }
}
