//! `Tensor`: an owned, contiguous array of shape (N, C, D, H, W), W fastest, with f32
//! (default) or f16 storage ([`Element`]).
//!
//! Every op computes in f32 (or f64 in the reference); f16 storage holds what nnU-Net keeps
//! in half precision (the sliding-window accumulators and logits) and weights as stored in
//! the bundles. Conversions round to nearest, ties to even ([`Tensor::to_f16`]) and are exact
//! the other way ([`Tensor::to_f32`]).

use half::f16;

use super::EngineError;

/// A storage element type of a [`Tensor`]: `f32` or `half::f16`.
pub trait Element: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// Short name of the storage type ("f32", "f16").
    const NAME: &'static str;
    /// The value widened to f32 (exact for both types).
    fn to_f32(self) -> f32;
    /// `v` rounded to this type (round to nearest, ties to even).
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const NAME: &'static str = "f16";
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

/// A contiguous (N, C, D, H, W) tensor of `T` (f32 unless named). Invariant:
/// `data.len() == shape.iter().product()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T: Element = f32> {
    shape: [usize; 5],
    data: Vec<T>,
}

/// A tensor with half-precision storage.
pub type TensorF16 = Tensor<f16>;

impl<T: Element> Tensor<T> {
    /// Wraps `data`; fails when its length does not match `shape`.
    pub fn new(shape: [usize; 5], data: Vec<T>) -> Result<Self, EngineError> {
        let n = shape.iter().try_fold(1usize, |a, b| a.checked_mul(*b));
        if n != Some(data.len()) {
            return Err(EngineError::DataLength {
                shape,
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    pub fn zeros(shape: [usize; 5]) -> Self {
        Self {
            shape,
            data: vec![T::default(); shape.iter().product()],
        }
    }

    /// A tensor filled by `f(n, c, d, h, w)`.
    pub fn from_fn(shape: [usize; 5], mut f: impl FnMut([usize; 5]) -> T) -> Self {
        let mut data = Vec::with_capacity(shape.iter().product());
        for n in 0..shape[0] {
            for c in 0..shape[1] {
                for d in 0..shape[2] {
                    for h in 0..shape[3] {
                        for w in 0..shape[4] {
                            data.push(f([n, c, d, h, w]));
                        }
                    }
                }
            }
        }
        Self { shape, data }
    }

    pub fn shape(&self) -> [usize; 5] {
        self.shape
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Voxels per channel (D·H·W).
    pub fn spatial_len(&self) -> usize {
        self.shape[2] * self.shape[3] * self.shape[4]
    }

    /// Flat offset of an index (no bounds check beyond debug assertions).
    #[inline]
    pub fn offset(&self, i: [usize; 5]) -> usize {
        let s = self.shape;
        debug_assert!((0..5).all(|a| i[a] < s[a]));
        (((i[0] * s[1] + i[1]) * s[2] + i[2]) * s[3] + i[3]) * s[4] + i[4]
    }

    #[inline]
    pub fn at(&self, i: [usize; 5]) -> T {
        self.data[self.offset(i)]
    }

    /// One (n, c) channel as a slice of D·H·W values.
    pub fn channel(&self, n: usize, c: usize) -> &[T] {
        let len = self.spatial_len();
        let start = (n * self.shape[1] + c) * len;
        &self.data[start..start + len]
    }

    pub fn channel_mut(&mut self, n: usize, c: usize) -> &mut [T] {
        let len = self.spatial_len();
        let start = (n * self.shape[1] + c) * len;
        &mut self.data[start..start + len]
    }

    /// The same values with f32 storage (exact).
    pub fn to_f32(&self) -> Tensor<f32> {
        Tensor {
            shape: self.shape,
            data: self.data.iter().map(|v| v.to_f32()).collect(),
        }
    }

    /// The values rounded to f16 storage (nearest, ties to even; beyond ±65504 → ±∞).
    pub fn to_f16(&self) -> Tensor<f16> {
        Tensor {
            shape: self.shape,
            data: self
                .data
                .iter()
                .map(|v| f16::from_f32(v.to_f32()))
                .collect(),
        }
    }
}

/// `v` rounded to f16 in one step, to nearest with ties to even (numpy's `float64 → float16`).
/// `half::f16::from_f64` goes through f32 and can round twice (1 + 2⁻¹¹ + 2⁻⁴⁰ → 1.0 instead
/// of 1 + 2⁻¹⁰); nnU-Net's export resampling writes f64 results into f16 arrays with numpy.
pub fn f16_from_f64(v: f64) -> f16 {
    if v.is_nan() {
        return f16::NAN;
    }
    let a = v.abs();
    let mag = if a >= 65520.0 {
        f16::INFINITY
    } else if a <= 2f64.powi(-25) {
        f16::ZERO // 2⁻²⁵ is the tie between 0 and the smallest subnormal: even is 0
    } else {
        // exponent of a (a is normal in f64 here)
        let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let quantum = 2f64.powi(e.max(-14) - 10);
        let r = (a / quantum).round_ties_even() * quantum; // exact: scaling by powers of 2
        f16::from_f64(r) // r is an f16 value, converted exactly
    };
    if v.is_sign_negative() {
        -mag
    } else {
        mag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_from_f64_rounds_once() {
        let v = 1.0f64 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(f16_from_f64(v).to_bits(), 0x3c01);
        assert_eq!(f16_from_f64(1.0 + 2f64.powi(-11)).to_bits(), 0x3c00); // tie → even
        assert_eq!(f16_from_f64(65519.99), f16::MAX);
        assert_eq!(f16_from_f64(65520.0), f16::INFINITY);
        assert_eq!(f16_from_f64(-2f64.powi(-25)).to_bits(), 0x8000);
        assert_eq!(f16_from_f64(2f64.powi(-25) * 1.000001).to_bits(), 0x0001);
        assert_eq!(f16_from_f64(3.0 * 2f64.powi(-25)).to_bits(), 0x0002); // 1.5 quanta → 2
                                                                          // Every f16 value converts to itself.
        for bits in 0u16..=0xffff {
            let h = f16::from_bits(bits);
            if !h.is_nan() {
                assert_eq!(f16_from_f64(h.to_f64()).to_bits(), bits);
            }
        }
    }
}
