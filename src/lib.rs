//! nephrod — an offline kidney-cancer CT appliance.
//!
//! Architecture (one direction of dependency, top to bottom):
//! * [`dicom`] — scan a folder, parse files, group studies/series, assemble calibrated
//!   volumes (HU) in LPS space, detect the contrast phase. Depends on [`volume`].
//! * [`volume`] — `Volume` = voxels + LPS geometry; NIfTI I/O; resampling. Knows nothing of
//!   DICOM or GPUs.
//! * `engine`, `segment`, `register`, `classify`, `report`, `daemon`, `models`, `eval`,
//!   `phantom` — arrive with their issues; each sees only the typed results of the layers below.
//!
//! The `nephrod` binary (`src/main.rs`) only parses arguments, sets up logging, dispatches to
//! [`cli`] and maps errors to exit codes.

// Small fixed-size matrix code reads best with explicit index loops.
#![allow(clippy::needless_range_loop)]

pub mod classify;
pub mod cli;
pub mod daemon;
pub mod dicom;
pub mod engine;
pub mod eval;
pub mod failpoint;
pub mod fsio;
pub mod models;
pub mod numeric;
pub mod phantom;
pub mod pipeline;
pub mod privacy;
pub mod register;
pub mod report;
pub mod segment;
pub mod volume;
