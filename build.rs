//! Build script: records the build's git revision for `nephrod --version`-style reports and
//! re-runs when the CUDA kernel sources change (they are embedded in the binary once the engine
//! lands). It never downloads anything or writes into the source tree.

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build.rs");
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NEPHROD_GIT_REV={rev}");
}
