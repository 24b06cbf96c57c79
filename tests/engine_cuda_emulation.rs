//! Runs nephrod's CUDA kernels on the CPU, from the same kernels/*.cu source, and checks them
//! against `engine::reference` (the parity suite in tests/cuda_parity/).
//!
//! At first use each kernels/*.cu is compiled with g++ (C++20) together with
//! kernels/emulation/cuda_host.h (blocks in turn, a block's threads as OS threads, a barrier
//! for __syncthreads, __shared__ per block and poisoned between blocks) and a generated
//! extern "C" launcher, into a shared library in a temporary directory, loaded with
//! libloading. The emulated device implements `engine::cuda::device::Device`, so the ops run
//! exactly the launches (grids, blocks, argument lists) the GPU runs. Every device buffer
//! sits between two guard regions that are checked after every launch that received it, and
//! fresh buffers are filled with NaN bytes so an output element a kernel forgets to write
//! shows up as NaN.
//!
//! Needs g++ (or `$CXX`) with C++20; fails with a clear message if it is missing.

mod cuda_parity;

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nephrod::engine::cuda::device::{self, Arg, Device, LaunchDims};
use nephrod::engine::cuda::kernels::{KernelSig, Module, Param};
use nephrod::engine::cuda::{CudaError, DeviceBackend};

const GUARD: usize = 4096;
const GUARD_BYTE: u8 = 0xA5;
const ALIGN: usize = 64;

type LaunchFn = unsafe extern "C" fn(
    name: *const c_char,
    grid: *const u32,
    block: *const u32,
    args: *mut *mut c_void,
    nargs: c_int,
) -> c_int;

/// An emulated device allocation: [guard | body | guard], body filled with 0xFF at first.
struct EmuBuf {
    base: *mut u8,
    bytes: usize,
    /// Set once a launch has reported damage to the guards (Drop then stays quiet).
    reported: AtomicBool,
}

// SAFETY: the allocation is owned by this value and only accessed through it (or by a kernel
// during a launch, which the launch mutex in the library serialises).
unsafe impl Send for EmuBuf {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for EmuBuf {}

impl EmuBuf {
    fn layout(bytes: usize) -> Layout {
        Layout::from_size_align(bytes + 2 * GUARD, ALIGN).expect("layout")
    }

    fn new(bytes: usize) -> Self {
        let layout = Self::layout(bytes);
        // SAFETY: the layout has a non-zero size (two guards).
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null(), "out of memory");
        // SAFETY: `base` points at `bytes + 2·GUARD` writable bytes.
        unsafe {
            std::ptr::write_bytes(base, GUARD_BYTE, GUARD);
            std::ptr::write_bytes(base.add(GUARD), 0xFF, bytes);
            std::ptr::write_bytes(base.add(GUARD + bytes), GUARD_BYTE, GUARD);
        }
        Self {
            base,
            bytes,
            reported: AtomicBool::new(false),
        }
    }

    fn body(&self) -> *mut u8 {
        // SAFETY: within the allocation.
        unsafe { self.base.add(GUARD) }
    }

    /// Which guard region was written, if any.
    fn guard_damage(&self) -> Option<&'static str> {
        // SAFETY: both guards lie inside the allocation.
        let (front, back) = unsafe {
            (
                std::slice::from_raw_parts(self.base, GUARD),
                std::slice::from_raw_parts(self.base.add(GUARD + self.bytes), GUARD),
            )
        };
        if front.iter().any(|b| *b != GUARD_BYTE) {
            Some("before")
        } else if back.iter().any(|b| *b != GUARD_BYTE) {
            Some("after")
        } else {
            None
        }
    }
}

impl Drop for EmuBuf {
    fn drop(&mut self) {
        let damage = self.guard_damage();
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base, Self::layout(self.bytes)) };
        if let Some(side) = damage {
            if !std::thread::panicking() && !self.reported.load(Ordering::Relaxed) {
                panic!("guard region {side} a device buffer was overwritten");
            }
        }
    }
}

struct EmuDevice {
    launchers: HashMap<Module, LaunchFn>,
    _libs: Vec<libloading::Library>,
}

impl Device for EmuDevice {
    type Buf = EmuBuf;

    fn name(&self) -> &'static str {
        "cuda-emulation"
    }

    fn alloc_bytes(&self, bytes: usize) -> Result<EmuBuf, CudaError> {
        Ok(EmuBuf::new(bytes))
    }

    fn upload_bytes(&self, data: &[u8]) -> Result<EmuBuf, CudaError> {
        let b = EmuBuf::new(data.len());
        // SAFETY: the body holds data.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.body(), data.len()) };
        Ok(b)
    }

    fn download_bytes(&self, buf: &EmuBuf, out: &mut [u8]) -> Result<(), CudaError> {
        assert!(out.len() <= buf.bytes);
        if let Some(side) = buf.guard_damage() {
            return Err(CudaError::Launch {
                kernel: "download",
                message: format!("guard {side} the buffer overwritten"),
            });
        }
        // SAFETY: the body holds at least out.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(buf.body(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn launch_raw(
        &self,
        kernel: &'static KernelSig,
        dims: LaunchDims,
        args: &[Arg<'_, EmuBuf>],
    ) -> Result<(), CudaError> {
        enum Slot {
            P(*mut u8),
            I32(i32),
            I64(i64),
            F32(f32),
        }
        let mut slots: Vec<Slot> = args
            .iter()
            .map(|a| match a {
                Arg::Buf(b) => Slot::P(b.raw().body()),
                Arg::I32(v) => Slot::I32(*v),
                Arg::I64(v) => Slot::I64(*v),
                Arg::F32(v) => Slot::F32(*v),
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| match s {
                Slot::P(p) => p as *mut *mut u8 as *mut c_void,
                Slot::I32(v) => v as *mut i32 as *mut c_void,
                Slot::I64(v) => v as *mut i64 as *mut c_void,
                Slot::F32(v) => v as *mut f32 as *mut c_void,
            })
            .collect();
        let launch = self.launchers[&kernel.module];
        let name = CString::new(kernel.name).unwrap();
        // SAFETY: `ptrs[i]` points at a live value of parameter i's type (checked against the
        // signature by device::launch); buffers are sized by the ops per the launch contract.
        let rc = unsafe {
            launch(
                name.as_ptr(),
                dims.grid.as_ptr(),
                dims.block.as_ptr(),
                ptrs.as_mut_ptr(),
                ptrs.len() as c_int,
            )
        };
        let err = |message: String| CudaError::Launch {
            kernel: kernel.name,
            message,
        };
        match rc {
            0 => {}
            1 => return Err(err(format!("bad launch configuration {dims:?}"))),
            2 => {
                return Err(err(
                    "divergent __syncthreads (a thread exited while others waited)".into(),
                ))
            }
            -1 => return Err(err("kernel not in the emulated library".into())),
            other => return Err(err(format!("emulator status {other}"))),
        }
        for (i, a) in args.iter().enumerate() {
            if let Arg::Buf(b) = a {
                if let Some(side) = b.raw().guard_damage() {
                    b.raw().reported.store(true, Ordering::Relaxed);
                    return Err(err(format!(
                        "wrote {side} buffer argument {i} (guard region changed)"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cxx() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "g++".to_string())
}

/// Compiles `source` (a .cu path) with the emulation header and a launcher for `kernels`
/// into `dir`, returning the library path.
fn build_library(dir: &Path, stem: &str, source: &Path, kernels: &[&str]) -> PathBuf {
    let mut launcher = String::from("#include <cstring>\n");
    launcher.push_str(&format!("#include \"{}\"\n", source.display()));
    launcher.push_str(
        "extern \"C\" int nephrod_emu_launch(const char* name, const unsigned* g, const unsigned* b, void** args, int nargs) {\n  dim3 grid(g[0], g[1], g[2]), block(b[0], b[1], b[2]);\n",
    );
    for k in kernels {
        launcher.push_str(&format!(
            "  if (std::strcmp(name, \"{k}\") == 0) return cuda_emu::launch_kernel({k}, grid, block, args, nargs);\n"
        ));
    }
    launcher.push_str("  return -1;\n}\n");
    let cpp = dir.join(format!("{stem}_launch.cpp"));
    std::fs::write(&cpp, launcher).unwrap();
    let lib = dir.join(format!("lib{stem}.so"));
    let header = repo().join("kernels/emulation/cuda_host.h");
    let out = Command::new(cxx())
        .args(["-std=c++20", "-O2", "-pthread", "-shared", "-fPIC", "-ffp-contract=off"])
        .args(["-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas"])
        .arg("-include")
        .arg(&header)
        .arg(&cpp)
        .arg("-o")
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}): the CUDA emulation tests compile kernels/*.cu with a C++20 compiler — install g++ or set CXX",
                cxx()
            )
        });
    assert!(
        out.status.success(),
        "g++ failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

fn load_launcher(lib_path: &Path) -> (libloading::Library, LaunchFn) {
    // SAFETY: the library was just built from nephrod's sources; its initialisers only set up
    // statics of the emulation header.
    let lib = unsafe { libloading::Library::new(lib_path) }.expect("load emulated kernels");
    // SAFETY: the generated launcher defines this symbol with exactly this signature.
    let f: LaunchFn = unsafe {
        *lib.get::<LaunchFn>(b"nephrod_emu_launch\0")
            .expect("launcher symbol")
    };
    (lib, f)
}

fn backend() -> &'static DeviceBackend<EmuDevice> {
    static DEV: OnceLock<DeviceBackend<EmuDevice>> = OnceLock::new();
    DEV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let built: Vec<(Module, PathBuf)> = std::thread::scope(|s| {
            let handles: Vec<_> = Module::ALL
                .iter()
                .map(|&m| {
                    let dir = dir.path();
                    s.spawn(move || {
                        let names: Vec<&str> = m.kernels().map(|k| k.name).collect();
                        let stem = m.file_name().trim_end_matches(".cu");
                        (
                            m,
                            build_library(
                                dir,
                                stem,
                                &repo().join("kernels").join(m.file_name()),
                                &names,
                            ),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("build thread"))
                .collect()
        });
        let mut launchers = HashMap::new();
        let mut libs = Vec::new();
        for (m, path) in built {
            let (lib, f) = load_launcher(&path);
            launchers.insert(m, f);
            libs.push(lib);
        }
        // The libraries stay mapped after their files are removed with `dir`.
        DeviceBackend::with_device(EmuDevice {
            launchers,
            _libs: libs,
        })
    })
}

#[test]
fn conv3d_matches_reference() {
    cuda_parity::conv3d(backend());
}

#[test]
fn conv_with_f16_weights_matches_the_f32_kernels_bit_for_bit() {
    cuda_parity::conv_f16_weights(backend());
}

#[test]
fn conv_transpose3d_matches_reference() {
    cuda_parity::conv_transpose3d(backend());
}

#[test]
fn instance_norm_matches_reference() {
    cuda_parity::instance_norm(backend());
}

#[test]
fn channel_and_elementwise_ops_match_reference() {
    cuda_parity::channel_ops(backend());
}

#[test]
fn concat_matches_reference() {
    cuda_parity::concat(backend());
}

#[test]
fn accumulate_patch_matches_reference() {
    cuda_parity::accumulate_patch(backend());
}

#[test]
fn resample_and_gradient_match_reference() {
    cuda_parity::resample(backend());
}

#[test]
fn launches_are_checked_against_the_kernel_signatures() {
    let dev = backend().device();
    let x = device::upload(dev, &[1.0f32, 2.0]).unwrap();
    let y = device::alloc::<_, f32>(dev, 2).unwrap();
    let u = device::alloc::<_, u32>(dev, 2).unwrap();
    let sig = &nephrod::engine::cuda::kernels::SIGMOID;
    let dims = LaunchDims {
        grid: [1, 1, 1],
        block: [256, 1, 1],
    };
    // Correct call works.
    device::launch(dev, sig, dims, &[Arg::Buf(&x), Arg::Buf(&y), Arg::I64(2)]).unwrap();
    let out: Vec<f32> = device::download(dev, &y).unwrap();
    assert!((out[1] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    // Wrong count, wrong scalar type, wrong buffer type, bad dims: refused before launching.
    for (args, what) in [
        (vec![Arg::Buf(&x), Arg::Buf(&y)], "count"),
        (vec![Arg::Buf(&x), Arg::Buf(&y), Arg::I32(2)], "scalar type"),
        (vec![Arg::Buf(&x), Arg::Buf(&u), Arg::I64(2)], "buffer type"),
    ] {
        assert!(device::launch(dev, sig, dims, &args).is_err(), "{what}");
    }
    let too_big = LaunchDims {
        grid: [1, 1, 1],
        block: [2048, 1, 1],
    };
    assert!(device::launch(
        dev,
        sig,
        too_big,
        &[Arg::Buf(&x), Arg::Buf(&y), Arg::I64(2)]
    )
    .is_err());
    assert_eq!(sig.params, &[Param::ConstF32Ptr, Param::F32Ptr, Param::I64]);
}

/// The emulator itself: it must catch what it claims to catch, or the parity tests above
/// prove less than they say.
mod emulator_self_test {
    use super::*;

    const SOURCE: &str = r#"
extern "C" __global__ void write_past_end(float *y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;   // off by one: writes y[n]
}
extern "C" __global__ void read_shared_unwritten(float *y) {
    __shared__ float s[64];
    if (threadIdx.x == 0 && blockIdx.x == 1) s[0] = 3.0f;  // only block 1 writes s[0]
    __syncthreads();
    if (threadIdx.x == 0) y[blockIdx.x] = s[0];
}
extern "C" __global__ void divergent_barrier(float *y) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}
extern "C" __global__ void block_reduce(const float *x, float *y) {
    __shared__ float s[128];
    const int t = threadIdx.x;
    s[t] = x[blockIdx.x * 128 + t];
    __syncthreads();
    for (int st = 64; st > 0; st >>= 1) {
        if (t < st) s[t] += s[t + st];
        __syncthreads();
    }
    if (t == 0) y[blockIdx.x] = s[0];
}
extern "C" __global__ void atomic_count(unsigned int *c) {
    atomicAdd(c, 1u);
}
"#;

    fn lib() -> &'static (libloading::Library, LaunchFn) {
        static LIB: OnceLock<(libloading::Library, LaunchFn)> = OnceLock::new();
        LIB.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("selftest.cu");
            std::fs::write(&src, SOURCE).unwrap();
            let names = [
                "write_past_end",
                "read_shared_unwritten",
                "divergent_barrier",
                "block_reduce",
                "atomic_count",
            ];
            let path = build_library(dir.path(), "selftest", &src, &names);
            load_launcher(&path)
        })
    }

    fn run(name: &str, grid: [u32; 3], block: [u32; 3], args: &mut [*mut c_void]) -> c_int {
        let name = CString::new(name).unwrap();
        // SAFETY: the arguments match the self-test kernels' parameters.
        unsafe {
            (lib().1)(
                name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                args.as_mut_ptr(),
                args.len() as c_int,
            )
        }
    }

    #[test]
    fn guard_regions_catch_an_out_of_bounds_write() {
        let buf = EmuBuf::new(100 * 4);
        let mut p = buf.body();
        let mut n: i32 = 100;
        let rc = run(
            "write_past_end",
            [1, 1, 1],
            [128, 1, 1],
            &mut [
                &mut p as *mut _ as *mut c_void,
                &mut n as *mut _ as *mut c_void,
            ],
        );
        assert_eq!(rc, 0);
        assert_eq!(buf.guard_damage(), Some("after"));
        // Repair the guard so that dropping the buffer does not panic.
        // SAFETY: the back guard lies inside the allocation.
        unsafe { std::ptr::write_bytes(buf.body().add(400), GUARD_BYTE, GUARD) };
    }

    #[test]
    fn shared_memory_is_per_block_and_poisoned() {
        let buf = EmuBuf::new(3 * 4);
        let mut p = buf.body();
        assert_eq!(
            run(
                "read_shared_unwritten",
                [3, 1, 1],
                [32, 1, 1],
                &mut [&mut p as *mut _ as *mut c_void]
            ),
            0
        );
        let mut out = [0f32; 3];
        // SAFETY: 12 bytes in the body.
        unsafe { std::ptr::copy_nonoverlapping(buf.body(), out.as_mut_ptr() as *mut u8, 12) };
        assert!(
            out[0].is_nan() && out[2].is_nan(),
            "blocks 0 and 2 must see poison, got {out:?}"
        );
        assert_eq!(out[1], 3.0);
    }

    #[test]
    fn divergent_barrier_is_reported() {
        let buf = EmuBuf::new(64 * 4);
        let mut p = buf.body();
        assert_eq!(
            run(
                "divergent_barrier",
                [1, 1, 1],
                [64, 1, 1],
                &mut [&mut p as *mut _ as *mut c_void]
            ),
            2
        );
    }

    #[test]
    fn syncthreads_and_atomics_work() {
        let x: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let xb = EmuBuf::new(256 * 4);
        // SAFETY: 1024 bytes in the body.
        unsafe { std::ptr::copy_nonoverlapping(x.as_ptr() as *const u8, xb.body(), 1024) };
        let yb = EmuBuf::new(2 * 4);
        let (mut px, mut py) = (xb.body(), yb.body());
        assert_eq!(
            run(
                "block_reduce",
                [2, 1, 1],
                [128, 1, 1],
                &mut [
                    &mut px as *mut _ as *mut c_void,
                    &mut py as *mut _ as *mut c_void
                ]
            ),
            0
        );
        let mut y = [0f32; 2];
        // SAFETY: 8 bytes in the body.
        unsafe { std::ptr::copy_nonoverlapping(yb.body(), y.as_mut_ptr() as *mut u8, 8) };
        assert_eq!(
            y,
            [(0..128).sum::<i32>() as f32, (128..256).sum::<i32>() as f32]
        );
        let cb = EmuBuf::new(4);
        // SAFETY: 4 bytes in the body.
        unsafe { std::ptr::write_bytes(cb.body(), 0, 4) };
        let mut pc = cb.body();
        assert_eq!(
            run(
                "atomic_count",
                [3, 2, 1],
                [16, 4, 2],
                &mut [&mut pc as *mut _ as *mut c_void]
            ),
            0
        );
        let mut c = 0u32;
        // SAFETY: 4 bytes in the body.
        unsafe { std::ptr::copy_nonoverlapping(cb.body(), &mut c as *mut u32 as *mut u8, 4) };
        assert_eq!(c, 3 * 2 * 16 * 4 * 2);
        // Launch limits are CUDA's.
        assert_eq!(
            run(
                "atomic_count",
                [1, 1, 1],
                [1025, 1, 1],
                &mut [&mut pc as *mut _ as *mut c_void]
            ),
            1
        );
        assert_eq!(
            run(
                "atomic_count",
                [0, 1, 1],
                [1, 1, 1],
                &mut [&mut pc as *mut _ as *mut c_void]
            ),
            1
        );
    }
}
