//! Loads a study's phases (CT + label map each) and brings them onto the reference grid, for
//! `nephrod classify` and `nephrod export-crops` — one code path, so training crops and
//! inference crops are made the same way.

use std::path::Path;

use anyhow::{bail, Context};

use crate::classify::dataset::CasePhase;
use crate::dicom::phase::Phase;
use crate::engine::Backend;
use crate::register::study::{register_study, PhaseInput, StudyRegistration};
use crate::register::RegisterOptions;
use crate::volume::nifti;

/// Parses `PHASE=IMAGE,LABELS` (phase names as `nephrod inspect` prints them).
pub fn parse_phase_arg(s: &str) -> anyhow::Result<CasePhase> {
    let (name, rest) = s
        .split_once('=')
        .with_context(|| format!("{s:?}: expected PHASE=IMAGE,LABELS"))?;
    let (image, labels) = rest
        .split_once(',')
        .with_context(|| format!("{s:?}: expected PHASE=IMAGE,LABELS"))?;
    let phase: Phase = serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| {
            anyhow::anyhow!("{name:?} is not a phase (non_contrast, arterial, portal, delayed)")
        })?;
    Ok(CasePhase {
        phase,
        image_path: image.into(),
        label_path: labels.into(),
    })
}

fn load_phase(p: &CasePhase) -> anyhow::Result<PhaseInput> {
    let ct = super::segment_input::load(&p.image_path, None, None)
        .with_context(|| format!("{} image", p.phase.as_str()))?
        .volume;
    let labels = nifti::read_labels(&p.label_path)
        .with_context(|| format!("reading {}", p.label_path.display()))?;
    if labels.dims() != ct.dims() {
        bail!(
            "{}: label map {:?} and image {:?} differ in size",
            p.phase.as_str(),
            labels.dims(),
            ct.dims()
        );
    }
    Ok(PhaseInput {
        phase: p.phase,
        ct,
        labels,
    })
}

/// Loads every phase and registers them (or, with `register == false`, checks they already
/// share the first phase's grid and uses them as they are).
pub fn load_registered(
    phases: &[CasePhase],
    backend: &dyn Backend,
    register: bool,
    opts: &RegisterOptions,
) -> anyhow::Result<StudyRegistration> {
    if phases.is_empty() {
        bail!("no phases given");
    }
    let inputs = phases
        .iter()
        .map(load_phase)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if register {
        return Ok(register_study(backend, inputs, opts)?);
    }
    let dims = inputs[0].labels.dims();
    if let Some(p) = inputs.iter().find(|p| p.labels.dims() != dims) {
        bail!(
            "--no-register: {} is not on the grid of {} ({:?} vs {:?})",
            p.phase.as_str(),
            inputs[0].phase.as_str(),
            p.labels.dims(),
            dims
        );
    }
    let reference_phase = inputs[0].phase;
    Ok(StudyRegistration::unregistered(inputs, reference_phase))
}

/// Where to write a file whose name is derived from `path`: refuses an existing non-empty
/// output folder so results are never mixed.
pub fn fresh_out_dir(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let mut rd =
            std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
        if rd.next().is_some() {
            bail!("{} exists and is not empty", out.display());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}
