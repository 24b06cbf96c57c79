//! Soft Dice loss between the reference masks and the resampled moving masks, and its gradient
//! with respect to the resampled masks.
//!
//! Both tensors are (1, C, D, H, W) on the working grid, values in [0, 1] (fractions), one
//! channel per structure. Per channel `c`: `I = Σ r·m`, `S = Σ r + Σ m`,
//! `Dice_c = 2I / S` (0 when `S = 0`), and `∂Dice_c/∂m_v = 2 (r_v·S − I) / S²`.
//! The loss is `1 − mean_c Dice_c`; sums are accumulated in f64.

use crate::engine::{EngineError, Tensor};

/// Loss, per-channel Dice and `∂loss/∂m` (same shape as `m`).
#[derive(Debug, Clone)]
pub struct DiceLoss {
    pub loss: f64,
    pub dice: Vec<f64>,
    pub grad: Tensor,
}

fn check(r: &Tensor, m: &Tensor) -> Result<(), EngineError> {
    if r.shape() != m.shape() || r.shape()[0] != 1 || r.shape()[1] == 0 {
        return Err(EngineError::Shape {
            op: "soft_dice_loss",
            message: "reference and moved masks must both be (1, C ≥ 1, D, H, W)".into(),
            shapes: vec![r.shape(), m.shape()],
        });
    }
    Ok(())
}

fn sums(r: &[f32], m: &[f32]) -> (f64, f64) {
    let (mut inter, mut total) = (0.0f64, 0.0f64);
    for (a, b) in r.iter().zip(m) {
        inter += f64::from(*a) * f64::from(*b);
        total += f64::from(*a) + f64::from(*b);
    }
    (inter, total)
}

/// The loss and per-channel Dice only.
pub fn soft_dice(r: &Tensor, m: &Tensor) -> Result<(f64, Vec<f64>), EngineError> {
    check(r, m)?;
    let c = r.shape()[1];
    let dice: Vec<f64> = (0..c)
        .map(|ch| {
            let (i, s) = sums(r.channel(0, ch), m.channel(0, ch));
            if s > 0.0 {
                2.0 * i / s
            } else {
                0.0
            }
        })
        .collect();
    let loss = 1.0 - dice.iter().sum::<f64>() / c as f64;
    Ok((loss, dice))
}

/// The loss, per-channel Dice and the gradient with respect to `m`.
pub fn soft_dice_with_grad(r: &Tensor, m: &Tensor) -> Result<DiceLoss, EngineError> {
    check(r, m)?;
    let c = r.shape()[1];
    let mut grad = Tensor::zeros(m.shape());
    let mut dice = Vec::with_capacity(c);
    for ch in 0..c {
        let rc = r.channel(0, ch);
        let (i, s) = sums(rc, m.channel(0, ch));
        if s <= 0.0 {
            dice.push(0.0);
            continue;
        }
        dice.push(2.0 * i / s);
        // ∂loss/∂m_v = −(1/C) · 2 (r_v S − I) / S².
        let k = -2.0 / (c as f64 * s * s);
        for (g, rv) in grad.channel_mut(0, ch).iter_mut().zip(rc) {
            *g = (k * (f64::from(*rv) * s - i)) as f32;
        }
    }
    let loss = 1.0 - dice.iter().sum::<f64>() / c as f64;
    Ok(DiceLoss { loss, dice, grad })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], c: usize) -> Tensor {
        Tensor::new([1, c, 1, 1, v.len() / c], v.to_vec()).unwrap()
    }

    #[test]
    fn hard_masks_give_the_set_dice() {
        // |R| = 3, |M| = 2, |R ∩ M| = 1 → Dice 0.4.
        let r = t(&[1.0, 1.0, 1.0, 0.0, 0.0], 1);
        let m = t(&[0.0, 0.0, 1.0, 1.0, 0.0], 1);
        let (loss, d) = soft_dice(&r, &m).unwrap();
        assert!((d[0] - 0.4).abs() < 1e-12 && (loss - 0.6).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let r = t(&[0.9, 0.2, 0.0, 1.0, 0.5, 0.3, 0.7, 0.0], 2);
        let m = t(&[0.4, 0.6, 0.1, 0.8, 0.2, 0.9, 0.0, 0.5], 2);
        let dl = soft_dice_with_grad(&r, &m).unwrap();
        for v in 0..8 {
            let h = 1e-3f32;
            let mut hi = m.clone();
            hi.data_mut()[v] += h;
            let mut lo = m.clone();
            lo.data_mut()[v] -= h;
            let fd = (soft_dice(&r, &hi).unwrap().0 - soft_dice(&r, &lo).unwrap().0)
                / (2.0 * f64::from(h));
            let g = f64::from(dl.grad.data()[v]);
            assert!((fd - g).abs() < 1e-4, "voxel {v}: {g} vs {fd}");
        }
    }
}
