//! Random drawing of a patient: body habitus, organ positions, kidneys (size, tilt, position,
//! occasionally only one) and 0–3 renal masses (class, size 3 mm–8 cm, pole, endophytic or
//! exophytic), all in the anatomy frame (see the parent module). Every draw comes from the
//! case's [`Rng`] in a fixed order, so a seed always gives the same patient.

use super::super::rng::Rng;
use super::super::shapes::{
    add, mul_mm, mul_mv, rotation_xyz, scale, sub, Aabb, Capsule, Ellipsoid, Mat3, Vec3,
};
use super::{Anatomy, BowelLoop, Column, Kidney, Lesion, LesionClass, LesionInterior, Side};

/// How many kidneys and lesions to draw (the `nephrod phantom` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnatomyOptions {
    /// Probability that the patient has a single kidney.
    pub single_kidney_probability: f64,
    /// Probability of 0, 1, 2, 3 lesions.
    pub lesion_count_weights: [f64; 4],
    /// Draw weights of [ccRCC, pRCC, chRCC, oncocytoma, AML, cyst].
    pub class_weights: [f64; 6],
    /// Probability of a sub-5 mm lesion.
    pub tiny_lesion_probability: f64,
}

impl Default for AnatomyOptions {
    fn default() -> Self {
        Self {
            single_kidney_probability: 0.07,
            lesion_count_weights: [0.12, 0.45, 0.28, 0.15],
            class_weights: [0.3, 0.12, 0.08, 0.08, 0.12, 0.3],
            tiny_lesion_probability: 0.12,
        }
    }
}

/// Which lesions a run draws (`nephrod phantom --lesion-mix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LesionMix {
    /// The defaults above: a clinic-like mix (ccRCC and cysts most frequent, 12 % of studies
    /// without a lesion, 12 % of lesions under 5 mm).
    #[default]
    Clinic,
    /// For classifier training: 2–3 lesions per study, the five tumour subtypes equally likely
    /// (cysts rare), no sub-5 mm lesions.
    Balanced,
}

impl LesionMix {
    pub fn anatomy_options(self) -> AnatomyOptions {
        match self {
            LesionMix::Clinic => AnatomyOptions::default(),
            LesionMix::Balanced => AnatomyOptions {
                lesion_count_weights: [0.0, 0.0, 0.5, 0.5],
                class_weights: [0.19, 0.19, 0.19, 0.19, 0.19, 0.05],
                tiny_lesion_probability: 0.0,
                ..AnatomyOptions::default()
            },
        }
    }
}

const CLASSES: [LesionClass; 6] = [
    LesionClass::Ccrcc,
    LesionClass::Prcc,
    LesionClass::Chrcc,
    LesionClass::Oncocytoma,
    LesionClass::Aml,
    LesionClass::Cyst,
];

/// Draws one patient.
pub fn draw(rng: &mut Rng, opts: &AnatomyOptions) -> Anatomy {
    let body_rx = rng.range(135.0, 175.0);
    let body_ry = rng.range(0.68, 0.8) * body_rx;
    let fat = rng.range(10.0, 32.0);
    let spine_y = body_ry - fat - rng.range(48.0, 58.0);
    let aorta_r = rng.range(9.0, 12.5);
    let aorta_x = rng.range(10.0, 18.0);
    let aorta_y = spine_y - 18.0 - aorta_r - rng.range(0.0, 5.0);
    let aorta = Capsule {
        a: [aorta_x, aorta_y, -400.0],
        b: [aorta_x, aorta_y, 400.0],
        radius_mm: aorta_r,
    };
    let ivc = Column {
        cx: -rng.range(20.0, 28.0),
        cy: spine_y - 28.0,
        rx: rng.range(10.0, 14.0),
        ry: rng.range(7.0, 10.0),
        z0: -400.0,
        z1: 400.0,
    };
    let inner_rx = body_rx - fat - 10.0;
    let inner_ry = body_ry - fat - 10.0;
    let liver = Ellipsoid::new(
        [
            -0.45 * inner_rx,
            rng.range(-15.0, 0.0),
            rng.range(75.0, 95.0),
        ],
        [0.55 * inner_rx, 0.8 * inner_ry, rng.range(70.0, 85.0)],
        rotation_xyz(0.0, rng.range(-0.15, 0.0), rng.range(-0.2, 0.1)),
    );
    let spleen = Ellipsoid::new(
        [0.6 * inner_rx, 0.3 * inner_ry, rng.range(45.0, 70.0)],
        [
            rng.range(18.0, 26.0),
            rng.range(40.0, 55.0),
            rng.range(40.0, 55.0),
        ],
        rotation_xyz(0.0, 0.0, rng.range(-0.6, -0.3)),
    );
    let psoas = [1.0, -1.0].map(|s: f64| Capsule {
        a: [s * 30.0, spine_y + 2.0, 60.0],
        b: [s * 42.0, spine_y - 4.0, -400.0],
        radius_mm: 5.0,
    });
    let paraspinal = [1.0, -1.0].map(|s: f64| Column {
        cx: s * 36.0,
        cy: spine_y + 44.0,
        rx: 26.0,
        ry: 19.0,
        z0: -400.0,
        z1: 400.0,
    });
    let rib_levels = (0..8).map(|n| 35.0 + 26.0 * n as f64).collect();
    let mut kidneys = Vec::new();
    let single = rng.chance(opts.single_kidney_probability);
    let lone_side = if rng.chance(0.5) {
        Side::Left
    } else {
        Side::Right
    };
    for side in [Side::Right, Side::Left] {
        if single && side != lone_side {
            continue;
        }
        kidneys.push(draw_kidney(rng, side, spine_y, single, &aorta, &ivc));
    }
    let bowel = draw_bowel(rng, inner_rx, inner_ry, spine_y);
    let mut anatomy = Anatomy {
        body_rx,
        body_ry,
        subcutaneous_fat_mm: fat,
        spine_y,
        aorta,
        ivc,
        liver,
        spleen,
        psoas,
        psoas_growth: 0.12,
        paraspinal,
        bowel,
        rib_levels,
        kidneys,
        lesions: Vec::new(),
        texture_key: rng.next_u64(),
    };
    let n_lesions = rng.weighted(&opts.lesion_count_weights);
    let mut attempts = 0;
    while anatomy.lesions.len() < n_lesions && attempts < 200 {
        attempts += 1;
        if let Some(l) = draw_lesion(rng, &anatomy, opts) {
            anatomy.lesions.push(l);
        }
    }
    anatomy
}

fn draw_kidney(
    rng: &mut Rng,
    side: Side,
    spine_y: f64,
    hypertrophic: bool,
    aorta: &Capsule,
    ivc: &Column,
) -> Kidney {
    let s = side.sign();
    let grow = if hypertrophic { 1.12 } else { 1.0 };
    let semi = [
        rng.range(48.0, 62.0) * grow,
        rng.range(25.0, 31.0) * grow,
        rng.range(20.0, 26.0) * grow,
    ];
    // The left kidney usually lies 1–2 cm higher than the right.
    let z = match side {
        Side::Left => rng.range(-5.0, 20.0),
        Side::Right => rng.range(-25.0, 0.0),
    };
    let centre = [
        s * rng.range(58.0, 75.0),
        spine_y + rng.range(-2.0, 12.0),
        z,
    ];
    // Local axes: u = up (+z), v = lateral (s·x), w = u × v.
    let base: Mat3 = [[0.0, s, 0.0], [0.0, 0.0, s], [1.0, 0.0, 0.0]];
    let axial = s * rng.range(0.3, 0.6); // hilum turned anteromedially
    let coronal = -s * rng.range(0.1, 0.3); // upper pole medial
    let sagittal = -rng.range(0.1, 0.4); // upper pole posterior
    let r = mul_mm(
        &rotation_xyz(0.0, coronal, 0.0),
        &mul_mm(
            &rotation_xyz(sagittal, 0.0, 0.0),
            &mul_mm(&rotation_xyz(0.0, 0.0, axial), &base),
        ),
    );
    let envelope = Ellipsoid::new(centre, semi, r);
    let to_world = |l: Vec3| add(centre, mul_mv(&r, l));
    let [a, b, c] = semi;
    let sinus = Ellipsoid::new(
        to_world([0.0, -0.3 * b, 0.0]),
        [0.55 * a, 0.42 * b, 0.45 * c],
        r,
    );
    let pelvis = Ellipsoid::new(
        to_world([0.0, -0.48 * b, 0.0]),
        [0.2 * a, 0.25 * b, 0.2 * c],
        r,
    );
    let hub = to_world([0.0, -0.35 * b, 0.0]);
    let calyx_r = rng.range(2.0, 3.2);
    let calyces = [
        [0.6 * a, -0.05 * b, 0.0],
        [-0.6 * a, -0.05 * b, 0.0],
        [0.05 * a, 0.12 * b, 0.15 * c],
        [0.3 * a, 0.0, -0.2 * c],
        [-0.3 * a, 0.0, 0.2 * c],
    ]
    .iter()
    .map(|l| Capsule {
        a: hub,
        b: to_world(*l),
        radius_mm: calyx_r,
    })
    .collect();
    let hilum_out = to_world([0.0, -1.25 * b, 0.0]);
    let artery = Capsule {
        a: to_world([0.05 * a, -0.6 * b, 0.15 * c]),
        // Renal arteries arise from the aorta, renal veins drain into the IVC.
        b: [aorta.a[0], aorta.a[1], centre[2] + 12.0],
        radius_mm: rng.range(2.5, 3.5),
    };
    let vein = Capsule {
        a: to_world([-0.05 * a, -0.6 * b, -0.15 * c]),
        b: [ivc.cx, ivc.cy, centre[2] + 4.0],
        radius_mm: rng.range(3.5, 5.0),
    };
    let ureter = Capsule {
        a: hilum_out,
        b: [s * 40.0, spine_y - 10.0, centre[2] - 160.0],
        radius_mm: 2.5,
    };
    let mut aabb = envelope.aabb();
    aabb = aabb.grown(0.5);
    Kidney {
        side,
        envelope,
        cortex_mm: rng.range(5.0, 8.0),
        sinus,
        pelvis,
        calyces,
        artery,
        vein,
        ureter,
        aabb,
    }
}

fn draw_bowel(rng: &mut Rng, inner_rx: f64, inner_ry: f64, spine_y: f64) -> Vec<BowelLoop> {
    let mut loops = Vec::new();
    let mk = |segments: Vec<Capsule>, wall_mm: f64, gas: bool| {
        let aabb = segments
            .iter()
            .map(|s| s.aabb())
            .reduce(|a, b| a.union(&b))
            .unwrap_or(Aabb {
                min: [0.0; 3],
                max: [0.0; 3],
            });
        BowelLoop {
            segments,
            wall_mm,
            gas,
            aabb,
        }
    };
    // Colon frame: ascending (right), transverse (anterior, high), descending (left).
    let cr = rng.range(16.0, 22.0);
    let front = -0.55 * inner_ry;
    let asc_x = -0.72 * inner_rx;
    let desc_x = 0.72 * inner_rx;
    let lat_y = 0.1 * inner_ry;
    let top = rng.range(60.0, 90.0);
    let colon = vec![
        Capsule {
            a: [asc_x, lat_y, -250.0],
            b: [asc_x, lat_y, top - 20.0],
            radius_mm: cr,
        },
        Capsule {
            a: [asc_x, lat_y, top - 20.0],
            b: [0.0, front, top],
            radius_mm: cr,
        },
        Capsule {
            a: [0.0, front, top],
            b: [desc_x, lat_y, top + 10.0],
            radius_mm: cr,
        },
        Capsule {
            a: [desc_x, lat_y, top + 10.0],
            b: [desc_x, lat_y, -250.0],
            radius_mm: cr * 0.8,
        },
    ];
    loops.push(mk(colon, 3.0, true));
    // Small-bowel loops: short random walks in the anterior mid-abdomen.
    let n = 3 + rng.below(4);
    for _ in 0..n {
        let r = rng.range(10.0, 15.0);
        let mut p = [
            rng.range(-0.45, 0.45) * inner_rx,
            rng.range(-0.75, -0.2) * inner_ry,
            rng.range(-120.0, 20.0),
        ];
        let mut segs = Vec::new();
        for _ in 0..5 {
            let step = [
                rng.range(-35.0, 35.0),
                rng.range(-10.0, 10.0),
                rng.range(-30.0, 30.0),
            ];
            let mut q = add(p, step);
            q[0] = q[0].clamp(-0.55 * inner_rx, 0.55 * inner_rx);
            q[1] = q[1].clamp(-0.8 * inner_ry, spine_y - 45.0);
            segs.push(Capsule {
                a: p,
                b: q,
                radius_mm: r,
            });
            p = q;
        }
        let gas = rng.chance(0.4);
        loops.push(mk(segs, 2.5, gas));
    }
    loops
}

fn draw_lesion(rng: &mut Rng, anatomy: &Anatomy, opts: &AnatomyOptions) -> Option<Lesion> {
    let kidney = &anatomy.kidneys[rng.below(anatomy.kidneys.len())];
    let class = CLASSES[rng.weighted(&opts.class_weights)];
    let mut diameter = if rng.chance(opts.tiny_lesion_probability) {
        rng.range(3.0, 5.0)
    } else if class == LesionClass::Cyst {
        rng.log_range(5.0, 60.0)
    } else {
        rng.log_range(8.0, 80.0)
    };
    let aspect = [
        rng.range(0.9, 1.12),
        rng.range(0.9, 1.12),
        rng.range(0.88, 1.05),
    ];
    // Try placements at this size; where the anatomy cannot host it, shrink (keeps the class
    // mix, and biases size only as far as the anatomy forces).
    let shape = loop {
        let semi = aspect.map(|f| f * diameter / 2.0);
        if let Some(shape) = (0..40).find_map(|_| place_lesion(rng, anatomy, kidney, semi)) {
            break shape;
        }
        diameter *= 0.85;
        if diameter < 3.0 {
            return None;
        }
    };
    let interior = match class {
        LesionClass::Ccrcc => LesionInterior::ClearCell {
            necrosis_radius: if diameter > 25.0 {
                rng.range(0.3, 0.6)
            } else {
                0.0
            },
        },
        LesionClass::Prcc => LesionInterior::Papillary,
        LesionClass::Chrcc => LesionInterior::Chromophobe,
        LesionClass::Oncocytoma => LesionInterior::Oncocytoma {
            scar: diameter > 20.0 && rng.chance(0.7),
        },
        LesionClass::Aml => {
            let fat_poor = rng.chance(0.2);
            LesionInterior::Aml {
                fat_poor,
                fat_fraction: if fat_poor { 0.0 } else { rng.range(0.3, 0.7) },
            }
        }
        LesionClass::Cyst => {
            let bosniak = if rng.chance(0.7) { 1 } else { 2 };
            let hyperdense =
                bosniak == 2 && (diameter < 20.0 || (diameter <= 30.0 && rng.chance(0.5)));
            let septa = if bosniak == 2 && !hyperdense && diameter >= 20.0 {
                1 + rng.below(2) as u8
            } else {
                0
            };
            LesionInterior::Cyst {
                bosniak,
                hyperdense,
                septa,
            }
        }
    };
    let septum_normals = (0..2)
        .map(|_| {
            let n = [
                rng.range(-1.0, 1.0),
                rng.range(-1.0, 1.0),
                rng.range(-1.0, 1.0),
            ];
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-6);
            scale(n, 1.0 / len)
        })
        .collect();
    Some(Lesion {
        class,
        interior,
        side: kidney.side,
        shape,
        septum_normals,
        texture_key: rng.next_u64(),
    })
}

/// One placement attempt of an ellipsoid with `semi` axes on `kidney`: a point on the kidney
/// surface away from the hilum at a random pole, pushed inwards (endophytic, when small enough)
/// or straddling the surface (exophytic); `None` when it would overlap another lesion, cross
/// the body wall, reach the spine or touch the aorta or IVC.
fn place_lesion(
    rng: &mut Rng,
    anatomy: &Anatomy,
    kidney: &Kidney,
    semi: Vec3,
) -> Option<Ellipsoid> {
    let rmax = semi.iter().cloned().fold(0.0, f64::max);
    let rmin = semi.iter().cloned().fold(f64::INFINITY, f64::min);
    let [a, b, c] = kidney.envelope.semi_axes_mm;
    let u = match rng.below(3) {
        0 => rng.range(0.4, 0.75),
        1 => rng.range(-0.25, 0.25),
        _ => rng.range(-0.75, -0.4),
    } * a;
    let alpha = rng.range(-2.0, 2.0);
    let k = (1.0 - (u / a).powi(2)).max(0.05).sqrt();
    let surface = [u, k * b * alpha.cos(), k * c * alpha.sin()];
    let normal = {
        let n = [u / (a * a), surface[1] / (b * b), surface[2] / (c * c)];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        scale(n, 1.0 / len)
    };
    let thin = b.min(c);
    let endophytic = rmax < 0.45 * thin && rng.chance(0.45);
    let offset = if endophytic {
        -(rmax + rng.range(1.0, (0.9 * thin - 2.0 * rmax).max(1.5)))
    } else {
        rmax * rng.range(-0.5, 0.6)
    };
    let local_centre = add(surface, scale(normal, offset));
    let centre = add(
        kidney.envelope.centre,
        mul_mv(&kidney.envelope.rotation, local_centre),
    );
    let shape = Ellipsoid::new(
        centre,
        semi,
        rotation_xyz(
            rng.range(-3.2, 3.2),
            rng.range(-1.6, 1.6),
            rng.range(-3.2, 3.2),
        ),
    );
    for other in &anatomy.lesions {
        let d = sub(other.shape.centre, centre);
        let dist = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let other_r = other.shape.semi_axes_mm.iter().cloned().fold(0.0, f64::max);
        if dist < rmax + other_r + 3.0 {
            return None;
        }
    }
    let bb = shape.aabb();
    let (rx, ry) = anatomy.body_extent(centre[2]);
    let wall_x = rx - anatomy.subcutaneous_fat_mm - 12.0;
    let wall_y = ry - anatomy.subcutaneous_fat_mm - 12.0;
    if bb
        .corners()
        .iter()
        .any(|p| (p[0] / wall_x).powi(2) + (p[1] / wall_y).powi(2) > 1.0)
    {
        return None;
    }
    // Lateral to the vertebral body on the kidney's own side.
    let medial_x = if kidney.side == Side::Left {
        bb.min[0]
    } else {
        -bb.max[0]
    };
    if medial_x < 24.0 {
        return None;
    }
    // Clear of the great vessels: their axis at the lesion's height stays outside the lesion
    // inflated by the vessel radius + 2 mm.
    let vessels = [
        (
            [anatomy.aorta.a[0], anatomy.aorta.a[1]],
            anatomy.aorta.radius_mm,
        ),
        (
            [anatomy.ivc.cx, anatomy.ivc.cy],
            anatomy.ivc.rx.max(anatomy.ivc.ry),
        ),
    ];
    for (xy, r) in vessels {
        let grown = shape.scaled(1.0 + (r + 2.0) / rmin);
        if grown.contains([xy[0], xy[1], centre[2]]) {
            return None;
        }
    }
    Some(shape)
}
