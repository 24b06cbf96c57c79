//! Exact Euclidean distance transform on an anisotropic grid (Felzenszwalb & Huttenlocher
//! 2012, separable lower envelopes of parabolas), the quantity of scipy's
//! `distance_transform_edt(~seeds, sampling=spacing)`: for every point the distance in mm to
//! the nearest seed point; +∞ everywhere when there is no seed.
//!
//! Arrays are C order with `shape` (slowest axis first) and `spacing_mm` in the same order.
//! Squared distances are accumulated axis by axis in f64 (last axis first) and the square root
//! taken at the end, so values agree with scipy's to rounding (~1e-15 relative).

use rayon::prelude::*;

/// Distance (mm) from every point to the nearest `true` of `seeds`.
pub fn distance_to_seeds(seeds: &[bool], shape: [usize; 3], spacing_mm: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = seeds
        .iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();
    if !seeds.iter().any(|&s| s) {
        return d;
    }
    for axis in (0..3).rev() {
        transform_axis(&mut d, shape, axis, spacing_mm[axis]);
    }
    d.par_iter_mut().for_each(|v| *v = v.sqrt());
    d
}

/// One pass of the 1-D squared transform along `axis`, every line in parallel.
fn transform_axis(d: &mut [f64], shape: [usize; 3], axis: usize, spacing: f64) {
    let n = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let lines = outer * stride;
    // Gather lines, transform, scatter: lines of one axis do not overlap.
    let results: Vec<(usize, Vec<f64>)> = (0..lines)
        .into_par_iter()
        .filter_map(|l| {
            let base = (l / stride) * n * stride + l % stride;
            let f: Vec<f64> = (0..n).map(|k| d[base + k * stride]).collect();
            if f.iter().all(|v| v.is_infinite()) {
                return None;
            }
            Some((base, lower_envelope(&f, spacing)))
        })
        .collect();
    for (base, line) in results {
        for (k, v) in line.into_iter().enumerate() {
            d[base + k * stride] = v;
        }
    }
}

/// `out[p] = min_q ((p − q)·s)² + f[q]` over the finite `f[q]` (at least one exists).
fn lower_envelope(f: &[f64], s: f64) -> Vec<f64> {
    let n = f.len();
    let s2 = s * s;
    // Parabola vertices (indices) and the boundaries between them, in index units.
    let mut v: Vec<usize> = Vec::with_capacity(n);
    let mut z: Vec<f64> = Vec::with_capacity(n + 1);
    for q in (0..n).filter(|&q| f[q].is_finite()) {
        loop {
            let Some(&p) = v.last() else {
                v.push(q);
                z.push(f64::NEG_INFINITY);
                break;
            };
            // Intersection of the parabolas rooted at p and q.
            let (pf, qf) = (p as f64, q as f64);
            let x = ((f[q] + s2 * qf * qf) - (f[p] + s2 * pf * pf)) / (2.0 * s2 * (qf - pf));
            if x <= *z.last().unwrap_or(&f64::NEG_INFINITY) {
                v.pop();
                z.pop();
                continue;
            }
            v.push(q);
            z.push(x);
            break;
        }
    }
    let mut out = vec![0f64; n];
    let mut k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        let pf = p as f64;
        while k + 1 < v.len() && z[k + 1] < pf {
            k += 1;
        }
        let q = v[k];
        let dq = (p as f64 - q as f64) * s;
        *o = dq * dq + f[q];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: min over seeds of the Euclidean distance in mm.
    fn naive(seeds: &[bool], shape: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
        let pts: Vec<[usize; 3]> = (0..seeds.len())
            .filter(|&i| seeds[i])
            .map(|i| {
                [
                    i / (shape[1] * shape[2]),
                    (i / shape[2]) % shape[1],
                    i % shape[2],
                ]
            })
            .collect();
        (0..seeds.len())
            .map(|i| {
                let p = [
                    i / (shape[1] * shape[2]),
                    (i / shape[2]) % shape[1],
                    i % shape[2],
                ];
                pts.iter()
                    .map(|q| {
                        (0..3)
                            .map(|a| ((p[a] as f64 - q[a] as f64) * sp[a]).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn equals_brute_force_on_random_seeds() {
        let shape = [7, 9, 11];
        let sp = [3.0, 0.78, 0.9];
        let mut state = 12345u64;
        for density in [1u64, 5, 30] {
            let seeds: Vec<bool> = (0..shape.iter().product::<usize>())
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) % 100 < density
                })
                .collect();
            let got = distance_to_seeds(&seeds, shape, sp);
            let want = naive(&seeds, shape, sp);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * w.max(1.0), "{g} vs {w}");
            }
        }
        let none = distance_to_seeds(&[false; 8], [2, 2, 2], sp);
        assert!(none.iter().all(|v| v.is_infinite()));
    }
}
