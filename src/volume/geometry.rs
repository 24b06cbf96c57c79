//! Grid geometry in LPS millimetres: origin, spacing and direction cosines.
//!
//! See the module doc of [`crate::volume`] for the conventions. `direction[r][c]` is row `r`,
//! column `c` of the 3×3 matrix `D`; column `c` is the unit vector of index axis `c` in LPS.

use serde::{Deserialize, Serialize};

/// Largest deviation from orthonormality accepted for a direction matrix.
pub const ORTHONORMAL_TOLERANCE: f64 = 1e-4;

/// Where a grid sits in patient space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// World position (LPS mm) of the centre of voxel (0, 0, 0).
    pub origin_mm: [f64; 3],
    /// Centre-to-centre voxel distance along i, j, k (mm, > 0).
    pub spacing_mm: [f64; 3],
    /// Row-major 3×3; column c = unit vector of index axis c in LPS.
    pub direction: [[f64; 3]; 3],
}

/// Invalid geometry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeometryError {
    #[error("spacing {0:?} mm must be finite and > 0")]
    Spacing([f64; 3]),
    #[error("direction matrix is not orthonormal (max deviation {0:.2e})")]
    NotOrthonormal(f64),
    #[error("non-finite origin {0:?}")]
    Origin([f64; 3]),
    #[error("affine is singular or has a zero-length column")]
    Singular,
}

impl Geometry {
    /// Identity direction, unit spacing, origin at 0.
    pub fn identity() -> Self {
        Self {
            origin_mm: [0.0; 3],
            spacing_mm: [1.0; 3],
            direction: IDENTITY3,
        }
    }

    /// Builds and validates a geometry.
    pub fn new(
        origin_mm: [f64; 3],
        spacing_mm: [f64; 3],
        direction: [[f64; 3]; 3],
    ) -> Result<Self, GeometryError> {
        let g = Self {
            origin_mm,
            spacing_mm,
            direction,
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks spacing > 0, finite origin and an orthonormal direction matrix.
    pub fn validate(&self) -> Result<(), GeometryError> {
        if !self.spacing_mm.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(GeometryError::Spacing(self.spacing_mm));
        }
        if !self.origin_mm.iter().all(|v| v.is_finite()) {
            return Err(GeometryError::Origin(self.origin_mm));
        }
        let dev = orthonormal_deviation(&self.direction);
        if dev.is_nan() || dev > ORTHONORMAL_TOLERANCE {
            return Err(GeometryError::NotOrthonormal(dev));
        }
        Ok(())
    }

    /// Unit vector of index axis `c` (0 = i, 1 = j, 2 = k) in LPS.
    pub fn axis(&self, c: usize) -> [f64; 3] {
        [
            self.direction[0][c],
            self.direction[1][c],
            self.direction[2][c],
        ]
    }

    /// World position (LPS mm) of continuous index `(i, j, k)`.
    pub fn index_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let mut w = self.origin_mm;
        for (r, wr) in w.iter_mut().enumerate() {
            for (c, idx) in ijk.iter().enumerate() {
                *wr += self.direction[r][c] * self.spacing_mm[c] * idx;
            }
        }
        w
    }

    /// Continuous index of world position `p` (LPS mm). Uses `Dᵀ` as the inverse of `D`.
    pub fn world_to_index(&self, p: [f64; 3]) -> [f64; 3] {
        let d = [
            p[0] - self.origin_mm[0],
            p[1] - self.origin_mm[1],
            p[2] - self.origin_mm[2],
        ];
        let mut ijk = [0.0; 3];
        for (c, out) in ijk.iter_mut().enumerate() {
            let along: f64 = (0..3).map(|r| self.direction[r][c] * d[r]).sum();
            *out = along / self.spacing_mm[c];
        }
        ijk
    }

    /// 4×4 row-major affine mapping `(i, j, k, 1)` to LPS mm.
    pub fn affine_lps(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] = self.direction[r][c] * self.spacing_mm[c];
            }
            a[r][3] = self.origin_mm[r];
        }
        a[3][3] = 1.0;
        a
    }

    /// Geometry from a 4×4 index→LPS affine; the columns' lengths are the spacing.
    pub fn from_affine_lps(a: &[[f64; 4]; 4]) -> Result<Self, GeometryError> {
        let mut spacing = [0.0; 3];
        let mut direction = [[0.0; 3]; 3];
        for c in 0..3 {
            let n = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err(GeometryError::Singular);
            }
            spacing[c] = n;
            for r in 0..3 {
                direction[r][c] = a[r][c] / n;
            }
        }
        Self::new([a[0][3], a[1][3], a[2][3]], spacing, direction)
    }

    /// Determinant of the direction matrix: +1 for a proper rotation, −1 with a flip.
    pub fn handedness(&self) -> f64 {
        det3(&self.direction)
    }
}

pub const IDENTITY3: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// max |DᵀD − I| over entries.
pub fn orthonormal_deviation(d: &[[f64; 3]; 3]) -> f64 {
    let mut dev: f64 = 0.0;
    for a in 0..3 {
        for b in 0..3 {
            let dot: f64 = (0..3).map(|r| d[r][a] * d[r][b]).sum();
            let want = if a == b { 1.0 } else { 0.0 };
            dev = dev.max((dot - want).abs());
        }
    }
    dev
}

pub fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_index_inverse_on_oblique_grid() {
        let c = 0.6f64;
        let s = 0.8f64;
        // Rotation about z by atan2(0.8, 0.6), then a flip of k.
        let g = Geometry::new(
            [10.0, -20.0, 30.0],
            [0.7, 0.7, 2.5],
            [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]],
        )
        .unwrap();
        let ijk = [3.0, 4.5, -2.0];
        let w = g.index_to_world(ijk);
        // Analytic: origin + i*0.7*(c,s,0) + j*0.7*(-s,c,0) + k*2.5*(0,0,-1)
        let want = [
            10.0 + 3.0 * 0.7 * c - 4.5 * 0.7 * s,
            -20.0 + 3.0 * 0.7 * s + 4.5 * 0.7 * c,
            30.0 + 5.0,
        ];
        for a in 0..3 {
            assert!((w[a] - want[a]).abs() < 1e-12, "{w:?} vs {want:?}");
        }
        let back = g.world_to_index(w);
        for a in 0..3 {
            assert!((back[a] - ijk[a]).abs() < 1e-12);
        }
        assert!((g.handedness() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(matches!(
            Geometry::new([0.0; 3], [1.0, 0.0, 1.0], IDENTITY3),
            Err(GeometryError::Spacing(_))
        ));
        let skew = [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(matches!(
            Geometry::new([0.0; 3], [1.0; 3], skew),
            Err(GeometryError::NotOrthonormal(_))
        ));
    }
}
