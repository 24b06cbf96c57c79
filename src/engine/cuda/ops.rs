//! The engine ops on a [`Device`]: shape checks, upload, the kernel launches of
//! `kernels/*.cu` with their launch contracts, download. Written once for every device, and
//! wrapped as a [`Backend`] by [`DeviceBackend`].
//!
//! Semantics are those of [`crate::engine::reference`]; shape errors are the same
//! [`EngineError::Shape`]s. A device failure (driver error, out of memory, failed launch) is
//! reported as [`EngineError::Device`] naming the op —
//! never as a result computed some other way.

use super::device::{self, alloc, download, launch, upload, Arg, Device, Dtype, Elem, LaunchDims};
use super::kernels;
use super::CudaError;
use crate::engine::ops::{Activation, Conv3d, ConvTranspose3d};
use crate::engine::reference::Interp;
use crate::engine::tensor::{Element, Tensor};
use crate::engine::{shape_err, Backend, EngineError};

/// Threads per block of every kernel (the `*_THREADS` constants of `kernels/*.cu`).
const THREADS: u32 = 256;
/// Output channels per block of the conv kernels (`CONV_CO_TILE`).
const CONV_CO_TILE: usize = 4;
/// Largest kernel extent per axis the conv kernels stage (`CONV_KMAX` = 5³).
const CONV_KMAX_AXIS: usize = 5;
/// Most blocks of a grid-stride element-wise launch.
const EW_MAX_BLOCKS: usize = 1024;
/// Voxels per instance-norm statistics block, and the most splits (`NORM_MAX_SPLITS`).
const NORM_CHUNK: usize = 1024;
const NORM_MAX_SPLITS: usize = 64;
/// Most blocks of the resampling-gradient reduction.
const GRAD_MAX_BLOCKS: usize = 256;

const BACKEND: &str = "cuda";

fn device_failure(op: &'static str) -> impl Fn(CudaError) -> EngineError {
    move |e| EngineError::Device {
        op,
        backend: BACKEND,
        message: e.to_string(),
    }
}

fn too_large(op: &'static str, what: &str, v: usize) -> EngineError {
    EngineError::Unsupported {
        op,
        backend: BACKEND,
        why: format!("{what} = {v} exceeds the kernels' index range"),
    }
}

fn as_i32(op: &'static str, what: &str, v: usize) -> Result<i32, EngineError> {
    i32::try_from(v).map_err(|_| too_large(op, what, v))
}

fn as_i64(op: &'static str, what: &str, v: usize) -> Result<i64, EngineError> {
    i64::try_from(v).map_err(|_| too_large(op, what, v))
}

/// Grid dimension `ceil(n / d)`, checked against `limit`.
fn blocks(
    op: &'static str,
    what: &str,
    n: usize,
    d: usize,
    limit: usize,
) -> Result<u32, EngineError> {
    let b = n.div_ceil(d).max(1);
    if b > limit {
        return Err(too_large(op, what, n));
    }
    u32::try_from(b).map_err(|_| too_large(op, what, n))
}

fn dims(grid: [u32; 3]) -> LaunchDims {
    LaunchDims {
        grid,
        block: [THREADS, 1, 1],
    }
}

/// Grid-stride launch dims for `total` items.
fn stride_dims(total: usize, max_blocks: usize) -> LaunchDims {
    let b = total.div_ceil(THREADS as usize).clamp(1, max_blocks);
    dims([b as u32, 1, 1])
}

fn spatial(s: [usize; 5]) -> usize {
    s[2] * s[3] * s[4]
}

#[allow(clippy::too_many_arguments)]
fn conv_like<D: Device, W: Element + Elem>(
    dev: &D,
    op: &'static str,
    kernel: &'static kernels::KernelSig,
    x: &Tensor,
    weight: &Tensor<W>,
    bias: Option<&[f32]>,
    out: [usize; 5],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor, EngineError> {
    let xs = x.shape();
    let ws = weight.shape();
    if out.iter().product::<usize>() == 0 {
        return Ok(Tensor::zeros(out));
    }
    if ws[2..].iter().any(|&k| k > CONV_KMAX_AXIS) {
        return Err(EngineError::Unsupported {
            op,
            backend: BACKEND,
            why: format!("kernel {:?} larger than 5 per axis", &ws[2..]),
        });
    }
    let co = out[1];
    let out_sp = spatial(out);
    let grid = [
        blocks(
            op,
            "output voxels",
            out_sp,
            THREADS as usize,
            i32::MAX as usize,
        )?,
        blocks(op, "output channels", co, CONV_CO_TILE, 65535)?,
        blocks(op, "batch", out[0], 1, 65535)?,
    ];
    let zeros;
    let bias = match bias {
        Some(b) => b,
        None => {
            zeros = vec![0.0f32; co];
            &zeros
        }
    };
    let mut ints = Vec::with_capacity(17);
    for (what, v) in [
        ("in channels", xs[1]),
        ("in D", xs[2]),
        ("in H", xs[3]),
        ("in W", xs[4]),
        ("out channels", co),
        ("out D", out[2]),
        ("out H", out[3]),
        ("out W", out[4]),
        ("kD", ws[2]),
        ("kH", ws[3]),
        ("kW", ws[4]),
        ("stride D", stride[0]),
        ("stride H", stride[1]),
        ("stride W", stride[2]),
        ("pad D", padding[0]),
        ("pad H", padding[1]),
        ("pad W", padding[2]),
    ] {
        ints.push(as_i32(op, what, v)?);
    }
    let fail = device_failure(op);
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let wb = upload(dev, weight.data()).map_err(&fail)?;
    let bb = upload(dev, bias).map_err(&fail)?;
    let yb = alloc::<D, f32>(dev, out.iter().product()).map_err(&fail)?;
    let mut args = vec![Arg::Buf(&xb), Arg::Buf(&wb), Arg::Buf(&bb), Arg::Buf(&yb)];
    args.extend(ints.into_iter().map(Arg::I32));
    launch(dev, kernel, dims(grid), &args).map_err(&fail)?;
    Tensor::new(out, download(dev, &yb).map_err(&fail)?)
}

/// `reference::conv3d` on the device (kernels/conv3d.cu): `conv3d_f32` for f32 weights,
/// `conv3d_f16w` for f16 weights (uploaded as f16, widened exactly when staged).
pub fn conv3d<D: Device, W: Element + Elem>(
    dev: &D,
    x: &Tensor,
    conv: &Conv3d<W>,
) -> Result<Tensor, EngineError> {
    let out = conv.output_shape(x.shape())?;
    let kernel = match W::DTYPE {
        Dtype::F16 => &kernels::CONV3D_F16W,
        _ => &kernels::CONV3D,
    };
    conv_like(
        dev,
        "conv3d",
        kernel,
        x,
        &conv.weight,
        conv.bias.as_deref(),
        out,
        conv.stride,
        conv.padding,
    )
}

/// `reference::conv_transpose3d` on the device (a gather): `conv_transpose3d_f32` or, for f16
/// weights, `conv_transpose3d_f16w`.
pub fn conv_transpose3d<D: Device, W: Element + Elem>(
    dev: &D,
    x: &Tensor,
    conv: &ConvTranspose3d<W>,
) -> Result<Tensor, EngineError> {
    let out = conv.output_shape(x.shape())?;
    let kernel = match W::DTYPE {
        Dtype::F16 => &kernels::CONV_TRANSPOSE3D_F16W,
        _ => &kernels::CONV_TRANSPOSE3D,
    };
    conv_like(
        dev,
        "conv_transpose3d",
        kernel,
        x,
        &conv.weight,
        conv.bias.as_deref(),
        out,
        conv.stride,
        conv.padding,
    )
}

/// `reference::instance_norm_act` on the device (kernels/norm_act.cu: statistics, then apply).
pub fn instance_norm_act<D: Device>(
    dev: &D,
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
) -> Result<Tensor, EngineError> {
    const OP: &str = "instance_norm";
    let s = x.shape();
    if gamma.len() != s[1] || beta.len() != s[1] {
        return Err(shape_err(
            OP,
            "gamma/beta length differs from channels",
            &[s],
        ));
    }
    let len = spatial(s);
    let nc = s[0] * s[1];
    if len == 0 || nc == 0 {
        return Ok(x.clone());
    }
    let splits = len.div_ceil(NORM_CHUNK).clamp(1, NORM_MAX_SPLITS);
    let rows = blocks(OP, "N·C", nc, 1, 65535)?;
    let (act_code, slope) = match act {
        Activation::Identity => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(slope) => (2, slope),
    };
    let fail = device_failure(OP);
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let gb = upload(dev, gamma).map_err(&fail)?;
    let bb = upload(dev, beta).map_err(&fail)?;
    let partial = alloc::<D, f32>(dev, nc * splits * 2).map_err(&fail)?;
    let yb = alloc::<D, f32>(dev, x.data().len()).map_err(&fail)?;
    let len64 = as_i64(OP, "D·H·W", len)?;
    launch(
        dev,
        &kernels::NORM_STATS,
        dims([splits as u32, rows, 1]),
        &[
            Arg::Buf(&xb),
            Arg::Buf(&partial),
            Arg::I64(len64),
            Arg::I32(splits as i32),
        ],
    )
    .map_err(&fail)?;
    let apply_blocks = len.div_ceil(THREADS as usize * 8).clamp(1, EW_MAX_BLOCKS) as u32;
    launch(
        dev,
        &kernels::NORM_APPLY,
        dims([apply_blocks, rows, 1]),
        &[
            Arg::Buf(&xb),
            Arg::Buf(&partial),
            Arg::Buf(&gb),
            Arg::Buf(&bb),
            Arg::Buf(&yb),
            Arg::I64(len64),
            Arg::I32(as_i32(OP, "channels", s[1])?),
            Arg::I32(splits as i32),
            Arg::F32(eps),
            Arg::I32(act_code),
            Arg::F32(slope),
        ],
    )
    .map_err(&fail)?;
    Tensor::new(s, download(dev, &yb).map_err(&fail)?)
}

/// `reference::concat_channels` on the device (two row copies, `copy_rows_f32`).
pub fn concat_channels<D: Device>(dev: &D, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    const OP: &str = "concat_channels";
    let (sa, sb) = (a.shape(), b.shape());
    if sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(shape_err(OP, "N, D, H, W must match", &[sa, sb]));
    }
    let shape = [sa[0], sa[1] + sb[1], sa[2], sa[3], sa[4]];
    let total: usize = shape.iter().product();
    if total == 0 {
        return Ok(Tensor::zeros(shape));
    }
    let sp = spatial(shape);
    let fail = device_failure(OP);
    let yb = alloc::<D, f32>(dev, total).map_err(&fail)?;
    let dst_stride = as_i64(OP, "C·D·H·W", shape[1] * sp)?;
    for (src, offset) in [(a, 0), (b, sa[1] * sp)] {
        let n = src.data().len();
        if n == 0 {
            continue;
        }
        let row = src.shape()[1] * sp;
        let sbuf = upload(dev, src.data()).map_err(&fail)?;
        launch(
            dev,
            &kernels::COPY_ROWS,
            stride_dims(n, EW_MAX_BLOCKS),
            &[
                Arg::Buf(&sbuf),
                Arg::Buf(&yb),
                Arg::I64(as_i64(OP, "row", row)?),
                Arg::I64(dst_stride),
                Arg::I64(as_i64(OP, "offset", offset)?),
                Arg::I64(as_i64(OP, "elements", n)?),
            ],
        )
        .map_err(&fail)?;
    }
    Tensor::new(shape, download(dev, &yb).map_err(&fail)?)
}

/// One input → one output element-wise launch.
fn unary<D: Device>(
    dev: &D,
    op: &'static str,
    x: &Tensor,
    run: impl FnOnce(&device::Buffer<D::Buf>, &device::Buffer<D::Buf>, i64) -> Result<(), CudaError>,
) -> Result<Tensor, EngineError> {
    let n = x.data().len();
    if n == 0 {
        return Ok(x.clone());
    }
    let fail = device_failure(op);
    let total = as_i64(op, "elements", n)?;
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let yb = alloc::<D, f32>(dev, n).map_err(&fail)?;
    run(&xb, &yb, total).map_err(&fail)?;
    Tensor::new(x.shape(), download(dev, &yb).map_err(&fail)?)
}

/// `reference::sigmoid` on the device.
pub fn sigmoid<D: Device>(dev: &D, x: &Tensor) -> Result<Tensor, EngineError> {
    let d = stride_dims(x.data().len(), EW_MAX_BLOCKS);
    unary(dev, "sigmoid", x, |xb, yb, total| {
        launch(
            dev,
            &kernels::SIGMOID,
            d,
            &[Arg::Buf(xb), Arg::Buf(yb), Arg::I64(total)],
        )
    })
}

/// `reference::scale` on the device.
pub fn scale<D: Device>(dev: &D, a: &Tensor, s: f32) -> Result<Tensor, EngineError> {
    let d = stride_dims(a.data().len(), EW_MAX_BLOCKS);
    unary(dev, "scale", a, |xb, yb, total| {
        launch(
            dev,
            &kernels::SCALE,
            d,
            &[Arg::Buf(xb), Arg::F32(s), Arg::Buf(yb), Arg::I64(total)],
        )
    })
}

/// `reference::add` on the device.
pub fn add<D: Device>(dev: &D, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    const OP: &str = "add";
    if a.shape() != b.shape() {
        return Err(shape_err(OP, "shapes differ", &[a.shape(), b.shape()]));
    }
    let d = stride_dims(a.data().len(), EW_MAX_BLOCKS);
    unary(dev, OP, a, |ab, yb, total| {
        let bb = upload(dev, b.data())?;
        launch(
            dev,
            &kernels::ADD,
            d,
            &[Arg::Buf(ab), Arg::Buf(&bb), Arg::Buf(yb), Arg::I64(total)],
        )
    })
}

/// `reference::softmax_channels` on the device.
pub fn softmax_channels<D: Device>(dev: &D, x: &Tensor) -> Result<Tensor, EngineError> {
    const OP: &str = "softmax_channels";
    let s = x.shape();
    let sp = spatial(s);
    let items = s[0] * sp;
    if s[1] == 0 || items == 0 {
        return Ok(x.clone());
    }
    let c = as_i32(OP, "channels", s[1])?;
    let sp64 = as_i64(OP, "D·H·W", sp)?;
    let items64 = as_i64(OP, "N·D·H·W", items)?;
    let d = stride_dims(items, EW_MAX_BLOCKS);
    unary(dev, OP, x, |xb, yb, _| {
        launch(
            dev,
            &kernels::SOFTMAX_CHANNELS,
            d,
            &[
                Arg::Buf(xb),
                Arg::Buf(yb),
                Arg::I32(c),
                Arg::I64(sp64),
                Arg::I64(items64),
            ],
        )
    })
}

/// `reference::argmax_channels` on the device.
pub fn argmax_channels<D: Device>(dev: &D, x: &Tensor) -> Result<Vec<u32>, EngineError> {
    const OP: &str = "argmax_channels";
    let s = x.shape();
    let sp = spatial(s);
    let items = s[0] * sp;
    if items == 0 {
        return Ok(Vec::new());
    }
    if s[1] == 0 {
        return Ok(vec![0; items]);
    }
    let fail = device_failure(OP);
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let ob = alloc::<D, u32>(dev, items).map_err(&fail)?;
    launch(
        dev,
        &kernels::ARGMAX_CHANNELS,
        stride_dims(items, EW_MAX_BLOCKS),
        &[
            Arg::Buf(&xb),
            Arg::Buf(&ob),
            Arg::I32(as_i32(OP, "channels", s[1])?),
            Arg::I64(as_i64(OP, "D·H·W", sp)?),
            Arg::I64(as_i64(OP, "N·D·H·W", items)?),
        ],
    )
    .map_err(&fail)?;
    download(dev, &ob).map_err(&fail)
}

/// `reference::accumulate_patch` on the device; `acc` and `weight_sum` are updated in place.
pub fn accumulate_patch<D: Device>(
    dev: &D,
    acc: &mut Tensor,
    weight_sum: &mut [f32],
    patch: &Tensor,
    gaussian: &[f32],
    offset: [usize; 3],
) -> Result<(), EngineError> {
    const OP: &str = "accumulate_patch";
    let (sa, sp) = (acc.shape(), patch.shape());
    let inside = (0..3).all(|a| offset[a] + sp[2 + a] <= sa[2 + a]);
    if sa[0] != 1 || sp[0] != 1 || sa[1] != sp[1] || !inside {
        return Err(shape_err(
            OP,
            "patch must lie inside acc with equal C, N = 1",
            &[sa, sp],
        ));
    }
    if gaussian.len() != spatial(sp) || weight_sum.len() != spatial(sa) {
        return Err(shape_err(OP, "gaussian or weight_sum length", &[sa, sp]));
    }
    let voxels = spatial(sp);
    if voxels == 0 {
        return Ok(());
    }
    let mut ints = Vec::with_capacity(10);
    for (what, v) in [
        ("channels", sa[1]),
        ("D", sa[2]),
        ("H", sa[3]),
        ("W", sa[4]),
        ("patch D", sp[2]),
        ("patch H", sp[3]),
        ("patch W", sp[4]),
        ("offset D", offset[0]),
        ("offset H", offset[1]),
        ("offset W", offset[2]),
    ] {
        ints.push(as_i32(OP, what, v)?);
    }
    // The kernel's element offsets are 64-bit; c·D·H·W must fit too.
    as_i64(OP, "elements", acc.data().len())?;
    let fail = device_failure(OP);
    let ab = upload(dev, acc.data()).map_err(&fail)?;
    let wb = upload(dev, weight_sum).map_err(&fail)?;
    let pb = upload(dev, patch.data()).map_err(&fail)?;
    let gb = upload(dev, gaussian).map_err(&fail)?;
    let mut args = vec![Arg::Buf(&ab), Arg::Buf(&wb), Arg::Buf(&pb), Arg::Buf(&gb)];
    args.extend(ints.into_iter().map(Arg::I32));
    launch(
        dev,
        &kernels::ACCUMULATE_PATCH,
        stride_dims(voxels, EW_MAX_BLOCKS),
        &args,
    )
    .map_err(&fail)?;
    let new_acc: Vec<f32> = download(dev, &ab).map_err(&fail)?;
    let new_w: Vec<f32> = download(dev, &wb).map_err(&fail)?;
    acc.data_mut().copy_from_slice(&new_acc);
    weight_sum.copy_from_slice(&new_w);
    Ok(())
}

fn theta_flat(theta: &[[f64; 4]; 3]) -> [f64; 12] {
    let mut t = [0.0; 12];
    for (r, row) in theta.iter().enumerate() {
        t[r * 4..r * 4 + 4].copy_from_slice(row);
    }
    t
}

/// `reference::resample_affine` on the device (kernels/resample.cu).
pub fn resample_affine<D: Device>(
    dev: &D,
    x: &Tensor,
    theta: &[[f64; 4]; 3],
    out_dhw: [usize; 3],
    interp: Interp,
) -> Result<Tensor, EngineError> {
    const OP: &str = "resample_affine";
    let s = x.shape();
    let shape = [s[0], s[1], out_dhw[0], out_dhw[1], out_dhw[2]];
    let out_sp = spatial(shape);
    let nc = s[0] * s[1];
    if out_sp == 0 || nc == 0 {
        return Ok(Tensor::zeros(shape));
    }
    let grid = [
        blocks(
            OP,
            "output voxels",
            out_sp,
            THREADS as usize,
            i32::MAX as usize,
        )?,
        blocks(OP, "N·C", nc, 1, 65535)?,
        1,
    ];
    let mut ints = Vec::with_capacity(7);
    for (what, v) in [
        ("in D", s[2]),
        ("in H", s[3]),
        ("in W", s[4]),
        ("out D", out_dhw[0]),
        ("out H", out_dhw[1]),
        ("out W", out_dhw[2]),
    ] {
        ints.push(as_i32(OP, what, v)?);
    }
    ints.push(match interp {
        Interp::Nearest => 0,
        Interp::Trilinear => 1,
    });
    as_i64(OP, "elements", nc * out_sp)?;
    let fail = device_failure(OP);
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let tb = upload(dev, &theta_flat(theta)).map_err(&fail)?;
    let yb = alloc::<D, f32>(dev, nc * out_sp).map_err(&fail)?;
    let mut args = vec![Arg::Buf(&xb), Arg::Buf(&tb), Arg::Buf(&yb)];
    args.extend(ints.into_iter().map(Arg::I32));
    launch(dev, &kernels::RESAMPLE, dims(grid), &args).map_err(&fail)?;
    Tensor::new(shape, download(dev, &yb).map_err(&fail)?)
}

/// `reference::resample_affine_grad` on the device: per-block partial sums in f64, summed
/// here in f64.
pub fn resample_affine_grad<D: Device>(
    dev: &D,
    x: &Tensor,
    theta: &[[f64; 4]; 3],
    upstream: &Tensor,
) -> Result<[[f64; 4]; 3], EngineError> {
    const OP: &str = "resample_affine_grad";
    let s = x.shape();
    let u = upstream.shape();
    if u[0] != s[0] || u[1] != s[1] {
        return Err(shape_err(OP, "upstream N, C must match x", &[s, u]));
    }
    let total = upstream.data().len();
    let mut grad = [[0.0f64; 4]; 3];
    if total == 0 {
        return Ok(grad);
    }
    let mut ints = Vec::with_capacity(6);
    for (what, v) in [
        ("in D", s[2]),
        ("in H", s[3]),
        ("in W", s[4]),
        ("out D", u[2]),
        ("out H", u[3]),
        ("out W", u[4]),
    ] {
        ints.push(as_i32(OP, what, v)?);
    }
    let d = stride_dims(total, GRAD_MAX_BLOCKS);
    let nblocks = d.grid[0] as usize;
    let fail = device_failure(OP);
    let xb = upload(dev, x.data()).map_err(&fail)?;
    let tb = upload(dev, &theta_flat(theta)).map_err(&fail)?;
    let ub = upload(dev, upstream.data()).map_err(&fail)?;
    let pb = alloc::<D, f64>(dev, nblocks * 12).map_err(&fail)?;
    let mut args = vec![Arg::Buf(&xb), Arg::Buf(&tb), Arg::Buf(&ub), Arg::Buf(&pb)];
    args.extend(ints.into_iter().map(Arg::I32));
    args.push(Arg::I64(as_i64(OP, "elements", total)?));
    launch(dev, &kernels::RESAMPLE_GRAD, d, &args).map_err(&fail)?;
    let partial: Vec<f64> = download(dev, &pb).map_err(&fail)?;
    for block in partial.chunks_exact(12) {
        for (k, v) in block.iter().enumerate() {
            grad[k / 4][k % 4] += v;
        }
    }
    Ok(grad)
}

/// A [`Backend`] running every op on a [`Device`] through `kernels/*.cu`.
#[derive(Debug)]
pub struct DeviceBackend<D> {
    dev: D,
}

impl<D: Device> DeviceBackend<D> {
    pub fn with_device(dev: D) -> Self {
        Self { dev }
    }
    pub fn device(&self) -> &D {
        &self.dev
    }
}

impl<D: Device> Backend for DeviceBackend<D> {
    fn name(&self) -> &'static str {
        self.dev.name()
    }
    fn conv3d(&self, x: &Tensor, conv: &Conv3d) -> Result<Tensor, EngineError> {
        conv3d(&self.dev, x, conv)
    }
    fn conv_transpose3d(&self, x: &Tensor, conv: &ConvTranspose3d) -> Result<Tensor, EngineError> {
        conv_transpose3d(&self.dev, x, conv)
    }
    fn instance_norm_act(
        &self,
        x: &Tensor,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        act: Activation,
    ) -> Result<Tensor, EngineError> {
        instance_norm_act(&self.dev, x, gamma, beta, eps, act)
    }
    fn concat_channels(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
        concat_channels(&self.dev, a, b)
    }
    fn softmax_channels(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        softmax_channels(&self.dev, x)
    }
    fn sigmoid(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        sigmoid(&self.dev, x)
    }
    fn argmax_channels(&self, x: &Tensor) -> Result<Vec<u32>, EngineError> {
        argmax_channels(&self.dev, x)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
        add(&self.dev, a, b)
    }
    fn scale(&self, a: &Tensor, s: f32) -> Result<Tensor, EngineError> {
        scale(&self.dev, a, s)
    }
    fn accumulate_patch(
        &self,
        acc: &mut Tensor,
        weight_sum: &mut [f32],
        patch: &Tensor,
        gaussian: &[f32],
        offset: [usize; 3],
    ) -> Result<(), EngineError> {
        accumulate_patch(&self.dev, acc, weight_sum, patch, gaussian, offset)
    }
    fn resample_affine(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        out_dhw: [usize; 3],
        interp: Interp,
    ) -> Result<Tensor, EngineError> {
        resample_affine(&self.dev, x, theta, out_dhw, interp)
    }
    fn resample_affine_grad(
        &self,
        x: &Tensor,
        theta: &[[f64; 4]; 3],
        upstream: &Tensor,
    ) -> Result<[[f64; 4]; 3], EngineError> {
        resample_affine_grad(&self.dev, x, theta, upstream)
    }
}
