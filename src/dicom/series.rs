//! Study → series grouping and volume assembly.
//!
//! # Grouping
//! Instances are grouped by StudyInstanceUID, then SeriesInstanceUID, then split into *stacks*
//! whose ImageOrientationPatient (to 1e-3), PixelSpacing (to 1e-4 mm) and matrix agree. A
//! series split in several stacks reports each with `part` = 0, 1, … (largest first).
//!
//! # Assembly policy (stated once, here)
//! * Slices (every frame of every instance) are sorted by the projection of
//!   ImagePositionPatient on the slice normal `n = row × col` — never by InstanceNumber or name.
//! * Slices closer than [`DUPLICATE_TOLERANCE_MM`] to the previous one are duplicates: the later
//!   is dropped with a warning.
//! * Spacing comes from the positions (median gap), never from SliceThickness. Gaps all within
//!   1 % (or 0.01 mm) of the median: uniform. Gaps between 0.5× and 2× the median: the stack is
//!   resampled along `n` onto a uniform grid at the median spacing by linear interpolation
//!   between neighbouring slices, with a warning. Anything else (missing slices, mixed
//!   acquisitions) is refused with the gaps found.
//! * Gantry tilt (slice positions drifting in-plane, i.e. the stacking direction is not the
//!   normal): each slice is shifted back in-plane by bilinear interpolation onto an orthogonal
//!   grid (what dcm2niix does), with a warning giving the angle. Tilt above [`MAX_TILT_DEG`] is
//!   refused.
//! * Output geometry: origin = first slice's position, direction columns = (row, col, n),
//!   spacing = (Δi, Δj, median gap). Voxels outside a shifted slice and padding values are air
//!   (−1000 HU).
//! * Sanity check: a volume whose HU distribution is implausible for CT (see
//!   [`hu_sanity`]) is refused: a wrong rescale silently ruins segmentation.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::header::InstanceHeader;
use super::pixels::{decode_file, DecodedFrames};
use super::{DicomError, SeriesError, Uid};
use crate::privacy::uid_hash;
use crate::volume::geometry::{cross, dot, norm};
use crate::volume::{Geometry, Volume};

pub const DUPLICATE_TOLERANCE_MM: f64 = 0.01;
pub const MAX_TILT_DEG: f64 = 30.0;
/// HU given to padding and to voxels outside a shifted slice.
pub const AIR_HU: f32 = -1000.0;

/// One frame of one instance, placed along the normal.
#[derive(Debug, Clone)]
pub struct SliceRef {
    pub instance: usize,
    pub frame: usize,
    pub position_mm: [f64; 3],
    /// Projection of the position on the slice normal (mm).
    pub along_normal_mm: f64,
}

/// Instances of one series that share orientation, pixel spacing and matrix.
#[derive(Debug, Clone)]
pub struct Stack {
    pub study_uid: Uid,
    pub series_uid: Uid,
    pub part: usize,
    pub instances: Vec<InstanceHeader>,
}

/// How the stack's slices map onto the output grid.
#[derive(Debug, Clone)]
pub struct StackLayout {
    /// Slices kept, sorted along the normal.
    pub slices: Vec<SliceRef>,
    pub dims: [usize; 3],
    pub geometry: Geometry,
    /// True when the slices are not already a uniform orthogonal grid.
    pub needs_resampling: bool,
    pub tilt_deg: f64,
    pub warnings: Vec<String>,
}

/// A study: its UID and its stacks in acquisition order.
#[derive(Debug, Clone)]
pub struct Study {
    pub study_uid: Uid,
    pub stacks: Vec<Stack>,
}

impl Stack {
    pub fn first(&self) -> &InstanceHeader {
        &self.instances[0]
    }
    pub fn num_frames(&self) -> usize {
        self.instances.iter().map(|h| h.frames.len()).sum()
    }
    /// Earliest acquisition time among the instances (seconds; date-aware when possible).
    pub fn acquisition_time_s(&self) -> Option<f64> {
        let dated = self
            .instances
            .iter()
            .filter_map(|h| h.acquisition_datetime_s)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
        dated.or_else(|| {
            self.instances
                .iter()
                .filter_map(|h| h.acquisition_time_s.or(h.series_time_s))
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))))
        })
    }
    /// A label for logs and errors that reveals nothing about the patient.
    pub fn log_id(&self) -> String {
        format!("series#{}/{}", uid_hash(&self.series_uid), self.part)
    }
}

fn round_key(v: f64, step: f64) -> i64 {
    (v / step).round() as i64
}

/// Groups instance headers into studies and stacks (deterministic order).
pub fn group(instances: Vec<InstanceHeader>) -> Vec<Study> {
    type Key = (Vec<i64>, Vec<i64>, u16, u16);
    let mut by_series: BTreeMap<(Uid, Uid), BTreeMap<Key, Vec<InstanceHeader>>> = BTreeMap::new();
    for h in instances {
        let Some(f) = h.frames.first() else { continue };
        let (rows, cols) = h
            .pixels
            .as_ref()
            .map(|p| (p.rows, p.cols))
            .unwrap_or((0, 0));
        let ori: Vec<i64> = f
            .row_dir
            .iter()
            .chain(f.col_dir.iter())
            .map(|v| round_key(*v, 1e-3))
            .collect();
        let sp: Vec<i64> = f
            .spacing_ij_mm
            .iter()
            .map(|v| round_key(*v, 1e-4))
            .collect();
        by_series
            .entry((h.study_uid.clone(), h.series_uid.clone()))
            .or_default()
            .entry((ori, sp, rows, cols))
            .or_default()
            .push(h);
    }
    let mut studies: BTreeMap<Uid, Vec<Stack>> = BTreeMap::new();
    for ((study_uid, series_uid), parts) in by_series {
        let mut parts: Vec<Vec<InstanceHeader>> = parts.into_values().collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for (part, mut instances) in parts.into_iter().enumerate() {
            instances.sort_by(|a, b| {
                a.sop_instance_uid
                    .cmp(&b.sop_instance_uid)
                    .then(a.path.cmp(&b.path))
            });
            studies.entry(study_uid.clone()).or_default().push(Stack {
                study_uid: study_uid.clone(),
                series_uid: series_uid.clone(),
                part,
                instances,
            });
        }
    }
    studies
        .into_iter()
        .map(|(study_uid, mut stacks)| {
            stacks.sort_by(|a, b| {
                let ta = a.acquisition_time_s().unwrap_or(f64::INFINITY);
                let tb = b.acquisition_time_s().unwrap_or(f64::INFINITY);
                ta.total_cmp(&tb)
                    .then(a.first().series_number.cmp(&b.first().series_number))
                    .then(a.series_uid.cmp(&b.series_uid))
                    .then(a.part.cmp(&b.part))
            });
            Study { study_uid, stacks }
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Decides the output grid of a stack (no pixels read).
pub fn layout(stack: &Stack) -> Result<StackLayout, SeriesError> {
    let refuse = |reason: String| SeriesError::Refused {
        series: stack.log_id(),
        reason,
    };
    let f0 = &stack.first().frames[0];
    let row = f0.row_dir;
    let col_raw = f0.col_dir;
    let ortho = dot(row, col_raw);
    if ortho.abs() > 1e-3 {
        return Err(refuse(format!(
            "ImageOrientationPatient row and column vectors are not orthogonal (cos = {ortho:.4})"
        )));
    }
    let col_o = [
        col_raw[0] - ortho * row[0],
        col_raw[1] - ortho * row[1],
        col_raw[2] - ortho * row[2],
    ];
    let cn = norm(col_o);
    let col = [col_o[0] / cn, col_o[1] / cn, col_o[2] / cn];
    let normal = cross(row, col);
    let [si, sj] = f0.spacing_ij_mm;

    let mut slices: Vec<SliceRef> = Vec::new();
    for (instance, h) in stack.instances.iter().enumerate() {
        for (frame, f) in h.frames.iter().enumerate() {
            slices.push(SliceRef {
                instance,
                frame,
                position_mm: f.position_mm,
                along_normal_mm: dot(f.position_mm, normal),
            });
        }
    }
    slices.sort_by(|a, b| a.along_normal_mm.total_cmp(&b.along_normal_mm));
    let mut warnings = Vec::new();
    let before = slices.len();
    slices.dedup_by(|later, kept| {
        (later.along_normal_mm - kept.along_normal_mm).abs() < DUPLICATE_TOLERANCE_MM
    });
    if slices.len() < before {
        warnings.push(format!(
            "{} duplicate slice(s) at an already occupied position dropped",
            before - slices.len()
        ));
    }
    let n = slices.len();
    let mut gaps: Vec<f64> = slices
        .windows(2)
        .map(|w| w[1].along_normal_mm - w[0].along_normal_mm)
        .collect();
    let (spacing_k, nk, uniform) = if n == 1 {
        warnings.push("single slice: no through-plane extent".to_string());
        (
            f0.slice_thickness_mm.filter(|t| *t > 0.0).unwrap_or(1.0),
            1,
            true,
        )
    } else {
        let (gmin, gmax) = gaps.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), g| {
            (lo.min(*g), hi.max(*g))
        });
        let m = median(&mut gaps);
        let tol = (0.01 * m).max(0.01);
        if gmax - m <= tol && m - gmin <= tol {
            (m, n, true)
        } else if gmin >= 0.5 * m && gmax <= 2.0 * m + tol {
            let extent = slices[n - 1].along_normal_mm - slices[0].along_normal_mm;
            let nk = (extent / m + 1e-3).floor() as usize + 1;
            warnings.push(format!(
                "non-uniform slice spacing (gaps {gmin:.3}–{gmax:.3} mm): resampled to {m:.3} mm by linear interpolation"
            ));
            (m, nk, false)
        } else {
            return Err(refuse(format!(
                "irregular slice spacing: gaps from {gmin:.3} to {gmax:.3} mm around a median of {m:.3} mm (missing slices or mixed acquisitions)"
            )));
        }
    };
    // In-plane drift of the slice positions (gantry tilt).
    let p0 = slices[0].position_mm;
    let mut max_drift_vox: f64 = 0.0;
    let mut tilt_deg: f64 = 0.0;
    for s in &slices[1..] {
        let d = [
            s.position_mm[0] - p0[0],
            s.position_mm[1] - p0[1],
            s.position_mm[2] - p0[2],
        ];
        let along = dot(d, normal);
        let di = dot(d, row) / si;
        let dj = dot(d, col) / sj;
        max_drift_vox = max_drift_vox.max(di.abs()).max(dj.abs());
        let inplane = (dot(d, row).powi(2) + dot(d, col).powi(2)).sqrt();
        if along.abs() > 0.0 {
            tilt_deg = tilt_deg.max(inplane.atan2(along.abs()).to_degrees());
        }
    }
    let tilted = max_drift_vox > 0.01;
    if tilted {
        if tilt_deg > MAX_TILT_DEG {
            return Err(refuse(format!(
                "slice positions drift in-plane at {tilt_deg:.1}° (gantry tilt above {MAX_TILT_DEG}°)"
            )));
        }
        warnings.push(format!(
            "gantry tilt {tilt_deg:.2}°: slices shifted in-plane onto an orthogonal grid (bilinear)"
        ));
    }
    let geometry = Geometry::new(
        p0,
        [si, sj, spacing_k],
        [
            [row[0], col[0], normal[0]],
            [row[1], col[1], normal[1]],
            [row[2], col[2], normal[2]],
        ],
    )
    .map_err(|e| refuse(format!("invalid geometry: {e}")))?;
    let px = stack
        .first()
        .pixels
        .as_ref()
        .ok_or_else(|| refuse("no pixel format".into()))?;
    Ok(StackLayout {
        slices,
        dims: [px.cols as usize, px.rows as usize, nk],
        geometry,
        needs_resampling: tilted || !uniform,
        tilt_deg: if tilted { tilt_deg } else { 0.0 },
        warnings,
    })
}

/// Decodes every instance of the stack (in parallel) with padding replaced by air.
fn decode_all(stack: &Stack) -> Result<Vec<DecodedFrames>, SeriesError> {
    stack
        .instances
        .par_iter()
        .map(|h| {
            let mut d = decode_file(&h.path, h)?;
            if let Some(pad) = d.padding.take() {
                for (v, p) in d.hu.iter_mut().zip(pad) {
                    if p {
                        *v = AIR_HU;
                    }
                }
            }
            let px = h.pixels.as_ref();
            if px.map(|p| (p.rows as usize, p.cols as usize)) != Some((d.rows, d.cols)) {
                return Err(DicomError::UnsupportedPixels {
                    path: h.path.clone(),
                    why: "decoded matrix differs from Rows/Columns".into(),
                });
            }
            Ok(d)
        })
        .collect::<Result<Vec<_>, DicomError>>()
        .map_err(|source| SeriesError::File {
            series: stack.log_id(),
            source,
        })
}

/// Assembles the stack into a volume in HU following the module's policy.
pub fn assemble(stack: &Stack, layout: &StackLayout) -> Result<Volume<f32>, SeriesError> {
    let decoded = decode_all(stack)?;
    let [ni, nj, nk] = layout.dims;
    let plane = ni * nj;
    let slice_hu = |s: &SliceRef| -> &[f32] {
        let d = &decoded[s.instance];
        &d.hu[s.frame * plane..(s.frame + 1) * plane]
    };
    let mut data = vec![AIR_HU; plane * nk];
    if !layout.needs_resampling {
        for (k, s) in layout.slices.iter().enumerate() {
            data[k * plane..(k + 1) * plane].copy_from_slice(slice_hu(s));
        }
    } else {
        let g = &layout.geometry;
        let row = g.axis(0);
        let col = g.axis(1);
        let normal = g.axis(2);
        let z0 = layout.slices[0].along_normal_mm;
        let zs: Vec<f64> = layout.slices.iter().map(|s| s.along_normal_mm).collect();
        // In-plane shift (in voxels) of each source slice relative to the output grid.
        let shifts: Vec<[f64; 2]> = layout
            .slices
            .iter()
            .map(|s| {
                let d = [
                    s.position_mm[0] - g.origin_mm[0],
                    s.position_mm[1] - g.origin_mm[1],
                    s.position_mm[2] - g.origin_mm[2],
                ];
                [dot(d, row) / g.spacing_mm[0], dot(d, col) / g.spacing_mm[1]]
            })
            .collect();
        let _ = normal;
        data.par_chunks_mut(plane).enumerate().for_each(|(k, out)| {
            let z = z0 + k as f64 * g.spacing_mm[2];
            let b = zs.partition_point(|&v| v < z).min(zs.len() - 1);
            let a = b.saturating_sub(1);
            let (wa, wb) = if a == b || (zs[b] - zs[a]).abs() < 1e-9 {
                (0.0, 1.0)
            } else {
                let t = ((z - zs[a]) / (zs[b] - zs[a])).clamp(0.0, 1.0);
                (1.0 - t, t)
            };
            for j in 0..nj {
                for i in 0..ni {
                    let mut acc = 0.0f64;
                    for (idx, w) in [(a, wa), (b, wb)] {
                        if w == 0.0 {
                            continue;
                        }
                        let x = i as f64 - shifts[idx][0];
                        let y = j as f64 - shifts[idx][1];
                        acc += w * bilinear(slice_hu(&layout.slices[idx]), ni, nj, x, y);
                    }
                    out[i + ni * j] = acc as f32;
                }
            }
        });
    }
    let vol = Volume::new(layout.dims, layout.geometry.clone(), data).map_err(|e| {
        SeriesError::Refused {
            series: stack.log_id(),
            reason: e.to_string(),
        }
    })?;
    if let Err(reason) = hu_sanity(vol.data()) {
        return Err(SeriesError::Refused {
            series: stack.log_id(),
            reason,
        });
    }
    Ok(vol)
}

/// Bilinear sample of a row-major `ni × nj` plane; air beyond half a pixel outside.
fn bilinear(plane: &[f32], ni: usize, nj: usize, x: f64, y: f64) -> f64 {
    if !(x >= -0.5 && x <= ni as f64 - 0.5 && y >= -0.5 && y <= nj as f64 - 0.5) {
        return AIR_HU as f64;
    }
    let x = x.clamp(0.0, (ni - 1) as f64);
    let y = y.clamp(0.0, (nj - 1) as f64);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(ni - 1), (y0 + 1).min(nj - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let v = |i: usize, j: usize| plane[i + ni * j] as f64;
    let top = v(x0, y0) * (1.0 - fx) + v(x1, y0) * fx;
    let bot = v(x0, y1) * (1.0 - fx) + v(x1, y1) * fx;
    top * (1.0 - fy) + bot * fy
}

/// Plausibility of a CT volume's HU: the 1st percentile must lie in [−3100, −400] (air or the
/// outside of the reconstruction circle is present), the median in [−1050, 500] and the 99th
/// percentile at most 4000. A missing or mis-read rescale fails at least one of these.
pub fn hu_sanity(hu: &[f32]) -> Result<(), String> {
    if hu.iter().any(|v| !v.is_finite()) {
        return Err("HU values are not finite".into());
    }
    let step = (hu.len() / 200_000).max(1);
    let mut sample: Vec<f32> = hu.iter().step_by(step).copied().collect();
    sample.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| sample[((sample.len() - 1) as f64 * p).round() as usize];
    let (p1, p50, p99) = (q(0.01), q(0.5), q(0.99));
    if !(-3100.0..=-400.0).contains(&p1) || !(-1050.0..=500.0).contains(&p50) || p99 > 4000.0 {
        return Err(format!(
            "implausible CT values (HU percentiles 1/50/99 = {p1:.0}/{p50:.0}/{p99:.0}; expected air ≤ −400 at the 1st, a median within −1050..500): rescale missing or wrong"
        ));
    }
    Ok(())
}
