//! Deterministic random numbers for the phantom.
//!
//! Two kinds, both independent of thread scheduling so a seed always yields the same study:
//! * [`Rng`], a sequential SplitMix64 stream, for drawing a case's parameters in a fixed order;
//! * [`hash_unit`] / [`hash_normal`], counter-based values (a hash of a key and an index), for
//!   per-voxel noise and texture generated in parallel.
//!
//! SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014) is fixed here rather than taken from a crate so the streams can never change
//! with a dependency update.

/// The SplitMix64 output function: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in [0, 1) from 53 bits.
fn unit_from_bits(b: u64) -> f64 {
    (b >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [0, 1) for (`key`, `index`).
pub fn hash_unit(key: u64, index: u64) -> f64 {
    unit_from_bits(mix64(key ^ mix64(index)))
}

/// Standard normal for (`key`, `index`) (Box–Muller on two hashed uniforms).
pub fn hash_normal(key: u64, index: u64) -> f64 {
    let h = mix64(key ^ mix64(index));
    let u1 = unit_from_bits(mix64(h)).max(1e-300);
    let u2 = unit_from_bits(mix64(h ^ 0x5851_F42D_4C95_7F2D));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A sequential SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for a named sub-stream (same parent state → same child).
    pub fn fork(&self, label: &str) -> Rng {
        let mut h = self.state;
        for b in label.bytes() {
            h = mix64(h ^ b as u64);
        }
        Rng::new(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit_from_bits(self.next_u64())
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Log-uniform in [lo, hi) (both > 0).
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Normal with mean `m` and standard deviation `s`, clamped to [lo, hi].
    pub fn normal_clamped(&mut self, m: f64, s: f64, lo: f64, hi: f64) -> f64 {
        (m + s * self.normal()).clamp(lo, hi)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform integer in [0, n) (n > 0; 0 when n == 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Index drawn with the given non-negative weights (0 when all are zero).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return 0;
        }
        let mut r = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

/// Smooth value noise in [-1, 1] at `p` (mm) with feature size `scale_mm`: trilinear
/// interpolation (smoothstep-weighted) of hashed lattice values. Used for tumour heterogeneity
/// and fat pockets; it lives in the anatomy frame so it moves with the patient between phases.
pub fn value_noise(key: u64, p: [f64; 3], scale_mm: f64) -> f64 {
    let q = [p[0] / scale_mm, p[1] / scale_mm, p[2] / scale_mm];
    let base = [q[0].floor(), q[1].floor(), q[2].floor()];
    let f = [q[0] - base[0], q[1] - base[1], q[2] - base[2]];
    let s = f.map(|t| t * t * (3.0 - 2.0 * t));
    let corner = |dx: i64, dy: i64, dz: i64| {
        let (x, y, z) = (
            base[0] as i64 + dx,
            base[1] as i64 + dy,
            base[2] as i64 + dz,
        );
        let idx = (x as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7)
            ^ (y as u64).wrapping_mul(0xA076_1D64_78BD_642F)
            ^ (z as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB);
        2.0 * hash_unit(key, idx) - 1.0
    };
    let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
    let x00 = lerp(corner(0, 0, 0), corner(1, 0, 0), s[0]);
    let x10 = lerp(corner(0, 1, 0), corner(1, 1, 0), s[0]);
    let x01 = lerp(corner(0, 0, 1), corner(1, 0, 1), s[0]);
    let x11 = lerp(corner(0, 1, 1), corner(1, 1, 1), s[0]);
    lerp(lerp(x00, x10, s[1]), lerp(x01, x11, s[1]), s[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_forks_differ() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut f1 = Rng::new(7).fork("x");
        let mut f2 = Rng::new(7).fork("y");
        assert_ne!(f1.next_u64(), f2.next_u64());
    }

    #[test]
    fn normal_has_unit_moments() {
        let n = 200_000;
        let (mut s1, mut s2) = (0.0, 0.0);
        for i in 0..n {
            let v = hash_normal(42, i);
            s1 += v;
            s2 += v * v;
        }
        let mean = s1 / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn value_noise_is_bounded_and_continuous() {
        let mut prev = value_noise(3, [0.0, 0.0, 0.0], 5.0);
        for i in 1..2000 {
            let p = [i as f64 * 0.01, 0.3, -0.7];
            let v = value_noise(3, p, 5.0);
            assert!((-1.0..=1.0).contains(&v));
            assert!((v - prev).abs() < 0.05, "jump at {i}");
            prev = v;
        }
    }
}
