//! conv3d: weight packing, the plan of one call (slab layout, rows and planes per work unit,
//! input-channel blocks, output-channel chunks), the per-unit slab gather, and the tile loop
//! that stores kernel tiles into the NCDHW output. See `mod.rs` for the scheme. No `unsafe`:
//! output slices are split per unit up front, so units write disjoint memory.

use rayon::prelude::*;

use super::kernel::{self, ChannelTileShape, Tap, Taps, Tile, TileShape, MAX_TILE};
use super::{target_units, unavailable, AlignedVec, Isa};
use crate::engine::ops::Conv3d;
use crate::engine::tensor::Tensor;
use crate::engine::{shape_err, EngineError};

/// Floats of input slab per block of input channels a work unit aims for (512 KiB: a
/// quarter of a Sapphire Rapids L2, half of a Zen 4 one).
const SLAB_TARGET: usize = 128 * 1024;
/// Floats of weights plus per-tile input that one block of input channels should keep in L1
/// (24 KiB of a 32–48 KiB L1d): the reduction runs over all of a unit's positions one block of
/// input channels at a time, partial sums kept in a per-unit buffer.
const L1_TARGET: usize = 6 * 1024;
/// Floats of partial sums a work unit may keep (512 KiB).
const ACC_TARGET: usize = 128 * 1024;
/// Output positions a work unit aims for when planes are small (several planes per unit).
const UNIT_POSITIONS: usize = 256;

/// Register tiling of the conv3d micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// Vectors along output positions (W, rows flattened), a few output channels per tile,
    /// weights broadcast. Suits few channels (the first layer, 1×1×1 heads).
    Spatial,
    /// Vectors along output channels, a dozen output positions per tile, inputs broadcast.
    /// Suits many channels and small volumes (deep layers).
    Channel,
}

impl ConvKernel {
    /// The tiling [`PackedConv3d::with_isa`] picks for `in_channels → out_channels`.
    pub fn choose(isa: Isa, in_channels: usize, out_channels: usize) -> ConvKernel {
        let block = kernel::channel_tile_shape(isa).block();
        if 2 * out_channels >= block && in_channels >= 4 {
            ConvKernel::Channel
        } else {
            ConvKernel::Spatial
        }
    }
}

/// A conv3d with weights repacked for one instruction set's micro-kernel; reusable across
/// calls and threads.
#[derive(Debug, Clone)]
pub struct PackedConv3d {
    isa: Isa,
    kernel: ConvKernel,
    shape: TileShape,
    ch_shape: ChannelTileShape,
    /// Output channels per packed weight block (`mr` or `nvo · lanes`).
    block: usize,
    oc: usize,
    ic: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    /// `[block][ic][tap][block]`, output channels padded with zeros to whole blocks.
    w: AlignedVec,
    /// Bias padded to whole blocks.
    bias: Vec<f32>,
    /// Cap on input channels per reduction block (`usize::MAX`: automatic).
    max_ic_block: usize,
}

/// Geometry of one call (depends on the input shape).
struct Plan {
    n: usize,
    in_dhw: [usize; 3],
    out_dhw: [usize; 3],
    layout: Layout,
    /// Slab row length.
    wq: usize,
    /// Output rows per work unit.
    rows: usize,
    /// Output planes per work unit (> 1 only when `rows` = Ho).
    planes: usize,
    /// Input channels per slab (the reduction is split into blocks of this many).
    ic_block: usize,
    /// Packed weight blocks per work unit's channel range.
    blocks_per_unit: usize,
}

/// How a unit's input rows are laid out in its slab.
enum Layout {
    /// Spatial tiling: rows split into stride phases along H and W (only phases that have
    /// taps), so every tap is a stride-1 offset, and output rows flattened end to end
    /// (`wq` columns per row, the last `wq − Wo` computed and discarded).
    Flat {
        phases_h: Vec<usize>,
        phases_w: Vec<usize>,
        /// Taps per H phase at most (`ceil(kh / sh)`).
        uh: usize,
    },
    /// Channel tiling: the padded input rows as they are (`wq = (Wo − 1)·sw + kW` columns,
    /// `(R − 1)·sh + kH` rows per kd); a tile is a run of positions within one output row,
    /// read with the W stride.
    Rows,
}

/// A work unit: one (n, od, block of output rows, range of row blocks) and its output slices,
/// one per output channel in the range, each `rows · Wo` values.
struct Unit<'a> {
    n: usize,
    /// Output planes od0..od1 (more than one only when a unit holds whole planes).
    od0: usize,
    od1: usize,
    oh0: usize,
    rows: usize,
    block0: usize,
    outs: Vec<&'a mut [f32]>,
}

impl PackedConv3d {
    /// Packs `conv` for [`Isa::selected`].
    pub fn new(conv: &Conv3d) -> Result<Self, EngineError> {
        Self::with_isa(conv, Isa::selected())
    }

    /// Packs `conv` for `isa` with the tiling of [`ConvKernel::choose`]; `Unsupported` if this
    /// CPU lacks the instruction set.
    pub fn with_isa(conv: &Conv3d, isa: Isa) -> Result<Self, EngineError> {
        let [oc, ic, ..] = conv.weight.shape();
        Self::with_kernel(conv, isa, ConvKernel::choose(isa, ic, oc))
    }

    /// Packs `conv` for `isa` and a given tiling (tests and benchmarks force each one).
    pub fn with_kernel(conv: &Conv3d, isa: Isa, kernel: ConvKernel) -> Result<Self, EngineError> {
        if !isa.is_available() {
            return Err(unavailable("conv3d", isa));
        }
        let ws = conv.weight.shape();
        let [oc, ic, kd, kh, kw] = ws;
        let k = [kd, kh, kw];
        for a in 0..3 {
            if !(1..=5).contains(&k[a]) || !(1..=2).contains(&conv.stride[a]) {
                return Err(shape_err(
                    "conv3d",
                    "kernel must be 1–5 and stride 1–2 per axis",
                    &[ws],
                ));
            }
        }
        if let Some(b) = &conv.bias {
            if b.len() != oc {
                return Err(shape_err(
                    "conv3d",
                    "bias length differs from output channels",
                    &[ws],
                ));
            }
        }
        let shape = kernel::tile_shape(isa);
        let ch_shape = kernel::channel_tile_shape(isa);
        let mr = match kernel {
            ConvKernel::Spatial => shape.mr,
            ConvKernel::Channel => ch_shape.block(),
        };
        let blocks = oc.div_ceil(mr);
        let taps = kd * kh * kw;
        let src = conv.weight.data();
        let mut packed = AlignedVec::zeroed(blocks * ic * taps * mr);
        let w = packed.as_mut_slice();
        for o in 0..oc {
            let (b, m) = (o / mr, o % mr);
            for i in 0..ic {
                for t in 0..taps {
                    w[((b * ic + i) * taps + t) * mr + m] = src[(o * ic + i) * taps + t];
                }
            }
        }
        let mut bias = vec![0f32; blocks * mr];
        if let Some(b) = &conv.bias {
            bias[..oc].copy_from_slice(b);
        }
        Ok(Self {
            isa,
            kernel,
            shape,
            ch_shape,
            block: mr,
            oc,
            ic,
            k,
            stride: conv.stride,
            padding: conv.padding,
            w: packed,
            bias,
            max_ic_block: usize::MAX,
        })
    }

    /// The instruction set the weights were packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The register tiling the weights were packed for.
    pub fn kernel(&self) -> ConvKernel {
        self.kernel
    }

    /// Caps the input channels per reduction block (normally sized so that a block's weights
    /// stay in L1). A tuning knob; tests use it to force the multi-block path.
    pub fn with_max_ic_block(mut self, n: usize) -> Self {
        self.max_ic_block = n.max(1);
        self
    }

    /// Output shape for input shape `x` (same rules as [`Conv3d::output_shape`]).
    pub fn output_shape(&self, x: [usize; 5]) -> Result<[usize; 5], EngineError> {
        let ws = [self.oc, self.ic, self.k[0], self.k[1], self.k[2]];
        if x[1] != self.ic {
            return Err(shape_err(
                "conv3d",
                "input channels differ from the weight's",
                &[x, ws],
            ));
        }
        let mut out = [x[0], self.oc, 0, 0, 0];
        for a in 0..3 {
            let span = x[2 + a] + 2 * self.padding[a];
            if span < self.k[a] {
                return Err(shape_err(
                    "conv3d",
                    "input smaller than the kernel",
                    &[x, ws],
                ));
            }
            out[2 + a] = (span - self.k[a]) / self.stride[a] + 1;
        }
        Ok(out)
    }

    /// Multiply-accumulates of one call on input shape `x` (for GFLOP/s: 2 × this).
    pub fn macs(&self, x: [usize; 5]) -> Result<u64, EngineError> {
        let o = self.output_shape(x)?;
        Ok(o.iter().map(|v| *v as u64).product::<u64>()
            * (self.ic * self.k.iter().product::<usize>()) as u64)
    }

    /// Runs the convolution into a new tensor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let mut out = Tensor::zeros(self.output_shape(x.shape())?);
        self.forward_into(x, out.data_mut())?;
        Ok(out)
    }

    /// Runs the convolution into `out`, which must hold exactly the output shape's element
    /// count (NCDHW). Every element of `out` is written; nothing outside it.
    pub fn forward_into(&self, x: &Tensor, out: &mut [f32]) -> Result<(), EngineError> {
        let xs = x.shape();
        let os = self.output_shape(xs)?;
        if out.len() != os.iter().product::<usize>() {
            return Err(shape_err(
                "conv3d",
                format!(
                    "output buffer holds {} values, the output shape needs {}",
                    out.len(),
                    os.iter().product::<usize>()
                ),
                &[xs, os],
            ));
        }
        if out.is_empty() {
            return Ok(());
        }
        let plan = self.plan(xs, os);
        let units = self.units(&plan, out);
        units
            .into_par_iter()
            .for_each_init(Scratch::default, |scratch, mut unit| {
                self.run_unit(&plan, x.data(), scratch, &mut unit)
            });
        Ok(())
    }

    fn plan(&self, xs: [usize; 5], os: [usize; 5]) -> Plan {
        let [sh, sw] = [self.stride[1], self.stride[2]];
        let [kd, kh, kw] = self.k;
        let pw = self.padding[2];
        let (in_w, out_w) = (xs[4], os[4]);
        let taps: usize = self.k.iter().product();
        // Slab floats per output row and per input channel, slab rows beyond R, layout.
        let flat = self.kernel == ConvKernel::Spatial;
        let (layout, wq, per_row_ic, extra_rows) = if flat {
            // Taps of phase b along an axis: kernel offsets ≡ b (mod s).
            let taps_in =
                |k: usize, s: usize, b: usize| if b < k { (k - b).div_ceil(s) } else { 0 };
            let phases_h: Vec<usize> = (0..sh).filter(|&a| taps_in(kh, sh, a) > 0).collect();
            let phases_w: Vec<usize> = (0..sw).filter(|&b| taps_in(kw, sw, b) > 0).collect();
            // Row length: at least Wo (so that (row, column) ↔ flat position is one to one);
            // reads past a row's end must land in the next row's left padding (zeros);
            // columns at or beyond `wq` that valid outputs read must be padding.
            let mut wq = out_w.max(1);
            for &b in &phases_w {
                let u = taps_in(kw, sw, b);
                let lead = if pw > b { (pw - b).div_ceil(sw) } else { 0 };
                let max_read = out_w - 1 + u - 1;
                // Column c holds input column c·sw + b − pw; last column with data + 1.
                let data_end = if in_w + pw > b {
                    (in_w - 1 + pw - b) / sw + 1
                } else {
                    0
                };
                let data_end = data_end.min(max_read + 1).max(lead);
                wq = wq.max((out_w + u - 1).saturating_sub(lead)).max(data_end);
            }
            let uh = kh.div_ceil(sh);
            let per_row = kd * phases_h.len() * phases_w.len() * wq;
            (
                Layout::Flat {
                    phases_h,
                    phases_w,
                    uh,
                },
                wq,
                per_row,
                uh,
            )
        } else {
            let wq = (out_w - 1) * sw + kw;
            (Layout::Rows, wq, kd * sh * wq, kh)
        };
        // L1 footprint per input channel: its weights for one block of output channels, plus
        // (spatial tiling) the input rows one tile reads.
        let per_ic = taps * self.block
            + match self.kernel {
                ConvKernel::Spatial => kd * kh * (self.shape.width() + kw),
                ConvKernel::Channel => 0,
            };
        let ic_blocks = self
            .ic
            .div_ceil((L1_TARGET / per_ic).clamp(1, self.max_ic_block));
        let ic_block = self.ic.div_ceil(ic_blocks).max(1);
        let blocks = self.oc.div_ceil(self.block);
        let mut rows = (SLAB_TARGET / (ic_block * per_row_ic).max(1))
            .saturating_sub(extra_rows)
            .clamp(1, os[3]);
        let mut chunks = 1;
        if ic_blocks > 1 {
            // Partial sums of all the unit's channels should stay in L2.
            let acc_rows = ACC_TARGET / (blocks * self.block * wq).max(1);
            rows = rows.min(acc_rows.max(1));
            let per_chunk = ACC_TARGET / (rows * wq * self.block).max(1);
            chunks = blocks.div_ceil(per_chunk.max(1));
        }
        // Equal row blocks.
        let rows = os[3].div_ceil(os[3].div_ceil(rows));
        // Small planes: several per unit, so that each weight block loaded serves enough
        // positions (weights of deep layers come from L3).
        let mut planes = 1;
        if rows == os[3] {
            let plane_slab = ic_block * per_row_ic * (rows + extra_rows);
            let by_slab = SLAB_TARGET / plane_slab.max(1);
            let by_acc = ACC_TARGET / (blocks * self.block * rows * wq).max(1);
            let threads = rayon::current_num_threads().max(1);
            let wanted = UNIT_POSITIONS
                .div_ceil(rows * out_w)
                .min(os[2].div_ceil(threads));
            planes = wanted
                .min(by_slab)
                .min(if ic_blocks > 1 { by_acc } else { usize::MAX });
            planes = planes.clamp(1, os[2]);
            // Equal plane blocks.
            planes = os[2].div_ceil(os[2].div_ceil(planes));
        }
        let spatial_units = os[0] * os[2].div_ceil(planes) * os[3].div_ceil(rows);
        // Output-channel chunks for load balance (each re-gathers its input: few).
        let chunks = chunks
            .max(target_units().div_ceil(2).div_ceil(spatial_units))
            .clamp(1, blocks.max(1));
        Plan {
            n: xs[0],
            in_dhw: [xs[2], xs[3], xs[4]],
            out_dhw: [os[2], os[3], os[4]],
            layout,
            wq,
            rows,
            planes,
            ic_block,
            blocks_per_unit: blocks.div_ceil(chunks).max(1),
        }
    }

    /// Splits `out` into work units (disjoint output slices; safe code only).
    fn units<'a>(&self, plan: &Plan, out: &'a mut [f32]) -> Vec<Unit<'a>> {
        let [od_n, oh_n, ow_n] = plan.out_dhw;
        let mr = self.block;
        let row_blocks = oh_n.div_ceil(plan.rows);
        let od_blocks = od_n.div_ceil(plan.planes);
        let chunks = self.oc.div_ceil(mr).div_ceil(plan.blocks_per_unit).max(1);
        let oc_per_chunk = plan.blocks_per_unit * mr;
        let mut units: Vec<Unit<'a>> = Vec::with_capacity(plan.n * od_blocks * row_blocks * chunks);
        for n in 0..plan.n {
            for db in 0..od_blocks {
                for rb in 0..row_blocks {
                    let oh0 = rb * plan.rows;
                    for c in 0..chunks {
                        units.push(Unit {
                            n,
                            od0: db * plan.planes,
                            od1: ((db + 1) * plan.planes).min(od_n),
                            oh0,
                            rows: plan.rows.min(oh_n - oh0),
                            block0: c * plan.blocks_per_unit,
                            outs: Vec::with_capacity(oc_per_chunk),
                        });
                    }
                }
            }
        }
        // Output slices in memory order; planes > 1 only with whole planes (rows = Ho), so
        // each unit's region of a channel is contiguous.
        let mut rest = out;
        for n in 0..plan.n {
            for o in 0..self.oc {
                let c = o / oc_per_chunk;
                for db in 0..od_blocks {
                    let planes = plan.planes.min(od_n - db * plan.planes);
                    for rb in 0..row_blocks {
                        let len = planes * plan.rows.min(oh_n - rb * plan.rows) * ow_n;
                        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                        rest = tail;
                        let u = ((n * od_blocks + db) * row_blocks + rb) * chunks + c;
                        units[u].outs.push(head);
                    }
                }
            }
        }
        units
    }

    /// The geometry of one output plane of a unit: its valid kd, taps, tiles and slab part.
    fn part(&self, plan: &Plan, unit: &Unit<'_>, od: usize, tiles: &mut Vec<Tile0>) -> Part {
        let d_in = plan.in_dhw[0];
        let [kd_n, kh_n, kw_n] = self.k;
        let [sd, sh, sw] = self.stride;
        let pd = self.padding[0];
        let ow_n = plan.out_dhw[2];
        let wq = plan.wq;
        // Valid kd: input plane inside the volume (others contribute zero and are skipped).
        let kds: Vec<(usize, usize)> = (0..kd_n)
            .filter_map(|kd| {
                let id = (od * sd + kd).checked_sub(pd)?;
                (id < d_in).then_some((kd, id))
            })
            .collect();
        let block = self.block;
        let tap_w = |kd: usize, kh: usize, kw: usize| ((kd * kh_n + kh) * kw_n + kw) * block;
        let mut taps = Taps::default();
        let out_off = (od - unit.od0) * unit.rows * ow_n;
        let tile0 = tiles.len();
        let (ic_stride, plane) = match &plan.layout {
            Layout::Flat {
                phases_h,
                phases_w,
                uh,
            } => {
                // + 1 zero row that wrapped reads land in.
                let plane = (unit.rows + uh) * wq;
                let (na, nb) = (phases_h.len(), phases_w.len());
                for (s, &(kd, _)) in kds.iter().enumerate() {
                    for kh in 0..kh_n {
                        let ai = phases_h.iter().position(|&a| a == kh % sh);
                        for kw in 0..kw_n {
                            let bi = phases_w.iter().position(|&b| b == kw % sw);
                            if let (Some(ai), Some(bi)) = (ai, bi) {
                                taps.push(Tap {
                                    x: ((s * na + ai) * nb + bi) * plane + (kh / sh) * wq + kw / sw,
                                    w: tap_w(kd, kh, kw),
                                });
                            }
                        }
                    }
                }
                let flat_len = (unit.rows - 1) * wq + ow_n;
                let TileShape { nv_max, lanes, .. } = self.shape;
                for q0 in (0..flat_len).step_by(nv_max * lanes) {
                    let n = (flat_len - q0).div_ceil(lanes).min(nv_max);
                    tiles.push(Tile0 {
                        x0: q0,
                        pos: q0,
                        n,
                        wo: 0,
                    });
                }
                (kds.len() * na * nb * plane, plane)
            }
            Layout::Rows => {
                let plane = ((unit.rows - 1) * sh + kh_n) * wq;
                for (s, &(kd, _)) in kds.iter().enumerate() {
                    for kh in 0..kh_n {
                        for kw in 0..kw_n {
                            taps.push(Tap {
                                x: s * plane + kh * wq + kw,
                                w: tap_w(kd, kh, kw),
                            });
                        }
                    }
                }
                let mp = self.ch_shape.mp;
                let single_runs = ow_n.div_ceil(mp);
                // Narrowest run of single-row tiles; below 5/6 of a tile, tiles of several
                // rows × a few columns fill the registers better.
                let narrowest = ow_n / single_runs;
                let multi_max = kernel::channel_multi_row_max(self.isa).min(4);
                if 6 * narrowest < 5 * mp && ow_n >= 2 && multi_max >= 2 {
                    // Columns in runs of 2…multi_max; a tile is `mp / run` rows of one run.
                    let runs = ow_n.div_ceil(multi_max);
                    let mut c0 = 0;
                    for i in 0..runs {
                        let w = ow_n / runs + usize::from(i < ow_n % runs);
                        // (A run of one column: one position per tile.)
                        let k = if w >= 2 { mp / w } else { 1 };
                        for r0 in (0..unit.rows).step_by(k) {
                            let k = k.min(unit.rows - r0);
                            tiles.push(Tile0 {
                                x0: r0 * sh * wq + c0 * sw,
                                pos: r0 * ow_n + c0,
                                n: k * w,
                                wo: if k > 1 { w } else { 0 },
                            });
                        }
                        c0 += w;
                    }
                } else {
                    // Runs of at most `mp` positions, as equal as possible, within each row.
                    for r in 0..unit.rows {
                        let mut c0 = 0;
                        for i in 0..single_runs {
                            let n = ow_n / single_runs + usize::from(i < ow_n % single_runs);
                            tiles.push(Tile0 {
                                x0: r * sh * wq + c0 * sw,
                                pos: r * ow_n + c0,
                                n,
                                wo: 0,
                            });
                            c0 += n;
                        }
                    }
                }
                (kds.len() * plane, plane)
            }
        };
        Part {
            kds,
            taps,
            ic_stride,
            plane,
            slab_off: 0,
            tiles: tile0..tiles.len(),
            out_off,
        }
    }

    fn run_unit(&self, plan: &Plan, x: &[f32], scratch: &mut Scratch, unit: &mut Unit<'_>) {
        let [d_in, h_in, w_in] = plan.in_dhw;
        let [kd_n, kh_n, kw_n] = self.k;
        let [sh, sw] = [self.stride[1], self.stride[2]];
        let [ph, pw] = [self.padding[1], self.padding[2]];
        let ow_n = plan.out_dhw[2];
        let wq = plan.wq;
        let block = self.block;
        let tiles = &mut scratch.tiles;
        tiles.clear();
        let mut parts: Vec<Part> = (unit.od0..unit.od1)
            .map(|od| self.part(plan, unit, od, tiles))
            .collect();
        let n_blocks = unit.outs.len().div_ceil(block);
        let taps_per_ic = kd_n * kh_n * kw_n;
        let tile_len = match self.kernel {
            ConvKernel::Spatial => self.shape.mr * self.shape.width(),
            ConvKernel::Channel => self.ch_shape.mp * block,
        };
        let ic_blocks = self.ic.div_ceil(plan.ic_block);
        // Partial sums of every tile of the unit, kept between input-channel blocks.
        // (Written by the first block before any read: only grown, never cleared.)
        let acc = &mut scratch.acc;
        if ic_blocks > 1 && acc.len() < n_blocks * tiles.len() * tile_len {
            acc.resize(n_blocks * tiles.len() * tile_len, 0.0);
        }
        let slab = &mut scratch.slab;
        let in_len = self.ic * d_in * h_in * w_in;
        let x_n = &x[unit.n * in_len..][..in_len];
        let weights = self.w.as_slice();
        let mut buf = [0f32; MAX_TILE];
        // Column maps of the slab rows (one per W phase).
        let maps: Vec<ColMap> = match &plan.layout {
            Layout::Flat { phases_w, .. } => phases_w
                .iter()
                .map(|&b| ColMap::new(wq, w_in, sw, b, pw))
                .collect(),
            Layout::Rows => vec![ColMap::new(wq, w_in, 1, 0, pw)],
        };
        for icb in 0..ic_blocks {
            let ic0 = icb * plan.ic_block;
            let n_ic = plan.ic_block.min(self.ic - ic0);
            let last = icb + 1 == ic_blocks;
            // Gather: every slab value below is written (data or zero padding); the slack
            // after it is only ever read by discarded positions.
            let mut slab_len = 0;
            for part in parts.iter_mut() {
                part.slab_off = slab_len;
                slab_len += n_ic * part.ic_stride;
            }
            let slab_len = slab_len + self.shape.width() + kw_n;
            if slab.len() < slab_len {
                slab.resize(slab_len, 0.0);
            }
            for part in &parts {
                let plane = part.plane;
                for ic in 0..n_ic {
                    for (s, &(_, id)) in part.kds.iter().enumerate() {
                        let src = &x_n[((ic0 + ic) * d_in + id) * h_in * w_in..][..h_in * w_in];
                        let base = part.slab_off + ic * part.ic_stride;
                        match &plan.layout {
                            Layout::Flat {
                                phases_h, phases_w, ..
                            } => {
                                let (na, nb) = (phases_h.len(), phases_w.len());
                                for (ai, &a) in phases_h.iter().enumerate() {
                                    for (bi, map) in maps.iter().enumerate() {
                                        let base = base + ((s * na + ai) * nb + bi) * plane;
                                        for r in 0..plane / wq {
                                            // The last row stays zero: wrapped reads land in it.
                                            let ih = ((unit.oh0 + r) * sh + a)
                                                .checked_sub(ph)
                                                .filter(|_| r + 1 < plane / wq);
                                            let row = ih.and_then(|i| input_row(src, i, w_in));
                                            let dst = &mut slab[base + r * wq..][..wq];
                                            gather_row(dst, row, map);
                                        }
                                    }
                                }
                            }
                            Layout::Rows => {
                                let base = base + s * plane;
                                for r in 0..plane / wq {
                                    let ih = (unit.oh0 * sh + r).checked_sub(ph);
                                    let row = ih.and_then(|i| input_row(src, i, w_in));
                                    gather_row(&mut slab[base + r * wq..][..wq], row, &maps[0]);
                                }
                            }
                        }
                    }
                }
            }
            for bl in 0..n_blocks {
                let b = unit.block0 + bl;
                let w_len = n_ic * taps_per_ic * block;
                let w = &weights[(b * self.ic + ic0) * taps_per_ic * block..][..w_len];
                let bias = &self.bias[b * block..][..block];
                let outs = &mut unit.outs[bl * block..];
                let n_out = block.min(outs.len());
                let outs = &mut outs[..n_out];
                for part in &parts {
                    for t in part.tiles.clone() {
                        let Tile0 { x0, pos, n, wo } = tiles[t];
                        let out: &mut [f32] = if ic_blocks > 1 {
                            &mut acc[(bl * tiles.len() + t) * tile_len..][..tile_len]
                        } else {
                            &mut buf[..tile_len]
                        };
                        let tile = Tile {
                            x: slab,
                            x0: part.slab_off + x0,
                            ic_stride: part.ic_stride,
                            n_ic,
                            taps: &part.taps,
                            w,
                            w_ic_stride: taps_per_ic * block,
                            bias,
                            accumulate: icb > 0,
                        };
                        match self.kernel {
                            ConvKernel::Spatial => {
                                kernel::run(self.isa, n, &tile, out);
                                if last {
                                    let width = n * self.shape.lanes;
                                    let flat_len = (unit.rows - 1) * wq + ow_n;
                                    let q_end = (pos + width).min(flat_len);
                                    for (m, dst) in outs.iter_mut().enumerate() {
                                        let src = &out[m * width..][..width];
                                        let dst = &mut dst[part.out_off..];
                                        store_rows(dst, src, pos, q_end, wq, ow_n);
                                    }
                                }
                            }
                            ConvKernel::Channel => {
                                let rows = (wo, sh * wq);
                                kernel::run_channels(self.isa, n, sw, rows, &tile, out);
                                if last {
                                    // One output run per tile row (`wo` columns each).
                                    let w = if wo == 0 { n } else { wo };
                                    for j in 0..n / w {
                                        let sub = &out[j * w * block..];
                                        let at = part.out_off + pos + j * ow_n;
                                        kernel::store_transposed(self.isa, sub, block, w, outs, at);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One output plane of a work unit.
struct Part {
    /// Valid (kd, input plane).
    kds: Vec<(usize, usize)>,
    taps: Taps,
    /// Slab floats per input channel, per (ic, kd) plane, and where this part starts.
    ic_stride: usize,
    plane: usize,
    slab_off: usize,
    /// Its tiles in the unit's tile list.
    tiles: std::ops::Range<usize>,
    /// Offset of this plane in each output slice of the unit.
    out_off: usize,
}

/// A tile of a part: slab offset of its first position, output position within the part
/// (flat position for the flattened layout), vectors (spatial) or positions (channel).
#[derive(Debug, Clone, Copy)]
struct Tile0 {
    x0: usize,
    pos: usize,
    n: usize,
    /// Channel tiles spanning rows: positions per row (0: within one row).
    wo: usize,
}

/// Per-thread buffers reused across work units.
#[derive(Default)]
struct Scratch {
    slab: Vec<f32>,
    tiles: Vec<Tile0>,
    acc: Vec<f32>,
}

/// Copies one output channel's tile values (`src[q − q0]` for flat positions `q0..q_end`)
/// into its output slice (`rows × ow_n`), skipping the slab's padding columns (`≥ ow_n`).
fn store_rows(dst: &mut [f32], src: &[f32], q0: usize, q_end: usize, wq: usize, ow_n: usize) {
    for r in q0 / wq..=(q_end - 1) / wq {
        let c0 = q0.max(r * wq) - r * wq;
        let c1 = (q_end - r * wq).min(ow_n);
        if c0 < c1 {
            dst[r * ow_n + c0..r * ow_n + c1]
                .copy_from_slice(&src[r * wq + c0 - q0..r * wq + c1 - q0]);
        }
    }
}

/// Row `i` (of length `w`) of an input plane, if inside it.
fn input_row(plane: &[f32], i: usize, w: usize) -> Option<&[f32]> {
    plane.get(i * w..(i + 1) * w)
}

/// Which columns of a slab row hold input data: `n` columns from `c0`, taken from input
/// columns `i0, i0 + s, …`; the rest is zero padding. The same for every row of a phase.
#[derive(Debug, Clone, Copy)]
struct ColMap {
    c0: usize,
    i0: usize,
    n: usize,
    s: usize,
}

impl ColMap {
    /// Slab row of `wq` columns, column c ← input column c·s + b − pad of a row of `len`.
    fn new(wq: usize, len: usize, s: usize, b: usize, pad: usize) -> ColMap {
        let c0 = if pad > b { (pad - b).div_ceil(s) } else { 0 };
        match (c0 * s + b).checked_sub(pad) {
            Some(i0) if c0 < wq && i0 < len => ColMap {
                c0,
                i0,
                n: (len - i0).div_ceil(s).min(wq - c0),
                s,
            },
            _ => ColMap {
                c0: wq,
                i0: 0,
                n: 0,
                s,
            },
        }
    }
}

/// Fills slab row `dst` entirely by `map` from input row `row`; all zeros when `row` is
/// `None` (a padding row).
fn gather_row(dst: &mut [f32], row: Option<&[f32]>, map: &ColMap) {
    let (head, rest) = dst.split_at_mut(map.c0.min(dst.len()));
    match row {
        Some(row) if map.n > 0 => {
            let (body, tail) = rest.split_at_mut(map.n);
            zero(head);
            if map.s == 1 {
                copy(body, &row[map.i0..map.i0 + map.n]);
            } else {
                for (d, v) in body.iter_mut().zip(row[map.i0..].iter().step_by(map.s)) {
                    *d = *v;
                }
            }
            zero(tail);
        }
        _ => {
            zero(head);
            zero(rest);
        }
    }
}

/// `dst.copy_from_slice(src)` in fixed-size pieces: slab rows are short, and a `memcpy` call
/// per row costs more than the copy.
fn copy(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Zeroes a short slice without a `memset` call.
fn zero(dst: &mut [f32]) {
    let mut d = dst.chunks_exact_mut(16);
    for d in &mut d {
        d.copy_from_slice(&[0.0; 16]);
    }
    for d in d.into_remainder() {
        *d = 0.0;
    }
}
