//! Registration evaluation (seed 001's table; shared/docs/metrics.md): Dice between the
//! reference phase's labels and each other phase's labels on the reference grid, for
//! * `identity` — the moving labels resampled through the scanner geometry alone,
//! * `centre_of_mass` — the baseline: moved by the translation (LPS mm) that makes the kidney
//!   centres of mass coincide, then resampled,
//! * `aligned` — a registration's output, already on the reference grid (when given).
//!
//! Kidney = labels {1, 2, 3} (the organ including its masses), tumour = label 2. Resampling is
//! nearest neighbour (labels); voxels outside the moving grid are background.

use serde::Serialize;

use crate::volume::resample::{resample, Interpolation};
use crate::volume::{Volume, VolumeError};

/// Dice for kidney and tumour under one alignment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairDice {
    /// `None` when both masks are empty.
    pub kidney: Option<f64>,
    pub tumor: Option<f64>,
}

/// One reference/moving pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairReport {
    pub moving: String,
    pub identity: PairDice,
    pub centre_of_mass: PairDice,
    /// Translation applied by the baseline (LPS mm), `None` if a kidney mask is empty.
    pub centre_of_mass_shift_mm: Option<[f64; 3]>,
    pub aligned: Option<PairDice>,
}

/// Why a pair could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum RegEvalError {
    #[error("aligned labels of {name} have dims {got:?}, the reference {want:?}")]
    AlignedGrid {
        name: String,
        got: [usize; 3],
        want: [usize; 3],
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

fn dice(a: &[u8], b: &[u8], labels: &[u8]) -> Option<f64> {
    let (mut na, mut nb, mut both) = (0usize, 0usize, 0usize);
    for (x, y) in a.iter().zip(b) {
        let (p, q) = (labels.contains(x), labels.contains(y));
        na += usize::from(p);
        nb += usize::from(q);
        both += usize::from(p && q);
    }
    (na + nb > 0).then(|| 2.0 * both as f64 / (na + nb) as f64)
}

fn pair_dice(reference: &Volume<u8>, other: &Volume<u8>) -> PairDice {
    PairDice {
        kidney: dice(reference.data(), other.data(), &[1, 2, 3]),
        tumor: dice(reference.data(), other.data(), &[2]),
    }
}

/// Kidney ({1, 2, 3}) centre of mass in LPS mm.
pub fn kidney_centre_lps(v: &Volume<u8>) -> Option<[f64; 3]> {
    let [ni, nj, _] = v.dims();
    let (mut s, mut n) = ([0f64; 3], 0usize);
    for (o, l) in v.data().iter().enumerate() {
        if (1..=3).contains(l) {
            s[0] += (o % ni) as f64;
            s[1] += ((o / ni) % nj) as f64;
            s[2] += (o / (ni * nj)) as f64;
            n += 1;
        }
    }
    (n > 0).then(|| {
        v.geometry()
            .index_to_world([0, 1, 2].map(|a| s[a] / n as f64))
    })
}

/// Evaluates one moving phase against the reference.
pub fn evaluate_pair(
    name: &str,
    reference: &Volume<u8>,
    moving: &Volume<u8>,
    aligned: Option<&Volume<u8>>,
) -> Result<PairReport, RegEvalError> {
    let g = reference.geometry();
    let dims = reference.dims();
    let identity = resample(moving, g, dims, Interpolation::Nearest, 0)?;
    let shift = kidney_centre_lps(reference)
        .zip(kidney_centre_lps(moving))
        .map(|(r, m)| [r[0] - m[0], r[1] - m[1], r[2] - m[2]]);
    let com = match shift {
        Some(d) => {
            let mut geo = moving.geometry().clone();
            for a in 0..3 {
                geo.origin_mm[a] += d[a];
            }
            let shifted = Volume::new(moving.dims(), geo, moving.data().to_vec())?;
            pair_dice(
                reference,
                &resample(&shifted, g, dims, Interpolation::Nearest, 0)?,
            )
        }
        None => pair_dice(reference, &identity),
    };
    let aligned = match aligned {
        Some(a) if a.dims() != dims => {
            return Err(RegEvalError::AlignedGrid {
                name: name.to_string(),
                got: a.dims(),
                want: dims,
            })
        }
        Some(a) => Some(pair_dice(reference, a)),
        None => None,
    };
    Ok(PairReport {
        moving: name.to_string(),
        identity: pair_dice(reference, &identity),
        centre_of_mass: com,
        centre_of_mass_shift_mm: shift,
        aligned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;

    fn ball(dims: [usize; 3], c: [f64; 3], r: f64, tumour: bool, origin: [f64; 3]) -> Volume<u8> {
        let mut data = vec![0u8; dims.iter().product()];
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let d2 = (i as f64 - c[0]).powi(2)
                        + (j as f64 - c[1]).powi(2)
                        + (k as f64 - c[2]).powi(2);
                    if d2 <= r * r {
                        data[i + dims[0] * (j + dims[1] * k)] =
                            if tumour && i as f64 > c[0] + r / 3.0 {
                                2
                            } else {
                                1
                            };
                    }
                }
            }
        }
        let mut g = Geometry::identity();
        g.origin_mm = origin;
        Volume::new(dims, g, data).unwrap()
    }

    #[test]
    fn centre_of_mass_recovers_a_pure_translation() {
        let dims = [30, 28, 26];
        let reference = ball(dims, [15.0, 14.0, 13.0], 7.0, true, [0.0; 3]);
        // The same anatomy 4 voxels further along i in the moving phase's index space.
        let moving = ball(dims, [19.0, 14.0, 13.0], 7.0, true, [0.0; 3]);
        let r = evaluate_pair("arterial", &reference, &moving, Some(&reference)).unwrap();
        assert!(r.identity.kidney.unwrap() < 0.8, "{:?}", r.identity);
        assert_eq!(r.centre_of_mass.kidney, Some(1.0));
        assert_eq!(r.centre_of_mass.tumor, Some(1.0));
        let s = r.centre_of_mass_shift_mm.unwrap();
        assert!(
            (s[0] + 4.0).abs() < 1e-9 && s[1].abs() < 1e-9 && s[2].abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(r.aligned.unwrap().kidney, Some(1.0));
        // Empty moving labels: no shift, Dice 0 against a non-empty reference.
        let empty = Volume::filled(dims, Geometry::identity(), 0u8).unwrap();
        let e = evaluate_pair("x", &reference, &empty, None).unwrap();
        assert_eq!(e.centre_of_mass_shift_mm, None);
        assert_eq!(e.identity.kidney, Some(0.0));
    }
}
