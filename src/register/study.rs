//! A whole study: choose the reference phase, register every other phase to it, and bring
//! every phase's CT and labels onto the reference grid.
//!
//! Reference rule (seed 001): portal; without portal, arterial; without either (outside the
//! method) delayed, then non-contrast, then the first series of unknown phase — with
//! [`ReferenceChoice::Fallback`] and a note saying so. When a phase occurs twice the first
//! one is the reference candidate; the other is registered like any moving phase.
//! A phase that cannot be registered (no kidney labels, grids that disagree, …) is reported in
//! [`StudyRegistration::failures`] and the others go on; no aligned volume is made for it.

use serde::Serialize;

use super::apply::resample_image;
use super::pair::{register_pair, PairRegistration};
use super::{RegisterError, RegisterOptions};
use crate::dicom::phase::Phase;
use crate::engine::Backend;
use crate::volume::Volume;

/// One phase of a study: its CT (HU) and label map on the same grid.
#[derive(Debug, Clone)]
pub struct PhaseInput {
    pub phase: Phase,
    pub ct: Volume<f32>,
    pub labels: Volume<u8>,
}

/// How the reference phase was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceChoice {
    /// The method's choice.
    Portal,
    /// The method's choice when portal is missing.
    Arterial,
    /// Neither portal nor arterial: outside seed 001's rule.
    Fallback,
}

/// Index of the reference phase in `phases` and how it was chosen; `None` when empty.
pub fn choose_reference(phases: &[Phase]) -> Option<(usize, ReferenceChoice)> {
    let find = |p: Phase| phases.iter().position(|x| *x == p);
    if let Some(i) = find(Phase::Portal) {
        return Some((i, ReferenceChoice::Portal));
    }
    if let Some(i) = find(Phase::Arterial) {
        return Some((i, ReferenceChoice::Arterial));
    }
    [Phase::Delayed, Phase::NonContrast, Phase::Unknown]
        .into_iter()
        .find_map(find)
        .map(|i| (i, ReferenceChoice::Fallback))
}

/// A phase on the reference grid.
#[derive(Debug, Clone)]
pub struct AlignedPhase {
    pub phase: Phase,
    /// CT on the reference grid (HU; [`super::OUTSIDE_HU`] outside the acquired volume).
    pub ct: Volume<f32>,
    pub labels: Volume<u8>,
    /// `None` for the reference phase itself.
    pub registration: Option<PairRegistration>,
}

/// A phase that could not be registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseFailure {
    pub phase: Phase,
    /// [`RegisterError::kind`].
    pub kind: &'static str,
    pub message: String,
}

/// A registered study.
#[derive(Debug, Clone)]
pub struct StudyRegistration {
    pub reference_phase: Phase,
    pub reference_choice: ReferenceChoice,
    /// Every phase that could be aligned, the reference first, then input order.
    pub phases: Vec<AlignedPhase>,
    pub failures: Vec<PhaseFailure>,
}

/// The serialisable part of a [`StudyRegistration`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyReport {
    pub reference_phase: Phase,
    pub reference_choice: ReferenceChoice,
    /// Set when the reference is not the method's choice.
    pub reference_note: Option<String>,
    pub pairs: Vec<PairEntry>,
    pub failures: Vec<PhaseFailure>,
}

/// One moving phase in a [`StudyReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairEntry {
    pub phase: Phase,
    pub registration: PairRegistration,
}

impl StudyRegistration {
    /// The reference phase's volumes (`None` only when no phase has volumes).
    pub fn reference(&self) -> Option<&AlignedPhase> {
        self.phases.iter().find(|p| p.phase == self.reference_phase)
    }

    pub fn report(&self) -> StudyReport {
        StudyReport {
            reference_phase: self.reference_phase,
            reference_choice: self.reference_choice,
            reference_note: (self.reference_choice == ReferenceChoice::Fallback).then(|| {
                format!(
                    "no portal or arterial phase: {} used as the reference (outside seed 001's rule)",
                    self.reference_phase.as_str()
                )
            }),
            pairs: self
                .phases
                .iter()
                .filter_map(|p| {
                    p.registration.as_ref().map(|r| PairEntry {
                        phase: p.phase,
                        registration: r.clone(),
                    })
                })
                .collect(),
            failures: self.failures.clone(),
        }
    }
}

fn check_grid(p: &PhaseInput) -> Result<(), RegisterError> {
    let same_geometry = {
        let (a, b) = (p.ct.geometry(), p.labels.geometry());
        let close = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(u, v)| (u - v).abs() < 1e-3);
        close(&a.origin_mm, &b.origin_mm)
            && close(&a.spacing_mm, &b.spacing_mm)
            && close(a.direction.as_flattened(), b.direction.as_flattened())
    };
    if p.ct.dims() != p.labels.dims() || !same_geometry {
        return Err(RegisterError::GridMismatch {
            phase: p.phase.as_str().to_string(),
            ct: p.ct.dims(),
            labels: p.labels.dims(),
        });
    }
    Ok(())
}

impl StudyRegistration {
    /// Phases already on one grid, used as they are (no registration): the reference is chosen
    /// by the same rule as [`register_study`]; `reference_phase_if_empty` is used when
    /// `phases` is empty.
    pub fn unregistered(phases: Vec<PhaseInput>, reference_phase_if_empty: Phase) -> Self {
        let kinds: Vec<Phase> = phases.iter().map(|p| p.phase).collect();
        let (reference_phase, reference_choice) = match choose_reference(&kinds) {
            Some((i, c)) => (kinds[i], c),
            None => (reference_phase_if_empty, ReferenceChoice::Fallback),
        };
        StudyRegistration {
            reference_phase,
            reference_choice,
            phases: phases
                .into_iter()
                .map(|p| AlignedPhase {
                    phase: p.phase,
                    ct: p.ct,
                    labels: p.labels,
                    registration: None,
                })
                .collect(),
            failures: Vec::new(),
        }
    }
}

/// Registers every phase of a study to its reference phase.
pub fn register_study(
    backend: &dyn Backend,
    phases: Vec<PhaseInput>,
    opts: &RegisterOptions,
) -> Result<StudyRegistration, RegisterError> {
    opts.validate()?;
    let kinds: Vec<Phase> = phases.iter().map(|p| p.phase).collect();
    let (ref_idx, choice) = choose_reference(&kinds).ok_or(RegisterError::NoPhases)?;
    let mut phases = phases;
    let reference = phases.remove(ref_idx);
    check_grid(&reference)?;
    let g = reference.labels.geometry().clone();
    let dims = reference.labels.dims();
    let mut aligned = Vec::new();
    let mut failures = Vec::new();
    for p in &phases {
        let outcome = check_grid(p).and_then(|_| {
            let pair = register_pair(backend, &reference.labels, &p.labels, opts)?;
            let t = pair.registration.reference_to_moving_lps;
            let ct = resample_image(backend, &p.ct, &t, &g, dims)?;
            Ok(AlignedPhase {
                phase: p.phase,
                ct,
                labels: pair.aligned_labels,
                registration: Some(pair.registration),
            })
        });
        match outcome {
            Ok(a) => aligned.push(a),
            Err(e) => {
                tracing::warn!(phase = p.phase.as_str(), kind = e.kind(), error = %e, "phase not registered");
                failures.push(PhaseFailure {
                    phase: p.phase,
                    kind: e.kind(),
                    message: e.to_string(),
                });
            }
        }
    }
    // The reference itself, unchanged.
    aligned.insert(
        0,
        AlignedPhase {
            phase: reference.phase,
            ct: reference.ct,
            labels: reference.labels,
            registration: None,
        },
    );
    Ok(StudyRegistration {
        reference_phase: reference.phase,
        reference_choice: choice,
        phases: aligned,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rule() {
        use Phase::*;
        assert_eq!(
            choose_reference(&[NonContrast, Arterial, Portal, Delayed]),
            Some((2, ReferenceChoice::Portal))
        );
        assert_eq!(
            choose_reference(&[Delayed, Arterial, NonContrast]),
            Some((1, ReferenceChoice::Arterial))
        );
        assert_eq!(
            choose_reference(&[NonContrast, Delayed]),
            Some((1, ReferenceChoice::Fallback))
        );
        assert_eq!(
            choose_reference(&[Unknown, NonContrast]),
            Some((1, ReferenceChoice::Fallback))
        );
        assert_eq!(choose_reference(&[]), None);
    }
}
