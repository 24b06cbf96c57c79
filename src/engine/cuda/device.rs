//! The device the CUDA ops run on, reduced to four calls: allocate, upload, download, launch.
//!
//! Two implementations exist: the CUDA driver (`driver.rs`, feature `cuda`) and, in tests,
//! the host emulation that runs the same `kernels/*.cu` compiled with g++
//! (tests/engine_cuda_emulation.rs). The ops in [`super::ops`] are written once against this
//! trait, so the emulation tests exercise the very launch configurations, argument lists and
//! host-side steps the GPU runs. [`launch`] checks every launch against the kernel's declared
//! signature ([`KernelSig`]) and CUDA's launch limits before the device sees it.

use bytemuck::Pod;

use super::kernels::{KernelSig, Param};
use super::CudaError;

/// Element type of a device buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    U32,
    /// IEEE binary16 (`half::f16`), passed to kernels as `const unsigned short*` bits.
    F16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::U32 => 4,
            Dtype::F64 => 8,
            Dtype::F16 => 2,
        }
    }
}

/// Host element types that have a device [`Dtype`].
pub trait Elem: Pod + Default {
    const DTYPE: Dtype;
}
impl Elem for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl Elem for f64 {
    const DTYPE: Dtype = Dtype::F64;
}
impl Elem for u32 {
    const DTYPE: Dtype = Dtype::U32;
}
impl Elem for half::f16 {
    const DTYPE: Dtype = Dtype::F16;
}

/// A typed device allocation of `len` elements (at least one element is allocated, so a
/// zero-length buffer still has a valid device address).
#[derive(Debug)]
pub struct Buffer<B> {
    raw: B,
    dtype: Dtype,
    len: usize,
}

impl<B> Buffer<B> {
    pub fn raw(&self) -> &B {
        &self.raw
    }
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One kernel argument: a buffer or a scalar.
#[derive(Clone, Copy)]
pub enum Arg<'a, B> {
    Buf(&'a Buffer<B>),
    I32(i32),
    I64(i64),
    F32(f32),
}

/// Grid and block dimensions of a launch (x, y, z).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

/// A device that can run nephrod's kernels.
pub trait Device: Send + Sync {
    /// An untyped device allocation.
    type Buf: Send + Sync;
    /// Short name for logs and errors ("cuda", "cuda-emulation").
    fn name(&self) -> &'static str;
    /// `bytes` (> 0) of device memory with unspecified contents.
    fn alloc_bytes(&self, bytes: usize) -> Result<Self::Buf, CudaError>;
    /// A new allocation holding `data` (non-empty).
    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Buf, CudaError>;
    /// Copies the first `out.len()` bytes of `buf` to the host, after all queued work.
    fn download_bytes(&self, buf: &Self::Buf, out: &mut [u8]) -> Result<(), CudaError>;
    /// Queues (or runs) `kernel`; `args` were checked against its signature by [`launch`].
    fn launch_raw(
        &self,
        kernel: &'static KernelSig,
        dims: LaunchDims,
        args: &[Arg<'_, Self::Buf>],
    ) -> Result<(), CudaError>;
}

/// Uploads `data` into a new typed buffer.
pub fn upload<D: Device, T: Elem>(dev: &D, data: &[T]) -> Result<Buffer<D::Buf>, CudaError> {
    let one = [T::default()];
    let bytes: &[u8] = if data.is_empty() {
        bytemuck::cast_slice(&one)
    } else {
        bytemuck::cast_slice(data)
    };
    Ok(Buffer {
        raw: dev.upload_bytes(bytes)?,
        dtype: T::DTYPE,
        len: data.len(),
    })
}

/// A new typed buffer of `len` elements with unspecified contents.
pub fn alloc<D: Device, T: Elem>(dev: &D, len: usize) -> Result<Buffer<D::Buf>, CudaError> {
    let bytes = len
        .max(1)
        .checked_mul(T::DTYPE.size())
        .ok_or_else(|| CudaError::Launch {
            kernel: "alloc",
            message: format!("{len} elements overflow the address space"),
        })?;
    Ok(Buffer {
        raw: dev.alloc_bytes(bytes)?,
        dtype: T::DTYPE,
        len,
    })
}

/// Copies a typed buffer back to the host.
pub fn download<D: Device, T: Elem>(dev: &D, buf: &Buffer<D::Buf>) -> Result<Vec<T>, CudaError> {
    if buf.dtype != T::DTYPE {
        return Err(CudaError::Launch {
            kernel: "download",
            message: format!("buffer holds {:?}, asked for {:?}", buf.dtype, T::DTYPE),
        });
    }
    let mut out = vec![T::default(); buf.len];
    if buf.len > 0 {
        dev.download_bytes(&buf.raw, bytemuck::cast_slice_mut(&mut out))?;
    }
    Ok(out)
}

/// Checks `args` against `kernel`'s signature and `dims` against CUDA's launch limits, then
/// launches.
pub fn launch<D: Device>(
    dev: &D,
    kernel: &'static KernelSig,
    dims: LaunchDims,
    args: &[Arg<'_, D::Buf>],
) -> Result<(), CudaError> {
    let bad = |message: String| CudaError::Launch {
        kernel: kernel.name,
        message,
    };
    if args.len() != kernel.params.len() {
        return Err(bad(format!(
            "{} arguments for {} parameters",
            args.len(),
            kernel.params.len()
        )));
    }
    for (i, (arg, param)) in args.iter().zip(kernel.params).enumerate() {
        let ok = match (arg, param) {
            (Arg::Buf(b), Param::ConstF32Ptr | Param::F32Ptr) => b.dtype == Dtype::F32,
            (Arg::Buf(b), Param::ConstF64Ptr | Param::F64Ptr) => b.dtype == Dtype::F64,
            (Arg::Buf(b), Param::U32Ptr) => b.dtype == Dtype::U32,
            (Arg::Buf(b), Param::ConstF16BitsPtr) => b.dtype == Dtype::F16,
            (Arg::I32(_), Param::I32) | (Arg::I64(_), Param::I64) | (Arg::F32(_), Param::F32) => {
                true
            }
            _ => false,
        };
        if !ok {
            let got = match arg {
                Arg::Buf(b) => format!("{:?} buffer", b.dtype),
                Arg::I32(v) => format!("i32 {v}"),
                Arg::I64(v) => format!("i64 {v}"),
                Arg::F32(v) => format!("f32 {v}"),
            };
            return Err(bad(format!(
                "argument {i} is {got}, parameter is {param:?}"
            )));
        }
    }
    let [gx, gy, gz] = dims.grid;
    let [bx, by, bz] = dims.block;
    let threads = u64::from(bx) * u64::from(by) * u64::from(bz);
    if gx == 0 || gy == 0 || gz == 0 || threads == 0 {
        return Err(bad(format!("empty launch {dims:?}")));
    }
    if threads > 1024 || bz > 64 || gx > i32::MAX as u32 || gy > 65535 || gz > 65535 {
        return Err(bad(format!("launch {dims:?} exceeds CUDA's limits")));
    }
    dev.launch_raw(kernel, dims, args)
}
