//! Solid primitives in the anatomy frame (LPS mm) and the 3×3 algebra they need.
//!
//! Matrices are row-major `[[f64; 3]; 3]`; a rotation's **columns** are the primitive's local
//! axes expressed in the anatomy frame, so `local = Rᵀ (p − centre)` and
//! `p = centre + R · local`.

pub type Mat3 = [[f64; 3]; 3];
pub type Vec3 = [f64; 3];

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

pub fn mul_mv(m: &Mat3, v: Vec3) -> Vec3 {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

/// `mᵀ · v`.
pub fn mul_mtv(m: &Mat3, v: Vec3) -> Vec3 {
    [
        m[0][0] * v[0] + m[1][0] * v[1] + m[2][0] * v[2],
        m[0][1] * v[0] + m[1][1] * v[1] + m[2][1] * v[2],
        m[0][2] * v[0] + m[1][2] * v[1] + m[2][2] * v[2],
    ]
}

pub fn mul_mm(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

pub fn transpose(m: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = m[j][i];
        }
    }
    t
}

pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Inverse of a 3×3 matrix; `None` when (nearly) singular.
pub fn inverse(m: &Mat3) -> Option<Mat3> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = 1.0 / det;
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) * inv,
            -c(0, 1, 2, 2) * inv,
            c(0, 1, 1, 2) * inv,
        ],
        [
            -c(1, 0, 2, 2) * inv,
            c(0, 0, 2, 2) * inv,
            -c(0, 0, 1, 2) * inv,
        ],
        [
            c(1, 0, 2, 1) * inv,
            -c(0, 0, 2, 1) * inv,
            c(0, 0, 1, 1) * inv,
        ],
    ])
}

/// Rotation about x by `a`, then y by `b`, then z by `c` (radians): `Rz · Ry · Rx`.
pub fn rotation_xyz(a: f64, b: f64, c: f64) -> Mat3 {
    let (sa, ca) = a.sin_cos();
    let (sb, cb) = b.sin_cos();
    let (sc, cc) = c.sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    mul_mm(&rz, &mul_mm(&ry, &rx))
}

/// An axis-aligned box in the anatomy frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    pub min: Vec3,
    pub max: Vec3,
}

impl Aabb {
    pub fn contains(&self, p: Vec3) -> bool {
        (0..3).all(|a| p[a] >= self.min[a] && p[a] <= self.max[a])
    }

    pub fn intersects(&self, o: &Aabb) -> bool {
        (0..3).all(|a| self.min[a] <= o.max[a] && o.min[a] <= self.max[a])
    }

    pub fn union(&self, o: &Aabb) -> Aabb {
        Aabb {
            min: [0, 1, 2].map(|a| self.min[a].min(o.min[a])),
            max: [0, 1, 2].map(|a| self.max[a].max(o.max[a])),
        }
    }

    pub fn grown(&self, mm: f64) -> Aabb {
        Aabb {
            min: self.min.map(|v| v - mm),
            max: self.max.map(|v| v + mm),
        }
    }

    /// The eight corners.
    pub fn corners(&self) -> [Vec3; 8] {
        let mut out = [[0.0; 3]; 8];
        for (n, c) in out.iter_mut().enumerate() {
            for a in 0..3 {
                c[a] = if n >> a & 1 == 0 {
                    self.min[a]
                } else {
                    self.max[a]
                };
            }
        }
        out
    }

    pub fn from_points(points: &[Vec3]) -> Option<Aabb> {
        let first = points.first()?;
        let mut b = Aabb {
            min: *first,
            max: *first,
        };
        for p in points {
            for a in 0..3 {
                b.min[a] = b.min[a].min(p[a]);
                b.max[a] = b.max[a].max(p[a]);
            }
        }
        Some(b)
    }
}

/// A solid ellipsoid: `|(Rᵀ(p − c)) / semi|² ≤ 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipsoid {
    pub centre: Vec3,
    pub semi_axes_mm: Vec3,
    pub rotation: Mat3,
}

impl Ellipsoid {
    pub fn new(centre: Vec3, semi_axes_mm: Vec3, rotation: Mat3) -> Self {
        Self {
            centre,
            semi_axes_mm,
            rotation,
        }
    }

    /// Coordinates in the ellipsoid's own frame (mm).
    pub fn local(&self, p: Vec3) -> Vec3 {
        mul_mtv(&self.rotation, sub(p, self.centre))
    }

    /// `Σ (local/semi)²`: < 1 inside, 1 on the surface.
    pub fn radius2(&self, p: Vec3) -> f64 {
        let l = self.local(p);
        (0..3).map(|a| (l[a] / self.semi_axes_mm[a]).powi(2)).sum()
    }

    pub fn contains(&self, p: Vec3) -> bool {
        self.radius2(p) <= 1.0
    }

    /// The same ellipsoid with every semi-axis multiplied by `f`.
    pub fn scaled(&self, f: f64) -> Ellipsoid {
        Ellipsoid {
            semi_axes_mm: self.semi_axes_mm.map(|s| s * f),
            ..*self
        }
    }

    pub fn volume_mm3(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi_axes_mm.iter().product::<f64>()
    }

    /// Tight axis-aligned bounds: half-extent along world axis `a` is `√Σ_k (R_ak s_k)²`.
    pub fn aabb(&self) -> Aabb {
        let half: Vec3 = [0, 1, 2].map(|a| {
            (0..3)
                .map(|k| (self.rotation[a][k] * self.semi_axes_mm[k]).powi(2))
                .sum::<f64>()
                .sqrt()
        });
        Aabb {
            min: [0, 1, 2].map(|a| self.centre[a] - half[a]),
            max: [0, 1, 2].map(|a| self.centre[a] + half[a]),
        }
    }

    /// Surface area (Knud Thomsen's approximation, relative error < 1.1 %).
    pub fn surface_area_mm2(&self) -> f64 {
        let p = 1.6075;
        let [a, b, c] = self.semi_axes_mm;
        let m = ((a * b).powf(p) + (a * c).powf(p) + (b * c).powf(p)) / 3.0;
        4.0 * std::f64::consts::PI * m.powf(1.0 / p)
    }

    /// Largest diameter of the ellipsoid's sections by axial (constant-z) planes, in mm.
    ///
    /// Parallel sections of an ellipsoid are homothetic ellipses and the central one is the
    /// largest, so this is the major axis of the section through the centre: with
    /// `Q = R diag(1/s²) Rᵀ`, the section `z = z_c` is `[x y] Q_xy [x y]ᵀ ≤ 1`, whose major
    /// semi-axis is `1/√λ_min(Q_xy)`.
    pub fn max_axial_diameter_mm(&self) -> f64 {
        let r = &self.rotation;
        let inv2 = self.semi_axes_mm.map(|s| 1.0 / (s * s));
        let q = |i: usize, j: usize| (0..3).map(|k| r[i][k] * inv2[k] * r[j][k]).sum::<f64>();
        let (a, b, d) = (q(0, 0), q(0, 1), q(1, 1));
        let mean = (a + d) / 2.0;
        let disc = (((a - d) / 2.0).powi(2) + b * b).sqrt();
        let lambda_min = mean - disc;
        2.0 / lambda_min.max(1e-12).sqrt()
    }
}

/// A capsule: all points within `radius_mm` of the segment `a`–`b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capsule {
    pub a: Vec3,
    pub b: Vec3,
    pub radius_mm: f64,
}

impl Capsule {
    pub fn distance2(&self, p: Vec3) -> f64 {
        let ab = sub(self.b, self.a);
        let ap = sub(p, self.a);
        let len2: f64 = ab.iter().map(|v| v * v).sum();
        let t = if len2 > 0.0 {
            ((0..3).map(|i| ab[i] * ap[i]).sum::<f64>() / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let d = sub(ap, scale(ab, t));
        d.iter().map(|v| v * v).sum()
    }

    pub fn contains(&self, p: Vec3) -> bool {
        self.distance2(p) <= self.radius_mm * self.radius_mm
    }

    pub fn aabb(&self) -> Aabb {
        Aabb {
            min: [0, 1, 2].map(|i| self.a[i].min(self.b[i]) - self.radius_mm),
            max: [0, 1, 2].map(|i| self.a[i].max(self.b[i]) + self.radius_mm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn inverse_and_rotation_are_consistent() {
        let r = rotation_xyz(0.3, -0.7, 1.1);
        let rt = transpose(&r);
        let i = mul_mm(&r, &rt);
        let inv = inverse(&r).unwrap();
        for a in 0..3 {
            for b in 0..3 {
                assert!(near(i[a][b], IDENTITY[a][b], 1e-12));
                assert!(near(inv[a][b], rt[a][b], 1e-12));
            }
        }
    }

    /// The analytic maximum axial diameter against a brute-force search over section
    /// boundary points of the rotated ellipsoid.
    #[test]
    fn max_axial_diameter_matches_brute_force() {
        let e = Ellipsoid::new(
            [3.0, -2.0, 5.0],
            [20.0, 11.0, 7.0],
            rotation_xyz(0.5, 0.9, 0.2),
        );
        let analytic = e.max_axial_diameter_mm();
        let bb = e.aabb();
        let mut best: f64 = 0.0;
        let nz = 81;
        for kz in 0..nz {
            let z = bb.min[2] + (bb.max[2] - bb.min[2]) * kz as f64 / (nz - 1) as f64;
            // Boundary of the section: for each angle, bisect the ray from the section centre.
            let mut pts = Vec::new();
            // The section centre lies on the line where the gradient has no x/y part; find it
            // as the midpoint of the extreme x and y points instead: use a coarse grid.
            let mut inside = Vec::new();
            let n = 200;
            for ix in 0..n {
                for iy in 0..n {
                    let x = bb.min[0] + (bb.max[0] - bb.min[0]) * ix as f64 / (n - 1) as f64;
                    let y = bb.min[1] + (bb.max[1] - bb.min[1]) * iy as f64 / (n - 1) as f64;
                    if e.contains([x, y, z]) {
                        inside.push([x, y]);
                    }
                }
            }
            if inside.is_empty() {
                continue;
            }
            // Convex hull extremes: the diameter of a convex set is attained between extreme
            // points in some direction; sample directions.
            for d in 0..180 {
                let th = d as f64 * std::f64::consts::PI / 180.0;
                let (s, c) = th.sin_cos();
                let proj = |p: &[f64; 2]| p[0] * c + p[1] * s;
                let lo = inside.iter().map(proj).fold(f64::INFINITY, f64::min);
                let hi = inside.iter().map(proj).fold(f64::NEG_INFINITY, f64::max);
                pts.push(hi - lo);
            }
            best = best.max(pts.iter().cloned().fold(0.0, f64::max));
        }
        let cell = (bb.max[0] - bb.min[0]).max(bb.max[1] - bb.min[1]) / 199.0;
        assert!(
            analytic >= best - 1e-9 && analytic <= best + 2.0 * cell,
            "analytic {analytic} brute {best}"
        );
    }

    #[test]
    fn aabb_is_tight() {
        let e = Ellipsoid::new([0.0; 3], [30.0, 10.0, 5.0], rotation_xyz(0.0, 0.0, 0.6));
        let bb = e.aabb();
        let mut maxx: f64 = 0.0;
        for t in 0..3600 {
            let th = t as f64 * std::f64::consts::TAU / 3600.0;
            let local = [30.0 * th.cos(), 10.0 * th.sin(), 0.0];
            maxx = maxx.max(mul_mv(&e.rotation, local)[0]);
        }
        assert!(near(bb.max[0], maxx, 1e-3));
    }
}
