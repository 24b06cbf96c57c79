//! `nephrod serve` with the real binary on a temporary spool: studies written slowly and
//! interleaved become one report each; kill -9 (real, and crash failpoints between every two
//! steps of a claim and a publication) never loses, duplicates or half-writes anything; a full
//! disk in the middle of a claim or a journal line is completed without a restart; corrupt
//! files go to quarantine with a reason while the other studies proceed; a full disk
//! (failpoint) leaves no partial report and the study is retried; a model activated while the
//! daemon runs serves from the next study on, named in its report, and a daemon refuses to
//! start on a models folder that is not a model store.
//!
//! Speed: each study is one phantom series, and the segmentation model is the random-weight
//! nnU-Net test model (tests/data/models/nnunet/plain) imported with a coarse 6 mm spacing and
//! installed as a signed package (tests/common/model_store.rs) — its label maps are noise,
//! which is what these tests need: the daemon's bookkeeping, not the model's quality (the
//! pipeline is checked in tests/analyze_cli.rs).
//!
//! Every spool's configuration lists the signing key in `models.trusted_keys`; a daemon whose
//! configuration no longer lists it (the key revoked) refuses to start on that store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/model_store.rs"]
mod model_store;

use model_store::{make_writable, nephrod, run_ok};

/// A model store whose active segmentation model is the fast test model (see the module doc),
/// and the public key that signed it.
fn fast_models(root: &Path) -> (PathBuf, PathBuf) {
    let (store, _, _, public) = model_store::fast_store(root);
    (store, public)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One input file: path relative to the drop folder, and its bytes.
struct Input {
    rel: String,
    bytes: Vec<u8>,
}

/// `n` one-series phantom studies (the last series of each case), with their Study UIDs.
fn studies(root: &Path, n: usize, seed: u64) -> (Vec<Vec<Input>>, Vec<String>) {
    let gen = root.join("gen");
    run_ok(nephrod().args(["phantom", "--out"]).arg(&gen).args([
        "--cases",
        &n.to_string(),
        "--seed",
        &seed.to_string(),
    ]));
    let mut all = Vec::new();
    let mut uids = Vec::new();
    for k in 0..n {
        let case = gen.join(format!("case_{k:04}"));
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("truth.json")).unwrap())
                .unwrap();
        uids.push(truth["study_uid"].as_str().unwrap().to_string());
        let mut series: Vec<PathBuf> = std::fs::read_dir(case.join("dicom"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        series.sort();
        let last = series.pop().unwrap();
        let files = walk(&last)
            .into_iter()
            .map(|p| Input {
                rel: format!(
                    "sender-{k}/{}/{}",
                    last.file_name().unwrap().to_string_lossy(),
                    p.file_name().unwrap().to_string_lossy()
                ),
                bytes: std::fs::read(&p).unwrap(),
            })
            .collect();
        all.push(files);
    }
    (all, uids)
}

/// Writes every study's files round-robin, each file in two halves with a pause between.
fn drop_interleaved(drop: &Path, studies: &[Vec<Input>], pause: Duration) {
    use std::io::Write;
    let longest = studies.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for s in studies {
            let Some(f) = s.get(i) else { continue };
            let path = drop.join(&f.rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut out = std::fs::File::create(&path).unwrap();
            let half = f.bytes.len() / 2;
            out.write_all(&f.bytes[..half]).unwrap();
            out.flush().unwrap();
            std::thread::sleep(pause);
            out.write_all(&f.bytes[half..]).unwrap();
        }
    }
}

struct Spool {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Spool {
    /// A spool whose daemon serves the store `models`, trusting the keys `trusted`.
    fn new(models: &Path, trusted: &[&Path], extra: &str) -> Spool {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let config = root.join("nephrod.toml");
        let s = |name: &str| root.join(name).display().to_string();
        std::fs::write(
            &config,
            format!(
                "[spool]\ndrop = \"{}\"\nwork = \"{}\"\noutbox = \"{}\"\narchive = \"{}\"\n\
                 quarantine = \"{}\"\n[study]\nquiet_secs = 3\nmin_series = 1\n\
                 rescan_secs = 0.3\nunreadable_after_secs = 4\n[models]\ndir = \"{}\"\n\
                 trusted_keys = [{}]\n[analysis]\ntta = false\ngrad_cam = false\n[service]\nretry_after_secs = 0.5\n\
                 stop_timeout_secs = 30\n{extra}",
                s("drop"),
                s("work"),
                s("outbox"),
                s("archive"),
                s("quarantine"),
                models.display(),
                trusted
                    .iter()
                    .map(|k| format!("\"{}\"", k.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .unwrap();
        for d in ["drop", "work", "outbox", "archive", "quarantine"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Spool {
            _tmp: tmp,
            root,
            config,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn start(&self, failpoints: &str) -> Child {
        self.start_with(failpoints, None)
    }

    fn start_with(&self, failpoints: &str, notify_socket: Option<&Path>) -> Child {
        let mut cmd = nephrod();
        if let Some(sock) = notify_socket {
            cmd.env("NOTIFY_SOCKET", sock);
        }
        cmd.args(["-v", "serve", "--config"])
            .arg(&self.config)
            .env("NEPHROD_FAILPOINTS", failpoints)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.root.join("serve.log"))
                    .unwrap(),
            ))
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("serve.log")).unwrap_or_default()
    }

    /// Report folders in the outbox (published ones only).
    fn reports(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("report.json").exists())
            .collect();
        v.sort();
        v
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Spool) -> bool) {
        let t0 = Instant::now();
        while !done(self) {
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn report_uids(&self) -> Vec<String> {
        self.reports()
            .iter()
            .map(|r| {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(r.join("report.json")).unwrap())
                        .unwrap();
                v["study_uid"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// Every input is in exactly one place: archived (at its relative path under its job),
    /// quarantined, or still in the drop / work folders.
    fn assert_accounted(&self, inputs: &[Vec<Input>]) {
        self.assert_accounted_with(inputs, 0)
    }

    /// [`Spool::assert_accounted`] when `extra` files not in `inputs` were dropped too.
    fn assert_accounted_with(&self, inputs: &[Vec<Input>], extra: usize) {
        let names = |dir: &Path| -> Vec<String> {
            walk(dir)
                .iter()
                .filter(|p| p.file_name().unwrap() != "reason.txt")
                .map(|p| p.display().to_string())
                .collect()
        };
        let archive = names(&self.dir("archive"));
        let quarantine = names(&self.dir("quarantine"));
        let pending: Vec<String> = names(&self.dir("drop"))
            .into_iter()
            .chain(
                names(&self.dir("work"))
                    .into_iter()
                    .filter(|p| p.contains("/input/")),
            )
            .collect();
        let total: usize = inputs.iter().map(Vec::len).sum::<usize>() + extra;
        for f in inputs.iter().flatten() {
            let places = archive
                .iter()
                .chain(&quarantine)
                .chain(&pending)
                .filter(|p| {
                    p.ends_with(&format!("/{}", f.rel))
                        || p.ends_with(&format!("/{}", file_name(&f.rel)))
                })
                .count();
            assert!(places >= 1, "{} is nowhere", f.rel);
        }
        assert_eq!(
            archive.len() + quarantine.len() + pending.len(),
            total,
            "archive {} + quarantine {} + pending {} != inputs {total}",
            archive.len(),
            quarantine.len(),
            pending.len()
        );
    }
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap()
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a process that is expected to crash at a failpoint.
fn wait_crash(child: &mut Child, spool: &Spool) {
    let status = wait_exit(child, spool);
    assert!(!status.success(), "expected a crash; log:\n{}", spool.log());
}

/// Waits (generously) for the daemon to exit and returns its status.
fn wait_exit(child: &mut Child, spool: &Spool) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no exit; log:\n{}",
            spool.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn studies_written_slowly_and_interleaved_give_one_report_each() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (inputs, uids) = studies(tmp.path(), 5, 21);
    let spool = Spool::new(&models, &[&public], "");
    // systemd's notification socket, as systemd would pass it.
    let sock_path = spool.root.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop_listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let stop = stop_listening.clone();
        std::thread::spawn(move || {
            let mut messages = Vec::new();
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            messages
        })
    };
    let mut daemon = spool.start_with("", Some(&sock_path));
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::from_millis(3));
    spool.wait_for("five reports", Duration::from_secs(300), |s| {
        s.reports().len() == 5
            && walk(&s.dir("drop")).is_empty()
            && walk(&s.dir("work"))
                .iter()
                .all(|p| !p.to_string_lossy().contains("/input/"))
    });
    let status = stop(&mut daemon);
    assert!(status.success(), "{}", spool.log());
    std::thread::sleep(Duration::from_millis(300));
    stop_listening.store(true, std::sync::atomic::Ordering::SeqCst);
    let messages = listener.join().unwrap();
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("STATUS=processing")),
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1"),
        "{messages:?}"
    );
    let got: BTreeSet<String> = spool.report_uids().into_iter().collect();
    assert_eq!(got, uids.iter().cloned().collect::<BTreeSet<_>>());
    assert!(walk(&spool.dir("quarantine")).is_empty());
    spool.assert_accounted(&inputs);
    // No temporaries left, and logs carry no Study UID.
    for e in std::fs::read_dir(spool.dir("outbox")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "{name}");
    }
    let log = spool.log();
    for uid in &uids {
        assert!(!log.contains(uid.as_str()), "a Study UID in the log");
    }
    assert!(log.contains("report published"), "{log}");
}

#[test]
fn kill_9_at_every_step_processes_every_study_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (inputs, uids) = studies(tmp.path(), 5, 33);
    let spool = Spool::new(&models, &[&public], "");
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::ZERO);
    // Crash right after the claim intent, in the middle of moving a claim, and after a report
    // is published but before the journal says so; then a real kill -9 mid-run.
    for fp in [
        "claim.after_intent=crash",
        "claim.mid_move=crash-after:5",
        "publish.before_journal=crash",
    ] {
        let mut d = spool.start(fp);
        wait_crash(&mut d, &spool);
    }
    let before = spool.reports().len();
    let mut d = spool.start("");
    spool.wait_for("one more report", Duration::from_secs(120), |s| {
        s.reports().len() > before
    });
    kill9(&mut d);
    let mut d = spool.start("");
    spool.wait_for("five reports", Duration::from_secs(300), |s| {
        s.reports().len() >= 5
            && walk(&s.dir("drop")).is_empty()
            && walk(&s.dir("work"))
                .iter()
                .all(|p| !p.to_string_lossy().contains("/input/"))
    });
    assert!(stop(&mut d).success(), "{}", spool.log());
    let reported = spool.report_uids();
    assert_eq!(reported.len(), 5, "exactly five reports: {reported:?}");
    assert_eq!(
        reported.iter().cloned().collect::<BTreeSet<_>>(),
        uids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(walk(&spool.dir("quarantine")).is_empty(), "{}", spool.log());
    spool.assert_accounted(&inputs);
    let log = spool.log();
    if std::env::var_os("NEPHROD_TEST_SHOW_LOG").is_some() {
        println!("{log}");
    }
    assert!(log.contains("recovery"), "{log}");
}

#[test]
fn corrupt_files_are_quarantined_with_a_reason_and_others_proceed() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (mut inputs, uids) = studies(tmp.path(), 2, 45);
    // A file that is not DICOM, and a DICOM file cut after 200 bytes (its own sender folder).
    let cut = inputs[0][0].bytes[..200].to_vec();
    inputs.push(vec![
        Input {
            rel: "sender-x/garbage.dcm".into(),
            bytes: b"this is not a DICOM file".to_vec(),
        },
        Input {
            rel: "sender-y/truncated.dcm".into(),
            bytes: cut,
        },
    ]);
    let spool = Spool::new(&models, &[&public], "");
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::ZERO);
    // A file whose name is not UTF-8 (cannot be journalled): quarantined too.
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = spool
            .dir("drop")
            .join("sender-z")
            .join(std::ffi::OsStr::from_bytes(b"IM\xff1.dcm"));
        std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
        std::fs::write(&odd, &inputs[0][0].bytes).unwrap();
    }
    let mut d = spool.start("");
    spool.wait_for(
        "two reports and three quarantined files",
        Duration::from_secs(180),
        |s| s.reports().len() == 2 && walk(&s.dir("drop")).is_empty(),
    );
    assert!(stop(&mut d).success(), "{}", spool.log());
    let got: BTreeSet<String> = spool.report_uids().into_iter().collect();
    assert_eq!(got, uids.iter().cloned().collect::<BTreeSet<_>>());
    let entries: Vec<PathBuf> = std::fs::read_dir(spool.dir("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    let mut not_utf8 = 0;
    for e in &entries {
        let reason = std::fs::read_to_string(e.join("reason.txt")).unwrap();
        assert!(reason.contains("reason: ") && reason.len() > 20, "{reason}");
        not_utf8 += usize::from(reason.contains("not valid UTF-8"));
    }
    assert_eq!(not_utf8, 1);
    spool.assert_accounted_with(&inputs, 1);
}

#[test]
fn a_full_disk_leaves_no_partial_report_and_the_study_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (inputs, uids) = studies(tmp.path(), 1, 57);
    let spool = Spool::new(&models, &[&public], "");
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::ZERO);
    let mut d = spool.start("output.write=enospc:2");
    spool.wait_for(
        "the report after two failures",
        Duration::from_secs(180),
        |s| s.reports().len() == 1 && walk(&s.dir("archive")).len() == inputs[0].len(),
    );
    assert!(stop(&mut d).success(), "{}", spool.log());
    assert_eq!(spool.report_uids(), uids);
    let outbox: Vec<String> = std::fs::read_dir(spool.dir("outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outbox.len(), 1, "only the published folder: {outbox:?}");
    let journal = std::fs::read_to_string(spool.dir("work").join("journal.jsonl")).unwrap();
    assert_eq!(
        journal.matches("\"event\":\"failed\"").count(),
        2,
        "{journal}"
    );
    assert!(journal.contains("No space left on device"));
    spool.assert_accounted(&inputs);
}

#[test]
fn a_full_disk_during_a_claim_is_completed_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (inputs, uids) = studies(tmp.path(), 1, 59);
    let spool = Spool::new(&models, &[&public], "");
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::ZERO);
    // The first journal line is cut half-way by a full disk (the claim is retried), then the
    // retried claim's `claimed` line fails twice after its files moved.
    let mut d = spool.start("journal.append.torn=enospc:1,claim.before_claimed=enospc:2");
    spool.wait_for("the report", Duration::from_secs(180), |s| {
        s.reports().len() == 1 && walk(&s.dir("archive")).len() == inputs[0].len()
    });
    assert!(stop(&mut d).success(), "{}", spool.log());
    assert_eq!(spool.report_uids(), uids);
    assert!(
        spool.log().contains("interrupted claim completed"),
        "{}",
        spool.log()
    );
    // The torn fragment is a line of its own; every other line reads, and the one job went
    // claim → claimed → published → retained.
    let journal = std::fs::read_to_string(spool.dir("work").join("journal.jsonl")).unwrap();
    let lines: Vec<&str> = journal.lines().filter(|l| !l.is_empty()).collect();
    let events: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines.len() - events.len(), 1, "{journal}");
    assert_eq!(
        events,
        ["claim", "claimed", "published", "retained"],
        "{journal}"
    );
    assert!(walk(&spool.dir("quarantine")).is_empty());
    spool.assert_accounted(&inputs);
}

#[test]
fn sigterm_requeues_or_finishes_the_running_study() {
    let tmp = tempfile::tempdir().unwrap();
    let (models, public) = fast_models(tmp.path());
    let (inputs, uids) = studies(tmp.path(), 1, 69);
    let spool = Spool::new(&models, &[&public], "");
    // Mirroring TTA makes a study take long enough to be interrupted.
    let set = |stop_secs: &str| {
        let text = std::fs::read_to_string(&spool.config).unwrap();
        let text = text.replace("tta = false", "tta = true");
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("stop_timeout_secs"))
            .map(str::to_string)
            .collect();
        let at = lines.iter().position(|l| l == "[service]").unwrap() + 1;
        lines.insert(at, format!("stop_timeout_secs = {stop_secs}"));
        std::fs::write(&spool.config, lines.join("\n") + "\n").unwrap();
    };
    set("0");
    drop_interleaved(&spool.dir("drop"), &inputs, Duration::ZERO);
    let processing = |s: &Spool| s.log().matches("processing job=").count();

    // SIGTERM with no time to wait: the study is left claimed, to run at the next start.
    let mut d = spool.start("");
    spool.wait_for("processing", Duration::from_secs(120), |s| {
        processing(s) >= 1
    });
    let _ = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status();
    assert!(wait_exit(&mut d, &spool).success(), "{}", spool.log());
    assert!(spool.reports().is_empty(), "{}", spool.log());
    assert!(
        spool.log().contains("runs again at the next start"),
        "{}",
        spool.log()
    );
    assert!(walk(&spool.dir("drop")).is_empty());
    spool.assert_accounted(&inputs);

    // Next start, SIGTERM while it runs again, with time to finish: published before exit.
    set("600");
    let mut d = spool.start("");
    spool.wait_for("processing again", Duration::from_secs(120), |s| {
        processing(s) >= 2
    });
    let _ = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status();
    assert!(wait_exit(&mut d, &spool).success(), "{}", spool.log());
    assert_eq!(spool.report_uids(), uids, "{}", spool.log());
    assert_eq!(walk(&spool.dir("archive")).len(), inputs[0].len());
    spool.assert_accounted(&inputs);
}

#[test]
fn a_newly_activated_model_serves_the_next_study_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, bundle, key, public) = model_store::fast_store(tmp.path());
    let v2 = model_store::signed_copy(
        &bundle,
        &tmp.path().join("pkg-v2"),
        &key,
        "kidney-seg-test",
        "2",
    );
    let out = model_store::install(&store, &v2, &public, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (inputs, _) = studies(tmp.path(), 3, 47);
    let spool = Spool::new(&store, &[&public], "");
    let mut daemon = spool.start("");
    let model_of = |report: &Path| -> (String, String, bool) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
                .unwrap();
        let m = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "segmentation")
            .unwrap()
            .clone();
        (
            format!(
                "{}@{}",
                m["name"].as_str().unwrap(),
                m["version"].as_str().unwrap()
            ),
            m["sha256"].as_str().unwrap().to_string(),
            m["signed"].as_bool().unwrap(),
        )
    };
    drop_interleaved(&spool.dir("drop"), &inputs[..1], Duration::from_millis(0));
    spool.wait_for("the first report", Duration::from_secs(120), |s| {
        s.reports().len() == 1
    });
    let first = model_of(&spool.reports()[0]);
    assert_eq!(first.0, "kidney-seg-test@1");
    assert!(first.2);
    // `serve --check` beside the running daemon names what serves.
    let o = serve_check(&spool);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("kidney-seg-test@1") && text.contains("signed by a trusted key"),
        "{text}"
    );
    let sha_v1 = model_store::active(&store)["active"]["segmentation"]["manifest_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first.1, sha_v1);

    run_ok(
        nephrod()
            .args(["models", "activate", "kidney-seg-test@2", "--store"])
            .arg(&store),
    );
    drop_interleaved(&spool.dir("drop"), &inputs[1..2], Duration::from_millis(0));
    spool.wait_for("the second report", Duration::from_secs(120), |s| {
        s.reports().len() == 2
    });
    let reports = spool.reports();
    let second = reports
        .iter()
        .map(|r| model_of(r))
        .find(|m| m.0 != first.0)
        .unwrap_or_else(|| panic!("both reports name v1; log:\n{}", spool.log()));
    assert_eq!(second.0, "kidney-seg-test@2");
    let sha_v2 = model_store::active(&store)["active"]["segmentation"]["manifest_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(second.1, sha_v2);
    assert_ne!(sha_v1, sha_v2);
    // The main loop logs the switch when it reads the worker's message, which may come after
    // the worker has already published the report.
    spool.wait_for("the switch to be logged", Duration::from_secs(30), |s| {
        s.log().contains("model activated")
    });

    // v3 activated, then damaged on disk before the next study: the daemon refuses to switch
    // and v2 keeps serving, named as such in the report.
    let v3 = model_store::signed_copy(
        &bundle,
        &tmp.path().join("pkg-v3"),
        &key,
        "kidney-seg-test",
        "3",
    );
    let out = model_store::install(&store, &v3, &public, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = store.join("packages/kidney-seg-test/3/fold_0.safetensors");
    // Installed files are read-only (0444); damage them as a failing disk would.
    make_writable(&w);
    let mut b = std::fs::read(&w).unwrap();
    b[200] ^= 1;
    std::fs::write(&w, b).unwrap();
    drop_interleaved(&spool.dir("drop"), &inputs[2..], Duration::from_millis(0));
    spool.wait_for("the third report", Duration::from_secs(120), |s| {
        s.reports().len() == 3
    });
    let names: Vec<String> = spool.reports().iter().map(|r| model_of(r).0).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "kidney-seg-test@2").count(),
        2,
        "{names:?}; log:\n{}",
        spool.log()
    );
    assert!(
        spool.log().contains("the previous models keep serving"),
        "{}",
        spool.log()
    );
    let status = stop(&mut daemon);
    assert!(status.success(), "{}", spool.log());
    // The damaged v3 is what a restart would refuse; `serve --check` says so now.
    let o = serve_check(&spool);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("kidney-seg-test@3") && err.contains("fold_0.safetensors"),
        "{err}"
    );

    // A plain (development) models folder is refused at start-up.
    let nowhere = bundle.parent().unwrap().join("nowhere");
    assert_refuses_to_start(
        &Spool::new(&nowhere, &[&public], ""),
        "is not a model store",
    );

    // Revocation: a configuration that no longer lists the vendor's key (another key only, or
    // none) refuses to serve that vendor's installed, active packages.
    let (_, other) = model_store::keygen(tmp.path(), "other-vendor");
    assert_refuses_to_start(&Spool::new(&store, &[&other], ""), "which is not trusted");
    assert_refuses_to_start(&Spool::new(&store, &[], ""), "models.trusted_keys is empty");
}

/// The daemon of `spool` exits unsuccessfully at start-up, logging `why`; `serve --check`
/// says the same.
fn assert_refuses_to_start(spool: &Spool, why: &str) {
    let mut daemon = spool.start("");
    assert!(!wait_exit(&mut daemon, spool).success(), "{}", spool.log());
    assert!(spool.log().contains(why), "{}", spool.log());
    let o = serve_check(spool);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{o:?}");
}

fn serve_check(spool: &Spool) -> std::process::Output {
    nephrod()
        .args(["serve", "--check", "--config"])
        .arg(&spool.config)
        .output()
        .unwrap()
}
