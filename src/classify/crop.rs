//! The classifier's per-phase input crops (seed 001): for one lesion and one phase, the axial
//! slice with the largest lesion area, the lesion's bounding rectangle on that slice grown by a
//! margin, resampled bilinearly to a fixed size.
//!
//! # Inputs and invariants
//! * Every phase's CT (HU) and label map are **on the reference phase's grid** (the output of
//!   registration); [`PhaseView`]s with another grid are refused.
//! * Lesions are defined on the reference phase's labels: 26-connected components of tumour ∪
//!   cyst (labels 2, 3) with at least as many tumour as cyst voxels — the same components and
//!   ids as [`crate::segment::instances::lesion_instances`] (ids in raster order of each
//!   component's first voxel, counting cyst-dominated components too).
//! * A phase's own lesion mask is its tumour ∪ cyst voxels inside the reference lesion's
//!   bounding box grown by `search_margin_mm`; when that is empty the reference mask is used
//!   and [`MaskSource::Reference`] says so.
//!
//! # Geometry of a crop
//! * Axial = the grid axis whose direction is closest to LPS z ([`SliceFrame`]). The two
//!   in-plane axes are shown in radiological convention whatever the scan orientation: image
//!   columns run towards patient left (LPS +x), image rows towards posterior (LPS +y); an axis
//!   pointing the other way is read backwards.
//! * Coordinates are voxel indices with integer = voxel centre; voxel `c` covers
//!   `[c − ½, c + ½]`. The source rectangle along an axis is `[min − ½ − m, max + ½ + m]` with
//!   `m = margin_mm / spacing`; output pixel `u` of `n` samples the source at
//!   `lo + (u + ½)·(hi − lo)/n` (read from `hi` downwards on a reversed axis) — a rectangle
//!   resized to `n` pixels with half-pixel centres (PyTorch `align_corners=False`).
//! * Bilinear interpolation between the 4 in-plane neighbours; a neighbour outside the volume
//!   has the value `outside_hu`.
//! * Ties between slices of equal lesion area go to the slice nearest the lesion's centroid,
//!   then to the lower index.

use serde::Serialize;

use super::settings::CropSettings;
use crate::dicom::phase::Phase;
use crate::segment::postprocess::components_26;
use crate::volume::{Geometry, Volume};

/// Why inputs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CropError {
    #[error("classifier crop settings: {0}")]
    Settings(String),
    #[error("{phase} is not on the reference grid (dims {got:?} vs {want:?}, or another geometry): register the phases first")]
    NotOnReferenceGrid {
        phase: &'static str,
        got: [usize; 3],
        want: [usize; 3],
    },
    #[error("{phase}: CT and label map differ in size ({ct} vs {labels} voxels)")]
    LabelSize {
        phase: &'static str,
        ct: usize,
        labels: usize,
    },
    #[error("phase {0} appears more than once")]
    DuplicatePhase(&'static str),
}

/// One phase on the reference grid.
#[derive(Debug, Clone, Copy)]
pub struct PhaseView<'a> {
    pub phase: Phase,
    pub ct: &'a Volume<f32>,
    pub labels: &'a Volume<u8>,
}

impl<'a> PhaseView<'a> {
    /// Views of every registered phase (all on the reference grid).
    pub fn of_study(study: &'a crate::register::StudyRegistration) -> Vec<PhaseView<'a>> {
        study
            .phases
            .iter()
            .map(|p| PhaseView {
                phase: p.phase,
                ct: &p.ct,
                labels: &p.labels,
            })
            .collect()
    }
}

/// A lesion of the reference phase (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LesionRegion {
    pub id: usize,
    pub voxels: usize,
    /// Inclusive voxel-index bounding box `[i, j, k]`.
    pub bbox_min: [usize; 3],
    pub bbox_max: [usize; 3],
    /// Centroid in LPS mm.
    pub centre_lps_mm: [f64; 3],
    /// Flat offsets of the lesion's voxels.
    #[serde(skip)]
    pub members: Vec<usize>,
}

/// Whose mask chose the slice and rectangle of a phase's crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    /// The phase's own (aligned) segmentation.
    Phase,
    /// The reference phase's lesion (the phase's own mask was empty there).
    Reference,
}

/// An in-plane axis of the crop: which grid axis, read forwards or backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DisplayAxis {
    pub axis: usize,
    pub reversed: bool,
}

/// How a grid's axial slices are shown (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SliceFrame {
    pub slice_axis: usize,
    pub columns: DisplayAxis,
    pub rows: DisplayAxis,
}

impl SliceFrame {
    pub fn of(g: &Geometry) -> SliceFrame {
        // direction[r][c] = LPS component r of grid axis c.
        let slice_axis = (0..3)
            .max_by(|a, b| {
                g.direction[2][*a]
                    .abs()
                    .total_cmp(&g.direction[2][*b].abs())
            })
            .unwrap_or(2);
        let (p, q) = match slice_axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        // The in-plane axis closer to LPS x gives the columns.
        let (col, row) = if g.direction[0][p].abs() >= g.direction[0][q].abs() {
            (p, q)
        } else {
            (q, p)
        };
        SliceFrame {
            slice_axis,
            columns: DisplayAxis {
                axis: col,
                reversed: g.direction[0][col] < 0.0,
            },
            rows: DisplayAxis {
                axis: row,
                reversed: g.direction[1][row] < 0.0,
            },
        }
    }
}

/// The source rectangle along one display axis, in voxel-index coordinates (edges).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CropSpan {
    pub axis: usize,
    pub reversed: bool,
    pub lo: f64,
    pub hi: f64,
}

impl CropSpan {
    /// Source coordinate of output pixel `u` of `n`.
    pub fn source(&self, u: usize, n: usize) -> f64 {
        let step = (self.hi - self.lo) / n as f64;
        if self.reversed {
            self.hi - (u as f64 + 0.5) * step
        } else {
            self.lo + (u as f64 + 0.5) * step
        }
    }
}

/// One phase's crop of one lesion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseCrop {
    pub phase: Phase,
    pub slice_axis: usize,
    pub slice_index: usize,
    pub lesion_area_mm2: f64,
    pub mask_source: MaskSource,
    pub columns: CropSpan,
    pub rows: CropSpan,
    /// `[rows, columns]`.
    pub size: [usize; 2],
    /// Resampled HU, row-major (row 0 = most anterior).
    #[serde(skip)]
    pub hu: Vec<f32>,
}

/// The tumour lesions of the reference phase's labels (see the module doc).
pub fn tumour_lesions(labels: &Volume<u8>) -> Vec<LesionRegion> {
    let [ni, nj, nk] = labels.dims();
    let data = labels.data();
    let mask: Vec<bool> = data.iter().map(|l| *l == 2 || *l == 3).collect();
    let (comp, sizes) = components_26(&mask, [nk, nj, ni]);
    let mut members = vec![Vec::new(); sizes.len()];
    for (o, c) in comp.iter().enumerate() {
        if *c > 0 {
            members[*c as usize - 1].push(o);
        }
    }
    let g = labels.geometry();
    let mut out = Vec::new();
    for (n, m) in members.into_iter().enumerate() {
        let tumour = m.iter().filter(|o| data[**o] == 2).count();
        if tumour * 2 < m.len() {
            continue;
        }
        let (mut lo, mut hi, mut s) = ([usize::MAX; 3], [0usize; 3], [0f64; 3]);
        for &o in &m {
            let ijk = [o % ni, (o / ni) % nj, o / (ni * nj)];
            for a in 0..3 {
                lo[a] = lo[a].min(ijk[a]);
                hi[a] = hi[a].max(ijk[a]);
                s[a] += ijk[a] as f64;
            }
        }
        let c = g.index_to_world(s.map(|v| v / m.len() as f64));
        out.push(LesionRegion {
            id: n + 1,
            voxels: m.len(),
            bbox_min: lo,
            bbox_max: hi,
            centre_lps_mm: c,
            members: m,
        });
    }
    out
}

/// Checks that every view is on `reference`'s grid and no phase repeats.
pub fn check_views(views: &[PhaseView], reference: &Volume<u8>) -> Result<(), CropError> {
    for (n, v) in views.iter().enumerate() {
        let want = reference.dims();
        for got in [v.ct.dims(), v.labels.dims()] {
            if got != want
                || !same_geometry(v.ct.geometry(), reference.geometry())
                || !same_geometry(v.labels.geometry(), reference.geometry())
            {
                return Err(CropError::NotOnReferenceGrid {
                    phase: v.phase.as_str(),
                    got,
                    want,
                });
            }
        }
        if v.ct.len() != v.labels.len() {
            return Err(CropError::LabelSize {
                phase: v.phase.as_str(),
                ct: v.ct.len(),
                labels: v.labels.len(),
            });
        }
        if views[..n].iter().any(|w| w.phase == v.phase) {
            return Err(CropError::DuplicatePhase(v.phase.as_str()));
        }
    }
    Ok(())
}

fn same_geometry(a: &Geometry, b: &Geometry) -> bool {
    const TOL: f64 = 1e-4;
    (0..3).all(|r| {
        (a.origin_mm[r] - b.origin_mm[r]).abs() <= TOL
            && (a.spacing_mm[r] - b.spacing_mm[r]).abs() <= TOL
            && (0..3).all(|c| (a.direction[r][c] - b.direction[r][c]).abs() <= TOL)
    })
}

/// The crop of `lesion` in one phase.
pub fn crop_phase(
    view: &PhaseView,
    lesion: &LesionRegion,
    settings: &CropSettings,
) -> Result<PhaseCrop, CropError> {
    settings.validate()?;
    let vol = view.labels;
    let dims = vol.dims();
    let g = vol.geometry();
    let frame = SliceFrame::of(g);
    let [ni, nj, _] = dims;
    let offset = |ijk: [usize; 3]| ijk[0] + ni * (ijk[1] + nj * ijk[2]);

    // The phase's own lesion voxels near the reference lesion.
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for a in 0..3 {
        let grow = (settings.search_margin_mm / g.spacing_mm[a]).ceil() as usize;
        lo[a] = lesion.bbox_min[a].saturating_sub(grow);
        hi[a] = (lesion.bbox_max[a] + grow).min(dims[a] - 1);
    }
    let labels = vol.data();
    let mut own = Vec::new();
    for k in lo[2]..=hi[2] {
        for j in lo[1]..=hi[1] {
            for i in lo[0]..=hi[0] {
                let o = offset([i, j, k]);
                if labels[o] == 2 || labels[o] == 3 {
                    own.push([i, j, k]);
                }
            }
        }
    }
    let (voxels, mask_source) = if own.is_empty() {
        let v = lesion
            .members
            .iter()
            .map(|o| [o % ni, (o / ni) % nj, o / (ni * nj)])
            .collect::<Vec<_>>();
        (v, MaskSource::Reference)
    } else {
        (own, MaskSource::Phase)
    };

    // The slice with the largest area.
    let sa = frame.slice_axis;
    let mut area = vec![0usize; dims[sa]];
    let mut centroid = 0.0;
    for v in &voxels {
        area[v[sa]] += 1;
        centroid += v[sa] as f64;
    }
    centroid /= voxels.len().max(1) as f64;
    let best = area.iter().copied().max().unwrap_or(0);
    let slice_index = (0..dims[sa])
        .filter(|s| area[*s] == best)
        .min_by(|a, b| {
            (*a as f64 - centroid)
                .abs()
                .total_cmp(&(*b as f64 - centroid).abs())
                .then(a.cmp(b))
        })
        .unwrap_or(0);

    // Bounding rectangle on that slice, grown by the margin.
    let (ca, ra) = (frame.columns.axis, frame.rows.axis);
    let (mut cmin, mut cmax, mut rmin, mut rmax) = (usize::MAX, 0, usize::MAX, 0);
    for v in voxels.iter().filter(|v| v[sa] == slice_index) {
        cmin = cmin.min(v[ca]);
        cmax = cmax.max(v[ca]);
        rmin = rmin.min(v[ra]);
        rmax = rmax.max(v[ra]);
    }
    let span = |axis: DisplayAxis, min: usize, max: usize| {
        let m = settings.margin_mm / g.spacing_mm[axis.axis];
        CropSpan {
            axis: axis.axis,
            reversed: axis.reversed,
            lo: min as f64 - 0.5 - m,
            hi: max as f64 + 0.5 + m,
        }
    };
    let columns = span(frame.columns, cmin, cmax);
    let rows = span(frame.rows, rmin, rmax);

    let [nr, nc] = settings.size;
    let ct = view.ct.data();
    let sample = |ijk: [isize; 3]| -> f32 {
        if (0..3).all(|a| ijk[a] >= 0 && (ijk[a] as usize) < dims[a]) {
            ct[offset(ijk.map(|x| x as usize))]
        } else {
            settings.outside_hu
        }
    };
    let mut hu = Vec::with_capacity(nr * nc);
    for r in 0..nr {
        let y = rows.source(r, nr);
        let (y0, fy) = (y.floor(), y - y.floor());
        for c in 0..nc {
            let x = columns.source(c, nc);
            let (x0, fx) = (x.floor(), x - x.floor());
            let mut acc = 0.0f64;
            for (dy, wy) in [(0isize, 1.0 - fy), (1, fy)] {
                for (dx, wx) in [(0isize, 1.0 - fx), (1, fx)] {
                    let w = wx * wy;
                    if w == 0.0 {
                        continue;
                    }
                    let mut ijk = [0isize; 3];
                    ijk[sa] = slice_index as isize;
                    ijk[ca] = x0 as isize + dx;
                    ijk[ra] = y0 as isize + dy;
                    acc += w * sample(ijk) as f64;
                }
            }
            hu.push(acc as f32);
        }
    }
    Ok(PhaseCrop {
        phase: view.phase,
        slice_axis: sa,
        slice_index,
        lesion_area_mm2: best as f64 * g.spacing_mm[ca] * g.spacing_mm[ra],
        mask_source,
        columns,
        rows,
        size: settings.size,
        hu,
    })
}
