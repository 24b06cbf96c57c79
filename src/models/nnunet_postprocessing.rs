//! nnU-Net's `postprocessing.json` (written by `determine_postprocessing`, beside the
//! `postprocessing.pkl` that `nnUNetv2_apply_postprocessing` applies; shared/docs/
//! nnunet-inference.md §7) → [`KeepLargestComponent`] rules.
//!
//! The file holds `postprocessing_fns` (function names) and `postprocessing_kwargs` (one dict
//! per function, `{"labels_or_regions": …}` = a label, a list of labels, a region (list) or a
//! list of those). Every form selects the union of the label values it names, so a rule keeps
//! only that set. The only function nnU-Net v2 writes there is
//! `remove_all_but_largest_component_from_segmentation`; anything else is refused, never
//! skipped silently.

use std::path::Path;

use serde_json::Value as Json;

use crate::segment::plan::KeepLargestComponent;

/// The one post-processing function nnU-Net v2 determines.
pub const KEEP_LARGEST_FN: &str = "remove_all_but_largest_component_from_segmentation";

/// Why a postprocessing.json was refused.
#[derive(Debug, thiserror::Error)]
pub enum PostprocessingJsonError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Content { path: String, message: String },
}

/// Reads and converts `path`; `valid_labels` are the model's label values (rules naming others
/// are refused).
pub fn read_postprocessing_json(
    path: &Path,
    valid_labels: &[u16],
) -> Result<Vec<KeepLargestComponent>, PostprocessingJsonError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PostprocessingJsonError::Read {
        path: p.clone(),
        source,
    })?;
    let json: Json =
        serde_json::from_str(&text).map_err(|source| PostprocessingJsonError::Json {
            path: p.clone(),
            source,
        })?;
    parse_postprocessing(&json, valid_labels)
        .map_err(|message| PostprocessingJsonError::Content { path: p, message })
}

/// Converts the parsed document (see the module doc).
pub fn parse_postprocessing(
    json: &Json,
    valid_labels: &[u16],
) -> Result<Vec<KeepLargestComponent>, String> {
    let fns = json
        .get("postprocessing_fns")
        .and_then(Json::as_array)
        .ok_or("postprocessing_fns: missing or not a list")?;
    let kwargs = json
        .get("postprocessing_kwargs")
        .and_then(Json::as_array)
        .ok_or("postprocessing_kwargs: missing or not a list")?;
    if fns.len() != kwargs.len() {
        return Err(format!(
            "{} functions but {} kwargs entries",
            fns.len(),
            kwargs.len()
        ));
    }
    let mut rules = Vec::with_capacity(fns.len());
    for (i, (f, kw)) in fns.iter().zip(kwargs).enumerate() {
        let name = f
            .as_str()
            .ok_or_else(|| format!("postprocessing_fns[{i}]: not a string"))?;
        if name != KEEP_LARGEST_FN {
            return Err(format!(
                "postprocessing_fns[{i}] = {name}: nephrod only knows {KEEP_LARGEST_FN}"
            ));
        }
        let obj = kw
            .as_object()
            .ok_or_else(|| format!("postprocessing_kwargs[{i}]: not an object"))?;
        if let Some(k) = obj.keys().find(|k| *k != "labels_or_regions") {
            return Err(format!(
                "postprocessing_kwargs[{i}]: unknown argument {k} (background_label is always 0 in nnU-Net)"
            ));
        }
        let sel = obj
            .get("labels_or_regions")
            .ok_or_else(|| format!("postprocessing_kwargs[{i}]: labels_or_regions missing"))?;
        let mut labels = Vec::new();
        collect_labels(sel, 0, &mut labels)
            .map_err(|m| format!("postprocessing_kwargs[{i}].labels_or_regions: {m}"))?;
        labels.sort_unstable();
        labels.dedup();
        if labels.is_empty() {
            return Err(format!(
                "postprocessing_kwargs[{i}].labels_or_regions: no label"
            ));
        }
        if let Some(l) = labels
            .iter()
            .find(|l| **l == 0 || !valid_labels.contains(l))
        {
            return Err(format!(
                "postprocessing_kwargs[{i}].labels_or_regions: label {l} is not a foreground label of this model"
            ));
        }
        rules.push(KeepLargestComponent { labels });
    }
    Ok(rules)
}

fn collect_labels(v: &Json, depth: usize, out: &mut Vec<u16>) -> Result<(), String> {
    match v {
        Json::Number(n) => {
            let l = n
                .as_u64()
                .and_then(|x| u16::try_from(x).ok())
                .ok_or_else(|| format!("{n} is not a label value"))?;
            out.push(l);
            Ok(())
        }
        Json::Array(items) if depth < 2 => {
            for it in items {
                collect_labels(it, depth + 1, out)?;
            }
            Ok(())
        }
        other => Err(format!("unexpected {other}")),
    }
}
