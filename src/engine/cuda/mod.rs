//! The CUDA backend: nephrod's hand-written kernels (`kernels/*.cu`) run through the CUDA
//! driver, and the choice between it and the CPU backend.
//!
//! * [`kernels`] — the embedded sources and each kernel's declared signature.
//! * [`device`] — the four calls a device provides (alloc, upload, download, launch) and the
//!   checked launch; [`ops`] — every engine op written once against it, and
//!   [`DeviceBackend`], the [`Backend`] over any device.
//! * `driver` (feature `cuda`) — the CUDA driver device through cudarc with dynamic loading;
//!   [`CudaBackend`] is [`DeviceBackend`] over it. Kernels are compiled with NVRTC at start-up
//!   for the device's exact architecture (CUBIN, no PTX JIT), cached on disk ([`cache`]).
//! * [`select_backend`] — CUDA when asked for and usable, else the CPU with a log line saying
//!   why. A build without the `cuda` feature says so in [`CudaError::NotBuilt`]; nothing ever
//!   silently computes on another device than the one reported by [`Backend::name`].
//!
//! Tests: tests/engine_cuda_emulation.rs runs the same kernels on the CPU through
//! kernels/emulation/cuda_host.h and [`ops`]; tests/engine_cuda_gpu.rs runs the same parity
//! suite through [`CudaBackend`] on a GPU (`cargo test --features cuda -- --ignored`).

pub mod cache;
pub mod device;
#[cfg(feature = "cuda")]
mod driver;
pub mod kernels;
pub mod ops;

use std::path::PathBuf;

pub use ops::DeviceBackend;

use super::{Backend, CpuBackend};

/// Why the CUDA backend could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error(
        "nephrod was built without CUDA support (cargo feature `cuda` is off): no CUDA backend"
    )]
    NotBuilt,
    #[error("no CUDA driver: libcuda.so could not be loaded")]
    NoDriver,
    #[error("NVRTC, which compiles the CUDA kernels at start-up, is unavailable: {detail}")]
    NoNvrtc { detail: String },
    #[error("CUDA driver call failed while {step}: {message}")]
    Driver { step: &'static str, message: String },
    #[error("NVRTC could not compile {file} for {arch}: {message}")]
    Compile {
        file: &'static str,
        arch: String,
        message: String,
    },
    #[error("the CUDA library panicked while {step}: {message}")]
    Panicked { step: &'static str, message: String },
    #[error("kernel {kernel}: {message}")]
    Launch {
        kernel: &'static str,
        message: String,
    },
}

impl CudaError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            CudaError::NotBuilt => "not_built",
            CudaError::NoDriver => "no_driver",
            CudaError::NoNvrtc { .. } => "no_nvrtc",
            CudaError::Driver { .. } => "driver",
            CudaError::Compile { .. } => "compile",
            CudaError::Panicked { .. } => "panicked",
            CudaError::Launch { .. } => "launch",
        }
    }
}

/// Start-up settings of the CUDA backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Directory of the compiled-kernel cache; `None`: compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// An NVRTC library (`libnvrtc.so.12`) to load by path before the loader's search.
    pub nvrtc_library: Option<PathBuf>,
}

impl CudaOptions {
    /// From the environment: `NEPHROD_CUDA_DEVICE` (ordinal, default 0),
    /// `NEPHROD_CUDA_CACHE` (else `$XDG_CACHE_HOME/nephrod/cuda`, else
    /// `$HOME/.cache/nephrod/cuda`), `NEPHROD_NVRTC_LIBRARY`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let ordinal = var("NEPHROD_CUDA_DEVICE")
            .and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let cache_dir = var("NEPHROD_CUDA_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("nephrod/cuda")))
            .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/nephrod/cuda")));
        Self {
            ordinal,
            cache_dir,
            nvrtc_library: var("NEPHROD_NVRTC_LIBRARY").map(PathBuf::from),
        }
    }
}

#[cfg(feature = "cuda")]
pub use driver::{compile_cubin, nvrtc_version, preload_nvrtc, CudaDevice};

/// The device of a build without CUDA: uninhabited, so a [`CudaBackend`] cannot exist.
#[cfg(not(feature = "cuda"))]
#[derive(Debug)]
pub enum CudaDevice {}

#[cfg(not(feature = "cuda"))]
impl device::Device for CudaDevice {
    type Buf = ();
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn alloc_bytes(&self, _: usize) -> Result<(), CudaError> {
        match *self {}
    }
    fn upload_bytes(&self, _: &[u8]) -> Result<(), CudaError> {
        match *self {}
    }
    fn download_bytes(&self, _: &(), _: &mut [u8]) -> Result<(), CudaError> {
        match *self {}
    }
    fn launch_raw(
        &self,
        _: &'static kernels::KernelSig,
        _: device::LaunchDims,
        _: &[device::Arg<'_, ()>],
    ) -> Result<(), CudaError> {
        match *self {}
    }
}

/// The CUDA backend: every op through `kernels/*.cu` on the CUDA driver.
pub type CudaBackend = DeviceBackend<CudaDevice>;

impl DeviceBackend<CudaDevice> {
    /// Opens CUDA device 0 with [`CudaOptions::from_env`].
    pub fn new() -> Result<Self, CudaError> {
        Self::with_options(&CudaOptions::from_env())
    }

    /// Opens the device `opts` names and loads the kernels; a typed error when there is no
    /// driver, no NVRTC, no device, or the build has no CUDA support.
    pub fn with_options(opts: &CudaOptions) -> Result<Self, CudaError> {
        #[cfg(feature = "cuda")]
        {
            CudaDevice::open(opts).map(DeviceBackend::with_device)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = opts;
            Err(CudaError::NotBuilt)
        }
    }
}

/// True when this build has CUDA support and a CUDA driver library can be loaded (a cheap
/// probe; it does not open a device).
pub fn driver_present() -> bool {
    #[cfg(feature = "cuda")]
    {
        driver::driver_present()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// The backend to run on: the CUDA backend when `prefer_gpu` and it starts, otherwise the
/// CPU backend — with an `info` line saying which, or a `warn` line saying why CUDA was not
/// used. Never panics for lack of a driver.
pub fn select_backend(prefer_gpu: bool) -> Box<dyn Backend> {
    if !prefer_gpu {
        tracing::info!(backend = "cpu", "engine backend: CPU (GPU not requested)");
        return Box::new(CpuBackend);
    }
    match CudaBackend::new() {
        Ok(b) => {
            tracing::info!(backend = "cuda", device = ?b.device(), "engine backend: CUDA");
            Box::new(b)
        }
        Err(e) => {
            tracing::warn!(backend = "cpu", reason = e.kind(), error = %e, "CUDA backend unavailable; using the CPU backend");
            Box::new(CpuBackend)
        }
    }
}
