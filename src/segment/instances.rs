//! Per-lesion instances of a KiTS label map (0 background, 1 kidney, 2 tumour, 3 cyst) on a
//! [`Volume`] grid, for the report.
//!
//! Definitions (nephrod's; the seeds do not fix them):
//! * a lesion is a 26-connected component of tumour ∪ cyst voxels; its label is tumour when it
//!   has at least as many tumour as cyst voxels, else cyst;
//! * volume = voxel count × voxel volume (mL); centre = mean of the voxel centres (LPS mm);
//! * its kidney = the 26-connected kidney component with the most voxels in the lesion's
//!   3×3×3 dilation ring (none when no kidney voxel touches it);
//! * side (patient left = LPS +x): the centre's x against the midline, which is halfway between
//!   the x-centres of the two largest kidney components, or the grid centre's x with fewer;
//! * pole: where the centre's z lies in its kidney's z extent (voxel centres, LPS +z =
//!   superior): upper third, middle, lower third; unknown without a kidney;
//! * maximum axial diameter: over the grid slices along the index axis closest to LPS z, the
//!   largest distance in the axial (x, y) plane between two voxel centres of the lesion in one
//!   slice, plus the mean in-plane voxel spacing (a one-voxel lesion measures one voxel).

use serde::Serialize;

use crate::segment::postprocess::components_26;
use crate::volume::Volume;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LesionKind {
    Tumour,
    Cyst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pole {
    Upper,
    Middle,
    Lower,
    Unknown,
}

/// One lesion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lesion {
    /// 1-based, in raster order of the lesions' first voxels.
    pub id: usize,
    pub kind: LesionKind,
    pub voxels: usize,
    pub volume_ml: f64,
    pub centre_lps_mm: [f64; 3],
    pub side: Side,
    pub pole: Pole,
    pub touches_kidney: bool,
    pub max_axial_diameter_mm: f64,
    /// Flat offsets (`i + ni·(j + nj·k)`) of the lesion's voxels, ascending.
    #[serde(skip)]
    pub members: Vec<usize>,
}

fn centre_of(vol: &Volume<u8>, idx: &[usize]) -> [f64; 3] {
    let [ni, nj, _] = vol.dims();
    let g = vol.geometry();
    let mut s = [0.0; 3];
    for &o in idx {
        let p = g.index_to_world([
            (o % ni) as f64,
            ((o / ni) % nj) as f64,
            (o / (ni * nj)) as f64,
        ]);
        for a in 0..3 {
            s[a] += p[a];
        }
    }
    s.map(|v| v / idx.len().max(1) as f64)
}

/// The body midline's LPS x (mm): halfway between the x centres of the two largest components
/// (`centres_x[c]`, `sizes[c]` per component), or the grid centre's x with fewer than two.
pub fn midline_x<T>(centres_x: &[f64], sizes: &[usize], grid: &Volume<T>) -> f64 {
    let mut order: Vec<usize> = (0..sizes.len().min(centres_x.len())).collect();
    order.sort_by(|a, b| sizes[*b].cmp(&sizes[*a]));
    if order.len() >= 2 {
        (centres_x[order[0]] + centres_x[order[1]]) / 2.0
    } else {
        let [ni, nj, nk] = grid.dims();
        grid.geometry().index_to_world([
            (ni as f64 - 1.0) / 2.0,
            (nj as f64 - 1.0) / 2.0,
            (nk as f64 - 1.0) / 2.0,
        ])[0]
    }
}

/// The lesions of `labels` (see the module doc).
pub fn lesion_instances(labels: &Volume<u8>) -> Vec<Lesion> {
    let [ni, nj, nk] = labels.dims();
    // components_26 takes (slow, mid, fast) dims: the volume's memory order is [k][j][i].
    let dims = [nk, nj, ni];
    let data = labels.data();
    let g = labels.geometry();
    let voxel_ml = g.spacing_mm.iter().product::<f64>() / 1000.0;
    let (kid_comp, kid_sizes) =
        components_26(&data.iter().map(|l| *l == 1).collect::<Vec<_>>(), dims);
    let mut kid_members = vec![Vec::new(); kid_sizes.len()];
    for (o, c) in kid_comp.iter().enumerate() {
        if *c > 0 {
            kid_members[*c as usize - 1].push(o);
        }
    }
    let kid_centres: Vec<[f64; 3]> = kid_members.iter().map(|m| centre_of(labels, m)).collect();
    let kid_z: Vec<(f64, f64)> = kid_members
        .iter()
        .map(|m| {
            m.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &o| {
                let z = g.index_to_world([
                    (o % ni) as f64,
                    ((o / ni) % nj) as f64,
                    (o / (ni * nj)) as f64,
                ])[2];
                (lo.min(z), hi.max(z))
            })
        })
        .collect();
    let kid_x: Vec<f64> = kid_centres.iter().map(|c| c[0]).collect();
    let midline_x = midline_x(&kid_x, &kid_sizes, labels);
    // The index axis closest to LPS z defines the axial slices.
    let slice_axis = (0..3)
        .max_by(|a, b| {
            g.direction[2][*a]
                .abs()
                .total_cmp(&g.direction[2][*b].abs())
        })
        .unwrap_or(2);
    let in_plane: Vec<usize> = (0..3).filter(|a| *a != slice_axis).collect();
    let in_plane_spacing = (g.spacing_mm[in_plane[0]] + g.spacing_mm[in_plane[1]]) / 2.0;

    let masses: Vec<bool> = data.iter().map(|l| *l == 2 || *l == 3).collect();
    let (comp, sizes) = components_26(&masses, dims);
    let mut members = vec![Vec::new(); sizes.len()];
    for (o, c) in comp.iter().enumerate() {
        if *c > 0 {
            members[*c as usize - 1].push(o);
        }
    }
    let mut out = Vec::with_capacity(members.len());
    for (k, m) in members.iter().enumerate() {
        let tumour = m.iter().filter(|o| data[**o] == 2).count();
        let kind = if 2 * tumour >= m.len() {
            LesionKind::Tumour
        } else {
            LesionKind::Cyst
        };
        let centre = centre_of(labels, m);
        // Kidney contact through the 3×3×3 ring.
        let mut touch = vec![0usize; kid_sizes.len()];
        for &o in m {
            let (i, j, kk) = (o % ni, (o / ni) % nj, o / (ni * nj));
            for z in kk.saturating_sub(1)..(kk + 2).min(nk) {
                for y in j.saturating_sub(1)..(j + 2).min(nj) {
                    for x in i.saturating_sub(1)..(i + 2).min(ni) {
                        let q = (z * nj + y) * ni + x;
                        if kid_comp[q] > 0 {
                            touch[kid_comp[q] as usize - 1] += 1;
                        }
                    }
                }
            }
        }
        let kidney = (0..touch.len())
            .filter(|c| touch[*c] > 0)
            .max_by_key(|c| touch[*c]);
        let pole = match kidney {
            Some(c) => {
                let (lo, hi) = kid_z[c];
                let t = if hi > lo {
                    (centre[2] - lo) / (hi - lo)
                } else {
                    0.5
                };
                if t > 2.0 / 3.0 {
                    Pole::Upper
                } else if t < 1.0 / 3.0 {
                    Pole::Lower
                } else {
                    Pole::Middle
                }
            }
            None => Pole::Unknown,
        };
        // Axial diameter: per slice, the largest in-plane distance between voxel centres.
        let mut by_slice: std::collections::BTreeMap<usize, Vec<[f64; 2]>> = Default::default();
        let id = k as u32 + 1;
        let n3 = [ni, nj, nk];
        for &o in m {
            let ijk = [o % ni, (o / ni) % nj, o / (ni * nj)];
            // The farthest pair lies on the section's boundary: keep voxels with an in-plane
            // neighbour outside the lesion (or outside the grid).
            let boundary = in_plane.iter().any(|&a| {
                [-1isize, 1].iter().any(|d| {
                    let v = ijk[a] as isize + d;
                    if v < 0 || v >= n3[a] as isize {
                        return true;
                    }
                    let mut q = ijk;
                    q[a] = v as usize;
                    comp[(q[2] * nj + q[1]) * ni + q[0]] != id
                })
            });
            if boundary {
                let p = g.index_to_world(ijk.map(|v| v as f64));
                by_slice
                    .entry(ijk[slice_axis])
                    .or_default()
                    .push([p[0], p[1]]);
            }
        }
        let mut diameter = 0.0f64;
        for pts in by_slice.values() {
            for (a, p) in pts.iter().enumerate() {
                for q in &pts[a + 1..] {
                    diameter = diameter.max(((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt());
                }
            }
        }
        out.push(Lesion {
            id: k + 1,
            kind,
            voxels: m.len(),
            volume_ml: m.len() as f64 * voxel_ml,
            centre_lps_mm: centre,
            side: if centre[0] > midline_x {
                Side::Left
            } else {
                Side::Right
            },
            pole,
            touches_kidney: kidney.is_some(),
            max_axial_diameter_mm: diameter + in_plane_spacing,
            members: m.clone(),
        });
    }
    out
}
