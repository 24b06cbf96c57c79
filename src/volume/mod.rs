//! `Volume`: voxels plus their place in patient space.
//!
//! # Conventions (the only place they are written down)
//!
//! * **World space is DICOM patient space, LPS, millimetres**: +x towards the patient's
//!   **L**eft, +y towards the **P**osterior, +z towards the **S**uperior (head).
//! * **Index space** is `(i, j, k)` = (column, row, slice). `i` varies fastest in memory:
//!   `offset = i + ni * (j + nj * k)`. For a volume assembled from DICOM slices, `i` runs along
//!   the first ImageOrientationPatient vector (along a row), `j` along the second (down a
//!   column) and `k` along the slice normal in the direction of increasing position.
//! * **Geometry**: `world = origin + D · diag(spacing) · (i, j, k)ᵀ`, where the columns of the
//!   3×3 direction matrix `D` are the unit vectors of the `i`, `j` and `k` axes in LPS, `origin`
//!   is the world position of the **centre** of voxel (0, 0, 0), and spacing is centre-to-centre
//!   distance in mm. `D` is orthonormal (a proper rotation or a rotation with one flip).
//! * **NIfTI** stores RAS: its affine is `diag(-1, -1, 1, 1) · A_lps`, exactly what nibabel and
//!   ITK read and write (see [`nifti`]).
//!
//! A `Volume` owns its voxels. Voxel types are plain numbers (`f32` for intensities in HU,
//! `u8` for label maps).

pub mod geometry;
pub mod nifti;
pub mod resample;

pub use geometry::{Geometry, GeometryError};
pub use resample::{resample, Interpolation};

/// A 3-D grid of voxels with its geometry. Invariant: `data.len() == dims[0]*dims[1]*dims[2]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    dims: [usize; 3],
    geometry: Geometry,
    data: Vec<T>,
}

/// Errors building a volume from parts.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("voxel count {got} does not match dims {dims:?} ({expected} voxels)")]
    DataLength {
        dims: [usize; 3],
        expected: usize,
        got: usize,
    },
    #[error("dims {0:?} contain a zero or overflow")]
    Dims([usize; 3]),
}

impl<T> Volume<T> {
    /// Builds a volume; fails if `data` does not hold exactly `dims` voxels.
    pub fn new(dims: [usize; 3], geometry: Geometry, data: Vec<T>) -> Result<Self, VolumeError> {
        let expected = voxel_count(dims).ok_or(VolumeError::Dims(dims))?;
        if data.len() != expected {
            return Err(VolumeError::DataLength {
                dims,
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            dims,
            geometry,
            data,
        })
    }

    /// A volume filled with `value`.
    pub fn filled(dims: [usize; 3], geometry: Geometry, value: T) -> Result<Self, VolumeError>
    where
        T: Clone,
    {
        let n = voxel_count(dims).ok_or(VolumeError::Dims(dims))?;
        Ok(Self {
            dims,
            geometry,
            data: vec![value; n],
        })
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
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
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Linear offset of voxel `(i, j, k)`; `None` outside the grid.
    pub fn offset(&self, i: usize, j: usize, k: usize) -> Option<usize> {
        let [ni, nj, nk] = self.dims;
        (i < ni && j < nj && k < nk).then(|| i + ni * (j + nj * k))
    }

    /// Voxel `(i, j, k)`; `None` outside the grid.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<&T> {
        self.offset(i, j, k).map(|o| &self.data[o])
    }

    /// Applies `f` to every voxel, keeping the geometry.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Volume<U> {
        Volume {
            dims: self.dims,
            geometry: self.geometry.clone(),
            data: self.data.iter().map(f).collect(),
        }
    }
}

/// `ni * nj * nk`, or `None` when a dim is zero or the product overflows.
pub fn voxel_count(dims: [usize; 3]) -> Option<usize> {
    if dims.contains(&0) {
        return None;
    }
    dims[0].checked_mul(dims[1])?.checked_mul(dims[2])
}
