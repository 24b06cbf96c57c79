//! The CUDA driver as a [`Device`] (feature `cuda`), through cudarc with dynamic loading:
//! libcuda and libnvrtc are opened at run time, so nephrod builds with no CUDA toolkit.
//!
//! Start-up ([`CudaDevice::open`]): optionally preload an NVRTC library by path; probe for
//! libcuda with `is_culib_present` before any driver call (cudarc panics when the library is
//! absent); create the context on the requested device; read its compute capability; compile
//! every `kernels/*.cu` with NVRTC straight to a CUBIN for that exact architecture (`sm_XY`,
//! so no PTX reaches the driver's JIT and the driver's PTX ISA limit never applies — see
//! tools/cuda/check_kernels.py), cached on disk ([`super::cache`]); load the modules and look up
//! every kernel. Every cudarc call runs under `catch_unwind` as a second guard: a driver with
//! a missing symbol panics inside cudarc, which becomes [`CudaError::Panicked`].

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc;

use super::cache::{cache_key, KernelCache};
use super::device::{Arg, Device, LaunchDims};
use super::kernels::{nvrtc_options, KernelSig, Module};
use super::{CudaError, CudaOptions};

/// Runs `f`, turning a panic inside cudarc into [`CudaError::Panicked`].
fn guarded<T>(
    step: &'static str,
    f: impl FnOnce() -> Result<T, CudaError>,
) -> Result<T, CudaError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(CudaError::Panicked { step, message })
        }
    }
}

fn driver_err(step: &'static str) -> impl Fn(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver {
        step,
        message: e.to_string(),
    }
}

/// Keeps NVRTC libraries loaded by path alive for the whole process, so that cudarc's own
/// `dlopen("libnvrtc.so.12")` finds them by soname.
static PRELOADED: OnceLock<std::sync::Mutex<Vec<libloading::Library>>> = OnceLock::new();

/// Loads the NVRTC library at `path` (e.g. a pip wheel's `libnvrtc.so.12`) so that the
/// compiler calls below use it instead of searching the loader path.
pub fn preload_nvrtc(path: &Path) -> Result<(), CudaError> {
    // SAFETY: loading a shared library runs its initialisers; libnvrtc's are benign, and the
    // handle is kept alive until the process exits, so no symbol outlives its library.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| CudaError::NoNvrtc {
        detail: format!("{}: {e}", path.display()),
    })?;
    if let Ok(mut v) = PRELOADED
        .get_or_init(|| std::sync::Mutex::new(Vec::new()))
        .lock()
    {
        v.push(lib);
    }
    Ok(())
}

/// True when an NVRTC library can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: a dlopen probe of the candidate names; no symbol is called.
    catch_unwind(|| unsafe { nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// True when a CUDA driver library (libcuda) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: a dlopen probe of the candidate names; no symbol is called.
    catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// The loaded NVRTC's version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc {
            detail: "libnvrtc.so.12 not found on the loader path".into(),
        });
    }
    guarded("querying the NVRTC version", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints through valid pointers.
        let rc = unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        if rc != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(CudaError::NoNvrtc {
                detail: format!("nvrtcVersion failed: {rc:?}"),
            });
        }
        Ok((major, minor))
    })
}

/// Compiles `module` with NVRTC to a CUBIN for `arch` (e.g. "sm_87"), with the options of
/// kernels/nvrtc_options.txt. Needs only NVRTC, no driver or GPU.
pub fn compile_cubin(module: Module, arch: &str) -> Result<Vec<u8>, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc {
            detail: "libnvrtc.so.12 not found on the loader path".into(),
        });
    }
    let compile_err = |message: String| CudaError::Compile {
        file: module.file_name(),
        arch: arch.to_string(),
        message,
    };
    let src = CString::new(module.source()).map_err(|e| compile_err(e.to_string()))?;
    let name = CString::new(module.file_name()).map_err(|e| compile_err(e.to_string()))?;
    let mut options: Vec<String> = nvrtc_options().iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    guarded("compiling kernels with NVRTC", || {
        let prog = nvrtc::result::create_program(&src, Some(&name))
            .map_err(|e| compile_err(format!("create program: {e:?}")))?;
        // SAFETY: `prog` was created above and is destroyed exactly once, below; `src` and
        // `name` outlive it.
        let result = unsafe { compile_program_cubin(prog, &options) };
        // SAFETY: as above.
        let _ = unsafe { nvrtc::result::destroy_program(prog) };
        result.map_err(compile_err)
    })
}

/// Compiles `prog` and returns its CUBIN, or the error with NVRTC's log.
///
/// # Safety
/// `prog` must be a live program from `create_program`.
unsafe fn compile_program_cubin(
    prog: nvrtc::sys::nvrtcProgram,
    options: &[String],
) -> Result<Vec<u8>, String> {
    // SAFETY: (whole body) `prog` is live (caller); every out-pointer passed below points at
    // a live local or a buffer of the size NVRTC reported.
    unsafe {
        if let Err(e) = nvrtc::result::compile_program(prog, options) {
            let log = nvrtc::result::get_program_log(prog)
                .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(format!("{e:?}: {log}"));
        }
        let mut size = 0usize;
        let rc = nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size);
        if rc != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return Err(format!(
                "no CUBIN ({rc:?}, {size} bytes): is the arch a real sm_XY?"
            ));
        }
        let mut buf = vec![0u8; size];
        let rc = nvrtc::sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char);
        if rc != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(format!("nvrtcGetCUBIN: {rc:?}"));
        }
        Ok(buf)
    }
}

/// A CUDA device with nephrod's kernels loaded.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    arch: String,
    device_name: String,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("device", &self.device_name)
            .field("arch", &self.arch)
            .field("ordinal", &self.ctx.ordinal())
            .finish()
    }
}

impl CudaDevice {
    /// Opens device `opts.ordinal` and loads every kernel (see the module doc).
    pub fn open(opts: &CudaOptions) -> Result<Self, CudaError> {
        if let Some(path) = &opts.nvrtc_library {
            preload_nvrtc(path)?;
        }
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        guarded("opening the CUDA device", || Self::open_probed(opts))
    }

    fn open_probed(opts: &CudaOptions) -> Result<Self, CudaError> {
        let ctx = CudaContext::new(opts.ordinal).map_err(driver_err("creating the context"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability"))?;
        let arch = format!("sm_{major}{minor}");
        let device_name = ctx.name().map_err(driver_err("reading the device name"))?;
        let nvrtc_ver = nvrtc_version()?;
        let cache = KernelCache::new(opts.cache_dir.clone());
        let options = nvrtc_options();
        let mut functions = HashMap::new();
        for module in Module::ALL {
            let key = cache_key(module.source(), &arch, &options, nvrtc_ver);
            let loaded = match cache.load(module, &arch, &key) {
                Some(cubin) => match ctx.load_module(nvrtc::Ptx::from_binary(cubin)) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(module = module.file_name(), error = %e, "cached kernel module rejected; recompiling");
                        cache.evict(module, &arch, &key);
                        None
                    }
                },
                None => None,
            };
            let cu_module = match loaded {
                Some(m) => m,
                None => {
                    let cubin = compile_cubin(module, &arch)?;
                    cache.store(module, &arch, &key, &cubin);
                    ctx.load_module(nvrtc::Ptx::from_binary(cubin))
                        .map_err(driver_err("loading a kernel module"))?
                }
            };
            for sig in module.kernels() {
                let f = cu_module
                    .load_function(sig.name)
                    .map_err(driver_err("looking up a kernel"))?;
                functions.insert(sig.name, f);
            }
        }
        let stream = ctx.default_stream();
        tracing::info!(device = %device_name, arch = %arch, nvrtc = ?nvrtc_ver, cache = ?cache.dir(), "CUDA kernels loaded");
        Ok(Self {
            ctx,
            stream,
            functions,
            arch,
            device_name,
        })
    }

    /// The device's architecture, e.g. "sm_87".
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }
}

impl Device for CudaDevice {
    type Buf = CudaSlice<u8>;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn alloc_bytes(&self, bytes: usize) -> Result<Self::Buf, CudaError> {
        guarded("allocating device memory", || {
            self.stream
                .alloc_zeros::<u8>(bytes)
                .map_err(driver_err("allocating device memory"))
        })
    }

    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Buf, CudaError> {
        guarded("uploading", || {
            self.stream
                .clone_htod(data)
                .map_err(driver_err("copying to the device"))
        })
    }

    fn download_bytes(&self, buf: &Self::Buf, out: &mut [u8]) -> Result<(), CudaError> {
        guarded("downloading", || {
            let view = buf.slice(..out.len());
            self.stream
                .memcpy_dtoh(&view, out)
                .map_err(driver_err("copying from the device"))?;
            self.stream
                .synchronize()
                .map_err(driver_err("waiting for the device"))
        })
    }

    fn launch_raw(
        &self,
        kernel: &'static KernelSig,
        dims: LaunchDims,
        args: &[Arg<'_, Self::Buf>],
    ) -> Result<(), CudaError> {
        let f = self
            .functions
            .get(kernel.name)
            .ok_or_else(|| CudaError::Launch {
                kernel: kernel.name,
                message: "kernel not loaded".into(),
            })?;
        guarded("launching a kernel", || {
            let mut b = self.stream.launch_builder(f);
            for arg in args {
                match arg {
                    Arg::Buf(buf) => b.arg(buf.raw()),
                    Arg::I32(v) => b.arg(v),
                    Arg::I64(v) => b.arg(v),
                    Arg::F32(v) => b.arg(v),
                };
            }
            let cfg = LaunchConfig {
                grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
                block_dim: (dims.block[0], dims.block[1], dims.block[2]),
                shared_mem_bytes: 0,
            };
            // SAFETY: `device::launch` checked the arguments against the kernel's declared
            // parameter list (count, pointer vs scalar, element types) and the dims against
            // CUDA's limits; the ops in `super::ops` size every buffer per the kernel's launch
            // contract in kernels/*.cu, and the buffers outlive the stream's use of them
            // (downloads synchronise before the buffers drop).
            unsafe { b.launch(cfg) }
                .map(|_| ())
                .map_err(driver_err("launching a kernel"))
        })
    }
}
