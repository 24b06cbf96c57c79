//! One synthetic patient: the shapes of the abdomen, kidneys and renal masses.
//!
//! # Frame and units
//! Everything here is in the **anatomy frame**: LPS millimetres of the study's reference phase
//! (+x patient left, +y posterior, +z head). The body's axis is the z axis, the centre of the
//! L2 vertebral body is at z = 0, and the kidneys lie at about L1–L3. A phase acquired with
//! misalignment sees this anatomy through its transform (see `acquisition`).
//!
//! # Labels
//! [`Anatomy::sample`] returns the tissue at a point (for attenuation) and the segmentation
//! label (0 background, 1 kidney, 2 tumour, 3 cyst). The kidney label covers everything inside
//! the kidney's outer surface — cortex, medulla, renal sinus fat and the intrarenal collecting
//! system — except the hilar notch; a lesion's label overrides the kidney's everywhere inside
//! the lesion, including the part that grows out of the kidney. Lesions never overlap.

mod draw;

use serde::Serialize;

pub use draw::{draw, AnatomyOptions, LesionMix};

use super::attenuation::Tissue;
use super::rng::value_noise;
use super::shapes::{Aabb, Capsule, Ellipsoid, Mat3, Vec3, IDENTITY};

/// Segmentation labels (nnU-Net dataset order).
pub const LABEL_BACKGROUND: u8 = 0;
pub const LABEL_KIDNEY: u8 = 1;
pub const LABEL_TUMOR: u8 = 2;
pub const LABEL_CYST: u8 = 3;

/// Patient side. Left is +x in LPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// +1 for left (+x), −1 for right.
    pub fn sign(self) -> f64 {
        match self {
            Side::Left => 1.0,
            Side::Right => -1.0,
        }
    }
}

/// Where along the kidney's long axis a lesion's centre lies (thirds of the long axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pole {
    Upper,
    Interpolar,
    Lower,
}

/// Growth pattern: endophytic lesions lie wholly inside the kidney outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    Endophytic,
    Exophytic,
}

/// The renal mass classes the phantom draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LesionClass {
    Ccrcc,
    Prcc,
    Chrcc,
    Oncocytoma,
    Aml,
    Cyst,
}

impl LesionClass {
    /// The serialised name (`ccrcc`, `prcc`, `chrcc`, `oncocytoma`, `aml`, `cyst`).
    pub fn as_str(self) -> &'static str {
        match self {
            LesionClass::Ccrcc => "ccrcc",
            LesionClass::Prcc => "prcc",
            LesionClass::Chrcc => "chrcc",
            LesionClass::Oncocytoma => "oncocytoma",
            LesionClass::Aml => "aml",
            LesionClass::Cyst => "cyst",
        }
    }

    pub fn label(self) -> u8 {
        match self {
            LesionClass::Cyst => LABEL_CYST,
            _ => LABEL_TUMOR,
        }
    }
}

/// Class-specific internal structure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LesionInterior {
    /// Solid, heterogeneous enhancement; central necrosis inside `necrosis_radius` (fraction of
    /// the lesion's normalised radius; 0 = none).
    ClearCell {
        necrosis_radius: f64,
    },
    Papillary,
    Chromophobe,
    /// Central stellate scar when `scar` is true.
    Oncocytoma {
        scar: bool,
    },
    /// Fat-rich (macroscopic fat in about `fat_fraction` of the volume) or fat-poor.
    Aml {
        fat_poor: bool,
        fat_fraction: f64,
    },
    /// Bosniak I (thin wall) or II (hyperattenuating, or with `septa` thin septa).
    Cyst {
        bosniak: u8,
        hyperdense: bool,
        septa: u8,
    },
}

/// One renal mass.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesion {
    pub class: LesionClass,
    pub interior: LesionInterior,
    pub side: Side,
    pub shape: Ellipsoid,
    /// Septum plane normals (lesion-local), for septated cysts.
    pub septum_normals: Vec<Vec3>,
    pub texture_key: u64,
}

/// A kidney with its internal structure, in its own local frame
/// (`u` long axis towards the upper pole, `v` lateral, `w` = u × v).
#[derive(Debug, Clone, PartialEq)]
pub struct Kidney {
    pub side: Side,
    /// Outer surface.
    pub envelope: Ellipsoid,
    pub cortex_mm: f64,
    pub sinus: Ellipsoid,
    pub pelvis: Ellipsoid,
    pub calyces: Vec<Capsule>,
    pub artery: Capsule,
    pub vein: Capsule,
    pub ureter: Capsule,
    aabb: Aabb,
}

impl Kidney {
    /// True in the hilar notch (outside the kidney although inside the envelope ellipsoid).
    fn in_hilum(&self, l: Vec3) -> bool {
        let [a, b, c] = self.envelope.semi_axes_mm;
        l[1] < -0.45 * b && (l[0] / (0.38 * a)).powi(2) + (l[2] / (0.5 * c)).powi(2) < 1.0
    }

    /// True when `p` lies inside the kidney's outer surface (the kidney label before lesions).
    pub fn contains(&self, p: Vec3) -> bool {
        if !self.aabb.contains(p) {
            return false;
        }
        let l = self.envelope.local(p);
        let q: f64 = (0..3)
            .map(|a| (l[a] / self.envelope.semi_axes_mm[a]).powi(2))
            .sum();
        q <= 1.0 && !self.in_hilum(l)
    }

    /// Tissue inside the kidney (call only where [`Kidney::contains`] holds).
    fn tissue(&self, p: Vec3) -> Tissue {
        if self.pelvis.contains(p) || self.calyces.iter().any(|c| c.contains(p)) {
            return Tissue::Urine;
        }
        let l = self.envelope.local(p);
        let s = self.envelope.semi_axes_mm;
        let t = self.cortex_mm;
        let inner: f64 = (0..3).map(|a| (l[a] / (s[a] - t)).powi(2)).sum();
        if inner > 1.0 {
            return Tissue::RenalCortex;
        }
        if self.sinus.contains(p) {
            return Tissue::SinusFat;
        }
        // Pyramids separated by columns of Bertin (cortex reaching inwards).
        let theta = (l[2] / s[2]).atan2(l[1] / s[1]);
        let psi = l[0] / s[0];
        if (6.0 * theta).cos() + (3.0 * std::f64::consts::PI * psi).cos() > -0.7 {
            Tissue::RenalMedulla
        } else {
            Tissue::RenalCortex
        }
    }

    /// The pole of a point by its position along the long axis.
    pub fn pole_of(&self, p: Vec3) -> Pole {
        let u = self.envelope.local(p)[0] / self.envelope.semi_axes_mm[0];
        if u > 1.0 / 3.0 {
            Pole::Upper
        } else if u < -1.0 / 3.0 {
            Pole::Lower
        } else {
            Pole::Interpolar
        }
    }

    pub fn aabb(&self) -> Aabb {
        self.aabb
    }
}

/// A tube along a polyline of capsules with a wall (bowel).
#[derive(Debug, Clone, PartialEq)]
pub struct BowelLoop {
    pub segments: Vec<Capsule>,
    pub wall_mm: f64,
    /// Gas fills the anterior (non-dependent) part of the lumen above this fraction.
    pub gas: bool,
    aabb: Aabb,
}

/// Elliptic cylinder along z (body outline, muscles, IVC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub cx: f64,
    pub cy: f64,
    pub rx: f64,
    pub ry: f64,
    pub z0: f64,
    pub z1: f64,
}

impl Column {
    fn r2(&self, p: Vec3) -> f64 {
        ((p[0] - self.cx) / self.rx).powi(2) + ((p[1] - self.cy) / self.ry).powi(2)
    }
    fn contains(&self, p: Vec3) -> bool {
        p[2] >= self.z0 && p[2] <= self.z1 && self.r2(p) <= 1.0
    }
}

/// What the anatomy holds at a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub tissue: Tissue,
    pub label: u8,
    /// 1-based lesion number, 0 outside lesions.
    pub lesion: u8,
    /// Multiplier on the tissue's enhancement (heterogeneity); 1 = homogeneous.
    pub enhancement_scale: f64,
}

/// A whole synthetic patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Anatomy {
    /// Body outline semi-axes (mm) at z = 0.
    pub body_rx: f64,
    pub body_ry: f64,
    pub subcutaneous_fat_mm: f64,
    pub spine_y: f64,
    pub aorta: Capsule,
    pub ivc: Column,
    pub liver: Ellipsoid,
    pub spleen: Ellipsoid,
    pub psoas: [Capsule; 2],
    pub psoas_growth: f64,
    pub paraspinal: [Column; 2],
    pub bowel: Vec<BowelLoop>,
    pub rib_levels: Vec<f64>,
    pub kidneys: Vec<Kidney>,
    pub lesions: Vec<Lesion>,
    pub texture_key: u64,
}

/// Vertebral period (body + disc) and disc height, mm.
const VERTEBRA_PERIOD_MM: f64 = 36.0;
const DISC_MM: f64 = 8.0;

impl Anatomy {
    fn body_scale(&self, z: f64) -> f64 {
        1.0 + 0.03 * (z / 90.0).sin()
    }

    /// Tissue and label at `p` (anatomy frame, mm).
    pub fn sample(&self, p: Vec3) -> Sample {
        let plain = |tissue| Sample {
            tissue,
            label: LABEL_BACKGROUND,
            lesion: 0,
            enhancement_scale: 1.0,
        };
        for (n, lesion) in self.lesions.iter().enumerate() {
            if let Some(s) = lesion.sample(p) {
                return Sample {
                    lesion: n as u8 + 1,
                    ..s
                };
            }
        }
        for k in &self.kidneys {
            if k.contains(p) {
                return Sample {
                    tissue: k.tissue(p),
                    label: LABEL_KIDNEY,
                    lesion: 0,
                    enhancement_scale: 1.0,
                };
            }
        }
        plain(self.background_tissue(p))
    }

    /// Everything but kidneys and lesions.
    fn background_tissue(&self, p: Vec3) -> Tissue {
        let s = self.body_scale(p[2]);
        let (rx, ry) = (self.body_rx * s, self.body_ry * s);
        let body = (p[0] / rx).powi(2) + (p[1] / ry).powi(2);
        if body > 1.0 {
            return Tissue::Air;
        }
        let f = self.subcutaneous_fat_mm;
        let inner = (p[0] / (rx - f)).powi(2) + (p[1] / (ry - f)).powi(2);
        if inner > 1.0 {
            return Tissue::Fat;
        }
        let wall = (p[0] / (rx - f - 10.0)).powi(2) + (p[1] / (ry - f - 10.0)).powi(2);
        if wall > 1.0 {
            return Tissue::Muscle;
        }
        if let Some(t) = self.bone(p) {
            return t;
        }
        if self.aorta.contains(p) {
            return Tissue::ArterialBlood;
        }
        if self.ivc.contains(p) {
            return Tissue::CavalBlood;
        }
        for k in &self.kidneys {
            if k.artery.contains(p) {
                return Tissue::ArterialBlood;
            }
            if k.vein.contains(p) {
                return Tissue::RenalVeinBlood;
            }
            if k.ureter.contains(p) {
                return Tissue::Urine;
            }
        }
        for ps in &self.psoas {
            let grow = (-(p[2] - ps.a[2]) * self.psoas_growth).max(0.0);
            let c = Capsule {
                radius_mm: ps.radius_mm + grow,
                ..*ps
            };
            if p[2] <= ps.a[2] && p[2] >= ps.b[2] && c.contains(p) {
                return Tissue::Muscle;
            }
        }
        if self.paraspinal.iter().any(|c| c.contains(p)) {
            return Tissue::Muscle;
        }
        if self.liver.contains(p) {
            return Tissue::Liver;
        }
        if self.spleen.contains(p) {
            return Tissue::Spleen;
        }
        for b in &self.bowel {
            if let Some(t) = b.tissue(p) {
                return t;
            }
        }
        Tissue::Fat
    }

    /// Vertebrae (body with cortical rim, disc, canal, posterior arch) and ribs.
    fn bone(&self, p: Vec3) -> Option<Tissue> {
        let y0 = self.spine_y;
        let dx = p[0];
        let dy = p[1] - y0;
        if dx.abs() < 45.0 && dy > -25.0 && dy < 70.0 {
            let phase = (p[2] + VERTEBRA_PERIOD_MM / 2.0).rem_euclid(VERTEBRA_PERIOD_MM);
            let in_disc = phase < DISC_MM;
            let body = (dx / 22.0).powi(2) + (dy / 18.0).powi(2);
            if body <= 1.0 {
                return Some(if in_disc {
                    Tissue::Disc
                } else if body > 0.78 {
                    Tissue::CorticalBone
                } else {
                    Tissue::CancellousBone
                });
            }
            // Canal and arch behind the body.
            let canal = (dx / 9.0).powi(2) + ((dy - 27.0) / 8.0).powi(2);
            if canal <= 1.0 {
                return Some(Tissue::Csf);
            }
            if !in_disc {
                let arch = (dx / 16.0).powi(2) + ((dy - 29.0) / 14.0).powi(2);
                if arch <= 1.0 {
                    return Some(Tissue::CorticalBone);
                }
                // Spinous process and transverse processes.
                if dx.abs() < 4.0 && dy > 29.0 && dy < 62.0 {
                    return Some(Tissue::CorticalBone);
                }
                if dx.abs() < 40.0 && (dy - 24.0).abs() < 4.0 && phase > 14.0 && phase < 24.0 {
                    return Some(Tissue::CorticalBone);
                }
            }
        }
        // Ribs: bands along an ellipse inside the body wall that descend ~40 mm per radian
        // from the costovertebral joint (|θ| ≈ 0.45 rad from the posterior midline) towards
        // the anterior-lateral wall (|θ| ≈ 2 rad); one axial slice therefore cuts each rib
        // over a short arc, as on real CT.
        let s = self.body_scale(p[2]);
        let (rx, ry) = (
            self.body_rx * s - self.subcutaneous_fat_mm - 14.0,
            self.body_ry * s - self.subcutaneous_fat_mm - 14.0,
        );
        let theta = p[0].atan2(p[1]).abs();
        if (0.45..2.0).contains(&theta) {
            let ring = ((p[0] / rx).powi(2) + (p[1] / ry).powi(2)).sqrt();
            let radial_mm = (ring - 1.0) * rx.min(ry);
            if radial_mm.abs() < 4.0 {
                for z in &self.rib_levels {
                    let zc = z - 40.0 * (theta - 0.45);
                    if (p[2] - zc).abs() < 5.0 {
                        return Some(Tissue::CorticalBone);
                    }
                }
            }
        }
        None
    }

    /// Bounds of both kidneys and every lesion (what an acquisition must cover).
    pub fn renal_bounds(&self) -> Option<Aabb> {
        let mut b: Option<Aabb> = None;
        for k in &self.kidneys {
            b = Some(b.map_or(k.aabb, |x| x.union(&k.aabb)));
        }
        for l in &self.lesions {
            let lb = l.shape.aabb();
            b = Some(b.map_or(lb, |x| x.union(&lb)));
        }
        b
    }

    /// Body outline semi-axes at z (mm).
    pub fn body_extent(&self, z: f64) -> (f64, f64) {
        let s = self.body_scale(z);
        (self.body_rx * s, self.body_ry * s)
    }
}

impl Lesion {
    /// Tissue inside the lesion; `None` outside it.
    fn sample(&self, p: Vec3) -> Option<Sample> {
        let r2 = self.shape.radius2(p);
        if r2 > 1.0 {
            return None;
        }
        let rho = r2.sqrt();
        let local = self.shape.local(p);
        let noise = |scale_mm: f64| value_noise(self.texture_key, p, scale_mm);
        let mut enhancement_scale = 1.0;
        let tissue = match self.interior {
            LesionInterior::ClearCell { necrosis_radius } => {
                if necrosis_radius > 0.0 && rho + 0.18 * noise(5.0) < necrosis_radius {
                    Tissue::Necrosis
                } else {
                    enhancement_scale = 1.0 + 0.35 * noise(4.0);
                    Tissue::CcrccSolid
                }
            }
            LesionInterior::Papillary => {
                enhancement_scale = 1.0 + 0.08 * noise(4.0);
                Tissue::Prcc
            }
            LesionInterior::Chromophobe => {
                enhancement_scale = 1.0 + 0.1 * noise(5.0);
                Tissue::Chrcc
            }
            LesionInterior::Oncocytoma { scar } => {
                let angle = local[1].atan2(local[0]);
                let spoke = (3.0 * angle).sin().abs() < 0.12 && rho < 0.5;
                if scar && (rho < 0.18 || spoke) {
                    Tissue::CentralScar
                } else {
                    enhancement_scale = 1.0 + 0.08 * noise(4.0);
                    Tissue::Oncocytoma
                }
            }
            LesionInterior::Aml {
                fat_poor,
                fat_fraction,
            } => {
                if fat_poor {
                    Tissue::AmlFatPoor
                } else {
                    // Threshold of smooth noise chosen so about `fat_fraction` is fat.
                    let threshold = 1.0 - 2.0 * fat_fraction;
                    if noise(3.5) * 1.6 > threshold * 0.9 {
                        Tissue::AmlFat
                    } else {
                        Tissue::AmlSoft
                    }
                }
            }
            LesionInterior::Cyst {
                hyperdense, septa, ..
            } => {
                // Thin (0.8 mm) enhancing septa; the Bosniak I–II wall is imperceptibly
                // thin and not modelled.
                let septum = self
                    .septum_normals
                    .iter()
                    .take(septa as usize)
                    .any(|n| (n[0] * local[0] + n[1] * local[1] + n[2] * local[2]).abs() < 0.4);
                if septum {
                    Tissue::CystWall
                } else if hyperdense {
                    Tissue::CystHyperdense
                } else {
                    Tissue::CystFluid
                }
            }
        };
        Some(Sample {
            tissue,
            label: self.class.label(),
            lesion: 0,
            enhancement_scale,
        })
    }
}

impl BowelLoop {
    fn tissue(&self, p: Vec3) -> Option<Tissue> {
        if !self.aabb.contains(p) {
            return None;
        }
        let mut best = f64::INFINITY;
        let mut best_seg = None;
        for s in &self.segments {
            let d2 = s.distance2(p);
            if d2 < best {
                best = d2;
                best_seg = Some(s);
            }
        }
        let seg = best_seg?;
        let d = best.sqrt();
        if d > seg.radius_mm {
            return None;
        }
        if d > seg.radius_mm - self.wall_mm {
            return Some(Tissue::BowelWall);
        }
        // Gas rises anteriorly (−y): the anterior part of the lumen of gas-filled loops.
        let mid_y = (seg.a[1] + seg.b[1]) / 2.0;
        if self.gas && p[1] < mid_y - 0.2 * seg.radius_mm {
            Some(Tissue::BowelGas)
        } else {
            Some(Tissue::BowelFluid)
        }
    }
}

/// Fraction of a lesion's volume outside its kidney's outline, estimated on a regular
/// 24³ grid over the lesion's bounding box (deterministic).
pub fn exophytic_fraction(lesion: &Lesion, kidney: &Kidney) -> f64 {
    let bb = lesion.shape.aabb();
    let n = 24;
    let (mut inside, mut out) = (0usize, 0usize);
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                let f = |a: usize, t: usize| {
                    bb.min[a] + (bb.max[a] - bb.min[a]) * (t as f64 + 0.5) / n as f64
                };
                let p = [f(0, i), f(1, j), f(2, k)];
                if lesion.shape.contains(p) {
                    if kidney.contains(p) {
                        inside += 1;
                    } else {
                        out += 1;
                    }
                }
            }
        }
    }
    if inside + out == 0 {
        0.0
    } else {
        out as f64 / (inside + out) as f64
    }
}

/// Identity rotation re-exported for callers building shapes by hand.
pub const NO_ROTATION: Mat3 = IDENTITY;
