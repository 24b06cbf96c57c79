//! Renal-mass subtype classification (seed 001, shared/docs/method.md A.3): a candle ResNet on
//! three contrast phases' largest-lesion slices, Grad-CAM explanations, and the exact input
//! preparation shared by inference and `nephrod export-crops`.
//!
//! * [`settings`] — crop size, margins, window and normalisation (stored in the bundle);
//! * [`crop`] — per lesion and phase: largest-area axial slice, bounding rectangle, bilinear
//!   resize, in radiological orientation whatever the scan orientation;
//! * [`combine`] — phase triples (time order, leave-one-contrast-phase-out with four phases),
//!   probability averaging, benign vs malignant.

pub mod combine;
pub mod crop;
pub mod settings;
