//! `Tensor`: an owned, contiguous f32 array of shape (N, C, D, H, W), W fastest.

use super::EngineError;

/// A contiguous (N, C, D, H, W) f32 tensor. Invariant: `data.len() == shape.iter().product()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: [usize; 5],
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data`; fails when its length does not match `shape`.
    pub fn new(shape: [usize; 5], data: Vec<f32>) -> Result<Self, EngineError> {
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
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor filled by `f(n, c, d, h, w)`.
    pub fn from_fn(shape: [usize; 5], mut f: impl FnMut([usize; 5]) -> f32) -> Self {
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

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
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
    pub fn at(&self, i: [usize; 5]) -> f32 {
        self.data[self.offset(i)]
    }

    /// One (n, c) channel as a slice of D·H·W values.
    pub fn channel(&self, n: usize, c: usize) -> &[f32] {
        let len = self.spatial_len();
        let start = (n * self.shape[1] + c) * len;
        &self.data[start..start + len]
    }

    pub fn channel_mut(&mut self, n: usize, c: usize) -> &mut [f32] {
        let len = self.spatial_len();
        let start = (n * self.shape[1] + c) * len;
        &mut self.data[start..start + len]
    }
}
