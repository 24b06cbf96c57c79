//! `nephrod models import-nnunet` / `verify` run as the real binary on the golden nnU-Net
//! folder (tests/data/models/nnunet/plain, written by nnunetv2 2.8.1): exit codes, summary
//! lines, and clear errors for a missing folder and a refused trainer.

use std::path::Path;
use std::process::Command;

fn nephrod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nephrod"))
}

#[test]
fn import_then_verify() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet");
    let tmp = tempfile::tempdir().unwrap();
    // The parent of --out need not exist yet.
    let out = tmp.path().join("bundles/kits-tiny");
    let o = nephrod()
        .args(["models", "import-nnunet"])
        .arg(data.join("plain"))
        .args(["--config", "3d_fullres", "--folds", "0", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains(
            "PlainConvUNet, 3 stages, features [2, 4, 8], 1 -> 4 channels, 5144 parameters"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("folds        0, 1"), "{stdout}");
    assert!(
        stdout.contains("labels       background, kidney, tumor, cyst"),
        "{stdout}"
    );
    assert!(out.join("manifest.json").is_file());
    assert!(out.join("fold_1.safetensors").is_file());

    let o = nephrod()
        .args(["models", "verify", "--unsigned"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(stdout.contains("OK (2 weights file(s)"), "{stdout}");

    // a second import to the same place is refused without --force
    let o = nephrod()
        .args(["models", "import-nnunet"])
        .arg(data.join("plain"))
        .args(["--config", "3d_fullres", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}

#[test]
fn errors_are_clear() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet");
    let tmp = tempfile::tempdir().unwrap();
    let o = nephrod()
        .args(["models", "import-nnunet"])
        .arg(tmp.path().join("nope"))
        .args(["--config", "3d_fullres", "--out"])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plans.json"), "{err}");

    let o = nephrod()
        .args(["models", "import-nnunet"])
        .arg(data.join("custom_trainer"))
        .args(["--config", "3d_fullres", "--out"])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nnUNetTrainerMyFancyNet") && err.contains("--allow-custom-trainer"),
        "{err}"
    );
    assert!(!tmp.path().join("b").exists());

    let o = nephrod()
        .args(["models", "verify", "--unsigned"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest.json"));
    // Without --unsigned, verification wants a signed package.
    let o = nephrod()
        .args(["models", "verify"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest.toml"));
}
