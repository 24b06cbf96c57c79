//! The product pipeline: one DICOM study folder → one report folder.
//!
//! * [`models`] — the models an analysis runs with (opened once, named in every report);
//! * [`select`] — which series enter the analysis (one per contrast phase);
//! * [`measure`] — kidney volumes, lesion attenuation and enhancement;
//! * [`analyze`] — the stages in order, with progress and per-stage timings → [`Analysis`];
//! * [`output`] — the report folder, written atomically.
//!
//! `nephrod analyze`, `nephrod demo` and the daemon all run a study through [`analyze_dir`] and
//! [`write_analysis`]; they differ only in where studies come from and where reports go.

pub mod analyze;
pub mod measure;
pub mod models;
pub mod output;
pub mod select;

pub use analyze::{
    analyze_dir, analyze_ingested, Analysis, AnalyzeError, AnalyzeOptions, Progress,
};
pub use models::{ModelSet, ModelsError};
pub use output::{write_analysis, OutputError};
