//! The signed model store with the real binary (`nephrod models keygen|sign|verify|install|
//! activate|rollback|remove|list`):
//! * a package signed by a trusted key verifies and installs; unsigned, untrusted, forged,
//!   altered, truncated or padded packages are refused with a message naming the fault, and the
//!   active model is untouched — each as a folder and as a `.tar` archive;
//! * install → activate → rollback → remove keep the rollback target and refuse to delete
//!   what is in use; versions are immutable;
//! * kill -9 (crash failpoints, and real SIGKILLs at spread-out times) at every step of install,
//!   activation and rollback leaves the old or the new active set, intact, never a mix; the next
//!   command removes what the interrupted one left.

#[path = "common/model_store.rs"]
mod model_store;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use model_store::{
    active_segmentation, copy_dir, fast_store, install, keygen, make_writable, nephrod, run_ok,
    signed_copy,
};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify(pkg: &Path, trust: &[&Path]) -> Output {
    let mut cmd = nephrod();
    cmd.args(["models", "verify"]).arg(pkg);
    for t in trust {
        cmd.arg("--trust").arg(t);
    }
    cmd.output().unwrap()
}

fn list(store: &Path) -> String {
    let o = run_ok(
        nephrod()
            .args(["models", "list", "--check", "--store"])
            .arg(store),
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `dir` as one tar archive whose single top-level folder is the package.
fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all("package-folder", dir).unwrap();
    b.finish().unwrap();
}

/// Names in the store root and packages/ that an interrupted command left.
fn leftovers(store: &Path) -> Vec<String> {
    [store.to_path_buf(), store.join("packages")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".nephrod-tmp-"))
        .collect()
}

#[test]
fn only_intact_packages_signed_by_a_trusted_key_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (store, bundle, key, public) = fast_store(root);
    let (other_key, other_public) = keygen(root, "someone-else");
    let good = signed_copy(&bundle, &root.join("v2"), &key, "kidney-seg-test", "2");
    let state_before = std::fs::read(store.join("active.json")).unwrap();

    let o = verify(&good, &[&public]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("kidney-seg-test@2") && text.contains("OK"),
        "{text}"
    );

    // Each damaged variant: (what is done to a fresh copy, trusted key, expected message).
    type Damage = Box<dyn Fn(&Path)>;
    let weights = |p: &Path| p.join("fold_0.safetensors");
    let cases: Vec<(&str, Damage, PathBuf, &str)> = vec![
        (
            "no trusted key",
            Box::new(|_: &Path| {}),
            PathBuf::new(),
            "no trusted public keys",
        ),
        (
            "untrusted signer",
            Box::new(|_: &Path| {}),
            other_public.clone(),
            "is not trusted",
        ),
        (
            "unsigned",
            Box::new(|p: &Path| std::fs::remove_file(p.join("manifest.toml.sig")).unwrap()),
            public.clone(),
            "unsigned bundle",
        ),
        (
            "manifest edited after signing",
            Box::new(|p: &Path| {
                let m = std::fs::read_to_string(p.join("manifest.toml")).unwrap();
                std::fs::write(
                    p.join("manifest.toml"),
                    m.replace("version = \"2\"", "version = \"3\""),
                )
                .unwrap();
            }),
            public.clone(),
            "signature does not match",
        ),
        (
            "forged signature under the trusted key's id",
            Box::new(|p: &Path| {
                let s = std::fs::read_to_string(p.join("manifest.toml.sig")).unwrap();
                let f: Vec<&str> = s.split_whitespace().collect();
                let forged = format!("{} {} {}\n", f[0], f[1], "ab".repeat(64));
                std::fs::write(p.join("manifest.toml.sig"), forged).unwrap();
            }),
            public.clone(),
            "signature does not match",
        ),
        (
            "one weight byte flipped",
            Box::new(move |p: &Path| {
                let mut b = std::fs::read(weights(p)).unwrap();
                let n = b.len() - 10;
                b[n] ^= 0x40;
                std::fs::write(weights(p), b).unwrap();
            }),
            public.clone(),
            "(damaged or altered)",
        ),
        (
            "truncated weights",
            Box::new(move |p: &Path| {
                let b = std::fs::read(weights(p)).unwrap();
                std::fs::write(weights(p), &b[..b.len() / 2]).unwrap();
            }),
            public.clone(),
            "(truncated or damaged)",
        ),
        (
            "an extra file",
            Box::new(|p: &Path| std::fs::write(p.join("extra.py"), "print(1)").unwrap()),
            public.clone(),
            "extra.py is not listed",
        ),
        (
            "a listed file missing",
            Box::new(|p: &Path| std::fs::remove_file(p.join("self_check.json")).unwrap()),
            public.clone(),
            "self_check.json is listed in the manifest but missing",
        ),
    ];
    // Each variant as a folder and as one .tar of that folder.
    let variants = cases
        .iter()
        .enumerate()
        .flat_map(|(i, (what, damage, trust, message))| {
            let pkg = root.join(format!("damaged-{i}"));
            copy_dir(&good, &pkg);
            damage(&pkg);
            let archive = root.join(format!("damaged-{i}.tar"));
            tar_dir(&pkg, &archive);
            [
                (what.to_string(), pkg, trust, message),
                (format!("{what} (archive)"), archive, trust, message),
            ]
        });
    for (what, pkg, trust, message) in variants {
        let trusted: Vec<&Path> = if trust.as_os_str().is_empty() {
            Vec::new()
        } else {
            vec![trust.as_path()]
        };
        let o = verify(&pkg, &trusted);
        assert!(!o.status.success(), "{what}: verify accepted it");
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        let mut cmd = nephrod();
        cmd.args(["models", "install", "--activate"])
            .arg(&pkg)
            .arg("--store")
            .arg(&store);
        for t in &trusted {
            cmd.arg("--trust").arg(t);
        }
        let o = cmd.output().unwrap();
        assert!(!o.status.success(), "{what}: install accepted it");
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(store.join("active.json")).unwrap(),
            state_before,
            "{what}: the active set changed"
        );
        assert!(!store.join("packages/kidney-seg-test/2").exists(), "{what}");
    }
    assert!(leftovers(&store).is_empty());
    assert!(list(&store).contains("kidney-seg-test@1"));

    // The intact package as one archive verifies, installs and activates like its folder.
    let archive = root.join("kidney-seg-test-2.tar");
    tar_dir(&good, &archive);
    let o = verify(&archive, &[&public]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = install(&store, &archive, &public, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("self-check passed"));
    assert_eq!(active_segmentation(&store), "kidney-seg-test@2");
    assert!(leftovers(&store).is_empty());
    run_ok(
        nephrod()
            .args(["models", "rollback", "--store"])
            .arg(&store),
    );
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");

    // A package signed by the other key installs when that key is trusted.
    let theirs = signed_copy(
        &bundle,
        &root.join("theirs"),
        &other_key,
        "kidney-seg-other",
        "1",
    );
    let o = install(&store, &theirs, &other_public, false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("self-check passed"));
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");

    // `list --check` with keys checks signatures too: trusting only the other key (the
    // vendor's key revoked), the active package is flagged and the exit status says so.
    let list_trusting = |k: &Path| {
        nephrod()
            .args(["models", "list", "--check", "--store"])
            .arg(&store)
            .arg("--trust")
            .arg(k)
            .output()
            .unwrap()
    };
    let o = list_trusting(&public);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("signed by trusted key"), "{text}");
    assert!(text.contains("NOT TRUSTED:"), "{text}"); // kidney-seg-other@1, not active
    let o = list_trusting(&other_public);
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("NOT TRUSTED (active: nephrod serve will refuse to start)"),
        "{text}"
    );
    assert!(stderr(&o).contains("1 active package(s) not signed by a trusted key"));
}

#[test]
fn install_activate_rollback_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (store, bundle, key, public) = fast_store(root);
    let s = |args: &[&str]| {
        let mut cmd = nephrod();
        cmd.arg("models").args(args).arg("--store").arg(&store);
        cmd.output().unwrap()
    };
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");
    let v2 = signed_copy(&bundle, &root.join("v2"), &key, "kidney-seg-test", "2");
    let o = install(&store, &v2, &public, false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        active_segmentation(&store),
        "kidney-seg-test@1",
        "install activated"
    );
    // Installing the same package again is a no-op; other content under the same version is
    // refused.
    let o = install(&store, &v2, &public, false);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already installed"));
    let v2b = signed_copy(&bundle, &root.join("v2b"), &key, "kidney-seg-test", "2");
    run_ok(
        nephrod()
            .args(["models", "sign"])
            .arg(&v2b)
            .arg("--key")
            .arg(&key)
            .args(["--training-summary", "other data"]),
    );
    let o = install(&store, &v2b, &public, false);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("versions are immutable"),
        "{}",
        stderr(&o)
    );

    let o = s(&["activate", "kidney-seg-test@2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(active_segmentation(&store), "kidney-seg-test@2");
    let listing = list(&store);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("kidney-seg-test@2") && l.contains("active")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("kidney-seg-test@1") && l.contains("previous")),
        "{listing}"
    );
    // Neither the active version nor the rollback target can be removed.
    let o = s(&["remove", "kidney-seg-test@2"]);
    assert!(
        !o.status.success() && stderr(&o).contains("is active"),
        "{}",
        stderr(&o)
    );
    let o = s(&["remove", "kidney-seg-test@1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("rollback target"),
        "{}",
        stderr(&o)
    );
    let o = s(&["activate", "kidney-seg-test@9"]);
    assert!(
        !o.status.success() && stderr(&o).contains("not installed"),
        "{}",
        stderr(&o)
    );

    let o = s(&["rollback"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");
    // Nothing before v1's first activation: no further rollback.
    let o = s(&["rollback"]);
    assert!(
        !o.status.success() && stderr(&o).contains("nothing to roll back"),
        "{}",
        stderr(&o)
    );
    let o = s(&["remove", "kidney-seg-test@2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!store.join("packages/kidney-seg-test/2").exists());
    assert!(!list(&store).contains("kidney-seg-test@2"));

    // An installed package damaged on disk is not activated.
    let o = install(&store, &v2, &public, false);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = store.join("packages/kidney-seg-test/2/fold_0.safetensors");
    // Installed files are read-only (0444); damage them as a failing disk would.
    make_writable(&w);
    let mut b = std::fs::read(&w).unwrap();
    b[100] ^= 1;
    std::fs::write(&w, b).unwrap();
    let o = s(&["activate", "kidney-seg-test@2"]);
    assert!(
        !o.status.success() && stderr(&o).contains("damaged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");
}

/// Runs `models <args> --store STORE` with a crash failpoint; asserts it died.
fn crash(store: &Path, failpoints: &str, args: &[&str], public: &Path) {
    let mut cmd = nephrod();
    cmd.arg("models")
        .args(args)
        .arg("--store")
        .arg(store)
        .env("NEPHROD_FAILPOINTS", failpoints);
    if args[0] == "install" {
        cmd.arg("--trust").arg(public);
    }
    let o = cmd.output().unwrap();
    assert!(!o.status.success(), "{failpoints}: did not crash");
    assert!(stderr(&o).contains("crash"), "{failpoints}: {}", stderr(&o));
}

#[test]
fn kill_9_at_every_step_leaves_the_old_or_the_new_model_active() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (store, bundle, key, public) = fast_store(root);
    let v2 = signed_copy(&bundle, &root.join("v2"), &key, "kidney-seg-test", "2");
    let v2s = v2.display().to_string();
    let installed = store.join("packages/kidney-seg-test/2");
    // An archive killed right after unpacking: nothing installed, the unpacked folder is a
    // leftover the next command removes.
    let archive = root.join("v2.tar");
    tar_dir(&v2, &archive);
    let archive_s = archive.display().to_string();
    crash(
        &store,
        "install.unpacked=crash",
        &["install", &archive_s],
        &public,
    );
    assert!(!installed.exists());
    assert_eq!(leftovers(&store).len(), 1, "{:?}", leftovers(&store));
    let o = install(&store, &archive, &public, false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(leftovers(&store).is_empty(), "{:?}", leftovers(&store));
    run_ok(
        nephrod()
            .args(["models", "remove", "kidney-seg-test@2", "--store"])
            .arg(&store),
    );
    // Install: every step before the rename leaves v2 absent; after it, v2 installed intact.
    for (point, present) in [
        ("install.copy=crash", false),
        ("install.copy=crash-after:3", false),
        ("install.checked=crash", false),
        ("install.before_rename=crash", false),
        ("install.after_rename=crash", true),
        ("store.state.before_rename=crash", true),
    ] {
        crash(&store, point, &["install", &v2s, "--activate"], &public);
        assert_eq!(active_segmentation(&store), "kidney-seg-test@1", "{point}");
        assert_eq!(installed.exists(), present, "{point}");
        let listing = list(&store); // --check: every installed package intact
        assert!(listing.contains("kidney-seg-test@1"), "{point}: {listing}");
        if !present {
            assert!(
                !leftovers(&store).is_empty() || point.starts_with("store."),
                "{point}"
            );
        }
        // The next command cleans up and completes the interrupted work.
        let o = install(&store, &v2, &public, false);
        assert!(o.status.success(), "{point}: {}", stderr(&o));
        assert!(
            leftovers(&store).is_empty(),
            "{point}: {:?}",
            leftovers(&store)
        );
        assert!(installed.join("manifest.toml.sig").exists());
        if point != "store.state.before_rename=crash" {
            run_ok(
                nephrod()
                    .args(["models", "remove", "kidney-seg-test@2", "--store"])
                    .arg(&store),
            );
        }
    }
    // Activation and rollback: before the state rename the old set, after it the new one.
    let activate = ["activate", "kidney-seg-test@2"];
    crash(
        &store,
        "store.state.before_rename=crash",
        &activate,
        &public,
    );
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");
    crash(&store, "store.state.after_rename=crash", &activate, &public);
    assert_eq!(active_segmentation(&store), "kidney-seg-test@2");
    crash(
        &store,
        "store.state.before_rename=crash",
        &["rollback"],
        &public,
    );
    assert_eq!(active_segmentation(&store), "kidney-seg-test@2");
    crash(
        &store,
        "store.state.after_rename=crash",
        &["rollback"],
        &public,
    );
    assert_eq!(active_segmentation(&store), "kidney-seg-test@1");
    list(&store);

    // Real SIGKILLs at spread-out times during install + activation.
    run_ok(
        nephrod()
            .args(["models", "activate", "kidney-seg-test@2", "--store"])
            .arg(&store),
    );
    let v3 = signed_copy(&bundle, &root.join("v3"), &key, "kidney-seg-test", "3");
    for delay_ms in [5u64, 40, 150, 400, 900] {
        let mut child = nephrod()
            .args(["models", "install", "--activate"])
            .arg(&v3)
            .arg("--store")
            .arg(&store)
            .arg("--trust")
            .arg(&public)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let now = active_segmentation(&store);
        assert!(
            now == "kidney-seg-test@2" || now == "kidney-seg-test@3",
            "after SIGKILL at {delay_ms} ms: {now}"
        );
        list(&store);
        if now == "kidney-seg-test@3" {
            run_ok(
                nephrod()
                    .args(["models", "rollback", "--store"])
                    .arg(&store),
            );
        }
        if store.join("packages/kidney-seg-test/3").exists() {
            run_ok(
                nephrod()
                    .args(["models", "remove", "kidney-seg-test@3", "--store"])
                    .arg(&store),
            );
        }
    }
}

/// The demo models shipped in models/ are signed packages (key models/nephrod-demo-models.pub):
/// they verify, install (their self-check reproduces the record made when they were signed)
/// and serve as the store's active set.
#[test]
fn shipped_demo_packages_verify_and_pass_their_self_check() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let public = repo.join("models/nephrod-demo-models.pub");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    for name in ["kidney-seg-demo", "renal-mass-classifier-demo"] {
        let pkg = repo.join("models").join(name);
        let o = verify(&pkg, &[&public]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let o = install(&store, &pkg, &public, true);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("self-check passed"), "{name}: {text}");
    }
    assert_eq!(active_segmentation(&store), "kidney-seg-demo@1.0.0");
    let listing = list(&store);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("renal-mass-classifier-demo@1.0.0") && l.contains("active")),
        "{listing}"
    );
}

/// The cascade test models (tests/data/models/nnunet/cascade_*) with coarse spacings (fast on
/// a phantom), imported: returns (3d_lowres bundle, 3d_cascade_fullres bundle).
fn fast_cascade(root: &Path) -> (PathBuf, PathBuf) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet");
    let import = |model: &str, config: &str| {
        let copy = root.join(format!("nnunet-{model}"));
        copy_dir(&data.join(model), &copy);
        let plans = copy.join("plans.json");
        let mut p: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&plans).unwrap()).unwrap();
        p["configurations"]["3d_fullres"]["spacing"] = serde_json::json!([6.0, 6.0, 6.0]);
        p["configurations"]["3d_lowres"]["spacing"] = serde_json::json!([9.0, 9.0, 9.0]);
        std::fs::write(&plans, p.to_string()).unwrap();
        let out = root.join(format!("bundle-{config}"));
        run_ok(
            nephrod()
                .args(["models", "import-nnunet"])
                .arg(&copy)
                .args(["--config", config, "--out"])
                .arg(&out),
        );
        out
    };
    (
        import("cascade_lowres", "3d_lowres"),
        import("cascade_fullres", "3d_cascade_fullres"),
    )
}

#[test]
fn a_cascade_is_signed_installed_and_analysed_as_one_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (low, full) = fast_cascade(root);
    let (key, public) = keygen(root, "vendor");
    // The first stage travels inside the cascade stage's package.
    let unsigned = root.join("cascade-unsigned");
    copy_dir(&full, &unsigned);
    copy_dir(&low, &unsigned.join("previous_stage"));
    let pkg = signed_copy(
        &unsigned,
        &root.join("cascade-pkg"),
        &key,
        "kidney-cascade-test",
        "1",
    );
    let manifest = std::fs::read_to_string(pkg.join("manifest.toml")).unwrap();
    assert!(
        manifest.contains("path = \"previous_stage/manifest.json\""),
        "{manifest}"
    );
    let o = verify(&pkg, &[&public]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("cascade after 3d_lowres"), "{text}");

    // Without its first stage a cascade stage is not a model: signing refuses it.
    let alone = root.join("alone");
    copy_dir(&full, &alone);
    let o = nephrod()
        .args(["models", "sign"])
        .arg(&alone)
        .arg("--key")
        .arg(&key)
        .args(["--version", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("needs its previous stage"),
        "{}",
        stderr(&o)
    );
    // A file slipped into previous_stage/ after signing is refused like any unlisted file.
    let padded = root.join("padded");
    copy_dir(&pkg, &padded);
    std::fs::write(padded.join("previous_stage/extra.bin"), b"x").unwrap();
    let o = verify(&padded, &[&public]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("previous_stage/extra.bin is not listed"),
        "{}",
        stderr(&o)
    );

    // Installed (self-check on the phantom through both stages) and active.
    let store = root.join("store");
    let o = install(&store, &pkg, &public, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("self-check passed"));
    assert!(store
        .join("packages/kidney-cascade-test/1/previous_stage/manifest.json")
        .is_file());
    assert!(list(&store).contains("intact"));

    // `analyze` with the store runs the cascade and names it in the report.
    let gen = root.join("gen");
    run_ok(
        nephrod()
            .args(["phantom", "--out"])
            .arg(&gen)
            .args(["--cases", "1", "--seed", "5"]),
    );
    let out = root.join("report");
    run_ok(
        nephrod()
            .arg("analyze")
            .arg(gen.join("case_0000/dicom"))
            .arg("--models")
            .arg(&store)
            .arg("--out")
            .arg(&out)
            .args(["--no-tta", "--no-grad-cam"]),
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let seg = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "segmentation")
        .unwrap();
    assert_eq!(seg["name"], "kidney-cascade-test");
    assert_eq!(seg["signed"], true);
}
