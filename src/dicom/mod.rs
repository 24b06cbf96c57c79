//! DICOM ingest: a folder of files → studies → calibrated CT volumes with their contrast phase.
//!
//! Pipeline: [`scan`] (every file parsed under `catch_unwind`, ends as an instance or a skipped
//! file with a reason) → [`series::group`] (study → series → stacks of equal geometry) →
//! [`series::layout`] + [`series::assemble`] (sorted along the normal, spacing from positions,
//! duplicates / gaps / tilt by the policy documented in [`series`], HU via [`pixels`]) →
//! [`phase::detect`] (contrast phase with confidence and evidence).
//!
//! Writing (synthetic series for tests, examples and phantoms): [`writer`], with its own RLE
//! ([`rle`]) and JPEG 2000 ([`j2k_encode`], the crate's only `unsafe` code) encoders.
//!
//! Invariants: no function here panics on file content; UIDs are at most 64 bytes
//! ([`Uid`]); volumes are in HU on the LPS grid described in [`crate::volume`].

pub mod attrs;
pub mod error;
pub mod header;
pub mod ingest;
pub mod j2k_encode;
pub mod phase;
pub mod pixels;
pub mod rle;
pub mod scan;
pub mod series;
pub mod writer;

pub use error::{DicomError, SeriesError};

/// A DICOM UID: the standard caps UIDs at 64 bytes.
pub type Uid = heapless::String<64>;
