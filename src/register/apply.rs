//! Resampling a moving phase onto the reference grid through a registration's `T`
//! (reference LPS mm → moving LPS mm, row-major 4×4).
//!
//! Every target voxel centre `x` (reference grid, LPS mm) takes the moving phase's value at
//! `T·x`:
//! * CT ([`resample_image`]): trilinear through the engine backend
//!   (`Backend::resample_affine`, grid-sample semantics). The engine pads with zeros, so the
//!   image is shifted by [`OUTSIDE_HU`] (−1024 HU, air) before and after: points more than
//!   one voxel outside the moving volume read −1024 HU, and within that border values fade
//!   linearly towards −1024 HU.
//! * Labels ([`resample_labels`]): nearest neighbour on the host (ties rounded half to even,
//!   like the engine's nearest mode); outside the moving grid (beyond half a voxel) → 0.

use rayon::prelude::*;

use super::matrix::{inverse_affine, mul, top3, Mat4};
use super::{engine_step, RegisterError};
use crate::engine::{Backend, Interp, Tensor};
use crate::volume::{Geometry, Volume};

/// HU given to reference voxels that map outside the moving image (air).
pub const OUTSIDE_HU: f32 = -1024.0;

/// 3×4 map from target index to moving index through `t`.
fn index_map(
    moving: &Geometry,
    t: &Mat4,
    target: &Geometry,
) -> Result<[[f64; 4]; 3], RegisterError> {
    let moving_from_lps = inverse_affine(&moving.affine_lps()).ok_or(RegisterError::Singular {
        what: "moving image geometry",
    })?;
    if inverse_affine(t).is_none() {
        return Err(RegisterError::Singular {
            what: "registration transform",
        });
    }
    Ok(top3(&mul(&mul(&moving_from_lps, t), &target.affine_lps())))
}

/// The moving CT (HU) on `target` × `dims`, through `t`.
pub fn resample_image(
    backend: &dyn Backend,
    moving: &Volume<f32>,
    t: &Mat4,
    target: &Geometry,
    dims: [usize; 3],
) -> Result<Volume<f32>, RegisterError> {
    let th = index_map(moving.geometry(), t, target)?;
    let [ni, nj, nk] = moving.dims();
    let shifted: Vec<f32> = moving.data().iter().map(|v| v - OUTSIDE_HU).collect();
    let x = Tensor::new([1, 1, nk, nj, ni], shifted).map_err(engine_step("CT tensor"))?;
    let out = backend
        .resample_affine(&x, &th, [dims[2], dims[1], dims[0]], Interp::Trilinear)
        .map_err(engine_step("resampling the CT"))?;
    let data: Vec<f32> = out
        .into_data()
        .into_iter()
        .map(|v| v + OUTSIDE_HU)
        .collect();
    Ok(Volume::new(dims, target.clone(), data)?)
}

/// The moving label map on `target` × `dims`, through `t` (nearest neighbour).
pub fn resample_labels(
    moving: &Volume<u8>,
    t: &Mat4,
    target: &Geometry,
    dims: [usize; 3],
) -> Result<Volume<u8>, RegisterError> {
    let m = index_map(moving.geometry(), t, target)?;
    let mut out = Volume::filled(dims, target.clone(), 0u8)?;
    let [ni, nj, _] = dims;
    let sd = moving.dims();
    let src = moving.data();
    out.data_mut()
        .par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slab)| {
            for j in 0..nj {
                for i in 0..ni {
                    let q = [i as f64, j as f64, k as f64];
                    let p = [0, 1, 2]
                        .map(|r| m[r][0] * q[0] + m[r][1] * q[1] + m[r][2] * q[2] + m[r][3]);
                    let r = p.map(|v| v.round_ties_even());
                    if (0..3).all(|a| r[a] >= 0.0 && r[a] < sd[a] as f64) {
                        let (a, b, c) = (r[0] as usize, r[1] as usize, r[2] as usize);
                        slab[i + ni * j] = src[a + sd[0] * (b + sd[1] * c)];
                    }
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CpuBackend;
    use crate::register::matrix::IDENTITY4;

    /// A pure translation by whole voxels moves labels and HU exactly; outside reads −1024.
    #[test]
    fn translation_by_whole_voxels() {
        let g = Geometry::new(
            [0.0; 3],
            [2.0, 2.0, 3.0],
            crate::volume::geometry::IDENTITY3,
        )
        .unwrap();
        let dims = [6, 5, 4];
        let labels =
            Volume::new(dims, g.clone(), (0..120).map(|v| (v % 7) as u8).collect()).unwrap();
        let ct = Volume::new(dims, g.clone(), (0..120).map(|v| v as f32).collect()).unwrap();
        // The reference point x sits at x + (4, 0, 3) mm in the moving phase: two voxels along
        // i, one along k.
        let mut t = IDENTITY4;
        t[0][3] = 4.0;
        t[2][3] = 3.0;
        let l = resample_labels(&labels, &t, &g, dims).unwrap();
        let c = resample_image(&CpuBackend, &ct, &t, &g, dims).unwrap();
        assert_eq!(l.get(1, 2, 1), labels.get(3, 2, 2));
        assert_eq!(c.get(1, 2, 1), ct.get(3, 2, 2));
        assert_eq!(*l.get(5, 0, 0).unwrap(), 0);
        assert_eq!(*c.get(5, 0, 0).unwrap(), OUTSIDE_HU);
        assert_eq!(*c.get(0, 0, 3).unwrap(), OUTSIDE_HU);
    }
}
