//! Resampling a volume onto another grid (nearest neighbour, trilinear).
//!
//! Every target voxel centre is mapped to world space (LPS mm) and then to a continuous index of
//! the source. A sample whose continuous index lies within half a voxel of the source grid on
//! every axis (`-0.5 ≤ x ≤ n − 0.5`) is taken from the source, its coordinate clamped to
//! `[0, n − 1]`; anything further out gets `fill`. Resampling onto the source's own grid therefore
//! returns the source exactly. Nearest rounds halves away from zero (`f64::round`).

use rayon::prelude::*;

use super::{Geometry, Volume, VolumeError};

/// How values between voxel centres are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Interpolation {
    Nearest,
    Trilinear,
}

/// A voxel type that can be resampled.
pub trait Resamplable: Copy + Send + Sync {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}
impl Resamplable for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Resamplable for u8 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v.round().clamp(0.0, 255.0) as u8
    }
}
impl Resamplable for i16 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16
    }
}

/// 3×4 map from target index to source continuous index.
fn index_map(src: &Geometry, dst: &Geometry) -> [[f64; 4]; 3] {
    let o = src.world_to_index(dst.origin_mm);
    let zero = src.world_to_index(src.origin_mm);
    let mut m = [[0.0; 4]; 3];
    for c in 0..3 {
        let mut p = dst.origin_mm;
        for (r, pr) in p.iter_mut().enumerate() {
            *pr += dst.direction[r][c] * dst.spacing_mm[c];
        }
        let step = src.world_to_index(p);
        for r in 0..3 {
            m[r][c] = step[r] - o[r];
        }
    }
    for r in 0..3 {
        m[r][3] = o[r] - zero[r];
    }
    m
}

/// Resamples `src` onto `geometry` × `dims`.
pub fn resample<T: Resamplable>(
    src: &Volume<T>,
    geometry: &Geometry,
    dims: [usize; 3],
    interpolation: Interpolation,
    fill: T,
) -> Result<Volume<T>, VolumeError> {
    let mut out = Volume::filled(dims, geometry.clone(), fill)?;
    let m = index_map(src.geometry(), geometry);
    let [ni, nj, _] = dims;
    let sd = src.dims();
    let data = src.data();
    out.data_mut()
        .par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slab)| {
            for j in 0..nj {
                for i in 0..ni {
                    let p = [i as f64, j as f64, k as f64];
                    let mut x = [0.0; 3];
                    for (r, xr) in x.iter_mut().enumerate() {
                        *xr = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
                    }
                    if let Some(v) = sample(data, sd, x, interpolation) {
                        slab[i + ni * j] = v;
                    }
                }
            }
        });
    Ok(out)
}

/// Samples `data` (dims `d`) at continuous index `x`; `None` outside the half-voxel margin.
pub fn sample<T: Resamplable>(
    data: &[T],
    d: [usize; 3],
    x: [f64; 3],
    interpolation: Interpolation,
) -> Option<T> {
    let mut c = [0.0; 3];
    for a in 0..3 {
        let hi = d[a] as f64 - 0.5;
        if !(x[a] >= -0.5 && x[a] <= hi) {
            return None;
        }
        c[a] = x[a].clamp(0.0, (d[a] - 1) as f64);
    }
    let at = |i: usize, j: usize, k: usize| data[i + d[0] * (j + d[1] * k)];
    match interpolation {
        Interpolation::Nearest => Some(at(
            c[0].round() as usize,
            c[1].round() as usize,
            c[2].round() as usize,
        )),
        Interpolation::Trilinear => {
            let i0 = c[0].floor() as usize;
            let j0 = c[1].floor() as usize;
            let k0 = c[2].floor() as usize;
            let i1 = (i0 + 1).min(d[0] - 1);
            let j1 = (j0 + 1).min(d[1] - 1);
            let k1 = (k0 + 1).min(d[2] - 1);
            let (fx, fy, fz) = (c[0] - i0 as f64, c[1] - j0 as f64, c[2] - k0 as f64);
            let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
            let c00 = lerp(at(i0, j0, k0).to_f64(), at(i1, j0, k0).to_f64(), fx);
            let c10 = lerp(at(i0, j1, k0).to_f64(), at(i1, j1, k0).to_f64(), fx);
            let c01 = lerp(at(i0, j0, k1).to_f64(), at(i1, j0, k1).to_f64(), fx);
            let c11 = lerp(at(i0, j1, k1).to_f64(), at(i1, j1, k1).to_f64(), fx);
            let c0 = lerp(c00, c10, fy);
            let c1 = lerp(c01, c11, fy);
            Some(T::from_f64(lerp(c0, c1, fz)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trilinear_reproduces_a_linear_field() {
        // f(world) = 2x - 3y + 0.5z + 7 is reproduced exactly by trilinear interpolation.
        let g = Geometry::new(
            [-5.0, 3.0, 10.0],
            [1.5, 1.0, 2.0],
            super::super::geometry::IDENTITY3,
        )
        .unwrap();
        let dims = [12, 10, 8];
        let mut data = Vec::new();
        for k in 0..8 {
            for j in 0..10 {
                for i in 0..12 {
                    let w = g.index_to_world([i as f64, j as f64, k as f64]);
                    data.push((2.0 * w[0] - 3.0 * w[1] + 0.5 * w[2] + 7.0) as f32);
                }
            }
        }
        let src = Volume::new(dims, g, data).unwrap();
        let c = (0.3f64).cos();
        let s = (0.3f64).sin();
        let dst_g = Geometry::new(
            [-1.0, 6.0, 14.0],
            [0.7, 0.9, 1.1],
            [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        let out = resample(&src, &dst_g, [6, 5, 4], Interpolation::Trilinear, f32::NAN).unwrap();
        for k in 0..4 {
            for j in 0..5 {
                for i in 0..6 {
                    let w = dst_g.index_to_world([i as f64, j as f64, k as f64]);
                    let want = 2.0 * w[0] - 3.0 * w[1] + 0.5 * w[2] + 7.0;
                    let got = *out.get(i, j, k).unwrap() as f64;
                    assert!((got - want).abs() < 1e-3, "({i},{j},{k}) {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn outside_gets_fill_and_identity_is_exact() {
        let g = Geometry::identity();
        let src = Volume::new([3, 3, 3], g.clone(), (0..27u8).collect()).unwrap();
        let same = resample(&src, &g, [3, 3, 3], Interpolation::Nearest, 255).unwrap();
        assert_eq!(same.data(), src.data());
        let mut shifted = g.clone();
        shifted.origin_mm = [2.0, 0.0, 0.0];
        let out = resample(&src, &shifted, [3, 3, 3], Interpolation::Nearest, 255).unwrap();
        assert_eq!(*out.get(0, 0, 0).unwrap(), 2);
        assert_eq!(*out.get(1, 0, 0).unwrap(), 255);
    }
}
