//! conv_transpose3d. Kernel = stride with no padding (nnU-Net's up-convolutions, e.g. 2×2×2
//! stride 2 or 1×2×2 stride 1×2×2): each output voxel receives exactly one tap, so the op is a
//! GEMM of (output channel, tap) rows × input positions, run by the shared micro-kernel over a
//! per-unit copy of the input and scattered into the output (interleaved along W). Any other
//! configuration runs a correct, threaded, unvectorised scatter per output channel.

use rayon::prelude::*;

use super::kernel::{self, Tap, Taps, Tile, TileShape, MAX_TILE};
use super::{target_units, unavailable, AlignedVec, ConvKernel, Isa};
use crate::engine::ops::ConvTranspose3d;
use crate::engine::tensor::Tensor;
use crate::engine::{shape_err, EngineError};

/// Floats of input copy a work unit aims for.
const SLAB_TARGET: usize = 64 * 1024;

/// A conv_transpose3d with weights repacked for one instruction set; reusable across calls.
#[derive(Debug, Clone)]
pub struct PackedConvTranspose3d {
    isa: Isa,
    shape: TileShape,
    ic: usize,
    oc: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    bias: Vec<f32>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Kernel = stride, no padding. Rows `m = o·T + t` (t = (kd·kH + kh)·kW + kw) in blocks
    /// of `block` rows; `w`: `[row block][ic][block]`; `row_bias`: bias of each row, padded
    /// to whole blocks. `channel`: the channel-vector kernel (positions broadcast, vectors
    /// along rows), else the spatial one (vectors along input positions).
    Gemm {
        w: AlignedVec,
        row_bias: Vec<f32>,
        block: usize,
        channel: bool,
    },
    /// Anything else: the weight as given, (I, O, kD, kH, kW).
    General { w: Vec<f32> },
}

/// One work unit of the GEMM path: batch `n`, input planes `d0..d1`, output channels
/// `o0..o0 + outs.len()`, each output slice covering output planes `d0·sd..d1·sd`.
struct Unit<'a> {
    n: usize,
    d0: usize,
    d1: usize,
    o0: usize,
    outs: Vec<&'a mut [f32]>,
}

impl PackedConvTranspose3d {
    /// Packs `conv` for [`Isa::selected`].
    pub fn new(conv: &ConvTranspose3d) -> Result<Self, EngineError> {
        Self::with_isa(conv, Isa::selected())
    }

    /// Packs `conv` for `isa`, the register tiling chosen by size; `Unsupported` if this CPU
    /// lacks the instruction set.
    pub fn with_isa(conv: &ConvTranspose3d, isa: Isa) -> Result<Self, EngineError> {
        Self::with_kernel(conv, isa, None)
    }

    /// Packs `conv` for `isa` and, for the kernel = stride path, a given register tiling
    /// (tests and benchmarks force each one; `None`: chosen by size).
    pub fn with_kernel(
        conv: &ConvTranspose3d,
        isa: Isa,
        kernel: Option<ConvKernel>,
    ) -> Result<Self, EngineError> {
        if !isa.is_available() {
            return Err(unavailable("conv_transpose3d", isa));
        }
        let ws = conv.weight.shape();
        let [ic, oc, kd, kh, kw] = ws;
        if conv.stride.contains(&0) || ws[2..].contains(&0) {
            return Err(shape_err(
                "conv_transpose3d",
                "stride and kernel must be ≥ 1",
                &[ws],
            ));
        }
        let mut bias = vec![0f32; oc];
        if let Some(b) = &conv.bias {
            if b.len() != oc {
                return Err(shape_err(
                    "conv_transpose3d",
                    "bias length differs from output channels",
                    &[ws],
                ));
            }
            bias.copy_from_slice(b);
        }
        let k = [kd, kh, kw];
        let shape = kernel::tile_shape(isa);
        let src = conv.weight.data();
        let kind = if k == conv.stride && conv.padding == [0; 3] {
            let t_n = kd * kh * kw;
            let rows = oc * t_n;
            let ch = kernel::channel_tile_shape(isa);
            let channel = match kernel {
                Some(k) => k == ConvKernel::Channel,
                // Measured on a Sapphire Rapids core: the spatial tiling is as fast or faster on
                // nnU-Net's up-convolutions.
                None => false,
            };
            let mr = if channel { ch.block() } else { shape.mr };
            let blocks = rows.div_ceil(mr);
            let mut packed = AlignedVec::zeroed(blocks * ic * mr);
            let w = packed.as_mut_slice();
            let mut row_bias = vec![0f32; blocks * mr];
            for m in 0..rows {
                let (o, t) = (m / t_n, m % t_n);
                let (b, mm) = (m / mr, m % mr);
                row_bias[m] = bias[o];
                for i in 0..ic {
                    w[(b * ic + i) * mr + mm] = src[(i * oc + o) * t_n + t];
                }
            }
            Kind::Gemm {
                w: packed,
                row_bias,
                block: mr,
                channel,
            }
        } else {
            Kind::General { w: src.to_vec() }
        };
        Ok(Self {
            isa,
            shape,
            ic,
            oc,
            k,
            stride: conv.stride,
            padding: conv.padding,
            bias,
            kind,
        })
    }

    /// The instruction set the weights were packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether this configuration runs the vectorised GEMM path (kernel = stride, no padding).
    pub fn is_fast_path(&self) -> bool {
        matches!(self.kind, Kind::Gemm { .. })
    }

    /// The register tiling of the GEMM path (`None` for the general path).
    pub fn kernel(&self) -> Option<ConvKernel> {
        match self.kind {
            Kind::Gemm { channel: true, .. } => Some(ConvKernel::Channel),
            Kind::Gemm { channel: false, .. } => Some(ConvKernel::Spatial),
            Kind::General { .. } => None,
        }
    }

    /// Output shape for input shape `x` (same rules as [`ConvTranspose3d::output_shape`]).
    pub fn output_shape(&self, x: [usize; 5]) -> Result<[usize; 5], EngineError> {
        let ws = [self.ic, self.oc, self.k[0], self.k[1], self.k[2]];
        if x[1] != self.ic {
            return Err(shape_err(
                "conv_transpose3d",
                "input channels differ from the weight's",
                &[x, ws],
            ));
        }
        let mut out = [x[0], self.oc, 0, 0, 0];
        for a in 0..3 {
            if x[2 + a] == 0 {
                return Err(shape_err(
                    "conv_transpose3d",
                    "bad stride, padding or empty input",
                    &[x, ws],
                ));
            }
            let full = (x[2 + a] - 1) * self.stride[a] + self.k[a];
            if full < 2 * self.padding[a] + 1 {
                return Err(shape_err(
                    "conv_transpose3d",
                    "bad stride, padding or empty input",
                    &[x, ws],
                ));
            }
            out[2 + a] = full - 2 * self.padding[a];
        }
        Ok(out)
    }

    /// Multiply-accumulates of one call on input shape `x`: every input voxel times every
    /// (output channel, tap) pair (for GFLOP/s: 2 × this).
    pub fn macs(&self, x: [usize; 5]) -> Result<u64, EngineError> {
        self.output_shape(x)?;
        Ok(x.iter().map(|v| *v as u64).product::<u64>()
            * (self.oc * self.k.iter().product::<usize>()) as u64)
    }

    /// Runs the transposed convolution into a new tensor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let mut out = Tensor::zeros(self.output_shape(x.shape())?);
        self.forward_into(x, out.data_mut())?;
        Ok(out)
    }

    /// Runs into `out`, which must hold exactly the output shape's element count (NCDHW).
    /// Every element of `out` is written; nothing outside it.
    pub fn forward_into(&self, x: &Tensor, out: &mut [f32]) -> Result<(), EngineError> {
        let xs = x.shape();
        let os = self.output_shape(xs)?;
        let len = os.iter().product::<usize>();
        if out.len() != len {
            return Err(shape_err(
                "conv_transpose3d",
                format!(
                    "output buffer holds {} values, the output shape needs {len}",
                    out.len()
                ),
                &[xs, os],
            ));
        }
        if out.is_empty() {
            return Ok(());
        }
        match &self.kind {
            Kind::Gemm {
                w,
                row_bias,
                block,
                channel,
            } => self.gemm(x, out, os, w.as_slice(), row_bias, *block, *channel),
            Kind::General { w } => self.general(x, out, os, w),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        x: &Tensor,
        out: &mut [f32],
        os: [usize; 5],
        w: &[f32],
        row_bias: &[f32],
        mr: usize,
        channel: bool,
    ) {
        let xs = x.shape();
        let (n_n, d_in, hw) = (xs[0], xs[2], xs[3] * xs[4]);
        let TileShape { lanes, .. } = self.shape;
        let mp = kernel::channel_tile_shape(self.isa).mp;
        let t_n: usize = self.k.iter().product();
        let width = if channel { mp } else { self.shape.width() };
        // Positions per slab chunk: a multiple of the tile width, ≈ SLAB_TARGET floats.
        let chunk = (SLAB_TARGET / self.ic.max(1) / width).max(1) * width;
        let planes_per_unit = chunk.div_ceil(hw).clamp(1, d_in);
        let d_units = d_in.div_ceil(planes_per_unit);
        // Output-channel chunks: whole row blocks (o·T a multiple of mr), enough for balance.
        let group = mr / gcd(mr, t_n);
        let max_chunks = self.oc.div_ceil(group).max(1);
        let chunks = target_units().div_ceil(n_n * d_units).clamp(1, max_chunks);
        let oc_per_chunk = self.oc.div_ceil(chunks).div_ceil(group) * group;
        let chunks = self.oc.div_ceil(oc_per_chunk);
        let out_plane_block = planes_per_unit * self.stride[0] * os[3] * os[4];
        let out_channel = os[2] * os[3] * os[4];
        let mut units: Vec<Unit<'_>> = Vec::with_capacity(n_n * d_units * chunks);
        for n in 0..n_n {
            for du in 0..d_units {
                for c in 0..chunks {
                    let d0 = du * planes_per_unit;
                    units.push(Unit {
                        n,
                        d0,
                        d1: (d0 + planes_per_unit).min(d_in),
                        o0: c * oc_per_chunk,
                        outs: Vec::with_capacity(oc_per_chunk),
                    });
                }
            }
        }
        for (i, ch) in out.chunks_mut(out_channel).enumerate() {
            let (n, o) = (i / self.oc, i % self.oc);
            for (du, part) in ch.chunks_mut(out_plane_block).enumerate() {
                units[(n * d_units + du) * chunks + o / oc_per_chunk]
                    .outs
                    .push(part);
            }
        }
        let ic_len = d_in * hw;
        units
            .into_par_iter()
            .for_each_init(Vec::<f32>::new, |slab, unit| {
                let mut unit = unit;
                let x_n = &x.data()[unit.n * self.ic * ic_len..][..self.ic * ic_len];
                let p_end = unit.d1 * hw;
                let mut p0 = unit.d0 * hw;
                let mut buf = [0f32; MAX_TILE];
                let mut rows_buf = [0f32; MAX_TILE];
                let mut taps = Taps::default();
                taps.push(Tap { x: 0, w: 0 });
                let row0 = unit.o0 * t_n;
                let row1 = (unit.o0 + unit.outs.len()) * t_n;
                while p0 < p_end {
                    let len = chunk.min(p_end - p0);
                    let stride = len + lanes;
                    slab.clear();
                    slab.resize(self.ic * stride, 0.0);
                    for ic in 0..self.ic {
                        slab[ic * stride..ic * stride + len]
                            .copy_from_slice(&x_n[ic * ic_len + p0..][..len]);
                    }
                    for block in row0 / mr..row1.div_ceil(mr) {
                        let tile_w = &w[block * self.ic * mr..][..self.ic * mr];
                        let bias = &row_bias[block * mr..][..mr];
                        let mut q0 = 0;
                        while q0 < len {
                            let tile = Tile {
                                x: slab,
                                x0: q0,
                                ic_stride: stride,
                                n_ic: self.ic,
                                taps: &taps,
                                w: tile_w,
                                w_ic_stride: mr,
                                accumulate: false,
                                bias,
                            };
                            // Tile as `mr` rows of `n` values (input positions q0..q0 + n).
                            let (rows, n): (&[f32], usize) = if channel {
                                let n = mp.min(len - q0);
                                kernel::run_channels(self.isa, n, 1, (0, 0), &tile, &mut buf);
                                let rows = &mut rows_buf[..mr * n];
                                kernel::transpose_to_rows(self.isa, &buf, mr, n, rows);
                                (rows, n)
                            } else {
                                let nv = (len - q0).div_ceil(lanes).min(self.shape.nv_max);
                                kernel::run(self.isa, nv, &tile, &mut buf);
                                (&buf[..mr * nv * lanes], nv * lanes)
                            };
                            let q_end = (q0 + n).min(len);
                            self.scatter(
                                &mut unit,
                                xs,
                                os,
                                (block, mr),
                                rows,
                                n,
                                p0 + q0,
                                p0 + q_end,
                            );
                            q0 += n;
                        }
                    }
                    p0 += len;
                }
            });
    }

    /// Writes one tile (`mr` rows of `width` values for input positions `p_begin..p_end` of
    /// batch `unit.n`) into the unit's output slices.
    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        unit: &mut Unit<'_>,
        xs: [usize; 5],
        os: [usize; 5],
        (block, mr): (usize, usize),
        tile: &[f32],
        width: usize,
        p_begin: usize,
        p_end: usize,
    ) {
        let (h_in, w_in) = (xs[3], xs[4]);
        let (oh_n, ow_n) = (os[3], os[4]);
        let [_, kh_n, kw_n] = self.k;
        let [sd, sh, sw] = self.stride;
        let t_n = self.k.iter().product::<usize>();
        let pairs = kw_n == 2 && mr.is_multiple_of(2);
        let mut p = p_begin;
        while p < p_end {
            let d = p / (h_in * w_in) - unit.d0;
            let h = (p / w_in) % h_in;
            let w0 = p % w_in;
            let run = (w_in - w0).min(p_end - p);
            let col = p - p_begin;
            let mut mm = 0;
            while mm < mr {
                let m = block * mr + mm;
                let (o, t) = (m / t_n, m % t_n);
                let Some(dst) = o.checked_sub(unit.o0).and_then(|i| unit.outs.get_mut(i)) else {
                    break;
                };
                let (kd, kh, kw) = (t / (kh_n * kw_n), (t / kw_n) % kh_n, t % kw_n);
                let base = ((d * sd + kd) * oh_n + h * sh + kh) * ow_n + w0 * sw + kw;
                let a = &tile[mm * width + col..][..run];
                if pairs {
                    // kw = 0 and 1 of one (o, kd, kh) are rows mm, mm + 1: interleave.
                    let b = &tile[(mm + 1) * width + col..][..run];
                    let seg = &mut dst[base..base + 2 * run];
                    for ((pair, &va), &vb) in seg.chunks_exact_mut(2).zip(a).zip(b) {
                        pair[0] = va;
                        pair[1] = vb;
                    }
                    mm += 2;
                } else {
                    if sw == 1 {
                        dst[base..base + run].copy_from_slice(a);
                    } else {
                        for (j, &v) in a.iter().enumerate() {
                            dst[base + j * sw] = v;
                        }
                    }
                    mm += 1;
                }
            }
            p += run;
        }
    }

    /// Any configuration: per (n, output channel) plane, scatter every input voxel's taps.
    fn general(&self, x: &Tensor, out: &mut [f32], os: [usize; 5], w: &[f32]) {
        let xs = x.shape();
        let [d_in, h_in, w_in] = [xs[2], xs[3], xs[4]];
        let [od_n, oh_n, ow_n] = [os[2], os[3], os[4]];
        let [kd_n, kh_n, kw_n] = self.k;
        let t_n = kd_n * kh_n * kw_n;
        let in_ch = d_in * h_in * w_in;
        let out_ch = od_n * oh_n * ow_n;
        let [sd, sh, sw] = self.stride;
        let [pd, ph, pw] = self.padding;
        // Output index along an axis for input index i and tap k, if inside.
        let pos = |i: usize, k: usize, s: usize, p: usize, n: usize| {
            (i * s + k).checked_sub(p).filter(|&v| v < n)
        };
        out.par_chunks_mut(out_ch)
            .enumerate()
            .for_each(|(no, plane)| {
                let (n, o) = (no / self.oc, no % self.oc);
                plane.fill(self.bias[o]);
                for i in 0..self.ic {
                    let xc = &x.data()[(n * self.ic + i) * in_ch..][..in_ch];
                    let wk = &w[(i * self.oc + o) * t_n..][..t_n];
                    for kd in 0..kd_n {
                        for d in 0..d_in {
                            let Some(od) = pos(d, kd, sd, pd, od_n) else {
                                continue;
                            };
                            for kh in 0..kh_n {
                                for h in 0..h_in {
                                    let Some(oh) = pos(h, kh, sh, ph, oh_n) else {
                                        continue;
                                    };
                                    let row = &xc[(d * h_in + h) * w_in..][..w_in];
                                    let orow = &mut plane[(od * oh_n + oh) * ow_n..][..ow_n];
                                    for kw in 0..kw_n {
                                        let wv = wk[(kd * kh_n + kh) * kw_n + kw];
                                        for (wi, &v) in row.iter().enumerate() {
                                            if let Some(ow) = pos(wi, kw, sw, pw, ow_n) {
                                                orow[ow] += v * wv;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            });
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
