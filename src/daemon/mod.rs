//! The appliance daemon, `nephrod serve`: watches the drop folder, groups files into studies,
//! claims a study once it is quiet, runs it through the pipeline (one at a time, bounded
//! queue), publishes each report folder atomically into the outbox, archives or deletes the
//! inputs, quarantines what cannot be processed — and after kill -9 at any moment processes
//! every study exactly once and accounts for every input file.
//!
//! * [`config`] — `nephrod.toml`;
//! * [`spool`] — the drop folder: files, studies, quietness, moves;
//! * [`journal`] — the write-ahead journal that makes restarts exact;
//! * [`worker`] — the thread that owns models and backend and runs jobs;
//! * [`serve`] — the main loop, recovery, retention, quarantine, signals;
//! * [`sd_notify`] — READY / STATUS / WATCHDOG for systemd.

pub mod config;
pub mod journal;
pub mod sd_notify;
pub mod serve;
pub mod spool;
pub mod worker;

/// Capacity of the job queue's storage; `service.queue_capacity` may not exceed it.
pub const QUEUE_MAX: usize = 64;
