//! Synthetic multi-phase renal CT with ground truth: nephrod's embedded default data.
//!
//! A case is generated in four steps, each its own module:
//! 1. [`anatomy`] draws a patient in the anatomy frame (reference-phase LPS mm): body wall,
//!    spine and ribs, aorta and IVC, liver, spleen, bowel, one or two kidneys (cortex, medulla,
//!    sinus fat, collecting system) and 0–3 renal masses (ccRCC, pRCC, chRCC, oncocytoma, AML,
//!    Bosniak I–II cysts; 3 mm–8 cm; endophytic or exophytic).
//! 2. [`attenuation`] gives every tissue its HU in each contrast phase (literature values,
//!    cited there, re-drawn per case).
//! 3. [`acquisition`] picks 2–4 phases, their timing, grids, orientation and the breathing-like
//!    misalignment of each phase relative to the reference phase.
//! 4. [`render`] rasterises each phase (labels by point sampling, HU with slice profile,
//!    point-spread blur and correlated noise); [`truth`] records what was made.
//!
//! [`output`] writes cases as DICOM, NIfTI or an nnU-Net v2 raw dataset.
//!
//! Determinism: case `n` of run seed `s` depends only on `(s, n)` and the options — not on the
//! number of cases, threads or output format.

pub mod acquisition;
pub mod anatomy;
pub mod attenuation;
pub mod output;
pub mod render;
pub mod rng;
pub mod shapes;
mod simple;
pub mod truth;

pub use simple::simple_abdomen;

use crate::dicom::phase::Phase;
use crate::dicom::writer::uid_from_seed;
use crate::volume::VolumeError;

use acquisition::{Acquisition, AcquisitionOptions};
use anatomy::{Anatomy, AnatomyOptions};
use attenuation::CaseAttenuation;
use render::RenderedPhase;
use rng::Rng;
use truth::{PhaseTruth, Truth, TRUTH_SCHEMA};

/// Errors generating or writing phantoms.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error("the {0:?} phase transform is singular")]
    SingularTransform(Phase),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("writing {path}: {message}")]
    Write {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Options of one generated case.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CaseOptions {
    pub anatomy: AnatomyOptions,
    pub acquisition: AcquisitionOptions,
}

/// A generated case: the model, its images and its truth.
#[derive(Debug, Clone)]
pub struct GeneratedCase {
    pub case_id: String,
    pub anatomy: Anatomy,
    pub attenuation: CaseAttenuation,
    pub acquisition: Acquisition,
    /// In acquisition order.
    pub phases: Vec<RenderedPhase>,
    pub truth: Truth,
}

/// The seed of case `index` of a run with seed `seed`.
pub fn case_seed(seed: u64, index: usize) -> u64 {
    rng::mix64(seed ^ rng::mix64(index as u64 ^ 0xC0FF_EE00_0000_0000))
}

/// "HHMMSS.ffffff" from seconds after midnight (wrapping at 24 h).
pub fn tm_text(seconds: f64) -> String {
    let s = seconds.rem_euclid(86_400.0);
    let h = (s / 3600.0).floor();
    let m = ((s - h * 3600.0) / 60.0).floor();
    let sec = s - h * 3600.0 - m * 60.0;
    let whole = sec.floor();
    let micro = ((sec - whole) * 1e6).round().min(999_999.0);
    format!(
        "{:02}{:02}{:02}.{:06}",
        h as u32, m as u32, whole as u32, micro as u32
    )
}

/// Generates case `index` of a run with `seed`.
pub fn generate_case(
    seed: u64,
    index: usize,
    opts: &CaseOptions,
) -> Result<GeneratedCase, PhantomError> {
    let cs = case_seed(seed, index);
    let root = Rng::new(cs);
    let anatomy = anatomy::draw(&mut root.fork("anatomy"), &opts.anatomy);
    let attenuation = CaseAttenuation::draw(&mut root.fork("attenuation"));
    let acquisition = acquisition::draw(&mut root.fork("acquisition"), &anatomy, &opts.acquisition);
    let case_id = format!("case_{index:04}");
    let study_uid = uid_from_seed(&format!("nephrod phantom study {cs}"));
    let mut phases = Vec::new();
    let mut phase_truth = Vec::new();
    for acq in &acquisition.phases {
        let r = render::render(&anatomy, &attenuation, acq)?;
        let g = &acq.geometry;
        phase_truth.push(PhaseTruth {
            phase: acq.phase,
            series_uid: uid_from_seed(&format!(
                "nephrod phantom series {cs} {}",
                acq.phase.as_str()
            )),
            series_number: acq.series_number,
            series_description: acq.series_description.clone(),
            seconds_after_injection: acq.seconds_after_injection,
            acquisition_time: tm_text(
                acquisition.injection_time_of_day_s + acq.seconds_after_injection,
            ),
            dims: acq.dims,
            spacing_mm: g.spacing_mm,
            origin_lps_mm: g.origin_mm,
            direction: g.direction,
            slice_thickness_mm: acq.slice_thickness_mm,
            noise_sd_hu: acq.noise_sd_hu,
            transform_from_reference: acq.from_reference.to_matrix(),
            label_voxels: truth::label_table()
                .into_iter()
                .map(|(name, v)| (name, r.label_voxels[v as usize]))
                .collect(),
            image_path: None,
            label_path: None,
        });
        phases.push(r);
    }
    let (kidneys, lesions) = truth::anatomy_truth(&anatomy, &phases);
    let truth = Truth {
        schema: TRUTH_SCHEMA,
        case_id: case_id.clone(),
        case_seed: cs,
        study_uid,
        study_date: acquisition.study_date.clone(),
        reference_phase: acquisition.reference,
        labels: truth::label_table(),
        bolus_factor: attenuation.bolus_factor,
        contrast_agent: acquisition.contrast_agent.clone(),
        phases: phase_truth,
        kidneys,
        lesions,
    };
    Ok(GeneratedCase {
        case_id,
        anatomy,
        attenuation,
        acquisition,
        phases,
        truth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tm_text_formats_time_of_day() {
        assert_eq!(tm_text(3600.0 * 10.0 + 61.5), "100101.500000");
        assert_eq!(tm_text(86_400.0 + 5.0), "000005.000000");
    }

    #[test]
    fn cases_are_deterministic() {
        let o = CaseOptions::default();
        let a = generate_case(3, 1, &o).unwrap();
        let b = generate_case(3, 1, &o).unwrap();
        assert_eq!(a.phases.len(), b.phases.len());
        for (x, y) in a.phases.iter().zip(&b.phases) {
            assert_eq!(x.hu, y.hu);
            assert_eq!(x.labels, y.labels);
        }
        assert_eq!(
            serde_json::to_string(&a.truth).unwrap(),
            serde_json::to_string(&b.truth).unwrap()
        );
    }
}
