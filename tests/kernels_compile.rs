//! Every kernels/*.cu compiles for the GPUs nephrod targets, on a machine without a GPU:
//! NVRTC to PTX for sm_87 (Jetson Orin) and sm_90, ptxas for both with registers reported and
//! 0 spill bytes, and NVRTC straight to a CUBIN (tools/cuda/check_kernels.py); plus the Rust
//! start-up path (`engine::cuda::compile_cubin`, cudarc's NVRTC) compiling every module.
//!
//! Needs `NEPHROD_CUDA_CHECK` (the script's path), `NEPHROD_PYTHON` (a Python with
//! tools/cuda/requirements-cuda.txt installed) and `NEPHROD_NVRTC_LIBRARY` (that wheel's
//! libnvrtc.so.12) — tools/test.sh sets all three.

use std::path::PathBuf;
use std::process::Command;

use nephrod::engine::cuda::kernels::Module;

const ARCHS: [&str; 2] = ["sm_87", "sm_90"];

fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run tools/test.sh (README), which installs the pinned CUDA compilers from PyPI")
    }))
}

#[test]
fn every_kernel_compiles_for_sm87_and_sm90_without_spills() {
    let script = env_path("NEPHROD_CUDA_CHECK");
    let python = env_path("NEPHROD_PYTHON");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "check_kernels.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let files = report["files"].as_array().expect("files");
    // Every module nephrod embeds, and every kernel it launches, for both architectures.
    for module in Module::ALL {
        let entry = files
            .iter()
            .find(|f| f["file"] == module.file_name())
            .unwrap_or_else(|| panic!("{} missing from the report", module.file_name()));
        for arch in ARCHS {
            let a = &entry["archs"][arch];
            assert_eq!(a["ok"], true, "{} {arch}: {a}", module.file_name());
            for sig in module.kernels() {
                let k = &a["kernels"][sig.name];
                let regs = k["registers"].as_u64().unwrap_or(0);
                assert!(
                    regs > 0,
                    "{} {arch}: no register count for {}",
                    module.file_name(),
                    sig.name
                );
                assert_eq!(
                    k["spill_store_bytes"],
                    0,
                    "{} {arch} {}",
                    module.file_name(),
                    sig.name
                );
                assert_eq!(
                    k["spill_load_bytes"],
                    0,
                    "{} {arch} {}",
                    module.file_name(),
                    sig.name
                );
            }
        }
    }
    assert!(report["failures"].as_array().is_some_and(|f| f.is_empty()));
}

#[cfg(feature = "cuda")]
#[test]
fn startup_nvrtc_path_compiles_every_module_to_a_cubin() {
    use nephrod::engine::cuda::{compile_cubin, nvrtc_version, preload_nvrtc};
    preload_nvrtc(&env_path("NEPHROD_NVRTC_LIBRARY")).unwrap();
    let version = nvrtc_version().unwrap();
    println!("NVRTC {}.{}", version.0, version.1);
    for arch in ARCHS {
        for module in Module::ALL {
            let cubin = compile_cubin(module, arch)
                .unwrap_or_else(|e| panic!("{} {arch}: {e}", module.file_name()));
            assert!(
                cubin.starts_with(b"\x7fELF"),
                "{} {arch}: not an ELF cubin",
                module.file_name()
            );
        }
    }
    // A virtual architecture has no CUBIN: a clear error, not a panic.
    let err = compile_cubin(Module::Elementwise, "compute_87").unwrap_err();
    assert_eq!(err.kind(), "compile", "{err}");
}
