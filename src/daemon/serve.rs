//! `nephrod serve`: the main loop (a single-threaded tokio runtime) — drop-folder scans on
//! inotify events and on a timer, claims, the bounded job queue, the worker's results, the
//! journal, retention and quarantine, signals and systemd notifications.
//!
//! Invariant: every input file is, at every moment, in exactly one of drop / `work/<job>/input`
//! / `archive/<job>` (or deleted by retention) / `quarantine/<entry>`, and the journal says which
//! (see [`super::journal`]); [`recover`] completes whatever a crash interrupted before any new
//! work starts. Logs name jobs and study hashes only.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use heapless::Deque;
use sha2::{Digest, Sha256};

use super::config::{Config, Retention};
use super::journal::{Event, JobState, Journal};
use super::sd_notify::Notifier;
use super::spool::{job_name, move_relative, prune_empty_dirs, DropFolder, ReadyStudy};
use super::worker::{self, JobRequest, WorkerMessage};
use super::QUEUE_MAX;
use crate::failpoint;
use crate::fsio::{is_temporary, write_atomic};
use crate::pipeline::AnalyzeOptions;
use crate::privacy::uid_hash;

/// The lock file that keeps a second daemon off the same spool.
const LOCK_FILE: &str = "nephrod.lock";
/// Quarantine reason file.
pub const REASON_FILE: &str = "reason.txt";

/// Loads the configuration and runs the daemon until SIGTERM / SIGINT.
/// The trusted keys the daemon serves with, after checking that `models.dir` is a model store
/// and that `models.trusted_keys` lists at least one readable key. Revoking a vendor key =
/// removing it from the configuration: its packages stop serving at the next start (and are
/// not switched to while running).
fn serving_keys(cfg: &Config) -> anyhow::Result<Vec<crate::models::signing::PublicKey>> {
    if !crate::models::store::Store::exists(&cfg.models.dir) {
        anyhow::bail!(
            "models.dir {} is not a model store: install signed models with \
             `nephrod models install PACKAGE --activate` (README.md, Model store)",
            cfg.models.dir.display()
        );
    }
    if cfg.models.trusted_keys.is_empty() {
        anyhow::bail!(
            "models.trusted_keys is empty: list the public keys (KEY.pub) of the vendors whose \
             signed models may serve (README.md, Model store)"
        );
    }
    cfg.models
        .trusted_keys
        .iter()
        .map(|p| {
            crate::models::signing::PublicKey::read(p)
                .with_context(|| format!("models.trusted_keys: {}", p.display()))
        })
        .collect()
}

/// `nephrod serve --check`: what the daemon checks before it reports READY — configuration,
/// spool folders (created when missing), model store, trusted keys, the active models
/// (hashes and signatures) — without taking the spool lock or touching the journal, so it
/// may run beside a serving daemon. Prints what would serve.
pub fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path)?;
    cfg.prepare()?;
    println!("configuration {}: OK", config_path.display());
    let trusted = serving_keys(&cfg)?;
    let ids: Vec<String> = trusted.iter().map(|k| k.id()).collect();
    println!("trusted keys  {}", ids.join(", "));
    let models = crate::pipeline::ModelSet::open_with_trust(&cfg.models.dir, Some(&trusted))
        .context("models")?;
    for m in models.entries() {
        println!(
            "{:<13} {}@{} (manifest SHA-256 {}): files intact, signed by a trusted key",
            m.role, m.name, m.version, m.sha256
        );
    }
    if let Some(why) = &models.classifier_missing {
        println!("classifier    none: {why}");
    }
    println!("device        {}", cfg.models.device);
    Ok(ExitCode::SUCCESS)
}

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path)?;
    cfg.prepare()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(cfg))
}

struct Daemon {
    cfg: Config,
    journal: Journal,
    drop: DropFolder,
    queue: Deque<String, QUEUE_MAX>,
    retries: VecDeque<(Instant, String)>,
    attempts: std::collections::BTreeMap<String, u32>,
    running: Option<String>,
    processed: u64,
    /// A claim journalled as intended whose moves or `claimed` line failed (a full disk): it
    /// is completed at the next scan, before any new claim (at most one at a time).
    unfinished_claim: Option<(String, ReadyStudy)>,
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

impl Daemon {
    fn job_dir(&self, job: &str) -> PathBuf {
        self.cfg.spool.work.join(job)
    }

    fn input_dir(&self, job: &str) -> PathBuf {
        self.job_dir(job).join("input")
    }

    /// Completes what a crash interrupted (see the module doc).
    fn recover(&mut self, jobs: Vec<(String, JobState)>) -> anyhow::Result<()> {
        for (job, state) in jobs {
            match state {
                JobState::Done => {}
                JobState::Claiming { files } => {
                    let (drop, input) = (self.cfg.spool.drop.clone(), self.input_dir(&job));
                    for f in &files {
                        if let Err(e) = move_relative(&drop, &input, f) {
                            tracing::warn!(%job, error = %e, "recovery: a claimed file could not be moved");
                        }
                    }
                    prune_empty_dirs(&drop);
                    self.journal.append(Event::Claimed { job: job.clone() })?;
                    tracing::info!(%job, "recovery: claim completed");
                    self.enqueue_recovered(job)?;
                }
                JobState::Claimed { attempts } => {
                    self.attempts.insert(job.clone(), attempts);
                    self.enqueue_recovered(job)?;
                }
                JobState::Published => self.retain(&job)?,
            }
        }
        Ok(())
    }

    /// A claimed job after a restart: finished already (its traces say so) or queued again.
    fn enqueue_recovered(&mut self, job: String) -> anyhow::Result<()> {
        let report = self.cfg.spool.outbox.join(&job).join("report.json");
        if report.exists() {
            tracing::info!(%job, "recovery: report was published before the restart");
            self.journal.append(Event::Published { job: job.clone() })?;
            return self.retain(&job);
        }
        if !self.input_dir(&job).exists() {
            let q = self.cfg.spool.quarantine.join(&job);
            let a = self.cfg.spool.archive.join(&job);
            let event = if q.exists() {
                Event::Quarantined {
                    entry: job.clone(),
                    job: Some(job.clone()),
                    reason: "quarantined before a restart".into(),
                    files: count_files(&q).saturating_sub(1),
                }
            } else if a.exists() {
                Event::Retained {
                    job: job.clone(),
                    retention: "archive".into(),
                    files: count_files(&a),
                }
            } else {
                tracing::error!(%job, "recovery: the job's inputs are missing");
                Event::Quarantined {
                    entry: job.clone(),
                    job: Some(job.clone()),
                    reason: "inputs missing after a restart".into(),
                    files: 0,
                }
            };
            self.journal.append(event)?;
            let _ = std::fs::remove_dir_all(self.job_dir(&job));
            return Ok(());
        }
        tracing::info!(%job, "recovery: job queued again");
        if self.queue.push_back(job).is_err() {
            anyhow::bail!("more than {QUEUE_MAX} unfinished jobs in the journal");
        }
        Ok(())
    }

    /// Scans the drop folder, quarantines unreadable files and claims ready studies while the
    /// queue has room. Nothing a file in the drop folder does stops the daemon: a failed
    /// quarantine or claim is logged and tried again at the next scan (a claim journalled but
    /// not finished is completed first, before any new claim).
    fn scan(&mut self) {
        let now = Instant::now();
        while let Some((due, _)) = self.retries.front() {
            if *due > now || self.queue.len() >= self.cfg.service.queue_capacity {
                break;
            }
            if let Some((_, job)) = self.retries.pop_front() {
                let _ = self.queue.push_back(job);
            }
        }
        if let Some((job, study)) = self.unfinished_claim.take() {
            match self.finish_claim(&job, &study) {
                Ok(()) => tracing::info!(%job, "interrupted claim completed"),
                Err(e) => {
                    tracing::error!(%job, error = %e, "claim still cannot be completed; next scan retries");
                    self.unfinished_claim = Some((job, study));
                }
            }
        }
        self.drop.rescan(now);
        let (ready, unreadable) = self.drop.ready(&self.cfg.study, now);
        for u in unreadable {
            if let Err(e) = self.quarantine_file(&u.file, &u.reason) {
                tracing::error!(error = %e, "a file could not be quarantined; next scan retries");
            }
        }
        for study in ready {
            // A half-done claim's files may still be in the drop folder: no new claim first.
            if self.unfinished_claim.is_some()
                || self.queue.len() >= self.cfg.service.queue_capacity
            {
                break;
            }
            let hash = uid_hash(&study.study_uid);
            if let Err(e) = self.claim(study) {
                tracing::error!(study = %hash, error = %e, "claim failed; next scan retries");
            }
        }
    }

    fn claim(&mut self, study: ReadyStudy) -> anyhow::Result<()> {
        let mut job = job_name(&study.study_uid, unix_ms());
        while self.job_dir(&job).exists() || self.cfg.spool.outbox.join(&job).exists() {
            job.push('x');
        }
        self.journal.append(Event::Claim {
            job: job.clone(),
            study_hash: uid_hash(&study.study_uid),
            files: study.files.clone(),
        })?;
        // Journalled: from here on the claim is finished now or at the next scan.
        if let Err(e) = self.finish_claim(&job, &study) {
            self.unfinished_claim = Some((job, study));
            return Err(e);
        }
        Ok(())
    }

    /// Moves a journalled claim's files into `work/<job>/input/` (idempotent), journals
    /// `claimed` and queues the job.
    fn finish_claim(&mut self, job: &str, study: &ReadyStudy) -> anyhow::Result<()> {
        let hash = uid_hash(&study.study_uid);
        failpoint::hit("claim.after_intent")?;
        let input = self.input_dir(job);
        std::fs::create_dir_all(&input).with_context(|| format!("creating {}", input.display()))?;
        let mut moved = 0usize;
        for f in &study.files {
            match move_relative(&self.cfg.spool.drop, &input, f) {
                Ok(()) => moved += 1,
                Err(e) => {
                    tracing::warn!(%job, error = %e, "a file of the study could not be claimed")
                }
            }
            failpoint::hit("claim.mid_move")?;
        }
        prune_empty_dirs(&self.cfg.spool.drop);
        failpoint::hit("claim.before_claimed")?;
        self.journal.append(Event::Claimed {
            job: job.to_string(),
        })?;
        self.drop.forget(&study.files);
        tracing::info!(
            %job,
            study = %hash,
            files = moved,
            series = study.series,
            incomplete = study.incomplete,
            "study claimed"
        );
        if self.queue.push_back(job.to_string()).is_err() {
            anyhow::bail!("job queue overflow");
        }
        Ok(())
    }

    fn quarantine_file(&mut self, rel: &Path, reason: &str) -> anyhow::Result<()> {
        let digest: String = Sha256::digest(rel.as_os_str().as_encoded_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let entry = format!("file-{}-{digest}", unix_ms());
        let dir = self.cfg.spool.quarantine.join(&entry);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = format!("file: {}\nreason: {reason}\n", rel.display());
        write_atomic(&dir.join(REASON_FILE), text.as_bytes())?;
        let name = rel
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "file".into());
        std::fs::rename(self.cfg.spool.drop.join(rel), dir.join(name))
            .with_context(|| format!("quarantining into {}", dir.display()))?;
        self.journal.append(Event::Quarantined {
            job: None,
            entry: entry.clone(),
            reason: reason.to_string(),
            files: 1,
        })?;
        self.drop.forget_path(rel);
        prune_empty_dirs(&self.cfg.spool.drop);
        tracing::warn!(%entry, "unreadable file quarantined");
        Ok(())
    }

    fn quarantine_job(&mut self, job: &str, reason: &str) -> anyhow::Result<()> {
        let dest = self.cfg.spool.quarantine.join(job);
        let input = self.input_dir(job);
        let files = count_files(&input);
        std::fs::rename(&input, &dest)
            .with_context(|| format!("quarantining into {}", dest.display()))?;
        write_atomic(
            &dest.join(REASON_FILE),
            format!("job: {job}\nreason: {reason}\n").as_bytes(),
        )?;
        self.journal.append(Event::Quarantined {
            job: Some(job.to_string()),
            entry: job.to_string(),
            reason: reason.to_string(),
            files,
        })?;
        let _ = std::fs::remove_dir_all(self.job_dir(job));
        tracing::warn!(%job, "study quarantined");
        Ok(())
    }

    /// Archives or deletes a published job's inputs and removes its work folder.
    fn retain(&mut self, job: &str) -> anyhow::Result<()> {
        let input = self.input_dir(job);
        let archived = self.cfg.spool.archive.join(job);
        let files;
        let retention = match self.cfg.service.retention {
            Retention::Archive => {
                if input.exists() {
                    files = count_files(&input);
                    std::fs::rename(&input, &archived)
                        .with_context(|| format!("archiving into {}", archived.display()))?;
                } else {
                    files = count_files(&archived);
                }
                "archive"
            }
            Retention::Delete => {
                files = count_files(&input);
                if input.exists() {
                    std::fs::remove_dir_all(&input)
                        .with_context(|| format!("deleting {}", input.display()))?;
                }
                "delete"
            }
        };
        self.journal.append(Event::Retained {
            job: job.to_string(),
            retention: retention.into(),
            files,
        })?;
        let _ = std::fs::remove_dir_all(self.job_dir(job));
        Ok(())
    }

    fn finish(&mut self, msg: WorkerMessage, notifier: &Notifier) -> anyhow::Result<()> {
        match msg {
            WorkerMessage::Ready(_) => {}
            WorkerMessage::ModelsChanged(models) => {
                for m in &models {
                    tracing::info!(role = %m.role, name = %m.name, version = %m.version, sha256 = %m.sha256, "model activated: used from the next study on");
                }
            }
            WorkerMessage::Published {
                job,
                lesions,
                warnings,
                seconds,
            } => {
                failpoint::hit("publish.before_journal")?;
                self.journal.append(Event::Published { job: job.clone() })?;
                self.retain(&job)?;
                self.processed += 1;
                tracing::info!(%job, lesions, warnings, seconds = format!("{seconds:.1}"), "report published");
            }
            WorkerMessage::InputError { job, reason } => {
                tracing::warn!(%job, %reason, "study cannot be analysed");
                self.quarantine_job(&job, &reason)?;
            }
            WorkerMessage::Failed { job, error } => {
                let attempt = self.attempts.get(&job).copied().unwrap_or(0) + 1;
                self.attempts.insert(job.clone(), attempt);
                self.journal.append(Event::Failed {
                    job: job.clone(),
                    attempt,
                    error: error.clone(),
                })?;
                if attempt >= self.cfg.service.max_attempts {
                    tracing::error!(%job, attempt, %error, "study failed; giving up");
                    self.quarantine_job(&job, &format!("failed {attempt} times; last: {error}"))?;
                } else {
                    tracing::warn!(%job, attempt, %error, "study failed; will retry");
                    let due =
                        Instant::now() + Duration::from_secs_f64(self.cfg.service.retry_after_secs);
                    self.retries.push_back((due, job));
                }
            }
        }
        self.running = None;
        notifier.notify(&format!(
            "STATUS=idle; {} processed, {} queued, {} waiting to retry",
            self.processed,
            self.queue.len(),
            self.retries.len()
        ));
        Ok(())
    }
}

/// Removes temporaries a crash left in the outbox (unpublished report folders).
fn sweep_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if is_temporary(&e.file_name().to_string_lossy()) {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            tracing::info!("removed an unpublished temporary from a previous run");
        }
    }
}

fn lock_spool(work: &Path) -> anyhow::Result<File> {
    let path = work.join(LOCK_FILE);
    let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => anyhow::bail!(
            "{}: another nephrod serve is running on this spool",
            path.display()
        ),
    }
}

async fn serve(cfg: Config) -> anyhow::Result<ExitCode> {
    let notifier = Notifier::from_env();
    let _lock = lock_spool(&cfg.spool.work)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.spool.work, std::fs::Permissions::from_mode(0o700));
    }
    sweep_temporaries(&cfg.spool.outbox);
    let (journal, jobs) = Journal::open(&cfg.spool.work)?;
    let mut d = Daemon {
        drop: DropFolder::new(&cfg.spool.drop),
        cfg,
        journal,
        queue: Deque::new(),
        retries: VecDeque::new(),
        attempts: Default::default(),
        running: None,
        processed: 0,
        unfinished_claim: None,
    };
    d.recover(jobs)?;

    // The worker: models and backend, verified before READY. Only installed (signed,
    // self-checked) models serve patients.
    let trusted = serving_keys(&d.cfg)?;
    let (req_tx, req_rx) = std::sync::mpsc::channel::<JobRequest>();
    let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = AnalyzeOptions {
        mirroring: d.cfg.analysis.tta,
        kits_postprocessing: d.cfg.analysis.kits_postprocessing,
        grad_cam: d.cfg.analysis.grad_cam,
        ..AnalyzeOptions::default()
    };
    worker::spawn(
        d.cfg.models.dir.clone(),
        trusted,
        d.cfg.models.device == "cuda",
        opts,
        req_rx,
        msg_tx,
    )?;
    match msg_rx.recv().await {
        Some(WorkerMessage::Ready(Ok(models))) => {
            for m in &models {
                tracing::info!(role = %m.role, name = %m.name, version = %m.version, sha256 = %m.sha256, "model verified");
            }
        }
        Some(WorkerMessage::Ready(Err(e))) => anyhow::bail!("models: {e}"),
        _ => anyhow::bail!("the worker stopped before it was ready"),
    }

    // Drop-folder events only make the next scan come sooner.
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = {
        use notify::Watcher;
        let tx = ev_tx.clone();
        notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.try_send(());
        })
        .and_then(|mut w| {
            w.watch(&d.cfg.spool.drop, notify::RecursiveMode::Recursive)
                .map(|()| w)
        })
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; relying on periodic rescans");
            None
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let scan_every = Duration::from_secs_f64(d.cfg.study.rescan_secs.max(0.1));
    let mut rescan = tokio::time::interval(scan_every);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog_every = Notifier::watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    notifier.notify("READY=1");
    notifier.notify("STATUS=idle; waiting for studies");
    tracing::info!(drop = %d.cfg.spool.drop.display(), "nephrod serve ready");

    loop {
        if d.running.is_none() {
            if let Some(job) = d.queue.pop_front() {
                let req = JobRequest {
                    input: d.input_dir(&job),
                    report_dir: d.cfg.spool.outbox.join(&job),
                    job: job.clone(),
                };
                notifier.notify(&format!(
                    "STATUS=processing {job}; {} queued",
                    d.queue.len()
                ));
                tracing::info!(%job, "processing");
                req_tx
                    .send(req)
                    .map_err(|_| anyhow::anyhow!("the worker stopped"))?;
                d.running = Some(job);
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = rescan.tick() => d.scan(),
            Some(()) = ev_rx.recv() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                while ev_rx.try_recv().is_ok() {}
                d.scan();
            }
            msg = msg_rx.recv() => match msg {
                Some(m) => d.finish(m, &notifier)?,
                None => anyhow::bail!("the worker stopped"),
            },
            _ = watchdog.tick(), if watchdog_every.is_some() => notifier.notify("WATCHDOG=1"),
        }
    }

    notifier.notify("STOPPING=1");
    if let Some(job) = d.running.clone() {
        tracing::info!(%job, "stopping: waiting for the running study");
        let wait = Duration::from_secs_f64(d.cfg.service.stop_timeout_secs);
        match tokio::time::timeout(wait, msg_rx.recv()).await {
            Ok(Some(m)) => d.finish(m, &notifier)?,
            _ => {
                tracing::warn!(%job, "stopping before the study finished; it runs again at the next start")
            }
        }
    }
    tracing::info!(processed = d.processed, "nephrod serve stopped");
    // The worker may still be inside a study: exit without waiting for it.
    Ok(ExitCode::SUCCESS)
}
