//! How one synthetic study was acquired: which phases, when, on which grid, and how the
//! patient moved between them.
//!
//! # Transforms
//! Each phase has an affine map `T = [L | t]` from the **reference phase's** LPS mm (the
//! anatomy frame) to **this phase's** LPS mm: the same anatomical point sits at `x` in the
//! reference phase and at `L·x + t` in this phase. The reference phase is portal if acquired,
//! otherwise arterial (the method's rule); its transform is the identity. Motion is
//! breathing-like: mostly cranio-caudal (up to ±15 mm), a few mm in-plane, up to 2° of rotation,
//! and for "affine" cases up to ~2 % of scaling and shear.
//!
//! # Grids
//! Every phase covers both kidneys and all lesions with a random margin. `Full` studies are
//! 512² with 0.6–0.9 mm pixels (wider when the body needs it) and 1–5 mm slices; `Small` studies
//! are 128² with 2.4–3.2 mm pixels and 3–5 mm slices (fast, for tests and the demo). Slice
//! spacing equals slice thickness. Direction matrices are proper rotations (det +1), so a
//! DICOM reader that orders slices along row × column reproduces the grid exactly.

use serde::Serialize;

use super::anatomy::Anatomy;
use super::rng::Rng;
use super::shapes::{add, inverse, mul_mm, mul_mv, rotation_xyz, sub, Aabb, Mat3, Vec3, IDENTITY};
use crate::dicom::phase::Phase;
use crate::volume::Geometry;

/// Study size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StudySize {
    /// 128² pixels, 3–5 mm slices.
    Small,
    /// 512² pixels at 0.6–0.9 mm, 1–5 mm slices.
    Full,
}

/// Choices that shape acquisitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcquisitionOptions {
    pub size: StudySize,
    /// Draw feet-first, prone-like and slightly oblique image orientations as well as the
    /// standard head-first supine axial one.
    pub orientation_variants: bool,
    /// Force all four phases (demo and phase tests) instead of drawing 2–4.
    pub all_phases: bool,
}

impl Default for AcquisitionOptions {
    fn default() -> Self {
        Self {
            size: StudySize::Small,
            orientation_variants: false,
            all_phases: false,
        }
    }
}

/// An affine map between LPS frames: `y = linear · x + translation`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub linear: Mat3,
    pub translation: Vec3,
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        linear: IDENTITY,
        translation: [0.0; 3],
    };

    pub fn apply(&self, x: Vec3) -> Vec3 {
        add(mul_mv(&self.linear, x), self.translation)
    }

    /// The inverse map; `None` when the linear part is singular.
    pub fn inverse(&self) -> Option<Affine> {
        let li = inverse(&self.linear)?;
        let t = mul_mv(&li, self.translation);
        Some(Affine {
            linear: li,
            translation: [-t[0], -t[1], -t[2]],
        })
    }

    /// Row-major 4×4 homogeneous matrix.
    pub fn to_matrix(&self) -> [[f64; 4]; 4] {
        let l = &self.linear;
        let t = self.translation;
        [
            [l[0][0], l[0][1], l[0][2], t[0]],
            [l[1][0], l[1][1], l[1][2], t[1]],
            [l[2][0], l[2][1], l[2][2], t[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    pub fn determinant(&self) -> f64 {
        crate::volume::geometry::det3(&self.linear)
    }
}

/// One acquired phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseAcquisition {
    pub phase: Phase,
    /// Reference phase LPS mm → this phase's LPS mm.
    pub from_reference: Affine,
    pub geometry: Geometry,
    pub dims: [usize; 3],
    pub slice_thickness_mm: f64,
    /// Standard deviation of the added image noise, HU.
    pub noise_sd_hu: f64,
    /// Seconds after the start of contrast injection (negative before it).
    pub seconds_after_injection: f64,
    pub series_description: String,
    pub series_number: i32,
    /// Key of this phase's noise field.
    pub noise_key: u64,
}

/// The acquisitions of one study.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquisition {
    pub phases: Vec<PhaseAcquisition>,
    pub reference: Phase,
    /// Seconds after midnight when contrast injection started.
    pub injection_time_of_day_s: f64,
    /// DA text.
    pub study_date: String,
    pub contrast_agent: String,
}

/// Phase sets and their draw weights (every set holds portal or arterial: a reference).
const PHASE_SETS: [(&[Phase], f64); 9] = {
    use Phase::*;
    [
        (&[NonContrast, Arterial, Portal, Delayed], 0.40),
        (&[NonContrast, Arterial, Portal], 0.12),
        (&[NonContrast, Portal, Delayed], 0.10),
        (&[Arterial, Portal, Delayed], 0.10),
        (&[NonContrast, Arterial, Delayed], 0.03),
        (&[Arterial, Portal], 0.08),
        (&[NonContrast, Portal], 0.08),
        (&[Portal, Delayed], 0.05),
        (&[NonContrast, Arterial], 0.04),
    ]
};

fn descriptions(phase: Phase) -> &'static [&'static str] {
    match phase {
        Phase::NonContrast => &[
            "ABD NON CON",
            "Non-contrast 5.0 B30f",
            "WO CONTRAST",
            "Native Abdomen",
            "NCCT KIDNEYS",
            "PRE",
        ],
        Phase::Arterial => &[
            "ARTERIAL",
            "Corticomedullary",
            "CM phase ART",
            "Abdomen Arterial 1.0 B30f",
            "Early Arterial",
        ],
        Phase::Portal | Phase::Unknown => &[
            "PORTAL VENOUS",
            "Nephrographic",
            "NEPHRO 90s",
            "PV 2.5mm",
            "Venous Abdomen",
        ],
        Phase::Delayed => &[
            "DELAYED",
            "EXCRETORY 5 min",
            "Delay 8 min",
            "Excretory phase",
            "UROGRAM DELAY",
        ],
    }
}

/// Draws the acquisitions of one study of `anatomy`.
pub fn draw(rng: &mut Rng, anatomy: &Anatomy, opts: &AcquisitionOptions) -> Acquisition {
    let weights: Vec<f64> = PHASE_SETS.iter().map(|(_, w)| *w).collect();
    let set: &[Phase] = if opts.all_phases {
        PHASE_SETS[0].0
    } else {
        PHASE_SETS[rng.weighted(&weights)].0
    };
    let reference = if set.contains(&Phase::Portal) {
        Phase::Portal
    } else {
        Phase::Arterial
    };
    let injection = rng.range(7.5 * 3600.0, 18.0 * 3600.0);
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(12);
    let study_date = format!("2026{month:02}{day:02}");
    let renal = anatomy.renal_bounds().unwrap_or(Aabb {
        min: [-100.0, -50.0, -80.0],
        max: [100.0, 100.0, 80.0],
    });
    let affine_case = rng.chance(0.5);
    // In-plane grid shared by the study (a scanner keeps its FOV for a protocol), per phase
    // slice thickness.
    let (n_inplane, spacing_lo, spacing_hi, thicknesses): (usize, f64, f64, &[f64]) =
        match opts.size {
            StudySize::Small => (128, 2.4, 3.2, &[3.0, 4.0, 5.0]),
            StudySize::Full => (512, 0.6, 0.9, &[1.0, 1.25, 2.0, 2.5, 3.0, 5.0]),
        };
    let needed = (2.0 * anatomy.body_rx * 1.03 + 20.0) / n_inplane as f64;
    let lo = spacing_lo.max(needed).min(spacing_hi);
    let pixel = (rng.range(lo, spacing_hi.max(lo)) * 1000.0).round() / 1000.0;
    let sigma0 = rng.range(9.0, 14.0);
    let direction = if opts.orientation_variants {
        draw_direction(rng)
    } else {
        IDENTITY
    };
    let mut phases = Vec::new();
    for (n, &phase) in set.iter().enumerate() {
        let from_reference = if phase == reference {
            Affine::IDENTITY
        } else {
            draw_motion(rng, affine_case)
        };
        let thickness = if phase == Phase::NonContrast && rng.chance(0.5) {
            *thicknesses.last().unwrap_or(&5.0)
        } else {
            thicknesses[rng.below(thicknesses.len())]
        };
        // Cover the renal region as this phase sees it, plus a margin.
        let corners: Vec<Vec3> = renal
            .corners()
            .iter()
            .map(|c| from_reference.apply(*c))
            .collect();
        let seen = Aabb::from_points(&corners).unwrap_or(renal);
        let z_lo = seen.min[2] - rng.range(15.0, 40.0);
        let z_hi = seen.max[2] + rng.range(15.0, 40.0);
        let nk = ((z_hi - z_lo) / thickness).ceil() as usize + 1;
        let body_centre = from_reference.apply([0.0, 0.0, (z_lo + z_hi) / 2.0]);
        let centre = [
            body_centre[0] + rng.range(-10.0, 10.0),
            body_centre[1] + rng.range(-15.0, 15.0),
            (z_lo + z_hi) / 2.0,
        ];
        let dims = [n_inplane, n_inplane, nk];
        let spacing = [pixel, pixel, thickness];
        let half = [0, 1, 2].map(|a| (dims[a] as f64 - 1.0) / 2.0 * spacing[a]);
        let origin = sub(centre, mul_mv(&direction, half));
        let geometry = Geometry {
            origin_mm: origin,
            spacing_mm: spacing,
            direction,
        };
        let seconds_after_injection = match phase {
            Phase::NonContrast => -rng.range(60.0, 240.0),
            Phase::Arterial => rng.range(30.0, 42.0),
            Phase::Portal | Phase::Unknown => rng.range(80.0, 105.0),
            Phase::Delayed => rng.range(240.0, 540.0),
        };
        let pool = descriptions(phase);
        let mut description = pool[rng.below(pool.len())].to_string();
        if rng.chance(0.3) {
            description = format!("{description} {thickness}mm");
        }
        let noise_sd_hu = (sigma0 * (3.0 / thickness).sqrt() * (0.78 / pixel)).max(4.0);
        phases.push(PhaseAcquisition {
            phase,
            from_reference,
            geometry,
            dims,
            slice_thickness_mm: thickness,
            noise_sd_hu,
            seconds_after_injection,
            series_description: description,
            series_number: 2 + n as i32,
            noise_key: rng.next_u64(),
        });
    }
    Acquisition {
        phases,
        reference,
        injection_time_of_day_s: injection,
        study_date,
        contrast_agent: ["Iohexol 350", "Iopamidol 370", "Iodixanol 320"][rng.below(3)].to_string(),
    }
}

/// Breathing-like motion: ±15 mm cranio-caudal, a few mm in-plane, ≤ 2° rotations; affine
/// cases add ≤ ~2 % scaling and ≤ 1 % shear.
fn draw_motion(rng: &mut Rng, affine: bool) -> Affine {
    let deg = std::f64::consts::PI / 180.0;
    let rot = rotation_xyz(
        rng.range(-2.0, 2.0) * deg,
        rng.range(-1.5, 1.5) * deg,
        rng.range(-1.5, 1.5) * deg,
    );
    let linear = if affine {
        let s = [0, 1, 2].map(|_| 1.0 + rng.normal_clamped(0.0, 0.008, -0.02, 0.02));
        let shear = rng.normal_clamped(0.0, 0.005, -0.01, 0.01);
        let m: Mat3 = [[s[0], shear, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]];
        mul_mm(&rot, &m)
    } else {
        rot
    };
    Affine {
        linear,
        translation: [
            rng.normal_clamped(0.0, 2.0, -5.0, 5.0),
            rng.normal_clamped(0.0, 2.0, -5.0, 5.0),
            rng.range(-15.0, 15.0),
        ],
    }
}

/// Image axes: standard axial, feet-first, prone-like or slightly oblique (all det +1).
fn draw_direction(rng: &mut Rng) -> Mat3 {
    match rng.weighted(&[0.55, 0.15, 0.1, 0.2]) {
        0 => IDENTITY,
        // Feet first supine: rows run to patient right, slices towards the feet.
        1 => [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]],
        // Prone: rows to patient right, columns anterior.
        2 => [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        _ => {
            let deg = std::f64::consts::PI / 180.0;
            rotation_xyz(
                rng.range(-4.0, 4.0) * deg,
                rng.range(-4.0, 4.0) * deg,
                rng.range(-3.0, 3.0) * deg,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_round_trips() {
        let mut rng = Rng::new(5);
        let a = draw_motion(&mut rng, true);
        let inv = a.inverse().unwrap();
        let x = [12.0, -40.0, 33.0];
        let y = inv.apply(a.apply(x));
        for i in 0..3 {
            assert!((x[i] - y[i]).abs() < 1e-9);
        }
    }

    #[test]
    fn directions_are_proper_rotations() {
        let mut rng = Rng::new(9);
        for _ in 0..50 {
            let d = draw_direction(&mut rng);
            assert!((crate::volume::geometry::det3(&d) - 1.0).abs() < 1e-9);
        }
    }
}
