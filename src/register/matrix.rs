//! Small dense 4×4 homogeneous-affine helpers (row-major `[[f64; 4]; 4]`, f64).
//!
//! Every matrix handled here is affine: its last row is `[0, 0, 0, 1]`. The inverse exploits
//! this (3×3 inverse of the linear part, then the translation), so it is exact to rounding.

/// A row-major 4×4 homogeneous matrix.
pub type Mat4 = [[f64; 4]; 4];

/// The 4×4 identity.
pub const IDENTITY4: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// `a · b`.
pub fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut c = [[0.0; 4]; 4];
    for r in 0..4 {
        for k in 0..4 {
            c[r][k] = (0..4).map(|m| a[r][m] * b[m][k]).sum();
        }
    }
    c
}

/// `aᵀ`.
pub fn transpose(a: &Mat4) -> Mat4 {
    let mut t = [[0.0; 4]; 4];
    for r in 0..4 {
        for c in 0..4 {
            t[c][r] = a[r][c];
        }
    }
    t
}

/// Applies the affine `m` to the point `p`.
pub fn apply(m: &Mat4, p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
}

/// The linear part (upper-left 3×3).
pub fn linear(m: &Mat4) -> [[f64; 3]; 3] {
    [0, 1, 2].map(|r| [m[r][0], m[r][1], m[r][2]])
}

/// Inverse of an affine matrix (last row `[0, 0, 0, 1]`); `None` when the linear part is
/// singular (|det| < 1e-12 × the cube of its largest entry) or not finite.
pub fn inverse_affine(m: &Mat4) -> Option<Mat4> {
    let l = linear(m);
    let det = crate::volume::geometry::det3(&l);
    let scale = l
        .iter()
        .flatten()
        .fold(0.0f64, |acc, v| acc.max(v.abs()))
        .powi(3);
    if !det.is_finite() || det.abs() <= 1e-12 * scale || scale == 0.0 {
        return None;
    }
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| l[r0][c0] * l[r1][c1] - l[r0][c1] * l[r1][c0];
    // inv[r][c] = cofactor(c, r) / det (adjugate).
    let inv3 = [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ];
    let mut out = IDENTITY4;
    for r in 0..3 {
        for c in 0..3 {
            out[r][c] = inv3[r][c] / det;
        }
    }
    for r in 0..3 {
        out[r][3] = -(0..3).map(|c| out[r][c] * m[c][3]).sum::<f64>();
    }
    out.iter().flatten().all(|v| v.is_finite()).then_some(out)
}

/// The first three rows (a 3×4 affine, as the engine's `theta`).
pub fn top3(m: &Mat4) -> [[f64; 4]; 3] {
    [m[0], m[1], m[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_a_general_affine() {
        let m = [
            [0.9, -0.2, 0.1, 5.0],
            [0.3, 1.1, -0.4, -7.0],
            [0.05, 0.2, 0.8, 12.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let inv = inverse_affine(&m).unwrap();
        let p = mul(&m, &inv);
        for r in 0..4 {
            for c in 0..4 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((p[r][c] - want).abs() < 1e-12, "{p:?}");
            }
        }
        let x = [1.0, -2.0, 3.0];
        let y = apply(&m, x);
        let back = apply(&inv, y);
        for a in 0..3 {
            assert!((back[a] - x[a]).abs() < 1e-12);
        }
    }

    #[test]
    fn singular_has_no_inverse() {
        let mut m = IDENTITY4;
        m[2][2] = 0.0;
        assert!(inverse_affine(&m).is_none());
    }
}
