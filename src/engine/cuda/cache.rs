//! On-disk cache of compiled kernel modules (CUBINs), keyed by a SHA-256 of everything that
//! determines the compiler's output: the source, the target architecture, the NVRTC options
//! and the NVRTC version. A missing, unreadable or unwritable cache only costs a recompile
//! (logged); it is never an error. Files are written to a temporary name and renamed, so a
//! crash never leaves a truncated entry under a valid name.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::kernels::Module;

/// Cache key (64 hex digits) of `module`'s `source` compiled for `arch` with `options` by
/// NVRTC `nvrtc_version`.
pub fn cache_key(source: &str, arch: &str, options: &[&str], nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(b"nephrod-kernel-cache-v1\0");
    h.update(source.as_bytes());
    h.update(b"\0");
    h.update(arch.as_bytes());
    for o in options {
        h.update(b"\0");
        h.update(o.as_bytes());
    }
    h.update(format!("\0nvrtc {}.{}", nvrtc_version.0, nvrtc_version.1).as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache directory (or none).
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: Option<PathBuf>,
}

impl KernelCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, module: Module, arch: &str, key: &str) -> Option<PathBuf> {
        let stem = module.file_name().trim_end_matches(".cu");
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{stem}-{arch}-{key}.cubin")))
    }

    /// The cached module, if present and readable.
    pub fn load(&self, module: Module, arch: &str, key: &str) -> Option<Vec<u8>> {
        let path = self.path(module, arch, key)?;
        match std::fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "kernel cache entry unreadable; recompiling");
                None
            }
        }
    }

    /// Stores a compiled module; failures are logged, not returned.
    pub fn store(&self, module: Module, arch: &str, key: &str, bytes: &[u8]) {
        let Some(path) = self.path(module, arch, key) else {
            return;
        };
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not write the kernel cache");
        }
    }

    /// Removes a cached module (after the driver rejected it).
    pub fn evict(&self, module: Module, arch: &str, key: &str) {
        if let Some(path) = self.path(module, arch, key) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_input() {
        let base = cache_key("src", "sm_87", &["--std=c++17"], (12, 6));
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key("src", "sm_87", &["--std=c++17"], (12, 6)));
        for other in [
            cache_key("src2", "sm_87", &["--std=c++17"], (12, 6)),
            cache_key("src", "sm_90", &["--std=c++17"], (12, 6)),
            cache_key("src", "sm_87", &["--std=c++14"], (12, 6)),
            cache_key("src", "sm_87", &["--std=c++17", "-G"], (12, 6)),
            cache_key("src", "sm_87", &["--std=c++17"], (12, 9)),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn store_then_load_round_trips_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(Some(dir.path().join("nested")));
        let key = cache_key("s", "sm_87", &[], (12, 6));
        assert!(cache.load(Module::Conv3d, "sm_87", &key).is_none());
        cache.store(Module::Conv3d, "sm_87", &key, b"cubin");
        assert_eq!(
            cache.load(Module::Conv3d, "sm_87", &key).as_deref(),
            Some(&b"cubin"[..])
        );
        assert!(cache.load(Module::NormAct, "sm_87", &key).is_none());
        cache.evict(Module::Conv3d, "sm_87", &key);
        assert!(cache.load(Module::Conv3d, "sm_87", &key).is_none());
        // No directory: a no-op cache.
        let none = KernelCache::new(None);
        none.store(Module::Conv3d, "sm_87", &key, b"x");
        assert!(none.load(Module::Conv3d, "sm_87", &key).is_none());
    }
}
