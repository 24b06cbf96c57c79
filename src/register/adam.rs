//! Adam (Kingma & Ba 2015) on a fixed-size parameter vector, with bias correction, exactly as
//! PyTorch's `torch.optim.Adam` without weight decay or AMSGrad:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `x ← x − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)`.

use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamSettings {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for AdamSettings {
    /// lr 0.01 (seed 001), β1 0.9, β2 0.999, ε 1e-8 (the usual defaults).
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// Adam's state for `N` parameters.
#[derive(Debug, Clone)]
pub struct Adam<const N: usize> {
    settings: AdamSettings,
    m: [f64; N],
    v: [f64; N],
    step: i32,
}

impl<const N: usize> Adam<N> {
    pub fn new(settings: AdamSettings) -> Self {
        Self {
            settings,
            m: [0.0; N],
            v: [0.0; N],
            step: 0,
        }
    }

    /// One update of `x` with gradient `g`.
    pub fn step(&mut self, x: &mut [f64; N], g: &[f64; N]) {
        let s = self.settings;
        self.step = self.step.saturating_add(1);
        let bc1 = 1.0 - s.beta1.powi(self.step);
        let bc2 = 1.0 - s.beta2.powi(self.step);
        for k in 0..N {
            self.m[k] = s.beta1 * self.m[k] + (1.0 - s.beta1) * g[k];
            self.v[k] = s.beta2 * self.v[k] + (1.0 - s.beta2) * g[k] * g[k];
            let m_hat = self.m[k] / bc1;
            let v_hat = self.v[k] / bc2;
            x[k] -= s.learning_rate * m_hat / (v_hat.sqrt() + s.epsilon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first step moves every parameter by lr · sign(g) (bias correction makes
    /// m̂ = g, v̂ = g²), a property of Adam independent of this implementation.
    #[test]
    fn first_step_is_lr_times_sign() {
        let mut adam = Adam::<3>::new(AdamSettings::default());
        let mut x = [1.0, 2.0, 3.0];
        adam.step(&mut x, &[0.5, -20.0, 1e-3]);
        let want = [0.99, 2.01, 2.99];
        for k in 0..3 {
            assert!((x[k] - want[k]).abs() < 1e-7, "{x:?}");
        }
    }

    /// Minimises a badly scaled quadratic.
    #[test]
    fn converges_on_a_quadratic() {
        let mut adam = Adam::<2>::new(AdamSettings {
            learning_rate: 0.05,
            ..AdamSettings::default()
        });
        let mut x = [1.0, -1.0];
        for _ in 0..2000 {
            let g = [2.0 * (x[0] - 0.3), 200.0 * (x[1] + 0.2)];
            adam.step(&mut x, &g);
        }
        assert!(
            (x[0] - 0.3).abs() < 1e-2 && (x[1] + 0.2).abs() < 1e-2,
            "{x:?}"
        );
    }
}
