//! Tissue classes and their attenuation (HU) in each contrast phase.
//!
//! The table holds round, typical values for a 120 kVp renal-mass protocol (non-contrast;
//! corticomedullary/arterial ≈ 30–40 s; nephrographic/portal ≈ 80–100 s; excretory/delayed
//! ≥ 180 s after a ~1.5 mL/kg iodinated bolus). They were read from, and are meant to stay
//! within the ranges reported in:
//!
//! * Yuh BI, Cohan RH. Different phases of renal enhancement: role in detecting and
//!   characterizing renal masses during helical CT. AJR 1999;173:747–755 — cortex vs medulla
//!   differentiation in the corticomedullary phase, homogeneous nephrogram, excreted contrast in
//!   the collecting system.
//! * Bae KT. Intravenous contrast medium administration and scan timing at CT: considerations
//!   and approaches. Radiology 2010;256:32–61 — aortic, portal-venous and hepatic enhancement
//!   over time.
//! * Kim JK, Kim TK, Ahn HJ, et al. Differentiation of subtypes of renal cell carcinoma on
//!   helical CT scans. AJR 2002;178:1499–1506, and Young JR, Margolis D, Sauk S, et al. Clear
//!   cell renal cell carcinoma: discrimination from other renal cell carcinoma subtypes and
//!   oncocytoma at multiphasic multidetector CT. Radiology 2013;267:444–453 — clear-cell avid
//!   and heterogeneous, papillary weakly and gradually enhancing, chromophobe intermediate,
//!   oncocytoma avid with a central scar.
//! * Jinzaki M, Silverman SG, Akita H, et al. Renal angiomyolipoma: a radiological
//!   classification and update on recent developments in diagnosis and management. Abdom
//!   Imaging 2014;39:588–604 — macroscopic fat (< −20 HU) in fat-rich AML; fat-poor AML
//!   hyperattenuating before contrast and homogeneously enhancing.
//! * Silverman SG, Pedrosa I, Ellis JH, et al. Bosniak classification of cystic renal masses,
//!   version 2019. Radiology 2019;292:475–488 — Bosniak I: −9 to 20 HU, thin wall; II: few thin
//!   septa, or homogeneous hyperattenuating (≥ 70 HU) non-enhancing; enhancement means ≥ 20 HU.
//!
//! Per case the contrast-enhanced values are re-drawn (see [`CaseAttenuation::draw`]): one
//! bolus factor for the whole patient (cardiac output, dose) and a small per-tissue jitter.

use serde::Serialize;

use super::rng::Rng;
use crate::dicom::phase::Phase;

/// What a point of the phantom is made of. Lesion tissues are per lesion (see `anatomy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tissue {
    Air,
    BowelGas,
    Fat,
    Muscle,
    CorticalBone,
    CancellousBone,
    Disc,
    Csf,
    ArterialBlood,
    RenalVeinBlood,
    CavalBlood,
    Liver,
    Spleen,
    BowelWall,
    BowelFluid,
    RenalCortex,
    RenalMedulla,
    SinusFat,
    Urine,
    CcrccSolid,
    Necrosis,
    Prcc,
    Chrcc,
    Oncocytoma,
    CentralScar,
    AmlFat,
    AmlSoft,
    AmlFatPoor,
    CystFluid,
    CystHyperdense,
    CystWall,
}

/// Number of tissue classes (length of [`Tissue::ALL`]).
pub const TISSUE_COUNT: usize = 31;

impl Tissue {
    pub const ALL: [Tissue; TISSUE_COUNT] = [
        Tissue::Air,
        Tissue::BowelGas,
        Tissue::Fat,
        Tissue::Muscle,
        Tissue::CorticalBone,
        Tissue::CancellousBone,
        Tissue::Disc,
        Tissue::Csf,
        Tissue::ArterialBlood,
        Tissue::RenalVeinBlood,
        Tissue::CavalBlood,
        Tissue::Liver,
        Tissue::Spleen,
        Tissue::BowelWall,
        Tissue::BowelFluid,
        Tissue::RenalCortex,
        Tissue::RenalMedulla,
        Tissue::SinusFat,
        Tissue::Urine,
        Tissue::CcrccSolid,
        Tissue::Necrosis,
        Tissue::Prcc,
        Tissue::Chrcc,
        Tissue::Oncocytoma,
        Tissue::CentralScar,
        Tissue::AmlFat,
        Tissue::AmlSoft,
        Tissue::AmlFatPoor,
        Tissue::CystFluid,
        Tissue::CystHyperdense,
        Tissue::CystWall,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Typical HU in [non-contrast, arterial, portal, delayed].
    pub fn typical_hu(self) -> [f64; 4] {
        use Tissue::*;
        match self {
            Air => [-1000.0; 4],
            BowelGas => [-950.0; 4],
            Fat => [-100.0; 4],
            Muscle => [50.0, 58.0, 64.0, 60.0],
            CorticalBone => [800.0; 4],
            CancellousBone => [200.0, 210.0, 215.0, 212.0],
            Disc => [80.0, 82.0, 85.0, 85.0],
            Csf => [8.0; 4],
            ArterialBlood => [40.0, 320.0, 180.0, 120.0],
            RenalVeinBlood => [40.0, 200.0, 170.0, 120.0],
            CavalBlood => [40.0, 110.0, 160.0, 120.0],
            Liver => [58.0, 75.0, 115.0, 95.0],
            Spleen => [48.0, 120.0, 125.0, 100.0],
            BowelWall => [40.0, 90.0, 100.0, 85.0],
            BowelFluid => [15.0; 4],
            RenalCortex => [35.0, 190.0, 170.0, 135.0],
            RenalMedulla => [35.0, 85.0, 170.0, 150.0],
            SinusFat => [-90.0; 4],
            Urine => [6.0, 8.0, 12.0, 700.0],
            CcrccSolid => [35.0, 150.0, 120.0, 85.0],
            Necrosis => [20.0, 22.0, 24.0, 24.0],
            Prcc => [38.0, 62.0, 85.0, 80.0],
            Chrcc => [38.0, 95.0, 110.0, 90.0],
            Oncocytoma => [38.0, 135.0, 125.0, 95.0],
            CentralScar => [32.0, 45.0, 60.0, 75.0],
            AmlFat => [-90.0; 4],
            AmlSoft => [42.0, 95.0, 100.0, 80.0],
            AmlFatPoor => [48.0, 115.0, 100.0, 75.0],
            CystFluid => [8.0, 10.0, 11.0, 11.0],
            CystHyperdense => [80.0, 82.0, 83.0, 83.0],
            CystWall => [35.0, 100.0, 110.0, 100.0],
        }
    }

    /// Tissues whose value is the same in every phase and is not jittered per case.
    fn is_fixed(self) -> bool {
        let t = self.typical_hu();
        t.iter().all(|v| *v == t[0])
    }
}

/// Index of a known phase in the `[NC, arterial, portal, delayed]` tables (`Unknown` → portal).
pub fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::NonContrast => 0,
        Phase::Arterial => 1,
        Phase::Portal | Phase::Unknown => 2,
        Phase::Delayed => 3,
    }
}

/// One case's HU per tissue and phase.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseAttenuation {
    /// `hu[tissue][phase_index]`.
    hu: [[f64; 4]; TISSUE_COUNT],
    /// The patient's bolus factor (1 = typical enhancement).
    pub bolus_factor: f64,
}

impl CaseAttenuation {
    /// The literature values unchanged.
    pub fn typical() -> Self {
        let mut hu = [[0.0; 4]; TISSUE_COUNT];
        for t in Tissue::ALL {
            hu[t.index()] = t.typical_hu();
        }
        Self {
            hu,
            bolus_factor: 1.0,
        }
    }

    /// Per-case values: non-contrast ± 4 HU (fixed tissues ± 8 HU for fat, none for air and
    /// bone), enhancement (phase − non-contrast) × bolus factor N(1, 0.08) clamped to
    /// [0.85, 1.15] × per-tissue factor N(1, 0.06) clamped to [0.85, 1.15] (none for blood;
    /// one shared by cortex and medulla).
    pub fn draw(rng: &mut Rng) -> Self {
        let bolus = rng.normal_clamped(1.0, 0.08, 0.85, 1.15);
        // Renal perfusion is one draw for cortex and medulla, so their arterial-phase
        // differentiation survives the jitter.
        let renal_factor = rng.normal_clamped(1.0, 0.06, 0.85, 1.15);
        let renal_nc_shift = rng.normal_clamped(0.0, 4.0, -8.0, 8.0);
        let mut hu = [[0.0; 4]; TISSUE_COUNT];
        for t in Tissue::ALL {
            let typ = t.typical_hu();
            let mut tissue_factor = rng.normal_clamped(1.0, 0.06, 0.85, 1.15);
            let mut nc_shift = rng.normal_clamped(0.0, 4.0, -8.0, 8.0);
            match t {
                // Blood follows the bolus only: its enhancement defines the phase.
                Tissue::ArterialBlood | Tissue::RenalVeinBlood | Tissue::CavalBlood => {
                    tissue_factor = 1.0
                }
                Tissue::RenalCortex | Tissue::RenalMedulla => {
                    tissue_factor = renal_factor;
                    nc_shift = renal_nc_shift;
                }
                _ => {}
            }
            if t.is_fixed() {
                let shift = match t {
                    Tissue::Fat | Tissue::AmlFat | Tissue::SinusFat => nc_shift * 2.0,
                    Tissue::Csf | Tissue::BowelFluid => nc_shift,
                    _ => 0.0,
                };
                hu[t.index()] = typ.map(|v| v + shift);
                continue;
            }
            let nc = typ[0] + nc_shift;
            hu[t.index()] = [0, 1, 2, 3].map(|p| {
                if p == 0 {
                    nc
                } else {
                    nc + (typ[p] - typ[0]) * bolus * tissue_factor
                }
            });
        }
        Self {
            hu,
            bolus_factor: bolus,
        }
    }

    pub fn hu(&self, tissue: Tissue, phase: Phase) -> f64 {
        self.hu[tissue.index()][phase_index(phase)]
    }

    /// The per-phase row of one tissue.
    pub fn row(&self, tissue: Tissue) -> [f64; 4] {
        self.hu[tissue.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_tissue_in_index_order() {
        for (i, t) in Tissue::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }

    /// Radiological facts the table must keep whatever the per-case draw.
    #[test]
    fn drawn_values_keep_the_radiological_facts() {
        for seed in 0..2000 {
            let a = CaseAttenuation::draw(&mut Rng::new(seed));
            let h = |t, p| a.hu(t, p);
            use Phase::*;
            use Tissue::*;
            // Corticomedullary differentiation in the arterial phase only.
            assert!(h(RenalCortex, Arterial) - h(RenalMedulla, Arterial) > 60.0);
            assert!((h(RenalCortex, Portal) - h(RenalMedulla, Portal)).abs() < 40.0);
            // Aorta inside the ranges nephrod's phase detector uses for each phase.
            assert!(h(ArterialBlood, NonContrast) < 80.0);
            assert!(h(ArterialBlood, Arterial) >= 230.0);
            assert!((150.0..230.0).contains(&h(ArterialBlood, Portal)));
            assert!((80.0..150.0).contains(&h(ArterialBlood, Delayed)));
            // Excreted contrast in the delayed phase only.
            assert!(h(Urine, Delayed) > 300.0 && h(Urine, Portal) < 30.0);
            // Solid lesions enhance by > 20 HU, cysts do not (Bosniak 2019 threshold).
            for t in [CcrccSolid, Prcc, Chrcc, Oncocytoma, AmlSoft, AmlFatPoor] {
                assert!(h(t, Portal) - h(t, NonContrast) > 20.0, "{t:?}");
            }
            for t in [CystFluid, CystHyperdense] {
                assert!(h(t, Portal) - h(t, NonContrast) < 10.0, "{t:?}");
            }
            assert!((-9.0..=20.0).contains(&h(CystFluid, NonContrast)));
            assert!(h(CystHyperdense, NonContrast) >= 70.0);
            // Macroscopic fat.
            assert!(h(AmlFat, NonContrast) < -20.0);
            // Clear-cell enhances more than papillary in the corticomedullary phase.
            assert!(h(CcrccSolid, Arterial) > h(Prcc, Arterial) + 40.0);
        }
    }
}
