//! Key images: an axial CT slice through a lesion with the segmentation drawn as outlines.
//!
//! Display convention (radiological): row 0 is the most anterior, column 0 the patient's right
//! (the slice frame of [`SliceFrame`]); the slice is the grid slice (index axis closest to LPS z)
//! nearest the lesion centre. The square field of view is centred on the lesion, `2·half_width`
//! mm wide, sampled nearest-neighbour at [`PIXELS`]² pixels. Grey levels: soft-tissue window
//! (centre [`WINDOW_CENTRE_HU`], width [`WINDOW_WIDTH_HU`]); voxels outside the grid are black.
//! Outlines: a pixel whose label is not background and differs from one of its 4 neighbours is
//! drawn in the label's colour (kidney green, tumour red, cyst yellow).

use crate::classify::crop::SliceFrame;
use crate::volume::Volume;

use super::png::encode_rgb;

pub const PIXELS: usize = 256;
pub const WINDOW_CENTRE_HU: f32 = 40.0;
pub const WINDOW_WIDTH_HU: f32 = 400.0;

/// Outline colour of a label (1 kidney, 2 tumour, 3 cyst).
pub fn label_colour(label: u8) -> [u8; 3] {
    match label {
        1 => [40, 200, 80],
        2 => [230, 40, 40],
        3 => [240, 220, 40],
        _ => [120, 120, 255],
    }
}

/// The PNG of the key image of `ct` and `labels` (same grid) through `centre_lps_mm`; `None`
/// when the grids differ or the centre's slice lies outside the grid.
pub fn key_image_png(
    ct: &Volume<f32>,
    labels: &Volume<u8>,
    centre_lps_mm: [f64; 3],
    half_width_mm: f64,
) -> Option<Vec<u8>> {
    let (rgb, n) = key_image_rgb(ct, labels, centre_lps_mm, half_width_mm)?;
    Some(encode_rgb(n as u32, n as u32, &rgb))
}

/// RGB pixels of the key image (see [`key_image_png`]) and its side in pixels.
pub fn key_image_rgb(
    ct: &Volume<f32>,
    labels: &Volume<u8>,
    centre_lps_mm: [f64; 3],
    half_width_mm: f64,
) -> Option<(Vec<u8>, usize)> {
    if ct.dims() != labels.dims() || half_width_mm.is_nan() || half_width_mm <= 0.0 {
        return None;
    }
    let g = ct.geometry();
    let dims = ct.dims();
    let frame = SliceFrame::of(g);
    let c = g.world_to_index(centre_lps_mm);
    let s = c[frame.slice_axis].round();
    if !(0.0..dims[frame.slice_axis] as f64).contains(&s) {
        return None;
    }
    let n = PIXELS;
    let step = 2.0 * half_width_mm / n as f64;
    // Source index of display position u along a display axis.
    let source = |axis: crate::classify::crop::DisplayAxis, u: usize| -> Option<usize> {
        let mm = (u as f64 + 0.5) * step - half_width_mm;
        let sign = if axis.reversed { -1.0 } else { 1.0 };
        let idx = (c[axis.axis] + sign * mm / g.spacing_mm[axis.axis]).round();
        (idx >= 0.0 && idx < dims[axis.axis] as f64).then_some(idx as usize)
    };
    let cols: Vec<Option<usize>> = (0..n).map(|u| source(frame.columns, u)).collect();
    let rows: Vec<Option<usize>> = (0..n).map(|u| source(frame.rows, u)).collect();
    let mut label_px = vec![0u8; n * n];
    let mut grey = vec![0u8; n * n];
    for (r, ri) in rows.iter().enumerate() {
        for (q, ci) in cols.iter().enumerate() {
            let (Some(ri), Some(ci)) = (ri, ci) else {
                continue;
            };
            let mut ijk = [0usize; 3];
            ijk[frame.slice_axis] = s as usize;
            ijk[frame.rows.axis] = *ri;
            ijk[frame.columns.axis] = *ci;
            let Some(o) = ct.offset(ijk[0], ijk[1], ijk[2]) else {
                continue;
            };
            let hu = ct.data()[o];
            let t = ((hu - (WINDOW_CENTRE_HU - WINDOW_WIDTH_HU / 2.0)) / WINDOW_WIDTH_HU)
                .clamp(0.0, 1.0);
            grey[r * n + q] = if hu.is_finite() {
                (t * 255.0).round() as u8
            } else {
                0
            };
            label_px[r * n + q] = labels.data()[o];
        }
    }
    let mut rgb = Vec::with_capacity(n * n * 3);
    for r in 0..n {
        for q in 0..n {
            let l = label_px[r * n + q];
            let edge = l != 0
                && [(0, 1), (2, 1), (1, 0), (1, 2)].iter().any(|(dr, dq)| {
                    let (rr, qq) = (r + dr, q + dq);
                    if rr < 1 || qq < 1 || rr > n || qq > n {
                        return true;
                    }
                    label_px[(rr - 1) * n + (qq - 1)] != l
                });
            if edge {
                rgb.extend_from_slice(&label_colour(l));
            } else {
                let v = grey[r * n + q];
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
    }
    Some((rgb, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::geometry::Geometry;

    /// A 20×20×3 grid (1 mm) with a 4×4 tumour square at i 8..12, j 2..6 in slice 1 and HU 40
    /// (mid-grey) everywhere.
    fn case() -> (Volume<f32>, Volume<u8>) {
        let g = Geometry::identity();
        let ct = Volume::filled([20, 20, 3], g.clone(), 40f32).unwrap();
        let mut labels = Volume::filled([20, 20, 3], g, 0u8).unwrap();
        for j in 2..6 {
            for i in 8..12 {
                let o = labels.offset(i, j, 1).unwrap();
                labels.data_mut()[o] = 2;
            }
        }
        (ct, labels)
    }

    #[test]
    fn outline_sits_on_the_lesion_border_in_radiological_orientation() {
        let (ct, labels) = case();
        // Centre of the field at voxel (10, 10, 1); 10 mm half width → 20 voxels over 256 px.
        let (rgb, n) = key_image_rgb(&ct, &labels, [10.0, 10.0, 1.0], 10.0).unwrap();
        let red = |r: usize, q: usize| rgb[3 * (r * n + q)..3 * (r * n + q) + 3] == [230, 40, 40];
        // 12.8 px per voxel; voxel v covers display positions [(v - 0.5)·12.8, (v + 0.5)·12.8)
        // relative to voxel 0 (the field starts at voxel 10 − 10 = 0). Identity direction:
        // columns run along +x (patient left), rows along +y (posterior). The tumour (j 2..=5,
        // i 8..=11) covers rows 19..=69 and columns 96..=146.
        let mid_col = 128; // voxel i 10
        let mid_row = 57; // voxel j 4
        let red_rows: Vec<usize> = (0..n).filter(|r| red(*r, mid_col)).collect();
        let red_cols: Vec<usize> = (0..n).filter(|q| red(mid_row, *q)).collect();
        assert_eq!(red_rows, vec![19, 69]);
        assert_eq!(red_cols, vec![96, 146]);
        // Inside and outside: the window's mid-grey (40 HU → 128).
        assert_eq!(
            &rgb[3 * (40 * n + mid_col)..3 * (40 * n + mid_col) + 3],
            &[128, 128, 128]
        );
        assert_eq!(
            &rgb[3 * (200 * n + 5)..3 * (200 * n + 5) + 3],
            &[128, 128, 128]
        );
    }

    #[test]
    fn reversed_axes_mirror_the_image() {
        let (ct, labels) = case();
        let flip = |mut g: Geometry| {
            g.direction[0][0] = -1.0;
            g
        };
        let ct2 = Volume::new(ct.dims(), flip(ct.geometry().clone()), ct.data().to_vec()).unwrap();
        let l2 = Volume::new(
            labels.dims(),
            flip(labels.geometry().clone()),
            labels.data().to_vec(),
        )
        .unwrap();
        // Same voxel (10, 10, 1) is now at x = -10 mm.
        let (a, n) = key_image_rgb(&ct, &labels, [10.0, 10.0, 1.0], 10.0).unwrap();
        let (b, _) = key_image_rgb(&ct2, &l2, [-10.0, 10.0, 1.0], 10.0).unwrap();
        for r in 0..n {
            for q in 0..n {
                let m = n - 1 - q;
                assert_eq!(a[3 * (r * n + q)], b[3 * (r * n + m)], "pixel {r},{q}");
            }
        }
    }

    #[test]
    fn outside_the_grid_is_refused_or_black() {
        let (ct, labels) = case();
        assert!(key_image_rgb(&ct, &labels, [10.0, 10.0, 9.0], 10.0).is_none());
        let (rgb, _) = key_image_rgb(&ct, &labels, [0.0, 0.0, 1.0], 10.0).unwrap();
        assert_eq!(&rgb[..3], &[0, 0, 0]);
        assert!(key_image_png(&ct, &labels, [10.0, 10.0, 1.0], 10.0)
            .is_some_and(|p| p.starts_with(b"\x89PNG")));
    }
}
