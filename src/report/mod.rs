//! Reports: what nephrod hands to people — figures for papers and, later, study reports.
//!
//! * [`chart`] — line charts (ROC, precision–recall) as SVG and PNG from one layout, with no
//!   dependency beyond `flate2`; text from an embedded bitmap font (`font`, generated).
//! * [`png`] — the PNG encoder behind charts and image overlays (Grad-CAM).

pub mod chart;
pub mod html;
pub mod key_image;
pub mod png;
pub mod schema;
#[rustfmt::skip]
mod font;
