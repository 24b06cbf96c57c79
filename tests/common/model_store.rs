//! The fast test model as a signed package and a model store, through the real binary.
//! Include with `#[path = "common/model_store.rs"] mod model_store;`.
//!
//! The model is the random-weight nnU-Net test model (tests/data/models/nnunet/plain) imported
//! with a coarse 6 mm spacing: its label maps are noise, which is what store and daemon tests
//! need (bookkeeping, not quality); its self-check runs in about a second.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn nephrod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nephrod"))
}

/// Runs `cmd`; panics with its stderr unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// The fast model imported as an unsigned bundle `root/<name>`.
pub fn fast_bundle(root: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet/plain");
    let model = root.join("nnunet-model");
    if !model.exists() {
        copy_dir(&src, &model);
        let plans = model.join("plans.json");
        let mut p: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&plans).unwrap()).unwrap();
        p["configurations"]["3d_fullres"]["spacing"] = serde_json::json!([6.0, 6.0, 6.0]);
        std::fs::write(&plans, p.to_string()).unwrap();
    }
    let out = root.join(name);
    run_ok(
        nephrod()
            .args(["models", "import-nnunet"])
            .arg(&model)
            .args(["--config", "3d_fullres", "--folds", "0", "--out"])
            .arg(&out),
    );
    out
}

/// `models keygen`: returns (secret key, public key).
pub fn keygen(root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = root.join(name);
    run_ok(nephrod().args(["models", "keygen", "--out"]).arg(&key));
    let mut public = key.clone().into_os_string();
    public.push(".pub");
    (key, PathBuf::from(public))
}

/// `models sign` of a copy of `bundle` at `out`, as `name@version`.
pub fn signed_copy(bundle: &Path, out: &Path, key: &Path, name: &str, version: &str) -> PathBuf {
    copy_dir(bundle, out);
    run_ok(
        nephrod()
            .args(["models", "sign"])
            .arg(out)
            .arg("--key")
            .arg(key)
            .args(["--name", name, "--version", version]),
    );
    out.to_path_buf()
}

/// `models install PACKAGE --store STORE --trust PUB [--activate]`.
pub fn install(store: &Path, package: &Path, public: &Path, activate: bool) -> Output {
    let mut cmd = nephrod();
    cmd.args(["models", "install"])
        .arg(package)
        .arg("--store")
        .arg(store)
        .arg("--trust")
        .arg(public);
    if activate {
        cmd.arg("--activate");
    }
    cmd.output().unwrap()
}

/// The store's active.json, parsed.
pub fn active(store: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(store.join("active.json")).unwrap()).unwrap()
}

/// `name@version` of the active segmentation model.
pub fn active_segmentation(store: &Path) -> String {
    let a = active(store);
    let m = &a["active"]["segmentation"];
    format!(
        "{}@{}",
        m["name"].as_str().unwrap(),
        m["version"].as_str().unwrap()
    )
}

/// A store at `root/models` whose active segmentation model is the fast model, signed by a
/// fresh key, as `kidney-seg-test@1`. Returns (store, bundle, secret key, public key).
pub fn fast_store(root: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let bundle = fast_bundle(root, "bundle");
    let (key, public) = keygen(root, "vendor");
    let v1 = signed_copy(&bundle, &root.join("pkg-v1"), &key, "kidney-seg-test", "1");
    let store = root.join("models");
    let out = install(&store, &v1, &public, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (store, bundle, key, public)
}

/// Gives the owner write permission on an installed (read-only) file.
pub fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}
