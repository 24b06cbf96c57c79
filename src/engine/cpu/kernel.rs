//! The register-tiled micro-kernel shared by conv3d and conv_transpose3d, and its dispatch to
//! one instruction set.
//!
//! A tile computes `MR` output rows (output channels) × `NV·LANES` consecutive positions:
//! `out[m][q] = bias[m] + Σ_ic Σ_tap w[ic·w_ic_stride + tap.w + m] · x[x0 + ic·ic_stride + tap.x + q]`.
//! The convolution drivers lay their input out (padded, phase-split) so that every tap of every
//! output position is a constant offset: the kernel then needs no edge handling at all.
//! Accumulators live in registers for the whole reduction (ic × taps) and are written once.
//!
//! All `unsafe` of the module is here. [`run`] is safe: it checks, once per tile, that every
//! read and write the tile will do lies inside the slices it was given and that the CPU has the
//! instruction set, then calls the `#[target_feature]` entry point.

use super::simd::{Scalar, Simd};
use super::Isa;

/// Largest `MR · NV · LANES` of any instruction set: the size of a tile buffer.
pub(super) const MAX_TILE: usize = 512;
const _: () = {
    assert!(AVX512.mr * AVX512.nv_max * AVX512.lanes <= MAX_TILE);
    assert!(AVX2.mr * AVX2.nv_max * AVX2.lanes <= MAX_TILE);
    assert!(SCALAR.mr * SCALAR.nv_max * SCALAR.lanes <= MAX_TILE);
    assert!(AVX512_CH.mp * AVX512_CH.nvo * AVX512_CH.lanes <= MAX_TILE);
    assert!(AVX2_CH.mp * AVX2_CH.nvo * AVX2_CH.lanes <= MAX_TILE);
    assert!(SCALAR_CH.mp * SCALAR_CH.nvo * SCALAR_CH.lanes <= MAX_TILE);
};

/// Register-tile shape of an instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TileShape {
    /// Output rows per tile (weights are packed in blocks of this many rows).
    pub mr: usize,
    /// Most vectors per tile (a tile may use fewer, 1..=nv_max).
    pub nv_max: usize,
    /// f32 lanes per vector.
    pub lanes: usize,
}

impl TileShape {
    /// Positions covered by a full tile.
    pub fn width(self) -> usize {
        self.nv_max * self.lanes
    }
}

// 24 zmm accumulators + 4 input vectors + 1 broadcast weight of 32 registers.
const AVX512: TileShape = TileShape {
    mr: 6,
    nv_max: 4,
    lanes: 16,
};
// 12 ymm accumulators + 3 inputs + 1 weight of 16 registers.
const AVX2: TileShape = TileShape {
    mr: 4,
    nv_max: 3,
    lanes: 8,
};
// 20 q-register accumulators + 5 inputs + 1 weight of 32 registers.
#[cfg(target_arch = "aarch64")]
const NEON: TileShape = TileShape {
    mr: 4,
    nv_max: 5,
    lanes: 4,
};
const SCALAR: TileShape = TileShape {
    mr: 4,
    nv_max: 2,
    lanes: 8,
};

pub(super) fn tile_shape(isa: Isa) -> TileShape {
    match isa {
        Isa::Avx512 => AVX512,
        Isa::Avx2Fma => AVX2,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => NEON,
        // Never run off aarch64 (not available); any shape will do for packing.
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon => SCALAR,
        Isa::Scalar => SCALAR,
    }
}

/// Register-tile shape of the channel-vector kernel ([`run_channels`]): `mp` consecutive
/// positions (each broadcast) × `nvo` vectors of output channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChannelTileShape {
    pub mp: usize,
    pub nvo: usize,
    pub lanes: usize,
}

impl ChannelTileShape {
    /// Output channels per tile (weights are packed in blocks of this many).
    pub fn block(self) -> usize {
        self.nvo * self.lanes
    }
}

// 24 zmm accumulators + 2 weight vectors + 1 broadcast input of 32 registers.
const AVX512_CH: ChannelTileShape = ChannelTileShape {
    mp: 12,
    nvo: 2,
    lanes: 16,
};
// 12 ymm accumulators + 2 weights + 1 input of 16 registers.
const AVX2_CH: ChannelTileShape = ChannelTileShape {
    mp: 6,
    nvo: 2,
    lanes: 8,
};
// 24 q-register accumulators + 4 weights + 1 input of 32 registers.
#[cfg(target_arch = "aarch64")]
const NEON_CH: ChannelTileShape = ChannelTileShape {
    mp: 6,
    nvo: 4,
    lanes: 4,
};
const SCALAR_CH: ChannelTileShape = ChannelTileShape {
    mp: 4,
    nvo: 2,
    lanes: 8,
};

pub(super) fn channel_tile_shape(isa: Isa) -> ChannelTileShape {
    match isa {
        Isa::Avx512 => AVX512_CH,
        Isa::Avx2Fma => AVX2_CH,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => NEON_CH,
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon => SCALAR_CH,
        Isa::Scalar => SCALAR_CH,
    }
}

/// One tap of the reduction: offsets added to the input and weight positions of each channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tap {
    pub x: usize,
    pub w: usize,
}

/// A list of taps with its largest offsets (kept in step by [`Taps::push`], so that a tile's
/// bounds check costs O(1) instead of a pass over the list).
#[derive(Debug, Default)]
pub(super) struct Taps {
    list: Vec<Tap>,
    max_x: usize,
    max_w: usize,
}

impl Taps {
    pub fn push(&mut self, t: Tap) {
        self.list.push(t);
        self.max_x = self.max_x.max(t.x);
        self.max_w = self.max_w.max(t.w);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The operands of one tile (see the module docs for the formula).
pub(super) struct Tile<'a> {
    pub x: &'a [f32],
    pub x0: usize,
    pub ic_stride: usize,
    pub n_ic: usize,
    pub taps: &'a Taps,
    /// This row block's packed weights.
    pub w: &'a [f32],
    pub w_ic_stride: usize,
    /// `mr` values.
    pub bias: &'a [f32],
    /// Start from the values already in the output tile (a previous block of input
    /// channels) instead of the bias.
    pub accumulate: bool,
}

/// Raw pointers handed to the kernel once [`run`] has checked the bounds.
struct Raw {
    x: *const f32,
    ic_stride: usize,
    n_ic: usize,
    taps: *const Tap,
    n_taps: usize,
    w: *const f32,
    w_ic_stride: usize,
    bias: *const f32,
    accumulate: bool,
    /// Channel tiles spanning rows: slab distance between consecutive rows of the tile.
    row_step: usize,
    out: *mut f32,
}

/// Computes one tile of `nv` vectors into `out` as `mr` rows of `nv · lanes` values.
///
/// Panics (an internal error, not a data error) if the tile would read or write outside the
/// given slices or `nv` is out of range.
pub(super) fn run(isa: Isa, nv: usize, t: &Tile<'_>, out: &mut [f32]) {
    let s = tile_shape(isa);
    assert!(isa.is_available(), "conv kernel: {isa:?} not available");
    assert!((1..=s.nv_max).contains(&nv), "conv kernel: bad nv {nv}");
    assert!(out.len() >= s.mr * nv * s.lanes && t.bias.len() >= s.mr);
    if t.n_ic > 0 && !t.taps.is_empty() {
        let (tx, tw) = (t.taps.max_x, t.taps.max_w);
        let x_end = (t.n_ic - 1)
            .checked_mul(t.ic_stride)
            .and_then(|v| v.checked_add(t.x0 + tx + nv * s.lanes));
        let w_end = (t.n_ic - 1)
            .checked_mul(t.w_ic_stride)
            .and_then(|v| v.checked_add(tw + s.mr));
        assert!(
            x_end.is_some_and(|e| e <= t.x.len()) && w_end.is_some_and(|e| e <= t.w.len()),
            "conv kernel: tile reads out of bounds (internal error)"
        );
    }
    let raw = Raw {
        // Only dereferenced when there is a reduction, whose bounds were checked above.
        x: t.x.as_ptr().wrapping_add(t.x0),
        ic_stride: t.ic_stride,
        n_ic: t.n_ic,
        taps: t.taps.list.as_ptr(),
        n_taps: t.taps.list.len(),
        w: t.w.as_ptr(),
        w_ic_stride: t.w_ic_stride,
        bias: t.bias.as_ptr(),
        accumulate: t.accumulate,
        row_step: 0,
        out: out.as_mut_ptr(),
    };
    macro_rules! by_nv {
        ($f:ident, $shape:expr, [$($n:literal),*]) => {
            match nv {
                // SAFETY: bounds of every read (x, w, bias) and write (out) were checked above
                // for this `nv`, and the CPU has the instruction set (`is_available`).
                $($n if $n <= $shape.nv_max => unsafe { $f::<{ $shape.mr }, $n>(&raw) },)*
                _ => unreachable!("nv checked above"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => by_nv!(avx512, AVX512, [1, 2, 3, 4, 5, 6]),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => by_nv!(avx2, AVX2, [1, 2, 3, 4, 5, 6]),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => by_nv!(neon, NEON, [1, 2, 3, 4, 5, 6]),
        Isa::Scalar => by_nv!(scalar, SCALAR, [1, 2, 3, 4, 5, 6]),
        #[allow(unreachable_patterns)]
        _ => unreachable!("is_available() is false for other architectures' instruction sets"),
    }
}

/// Most positions per row of a channel tile that spans rows (`wo` in [`run_channels`]);
/// 0: such tiles are not compiled for this instruction set.
pub(super) fn channel_multi_row_max(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 6,
        Isa::Avx2Fma | Isa::Neon => 3,
        Isa::Scalar => 2,
    }
}

/// Computes one channel-vector tile into `out` as `mp` positions × `nvo · lanes` channels:
/// `out[p][o] = bias[o] + Σ_ic Σ_tap x[x0 + ic·ic_stride + tap.x + off(p)] · w[ic·w_ic_stride + tap.w + o]`
/// for `p < mp` (1 ≤ mp ≤ the shape's `mp`), where `off(p) = p·sw` (`wo` = 0: positions along
/// one row, `sw` = 1 or 2 the stride between them) or `off(p) = (p / wo)·row_step + (p % wo)·sw`
/// (`wo` ≥ 2: a tile of `mp / wo` rows of `wo` positions; 2 ≤ wo ≤ [`channel_multi_row_max`],
/// `mp` a multiple of `wo`). The `Tile` fields mean the same as for [`run`], except that
/// `bias` and each tap's weights are `nvo · lanes` output channels.
///
/// Panics (an internal error) if the tile would read or write outside the given slices.
pub(super) fn run_channels(
    isa: Isa,
    mp: usize,
    sw: usize,
    (wo, row_step): (usize, usize),
    t: &Tile<'_>,
    out: &mut [f32],
) {
    let s = channel_tile_shape(isa);
    assert!(isa.is_available(), "conv kernel: {isa:?} not available");
    assert!(
        (1..=s.mp).contains(&mp) && (1..=2).contains(&sw),
        "conv kernel: bad mp/sw"
    );
    assert!(
        wo == 0 || ((2..=channel_multi_row_max(isa)).contains(&wo) && mp.is_multiple_of(wo)),
        "conv kernel: bad wo"
    );
    assert!(out.len() >= mp * s.block() && t.bias.len() >= s.block());
    if t.n_ic > 0 && !t.taps.is_empty() {
        let (tx, tw) = (t.taps.max_x, t.taps.max_w);
        // Offset of the last position read, + 1.
        let span = match mp.checked_div(wo) {
            None => Some((mp - 1) * sw + 1),
            Some(rows) => (rows - 1)
                .checked_mul(row_step)
                .and_then(|v| v.checked_add((wo - 1) * sw + 1)),
        };
        let x_end = (t.n_ic - 1)
            .checked_mul(t.ic_stride)
            .and_then(|v| span.and_then(|sp| v.checked_add(t.x0 + tx + sp)));
        let w_end = (t.n_ic - 1)
            .checked_mul(t.w_ic_stride)
            .and_then(|v| v.checked_add(tw + s.block()));
        assert!(
            x_end.is_some_and(|e| e <= t.x.len()) && w_end.is_some_and(|e| e <= t.w.len()),
            "conv kernel: tile reads out of bounds (internal error)"
        );
    }
    let raw = Raw {
        // Only dereferenced when there is a reduction, whose bounds were checked above.
        x: t.x.as_ptr().wrapping_add(t.x0),
        ic_stride: t.ic_stride,
        n_ic: t.n_ic,
        taps: t.taps.list.as_ptr(),
        n_taps: t.taps.list.len(),
        w: t.w.as_ptr(),
        w_ic_stride: t.w_ic_stride,
        bias: t.bias.as_ptr(),
        accumulate: t.accumulate,
        row_step,
        out: out.as_mut_ptr(),
    };
    macro_rules! by_tile {
        ($f:ident, $shape:expr, [$($m:literal),*], [$(($mm:literal, $wo:literal)),*]) => {
            match (mp, sw, wo) {
                // SAFETY: bounds of every read (x, w, bias) and write (out) were checked above
                // for this `mp`, `sw`, `wo` and `row_step`, and the CPU has the instruction set.
                $(($m, 1, 0) => unsafe { $f::<$m, { $shape.nvo }, 1, 0>(&raw) },
                  ($m, 2, 0) => unsafe { $f::<$m, { $shape.nvo }, 2, 0>(&raw) },)*
                $(($mm, 1, $wo) => unsafe { $f::<$mm, { $shape.nvo }, 1, $wo>(&raw) },
                  ($mm, 2, $wo) => unsafe { $f::<$mm, { $shape.nvo }, 2, $wo>(&raw) },)*
                _ => unreachable!("mp, sw and wo checked above"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => by_tile!(
            avx512_ch,
            AVX512_CH,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            [
                (2, 2),
                (4, 2),
                (6, 2),
                (8, 2),
                (10, 2),
                (12, 2),
                (3, 3),
                (6, 3),
                (9, 3),
                (12, 3),
                (4, 4),
                (8, 4),
                (12, 4),
                (5, 5),
                (10, 5),
                (6, 6),
                (12, 6)
            ]
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => by_tile!(
            avx2_ch,
            AVX2_CH,
            [1, 2, 3, 4, 5, 6],
            [(2, 2), (4, 2), (6, 2), (3, 3), (6, 3)]
        ),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => by_tile!(
            neon_ch,
            NEON_CH,
            [1, 2, 3, 4, 5, 6],
            [(2, 2), (4, 2), (6, 2), (3, 3), (6, 3)]
        ),
        Isa::Scalar => by_tile!(scalar_ch, SCALAR_CH, [1, 2, 3, 4], [(2, 2), (4, 2)]),
        #[allow(unreachable_patterns)]
        _ => unreachable!("is_available() is false for other architectures' instruction sets"),
    }
}

/// Writes a channel tile (`tile[p · block + o]`, `p < mp`) to `outs[o][pos..pos + mp]` for
/// every `o < outs.len()` (≤ block): the transposition from channel vectors to NCDHW rows.
/// AVX-512 transposes 16 × 16 blocks in registers; other instruction sets copy element-wise.
///
/// Panics (an internal error) if a slice is too short.
pub(super) fn store_transposed(
    isa: Isa,
    tile: &[f32],
    block: usize,
    mp: usize,
    outs: &mut [&mut [f32]],
    pos: usize,
) {
    assert!(outs.len() <= block && tile.len() >= mp * block);
    assert!(outs.iter().all(|d| d.len() >= pos + mp));
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && mp <= 16 && block.is_multiple_of(16) && isa.is_available() {
        for (g, group) in outs.chunks_mut(16).enumerate() {
            let mut ptrs = [std::ptr::null_mut::<f32>(); 16];
            for (p, d) in ptrs.iter_mut().zip(group.iter_mut()) {
                *p = d[pos..].as_mut_ptr();
            }
            // SAFETY: AVX-512F is available; the kernel reads tile[p·block + 16g + [0, 16)] for
            // p < mp (≤ tile.len(), checked) and writes mp values at each of the first
            // group.len() pointers, each the start of a slice of ≥ mp values (checked above).
            unsafe { transpose16_avx512(tile.as_ptr().add(16 * g), block, mp, &ptrs, group.len()) };
        }
        return;
    }
    let _ = isa;
    for (o, dst) in outs.iter_mut().enumerate() {
        for (p, d) in dst[pos..pos + mp].iter_mut().enumerate() {
            *d = tile[p * block + o];
        }
    }
}

/// Writes a channel tile (`tile[p · block + o]`, `p < mp`) as `block` rows of `mp` values:
/// `dst[o · mp + p]` (the layout of a spatial tile of width `mp`).
pub(super) fn transpose_to_rows(isa: Isa, tile: &[f32], block: usize, mp: usize, dst: &mut [f32]) {
    assert!(dst.len() >= block * mp && mp > 0);
    let mut rows: Vec<&mut [f32]> = dst.chunks_mut(mp).take(block).collect();
    store_transposed(isa, tile, block, mp, &mut rows, 0);
}

/// Transposes `mp` (≤ 16) rows of 16 floats (row p at `src + p·stride`) and stores column o
/// (mp values) at `dst[o]` for o < n_dst.
///
/// # Safety
/// AVX-512F is available; `src + p·stride + [0, 16)` is readable for p < mp; `dst[o] + [0, mp)`
/// is writable for o < n_dst ≤ 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16_avx512(
    src: *const f32,
    stride: usize,
    mp: usize,
    dst: &[*mut f32; 16],
    n_dst: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): the pointer ranges read and written are those of the contract;
    // rows p ≥ mp are zero registers, never loaded; stores are masked to mp lanes.
    unsafe {
        let mut r = [_mm512_setzero_ps(); 16];
        for (p, v) in r.iter_mut().enumerate().take(mp) {
            *v = _mm512_loadu_ps(src.add(p * stride));
        }
        // Stage 1: interleave pairs of rows (32-bit elements).
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Stage 2: 64-bit pairs.
        for i in 0..4 {
            let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            r[4 * i] =
                _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
            r[4 * i + 1] =
                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
            r[4 * i + 2] =
                _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
            r[4 * i + 3] =
                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
        }
        // Stage 3: 128-bit lanes across rows i and i + 4 (within each group of 8).
        for g in 0..2 {
            for i in 0..4 {
                let (a, b) = (r[8 * g + i], r[8 * g + i + 4]);
                t[8 * g + i] = _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b);
                t[8 * g + i + 4] = _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b);
            }
        }
        // Stage 4: across the two groups of 8.
        for i in 0..8 {
            let (a, b) = (t[i], t[i + 8]);
            r[i] = _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b);
            r[i + 8] = _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b);
        }
        let mask: __mmask16 = if mp >= 16 { 0xffff } else { (1u16 << mp) - 1 };
        for (o, &d) in dst.iter().enumerate().take(n_dst) {
            // After the four stages register o holds column o.
            _mm512_mask_storeu_ps(d, mask, r[o]);
        }
    }
}

/// The channel-vector tile, generic over the instruction set.
///
/// # Safety
/// The CPU supports `S`; for every ic < n_ic, tap and p < MP, `x + ic·ic_stride + tap.x + off(p)`
/// is readable (`off` as in [`run_channels`]), and
/// `w + ic·w_ic_stride + tap.w + [0, NVO·LANES)` are readable, `bias + [0, NVO·LANES)` is
/// readable and `out + [0, MP·NVO·LANES)` is readable (if `accumulate`) and writable.
#[inline(always)]
unsafe fn tile_channels<
    S: Simd,
    const MP: usize,
    const NVO: usize,
    const SW: usize,
    const WO: usize,
>(
    r: &Raw,
) {
    // SAFETY (whole body): every pointer offset below is within the ranges the caller
    // guarantees readable/writable in this function's contract.
    unsafe {
        let mut b = [S::splat(0.0); NVO];
        for (v, b) in b.iter_mut().enumerate() {
            *b = S::load(r.bias.add(v * S::LANES));
        }
        let mut acc = [b; MP];
        if r.accumulate {
            for (p, row) in acc.iter_mut().enumerate() {
                for (v, a) in row.iter_mut().enumerate() {
                    *a = S::load(r.out.add((p * NVO + v) * S::LANES));
                }
            }
        }
        let taps = std::slice::from_raw_parts(r.taps, r.n_taps);
        for ic in 0..r.n_ic {
            let xb = r.x.add(ic * r.ic_stride);
            let wb = r.w.add(ic * r.w_ic_stride);
            for tap in taps {
                let xp = xb.add(tap.x);
                let wp = wb.add(tap.w);
                // The next tile reads the following positions of this row.
                S::prefetch(xp.wrapping_add(2 * MP * SW));
                let mut wv = [S::splat(0.0); NVO];
                for (v, wv) in wv.iter_mut().enumerate() {
                    *wv = S::load(wp.add(v * S::LANES));
                }
                for (p, row) in acc.iter_mut().enumerate() {
                    let off = match p.checked_div(WO) {
                        None => p * SW,
                        Some(row) => row * r.row_step + (p % WO) * SW,
                    };
                    let xv = S::splat(*xp.add(off));
                    for (a, wv) in row.iter_mut().zip(wv) {
                        *a = S::mul_add(xv, wv, *a);
                    }
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                S::store(r.out.add((p * NVO + v) * S::LANES), *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// # Safety
/// As [`tile_channels`] with `S` = AVX-512F.
unsafe fn avx512_ch<const MP: usize, const NVO: usize, const SW: usize, const WO: usize>(r: &Raw) {
    // SAFETY: forwarded contract; this function has the AVX-512F feature enabled.
    unsafe { tile_channels::<super::simd::Avx512, MP, NVO, SW, WO>(r) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// As [`tile_channels`] with `S` = AVX2 + FMA.
unsafe fn avx2_ch<const MP: usize, const NVO: usize, const SW: usize, const WO: usize>(r: &Raw) {
    // SAFETY: forwarded contract; this function has the AVX2 and FMA features enabled.
    unsafe { tile_channels::<super::simd::Avx2Fma, MP, NVO, SW, WO>(r) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
/// # Safety
/// As [`tile_channels`] with `S` = NEON.
unsafe fn neon_ch<const MP: usize, const NVO: usize, const SW: usize, const WO: usize>(r: &Raw) {
    // SAFETY: forwarded contract; NEON is enabled.
    unsafe { tile_channels::<super::simd::Neon, MP, NVO, SW, WO>(r) }
}

/// # Safety
/// As [`tile_channels`] with the portable fallback.
unsafe fn scalar_ch<const MP: usize, const NVO: usize, const SW: usize, const WO: usize>(r: &Raw) {
    // SAFETY: forwarded contract; the fallback needs no CPU feature.
    unsafe { tile_channels::<Scalar, MP, NVO, SW, WO>(r) }
}

/// The tile, generic over the instruction set. Inlined into each `#[target_feature]` entry.
///
/// # Safety
/// The CPU supports `S`; for every ic < n_ic and tap, `x + ic·ic_stride + tap.x + [0, NV·LANES)`
/// and `w + ic·w_ic_stride + tap.w + [0, MR)` are readable, `bias + [0, MR)` is readable and
/// `out + [0, MR·NV·LANES)` is readable (if `accumulate`) and writable.
#[inline(always)]
unsafe fn tile<S: Simd, const MR: usize, const NV: usize>(r: &Raw) {
    // SAFETY (whole body): every pointer offset below is within the ranges the caller
    // guarantees readable/writable in this function's contract.
    unsafe {
        let mut acc = [[S::splat(0.0); NV]; MR];
        for (m, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                *a = if r.accumulate {
                    S::load(r.out.add((m * NV + v) * S::LANES))
                } else {
                    S::splat(*r.bias.add(m))
                };
            }
        }
        let taps = std::slice::from_raw_parts(r.taps, r.n_taps);
        for ic in 0..r.n_ic {
            let xb = r.x.add(ic * r.ic_stride);
            let wb = r.w.add(ic * r.w_ic_stride);
            for tap in taps {
                let xp = xb.add(tap.x);
                let wp = wb.add(tap.w);
                let mut xv = [S::splat(0.0); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = S::load(xp.add(v * S::LANES));
                }
                for (m, row) in acc.iter_mut().enumerate() {
                    let wv = S::splat(*wp.add(m));
                    for (a, xv) in row.iter_mut().zip(xv) {
                        *a = S::mul_add(wv, xv, *a);
                    }
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                S::store(r.out.add((m * NV + v) * S::LANES), *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// # Safety
/// As [`tile`] with `S` = AVX-512F.
unsafe fn avx512<const MR: usize, const NV: usize>(r: &Raw) {
    // SAFETY: forwarded contract; this function has the AVX-512F feature enabled.
    unsafe { tile::<super::simd::Avx512, MR, NV>(r) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// As [`tile`] with `S` = AVX2 + FMA.
unsafe fn avx2<const MR: usize, const NV: usize>(r: &Raw) {
    // SAFETY: forwarded contract; this function has the AVX2 and FMA features enabled.
    unsafe { tile::<super::simd::Avx2Fma, MR, NV>(r) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
/// # Safety
/// As [`tile`] with `S` = NEON.
unsafe fn neon<const MR: usize, const NV: usize>(r: &Raw) {
    // SAFETY: forwarded contract; NEON is enabled.
    unsafe { tile::<super::simd::Neon, MR, NV>(r) }
}

/// # Safety
/// As [`tile`] with the portable fallback.
unsafe fn scalar<const MR: usize, const NV: usize>(r: &Raw) {
    // SAFETY: forwarded contract; the fallback needs no CPU feature.
    unsafe { tile::<Scalar, MR, NV>(r) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-register transpose (AVX-512) against the element-wise one, for every tile
    /// width, channel count and output offset, with guard values around each output row.
    #[test]
    fn store_transposed_matches_elementwise() {
        let block = 32;
        let tile: Vec<f32> = (0..16 * block).map(|i| i as f32 + 0.5).collect();
        for isa in Isa::available() {
            for mp in 1..=16 {
                for n_out in [1, 7, 16, 17, 32] {
                    let pos = 3;
                    let mut rows = vec![vec![-1.0f32; pos + mp + 2]; n_out];
                    let mut outs: Vec<&mut [f32]> =
                        rows.iter_mut().map(|r| &mut r[..pos + mp]).collect();
                    store_transposed(isa, &tile, block, mp, &mut outs, pos);
                    for (o, row) in rows.iter().enumerate() {
                        for (p, v) in row.iter().enumerate() {
                            let want = if (pos..pos + mp).contains(&p) {
                                tile[(p - pos) * block + o]
                            } else {
                                -1.0
                            };
                            assert_eq!(*v, want, "{isa:?} mp {mp} o {o} p {p}");
                        }
                    }
                }
            }
        }
    }

    /// A tile whose reads would leave the slab is refused (the bounds check guards the
    /// unsafe kernel), for both tilings.
    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_tile_panics() {
        // Reads up to 30 + 3·2 = 36: one past the end.
        let x = vec![0f32; 36];
        let w = vec![0f32; 64];
        let mut taps = Taps::default();
        taps.push(Tap { x: 30, w: 0 });
        let tile = Tile {
            x: &x,
            x0: 0,
            ic_stride: 0,
            n_ic: 1,
            taps: &taps,
            w: &w,
            w_ic_stride: 0,
            bias: &[0.0; 32],
            accumulate: false,
        };
        let mut out = [0f32; MAX_TILE];
        run_channels(Isa::Scalar, 4, 2, (0, 0), &tile, &mut out);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_spatial_tile_panics() {
        // Reads 30 + [0, 2·8): past the end.
        let x = vec![0f32; 40];
        let w = vec![0f32; 64];
        let mut taps = Taps::default();
        taps.push(Tap { x: 30, w: 0 });
        let tile = Tile {
            x: &x,
            x0: 0,
            ic_stride: 0,
            n_ic: 1,
            taps: &taps,
            w: &w,
            w_ic_stride: 0,
            bias: &[0.0; 32],
            accumulate: false,
        };
        let mut out = [0f32; MAX_TILE];
        run(Isa::Scalar, 2, &tile, &mut out);
    }
}
