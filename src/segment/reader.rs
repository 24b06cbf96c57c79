//! The array an nnU-Net reader/writer class would hand to the model, built from a nephrod
//! [`Volume`], and the way back (shared/docs/nnunet-inference.md §3.1).
//!
//! A [`Volume`]'s memory order is `[k][j][i]` (slice, row, column of its voxel grid; `i`
//! fastest). nnU-Net's readers give, for a 3-D image:
//! * `SimpleITKIO` — `GetArrayFromImage`: `[k][j][i]` of the file's grid, spacing
//!   `(s_k, s_j, s_i)`: exactly the volume's memory, spacings reversed.
//! * `NibabelIO` — `get_fdata().transpose(2, 1, 0)`: the same `[k][j][i]` array.
//! * `NibabelIOWithReorient` — first `as_reoriented(io_orientation(affine))`: the grid is
//!   permuted and flipped so that voxel axis `a` runs along RAS world axis `a` in the positive
//!   direction (R, A, S = LPS −x, −y, +z), then transposed: the array is `[S][A][R]`.
//!   `io_orientation` picks, for each voxel axis in turn, the world axis with the largest
//!   |direction cosine| and removes that world axis from later choices (nibabel's greedy
//!   rule; nibabel first replaces the matrix by its closest orthogonal matrix, which for
//!   nephrod's orthonormal directions (deviation ≤ 1e-4) only matters at exact 45° ties).
//!
//! Writing reverses the same map (nnU-Net writes the segmentation on the input's grid), so a
//! result array maps back onto the input volume's voxels with [`AxisMap::to_volume_order`].
//! Array axes here are nnU-Net's untransposed array axes; `transpose_forward` is applied later
//! (preprocessing).

use crate::segment::plan::ReaderAxes;
use crate::volume::Volume;

/// How the reader's array axes relate to a volume's index axes.
///
/// Array axis `a` (0 = slowest) runs along volume index axis `axis[a]` (0 = i, 1 = j, 2 = k),
/// reversed when `flip[a]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisMap {
    pub axis: [usize; 3],
    pub flip: [bool; 3],
    /// Volume dims (ni, nj, nk).
    pub volume_dims: [usize; 3],
}

/// A volume as a reader array: shape and spacing in array axis order (slowest first).
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderArray<T> {
    pub data: Vec<T>,
    pub shape: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub map: AxisMap,
}

/// The nibabel `io_orientation` of a volume's grid in RAS terms: for voxel axis `c` (i, j, k)
/// the RAS world axis it runs along and whether it runs against it.
pub fn ras_orientation(direction: &[[f64; 3]; 3]) -> [(usize, bool); 3] {
    // RAS direction cosines: negate the L and P rows.
    let mut ras = *direction;
    for c in 0..3 {
        ras[0][c] = -ras[0][c];
        ras[1][c] = -ras[1][c];
    }
    let mut used = [false; 3];
    let mut out = [(0usize, false); 3];
    for c in 0..3 {
        let mut best = None::<(usize, f64)>;
        for r in 0..3 {
            if used[r] {
                continue;
            }
            let v = ras[r][c].abs();
            // np.argmax: the first of equal maxima.
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((r, v));
            }
        }
        let r = best.map_or(c, |(r, _)| r);
        used[r] = true;
        out[c] = (r, ras[r][c] < 0.0);
    }
    out
}

impl AxisMap {
    /// The map a reader applies to a volume with this direction and dims.
    pub fn for_reader(reader: ReaderAxes, direction: &[[f64; 3]; 3], dims: [usize; 3]) -> Self {
        match reader {
            ReaderAxes::SimpleItk | ReaderAxes::Nibabel => AxisMap {
                axis: [2, 1, 0],
                flip: [false; 3],
                volume_dims: dims,
            },
            ReaderAxes::NibabelWithReorient => {
                let ornt = ras_orientation(direction);
                // Reoriented voxel axis w runs along RAS axis w; array = [S][A][R] → array
                // axis a is RAS axis 2 − a.
                let mut axis = [0; 3];
                let mut flip = [false; 3];
                for (c, &(ras_axis, against)) in ornt.iter().enumerate() {
                    let a = 2 - ras_axis;
                    axis[a] = c;
                    flip[a] = against;
                }
                AxisMap {
                    axis,
                    flip,
                    volume_dims: dims,
                }
            }
        }
    }

    /// Array shape (slowest first).
    pub fn shape(&self) -> [usize; 3] {
        self.axis.map(|c| self.volume_dims[c])
    }

    /// Flat volume offset of every array element, in array memory order.
    fn volume_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let shape = self.shape();
        let [ni, nj, _] = self.volume_dims;
        let stride = [1, ni, ni * nj];
        let step = |a: usize| stride[self.axis[a]];
        let start = |a: usize| {
            if self.flip[a] {
                (shape[a].saturating_sub(1)) * step(a)
            } else {
                0
            }
        };
        let base = start(0) + start(1) + start(2);
        let signed = |a: usize| -> isize {
            let s = step(a) as isize;
            if self.flip[a] {
                -s
            } else {
                s
            }
        };
        let (s0, s1, s2) = (signed(0), signed(1), signed(2));
        (0..shape[0]).flat_map(move |x| {
            (0..shape[1]).flat_map(move |y| {
                (0..shape[2]).map(move |z| {
                    (base as isize + x as isize * s0 + y as isize * s1 + z as isize * s2) as usize
                })
            })
        })
    }

    /// Reorders an array in this map's array order back to volume memory order.
    /// `array.len()` must equal the volume's voxel count (else `None`).
    pub fn to_volume_order<T: Copy + Default>(&self, array: &[T]) -> Option<Vec<T>> {
        let n: usize = self.volume_dims.iter().product();
        if array.len() != n {
            return None;
        }
        let mut out = vec![T::default(); n];
        for (v, off) in array.iter().zip(self.volume_offsets()) {
            out[off] = *v;
        }
        Some(out)
    }
}

/// The reader array of `volume` as `reader` would produce it.
pub fn to_reader_array<T: Copy>(volume: &Volume<T>, reader: ReaderAxes) -> ReaderArray<T> {
    let g = volume.geometry();
    let map = AxisMap::for_reader(reader, &g.direction, volume.dims());
    let src = volume.data();
    let data = map.volume_offsets().map(|o| src[o]).collect();
    ReaderArray {
        data,
        shape: map.shape(),
        spacing_mm: map.axis.map(|c| g.spacing_mm[c]),
        map,
    }
}
