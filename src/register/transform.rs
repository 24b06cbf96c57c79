//! The 12-parameter affine being optimised, in a normalised frame, and the chain rule from the
//! engine's gradient with respect to `theta` to the gradient with respect to the parameters.
//!
//! # Parameterisation
//! `T` maps **reference LPS mm** to **moving LPS mm**:
//! `T(x) = c_m + A · (x − c_r) + L · t`, with `A` (3×3, dimensionless, identity at the start),
//! `t` (3, dimensionless, 0 at the start), `c_r` / `c_m` the kidney centres of mass (LPS mm) of
//! the reference / moving label maps and `L` = [`Frame::length_scale_mm`] (100 mm by default).
//! At the start `T` is the centre-of-mass translation. With `L` = 100 mm and A's entries of
//! order 1, a step of 0.01 on any parameter moves kidney-surface points by ≈ 0.5–1 mm, which
//! makes Adam's learning rate of 0.01 sensible.
//!
//! # Chain rule
//! The engine samples the moving tensor at `θ · q`, where `q` is a working-grid voxel index and
//! `θ = (P · T · R)[0..3]` with `P` = moving-grid LPS → index (4×4) and `R` = working-grid
//! index → LPS (4×4). Given `G = ∂L/∂θ` (3×4, padded with a zero row to 4×4),
//! `∂L/∂T = Pᵀ · G · Rᵀ` (only its upper 3×4 block matters), and then
//! `∂L/∂A = G_T[:, :3] − G_T[:, 3] · c_rᵀ`, `∂L/∂t = L · G_T[:, 3]`.

use serde::{Deserialize, Serialize};

use super::matrix::{mul, top3, transpose, Mat4};

/// The optimised parameters (see the module doc). Also used for gradients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AffineParams {
    /// Linear part, row-major, dimensionless.
    pub a: [[f64; 3]; 3],
    /// Translation in units of the length scale.
    pub t: [f64; 3],
}

impl AffineParams {
    /// `A = I`, `t = 0` (the centre-of-mass translation).
    pub fn identity() -> Self {
        Self {
            a: crate::volume::geometry::IDENTITY3,
            t: [0.0; 3],
        }
    }

    /// All zeros (a zero gradient).
    pub fn zeros() -> Self {
        Self {
            a: [[0.0; 3]; 3],
            t: [0.0; 3],
        }
    }

    /// The 12 values as a flat array: A row-major, then t.
    pub fn to_flat(&self) -> [f64; 12] {
        let mut v = [0.0; 12];
        for r in 0..3 {
            for c in 0..3 {
                v[3 * r + c] = self.a[r][c];
            }
            v[9 + r] = self.t[r];
        }
        v
    }

    /// Inverse of [`AffineParams::to_flat`].
    pub fn from_flat(v: &[f64; 12]) -> Self {
        let mut p = Self::zeros();
        for r in 0..3 {
            for c in 0..3 {
                p.a[r][c] = v[3 * r + c];
            }
            p.t[r] = v[9 + r];
        }
        p
    }
}

/// The normalised frame the parameters live in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Kidney centre of mass of the reference labels, reference LPS mm.
    pub reference_centre_mm: [f64; 3],
    /// Kidney centre of mass of the moving labels, moving LPS mm.
    pub moving_centre_mm: [f64; 3],
    /// `L` (mm).
    pub length_scale_mm: f64,
}

impl Frame {
    /// `T` (reference LPS mm → moving LPS mm) as a 4×4 matrix.
    pub fn matrix(&self, p: &AffineParams) -> Mat4 {
        let (cr, cm, l) = (
            self.reference_centre_mm,
            self.moving_centre_mm,
            self.length_scale_mm,
        );
        let mut m = [[0.0; 4]; 4];
        for r in 0..3 {
            let mut tr = cm[r] + l * p.t[r];
            for c in 0..3 {
                m[r][c] = p.a[r][c];
                tr -= p.a[r][c] * cr[c];
            }
            m[r][3] = tr;
        }
        m[3][3] = 1.0;
        m
    }

    /// Parameters whose [`Frame::matrix`] is `t` (the inverse map).
    pub fn params_of(&self, t: &Mat4) -> AffineParams {
        let (cr, cm, l) = (
            self.reference_centre_mm,
            self.moving_centre_mm,
            self.length_scale_mm,
        );
        let mut p = AffineParams::zeros();
        for r in 0..3 {
            let mut tr = t[r][3] - cm[r];
            for c in 0..3 {
                p.a[r][c] = t[r][c];
                tr += t[r][c] * cr[c];
            }
            p.t[r] = tr / l;
        }
        p
    }

    /// `∂L/∂(A, t)` from `g_t = ∂L/∂T` (upper 3×4 block used).
    pub fn params_gradient(&self, g_t: &Mat4) -> AffineParams {
        let cr = self.reference_centre_mm;
        let mut g = AffineParams::zeros();
        for r in 0..3 {
            for c in 0..3 {
                g.a[r][c] = g_t[r][c] - g_t[r][3] * cr[c];
            }
            g.t[r] = self.length_scale_mm * g_t[r][3];
        }
        g
    }
}

/// The engine's `theta`: working-grid index → moving-grid index, `(P · T · R)[0..3]` with
/// `moving_from_lps` = P and `work_to_lps` = R.
pub fn theta(moving_from_lps: &Mat4, t: &Mat4, work_to_lps: &Mat4) -> [[f64; 4]; 3] {
    top3(&mul(&mul(moving_from_lps, t), work_to_lps))
}

/// `∂L/∂T = Pᵀ · G · Rᵀ` from `g_theta = ∂L/∂θ` (3×4).
pub fn transform_gradient(
    moving_from_lps: &Mat4,
    g_theta: &[[f64; 4]; 3],
    work_to_lps: &Mat4,
) -> Mat4 {
    let g4 = [g_theta[0], g_theta[1], g_theta[2], [0.0; 4]];
    mul(
        &mul(&transpose(moving_from_lps), &g4),
        &transpose(work_to_lps),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For a loss linear in θ, `L = Σ W ∘ θ(A, t)`, the chain rule must equal central finite
    /// differences of that loss (exact up to rounding, as L is linear in the parameters).
    #[test]
    fn chain_rule_matches_finite_differences_of_a_linear_loss() {
        let frame = Frame {
            reference_centre_mm: [12.0, -40.0, 85.0],
            moving_centre_mm: [3.0, -30.0, 99.0],
            length_scale_mm: 100.0,
        };
        let p_mov = [
            [0.0, 0.5, 0.1, 7.0],
            [-0.6, 0.0, 0.05, 3.0],
            [0.02, -0.1, 0.4, -20.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let r_work = [
            [2.0, 0.1, 0.0, -50.0],
            [0.0, 1.9, 0.3, 10.0],
            [0.2, 0.0, 3.0, 60.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let w = [
            [0.3, -1.2, 0.7, 0.05],
            [1.1, 0.4, -0.9, -0.2],
            [-0.5, 0.8, 0.6, 0.3],
        ];
        let loss = |p: &AffineParams| -> f64 {
            let th = theta(&p_mov, &frame.matrix(p), &r_work);
            (0..3)
                .flat_map(|r| (0..4).map(move |c| (r, c)))
                .map(|(r, c)| w[r][c] * th[r][c])
                .sum()
        };
        let mut p0 = AffineParams::identity();
        p0.a[0][1] = 0.03;
        p0.t = [0.02, -0.01, 0.05];
        let g = frame.params_gradient(&transform_gradient(&p_mov, &w, &r_work));
        let flat = p0.to_flat();
        let gf = g.to_flat();
        for k in 0..12 {
            let h = 1e-3;
            let (mut hi, mut lo) = (flat, flat);
            hi[k] += h;
            lo[k] -= h;
            let fd = (loss(&AffineParams::from_flat(&hi)) - loss(&AffineParams::from_flat(&lo)))
                / (2.0 * h);
            assert!(
                (fd - gf[k]).abs() < 1e-8 * (1.0 + fd.abs()),
                "param {k}: chain rule {} vs FD {fd}",
                gf[k]
            );
        }
    }

    #[test]
    fn identity_params_are_the_centre_of_mass_translation() {
        let frame = Frame {
            reference_centre_mm: [1.0, 2.0, 3.0],
            moving_centre_mm: [4.0, 0.0, -3.0],
            length_scale_mm: 100.0,
        };
        let m = frame.matrix(&AffineParams::identity());
        let y = super::super::matrix::apply(&m, [1.0, 2.0, 3.0]);
        assert_eq!(y, [4.0, 0.0, -3.0]);
        let back = frame.params_of(&m);
        for (a, b) in back
            .to_flat()
            .iter()
            .zip(AffineParams::identity().to_flat())
        {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
