//! The worker thread: owns the models and the engine backend (opened and verified before the
//! daemon reports READY — files against their manifest, manifest signature against the
//! configured trusted keys; re-opened, with the same checks, between studies when the model
//! store's active set changed, keeping the old models when the new ones do not open) and runs
//! one job at a time: analysis of `work/<job>/input/`, then the report folder published
//! atomically as `outbox/<job>/`. File moves and the journal stay with
//! the main loop; the worker only reads inputs and publishes reports.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::select_backend;
use crate::models::signing::PublicKey;
use crate::pipeline::{analyze_dir, write_analysis, AnalyzeOptions, ModelSet};
use crate::report::schema::ModelEntry;

/// One job for the worker.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub job: String,
    pub input: PathBuf,
    pub report_dir: PathBuf,
}

/// What the worker tells the main loop.
#[derive(Debug)]
pub enum WorkerMessage {
    /// Models and backend are usable (or why not); sent once, first.
    Ready(Result<Vec<ModelEntry>, String>),
    /// Newly activated models are in use from the next study on.
    ModelsChanged(Vec<ModelEntry>),
    /// The report folder is published.
    Published {
        job: String,
        lesions: usize,
        warnings: usize,
        seconds: f64,
    },
    /// The input cannot be analysed (quarantine it).
    InputError { job: String, reason: String },
    /// The appliance failed (retry later).
    Failed { job: String, error: String },
}

/// Starts the worker; it exits when the request channel closes.
pub fn spawn(
    models_dir: PathBuf,
    trusted: Vec<PublicKey>,
    prefer_gpu: bool,
    opts: AnalyzeOptions,
    requests: Receiver<JobRequest>,
    messages: UnboundedSender<WorkerMessage>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("nephrod-worker".into())
        .spawn(move || worker(models_dir, trusted, prefer_gpu, opts, requests, messages))
}

fn worker(
    models_dir: PathBuf,
    trusted: Vec<PublicKey>,
    prefer_gpu: bool,
    opts: AnalyzeOptions,
    requests: Receiver<JobRequest>,
    messages: UnboundedSender<WorkerMessage>,
) {
    let mut models = match ModelSet::open_with_trust(&models_dir, Some(&trusted)) {
        Ok(m) => m,
        Err(e) => {
            let _ = messages.send(WorkerMessage::Ready(Err(e.to_string())));
            return;
        }
    };
    let backend = select_backend(prefer_gpu);
    let _ = messages.send(WorkerMessage::Ready(Ok(models.entries())));
    let mut refused_generation = None;
    while let Ok(req) = requests.recv() {
        if let Some(changed) =
            reload_if_activated(&models_dir, &trusted, &mut models, &mut refused_generation)
        {
            if messages
                .send(WorkerMessage::ModelsChanged(changed))
                .is_err()
            {
                return;
            }
        }
        let t0 = std::time::Instant::now();
        let msg = if req.report_dir.join("report.json").exists() {
            // Published before a crash that preceded its journal line.
            WorkerMessage::Published {
                job: req.job.clone(),
                lesions: 0,
                warnings: 0,
                seconds: 0.0,
            }
        } else {
            match analyze_dir(&req.input, &models, backend.as_ref(), &opts, &mut |_| {}) {
                Err(e) if e.is_input_error() => WorkerMessage::InputError {
                    job: req.job.clone(),
                    reason: e.to_string(),
                },
                Err(e) => WorkerMessage::Failed {
                    job: req.job.clone(),
                    error: e.to_string(),
                },
                Ok(a) => match write_analysis(&a, &req.report_dir, false) {
                    Ok(()) => WorkerMessage::Published {
                        job: req.job.clone(),
                        lesions: a.report.lesions.len(),
                        warnings: a.report.warnings.len(),
                        seconds: t0.elapsed().as_secs_f64(),
                    },
                    Err(e) => WorkerMessage::Failed {
                        job: req.job.clone(),
                        error: e.to_string(),
                    },
                },
            }
        };
        tracing::debug!(job = %req.job, "worker finished a job");
        if messages.send(msg).is_err() {
            return;
        }
    }
}

/// Re-opens the models when the store's active generation differs from the one `models` were
/// opened at; returns the new entries. A set that does not open is logged once and the old
/// models keep serving.
fn reload_if_activated(
    models_dir: &std::path::Path,
    trusted: &[PublicKey],
    models: &mut ModelSet,
    refused_generation: &mut Option<u64>,
) -> Option<Vec<ModelEntry>> {
    let current = models.generation?;
    let state = match crate::models::store::Store::new(models_dir).state() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "model store state unreadable; the current models keep serving");
            return None;
        }
    };
    if state.generation == current || *refused_generation == Some(state.generation) {
        return None;
    }
    match ModelSet::open_with_trust(models_dir, Some(trusted)) {
        Ok(new) => {
            *models = new;
            Some(models.entries())
        }
        Err(e) => {
            *refused_generation = Some(state.generation);
            tracing::error!(generation = state.generation, error = %e, "newly activated models do not open; the previous models keep serving");
            None
        }
    }
}
