//! ROC and precision–recall figures of `nephrod eval cls --plots DIR` (PNG and SVG).

use std::path::{Path, PathBuf};

use crate::eval::cls_report::{ClsInput, ClsReport};

/// Writes the figures; returns the files written.
pub fn write_plots(
    _input: &ClsInput,
    _report: &ClsReport,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::bail!(
        "{}: plots are not available in this build yet",
        dir.display()
    )
}
