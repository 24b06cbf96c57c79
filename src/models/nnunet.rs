//! nnU-Net v2 trained-model folders → [`InferencePlan`] + validated weights.
//!
//! Reads `plans.json` (both the ≥ v2.3 `architecture` format and the v2.0–2.2 format, converted
//! as nnU-Net's `ConfigurationManager` does; `inherits_from` resolved by dict update of the
//! parent, cycles refused), `dataset.json` (labels/regions in **document order**, which decides
//! the region heads), and the fold checkpoints (`fold_<k>/checkpoint_final.pth`, read by
//! [`crate::models::torch_checkpoint`]). Section numbers refer to
//! shared/docs/nnunet-inference.md.
//!
//! Guarantees: every unsupported setting (2-D configurations, other network classes, dropout,
//! non-affine or non-instance norms, other normalisation schemes / readers / resampling
//! functions, unknown trainers) is a typed [`NnunetError`] naming the file and the JSON field;
//! a checkpoint's state dict must hold exactly the tensors [`expected_tensors`] derives from the
//! architecture (§1.5 key scheme; alias keys `*.all_modules.*` and `decoder.encoder.*` dropped),
//! with the same shapes, else [`NnunetError::StateDict`] lists missing / unexpected /
//! mis-shaped names. Axis order: per-axis arrays are in nnU-Net's transposed array order.

use crate::models::nnunet_postprocessing::{read_postprocessing_json, PostprocessingJsonError};
use std::fmt;
use std::path::{Path, PathBuf};

use half::f16;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::models::torch_checkpoint::{CheckpointError, TensorRef, TorchCheckpoint, Value};
use crate::segment::plan::{
    InferencePlan, NetworkClass, Nonlinearity, Normalization, OutputHeads, Preprocessing,
    ReaderAxes, ResamplingSettings, SlidingWindow, UNetArchitecture,
};

/// Errors importing an nnU-Net model.
#[derive(Debug, thiserror::Error)]
pub enum NnunetError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{file}: field {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}: field {field} = {value} is not supported by nephrod: {why}")]
    Unsupported {
        file: String,
        field: String,
        value: String,
        why: String,
    },
    #[error("{dir}: no fold_<k>/{checkpoint} found (folds may be given explicitly)")]
    NoFolds { dir: PathBuf, checkpoint: String },
    #[error("{path}: missing (fold {fold})")]
    MissingCheckpoint { path: PathBuf, fold: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Postprocessing(#[from] PostprocessingJsonError),
    #[error("{path}: {field}: {message}")]
    CheckpointContent {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: trainer_name {trainer} is not a known network-preserving nnU-Net trainer (it may change the network; --allow-custom-trainer trusts the state-dict check alone)")]
    UnsupportedTrainer { path: PathBuf, trainer: String },
    #[error("{path}: state dict does not match the architecture: {}", summarize(.missing, .unexpected, .misshaped))]
    StateDict {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        /// (name, expected shape, found shape)
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    #[error("{path}: tensor {name}: {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
}

fn summarize(
    missing: &[String],
    unexpected: &[String],
    misshaped: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let head = |v: &[String]| {
        let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 5 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing [{}]", head(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected [{}]", head(unexpected)));
    }
    if !misshaped.is_empty() {
        let m: Vec<String> = misshaped
            .iter()
            .take(5)
            .map(|(n, e, g)| format!("{n} expected {e:?} found {g:?}"))
            .collect();
        parts.push(format!("mis-shaped [{}]", m.join(", ")));
    }
    parts.join("; ")
}

impl NnunetError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Json { .. } => "json",
            Self::Field { .. } => "field",
            Self::Unsupported { .. } => "unsupported",
            Self::NoFolds { .. } => "no_folds",
            Self::MissingCheckpoint { .. } => "missing_checkpoint",
            Self::Checkpoint(e) => e.kind(),
            Self::CheckpointContent { .. } => "checkpoint_content",
            Self::UnsupportedTrainer { .. } => "unsupported_trainer",
            Self::StateDict { .. } => "state_dict",
            Self::Postprocessing(_) => "postprocessing_json",
            Self::Tensor { .. } => "tensor",
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON access with field paths

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn field(&self, field: &str, message: impl Into<String>) -> NnunetError {
        NnunetError::Field {
            file: self.file.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
    fn unsupported(&self, field: &str, value: &Json, why: impl Into<String>) -> NnunetError {
        NnunetError::Unsupported {
            file: self.file.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            why: why.into(),
        }
    }
    fn get<'j>(
        &self,
        obj: &'j Map<String, Json>,
        path: &str,
        key: &str,
    ) -> Result<&'j Json, NnunetError> {
        obj.get(key)
            .ok_or_else(|| self.field(&join(path, key), "missing"))
    }
    fn usize(&self, v: &Json, field: &str) -> Result<usize, NnunetError> {
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| self.field(field, format!("expected a non-negative integer, found {v}")))
    }
    fn f64(&self, v: &Json, field: &str) -> Result<f64, NnunetError> {
        v.as_f64()
            .ok_or_else(|| self.field(field, format!("expected a number, found {v}")))
    }
    fn list<'j>(&self, v: &'j Json, field: &str) -> Result<&'j Vec<Json>, NnunetError> {
        v.as_array()
            .ok_or_else(|| self.field(field, format!("expected a list, found {v}")))
    }
    fn usizes(&self, v: &Json, field: &str) -> Result<Vec<usize>, NnunetError> {
        self.list(v, field)?
            .iter()
            .enumerate()
            .map(|(i, x)| self.usize(x, &format!("{field}[{i}]")))
            .collect()
    }
    /// A per-axis triple; a 2-element list means a 2-D configuration (unsupported).
    fn triple(&self, v: &Json, field: &str) -> Result<[usize; 3], NnunetError> {
        let xs = self.usizes(v, field)?;
        <[usize; 3]>::try_from(xs.as_slice())
            .map_err(|_| self.unsupported(field, v, "only 3-D configurations are supported"))
    }
    fn f64_triple(&self, v: &Json, field: &str) -> Result<[f64; 3], NnunetError> {
        let xs: Vec<f64> = self
            .list(v, field)?
            .iter()
            .enumerate()
            .map(|(i, x)| self.f64(x, &format!("{field}[{i}]")))
            .collect::<Result<_, _>>()?;
        <[f64; 3]>::try_from(xs.as_slice())
            .map_err(|_| self.unsupported(field, v, "only 3-D configurations are supported"))
    }
    fn object<'j>(&self, v: &'j Json, field: &str) -> Result<&'j Map<String, Json>, NnunetError> {
        v.as_object()
            .ok_or_else(|| self.field(field, format!("expected an object, found {v}")))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Json, NnunetError> {
    let text = std::fs::read_to_string(path).map_err(|source| NnunetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| NnunetError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// `configurations[name]` with `inherits_from` resolved (parent first, then the child's keys
/// override), as `PlansManager._internal_resolve_configuration_inheritance`.
pub fn resolve_configuration(plans: &Json, name: &str) -> Result<Map<String, Json>, NnunetError> {
    let ctx = Ctx { file: "plans.json" };
    let root = ctx.object(plans, "")?;
    let configs = ctx.object(ctx.get(root, "", "configurations")?, "configurations")?;
    let mut chain: Vec<String> = Vec::new();
    let mut current = name.to_string();
    loop {
        let field = format!("configurations.{current}");
        let Some(c) = configs.get(&current) else {
            let available: Vec<&String> = configs.keys().collect();
            return Err(ctx.field(
                &field,
                format!("no such configuration (available: {available:?})"),
            ));
        };
        let c = ctx.object(c, &field)?;
        chain.push(current.clone());
        match c.get("inherits_from") {
            Some(Json::String(parent)) => {
                if chain.contains(parent) {
                    return Err(ctx.field(
                        &format!("{field}.inherits_from"),
                        format!("circular inheritance {chain:?} -> {parent}"),
                    ));
                }
                current = parent.clone();
            }
            Some(other) => {
                return Err(ctx.field(
                    &format!("{field}.inherits_from"),
                    format!("expected a configuration name, found {other}"),
                ))
            }
            None => break,
        }
    }
    let mut out = Map::new();
    for c in chain.iter().rev() {
        if let Some(Json::Object(m)) = configs.get(c) {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// dataset.json

/// A JSON object's entries in document order.
#[derive(Debug, Clone, Default)]
struct OrderedMap(Vec<(String, Json)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, Json>()? {
                    v.push((k, x));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawDataset {
    channel_names: Option<OrderedMap>,
    /// nnU-Net v1 name of `channel_names`, still accepted by v2.
    modality: Option<OrderedMap>,
    labels: OrderedMap,
    regions_class_order: Option<Vec<i64>>,
    file_ending: Option<String>,
}

/// One entry of dataset.json `labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValue {
    Label(u16),
    Region(Vec<u16>),
}

/// The parts of dataset.json inference needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetJson {
    /// Channel names in channel order ("0", "1", … keys).
    pub channel_names: Vec<String>,
    /// `labels` in document order (`ignore` included).
    pub labels: Vec<(String, LabelValue)>,
    pub regions_class_order: Option<Vec<u16>>,
    pub file_ending: Option<String>,
}

impl DatasetJson {
    pub fn parse(text: &str) -> Result<Self, NnunetError> {
        let ctx = Ctx {
            file: "dataset.json",
        };
        let raw: RawDataset = serde_json::from_str(text).map_err(|e| NnunetError::Field {
            file: "dataset.json".into(),
            field: "(document)".into(),
            message: e.to_string(),
        })?;
        let channels = raw
            .channel_names
            .or(raw.modality)
            .ok_or_else(|| ctx.field("channel_names", "missing"))?;
        let mut indexed = Vec::new();
        for (k, v) in channels.0 {
            let i: usize = k
                .parse()
                .map_err(|_| ctx.field("channel_names", format!("key {k:?} is not an index")))?;
            let name = v
                .as_str()
                .ok_or_else(|| ctx.field(&format!("channel_names.{k}"), "expected a string"))?;
            indexed.push((i, name.to_string()));
        }
        indexed.sort();
        if indexed.iter().enumerate().any(|(i, (k, _))| i != *k) || indexed.is_empty() {
            return Err(ctx.field("channel_names", "keys must be 0..n-1"));
        }
        let label_int = |v: &Json, field: &str| -> Result<u16, NnunetError> {
            v.as_u64()
                .and_then(|x| u16::try_from(x).ok())
                .ok_or_else(|| ctx.field(field, format!("expected a label 0..65535, found {v}")))
        };
        let mut labels = Vec::new();
        for (k, v) in raw.labels.0 {
            let field = format!("labels.{k}");
            let lv = match &v {
                Json::Array(xs) => LabelValue::Region(
                    xs.iter()
                        .map(|x| label_int(x, &field))
                        .collect::<Result<_, _>>()?,
                ),
                _ => LabelValue::Label(label_int(&v, &field)?),
            };
            labels.push((k, lv));
        }
        let regions_class_order = match raw.regions_class_order {
            None => None,
            Some(v) => Some(
                v.iter()
                    .map(|x| {
                        u16::try_from(*x)
                            .map_err(|_| ctx.field("regions_class_order", format!("bad label {x}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self {
            channel_names: indexed.into_iter().map(|(_, n)| n).collect(),
            labels,
            regions_class_order,
            file_ending: raw.file_ending,
        })
    }

    /// Whether any label value is a list of more than one label (`LabelManager.has_regions`).
    pub fn has_regions(&self) -> bool {
        self.labels
            .iter()
            .any(|(_, v)| matches!(v, LabelValue::Region(r) if r.len() > 1))
    }

    /// All label values except `ignore`, unique and sorted (`LabelManager.all_labels`).
    pub fn all_labels(&self) -> Vec<u16> {
        let mut all: Vec<u16> = self
            .labels
            .iter()
            .filter(|(k, _)| k != "ignore")
            .flat_map(|(_, v)| match v {
                LabelValue::Label(l) => vec![*l],
                LabelValue::Region(r) => r.clone(),
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// `LabelManager.foreground_labels`: all labels except 0 (also for region datasets).
    pub fn foreground_labels(&self) -> Vec<u16> {
        self.all_labels().into_iter().filter(|l| *l != 0).collect()
    }

    /// The output heads (§2).
    pub fn output_heads(&self) -> Result<OutputHeads, NnunetError> {
        let ctx = Ctx {
            file: "dataset.json",
        };
        match self.labels.iter().find(|(k, _)| k == "background") {
            Some((_, LabelValue::Label(0))) => {}
            _ => return Err(ctx.field("labels.background", "must exist and be 0")),
        }
        if self.has_regions() {
            let order = self
                .regions_class_order
                .clone()
                .ok_or_else(|| ctx.field("regions_class_order", "required with regions"))?;
            let mut names = Vec::new();
            let mut members = Vec::new();
            for (k, v) in &self.labels {
                if k == "ignore" {
                    continue;
                }
                let m = match v {
                    LabelValue::Label(l) => vec![*l],
                    LabelValue::Region(r) => r.clone(),
                };
                if m.iter().all(|x| *x == 0) {
                    continue;
                }
                names.push(k.clone());
                members.push(m);
            }
            if order.len() != names.len() {
                return Err(ctx.field(
                    "regions_class_order",
                    format!("{} entries for {} regions", order.len(), names.len()),
                ));
            }
            Ok(OutputHeads::Regions {
                names,
                members,
                class_order: order,
            })
        } else {
            let all = self.all_labels();
            let mut names = vec![String::new(); all.len()];
            for (i, l) in all.iter().enumerate() {
                if *l as usize != i {
                    return Err(ctx.field(
                        "labels",
                        format!("labels must be consecutive 0..n-1, found {all:?}"),
                    ));
                }
            }
            for (k, v) in &self.labels {
                if k == "ignore" {
                    continue;
                }
                let l = match v {
                    LabelValue::Label(l) => *l,
                    LabelValue::Region(r) => match r.as_slice() {
                        [l] => *l,
                        _ => continue,
                    },
                };
                if names[l as usize].is_empty() {
                    names[l as usize] = k.clone();
                }
            }
            Ok(OutputHeads::Labels { names })
        }
    }
}

// ---------------------------------------------------------------------------------------
// plans.json → InferencePlan

fn class_tail(s: &str) -> &str {
    s.rsplit('.').next().unwrap_or(s)
}

/// The U-Net described by a resolved configuration (new or old format).
pub fn architecture(
    cfg: &Map<String, Json>,
    cfg_field: &str,
    input_channels: usize,
    output_channels: usize,
) -> Result<UNetArchitecture, NnunetError> {
    let ctx = Ctx { file: "plans.json" };
    if let Some(arch) = cfg.get("architecture") {
        let af = format!("{cfg_field}.architecture");
        let arch = ctx.object(arch, &af)?;
        let class_v = ctx.get(arch, &af, "network_class_name")?;
        let class_field = join(&af, "network_class_name");
        let class = match class_tail(class_v.as_str().unwrap_or("")) {
            "PlainConvUNet" => NetworkClass::PlainConvUNet,
            "ResidualEncoderUNet" => NetworkClass::ResidualEncoderUNet,
            _ => {
                return Err(ctx.unsupported(
                    &class_field,
                    class_v,
                    "only PlainConvUNet and ResidualEncoderUNet",
                ))
            }
        };
        let kf = join(&af, "arch_kwargs");
        let kw = ctx.object(ctx.get(arch, &af, "arch_kwargs")?, &kf)?;
        let f = |k: &str| join(&kf, k);
        let n_stages = ctx.usize(ctx.get(kw, &kf, "n_stages")?, &f("n_stages"))?;
        let features = ctx.usizes(
            ctx.get(kw, &kf, "features_per_stage")?,
            &f("features_per_stage"),
        )?;
        let kernels = triples(
            &ctx,
            ctx.get(kw, &kf, "kernel_sizes")?,
            &f("kernel_sizes"),
            n_stages,
        )?;
        let strides = triples(&ctx, ctx.get(kw, &kf, "strides")?, &f("strides"), n_stages)?;
        let convs_key = match class {
            NetworkClass::PlainConvUNet => "n_conv_per_stage",
            NetworkClass::ResidualEncoderUNet => "n_blocks_per_stage",
        };
        let n_conv = per_stage(&ctx, ctx.get(kw, &kf, convs_key)?, &f(convs_key), n_stages)?;
        let n_conv_dec = per_stage(
            &ctx,
            ctx.get(kw, &kf, "n_conv_per_stage_decoder")?,
            &f("n_conv_per_stage_decoder"),
            n_stages.saturating_sub(1),
        )?;
        let conv_bias = kw.get("conv_bias").and_then(Json::as_bool).unwrap_or(false);
        let conv_op = ctx.get(kw, &kf, "conv_op")?;
        if class_tail(conv_op.as_str().unwrap_or("")) != "Conv3d" {
            return Err(ctx.unsupported(&f("conv_op"), conv_op, "only 3-D convolutions (Conv3d)"));
        }
        let norm_op = ctx.get(kw, &kf, "norm_op")?;
        if class_tail(norm_op.as_str().unwrap_or("")) != "InstanceNorm3d" {
            return Err(ctx.unsupported(&f("norm_op"), norm_op, "only InstanceNorm3d"));
        }
        let nk = kw.get("norm_op_kwargs").cloned().unwrap_or(Json::Null);
        let eps = nk.get("eps").and_then(Json::as_f64).unwrap_or(1e-5);
        if nk.get("affine").and_then(Json::as_bool) != Some(true) {
            return Err(ctx.unsupported(&f("norm_op_kwargs"), &nk, "the norm must be affine"));
        }
        if let Some(d) = kw.get("dropout_op") {
            if !d.is_null() {
                return Err(ctx.unsupported(&f("dropout_op"), d, "dropout is not supported"));
            }
        }
        let nonlin = ctx.get(kw, &kf, "nonlin")?;
        let nl_kwargs = kw.get("nonlin_kwargs").cloned().unwrap_or(Json::Null);
        let nonlinearity = match class_tail(nonlin.as_str().unwrap_or("")) {
            "LeakyReLU" => Nonlinearity::LeakyRelu {
                negative_slope: nl_kwargs
                    .get("negative_slope")
                    .and_then(Json::as_f64)
                    .unwrap_or(0.01) as f32,
            },
            "ReLU" => Nonlinearity::Relu,
            _ => return Err(ctx.unsupported(&f("nonlin"), nonlin, "only LeakyReLU and ReLU")),
        };
        // Keyword arguments that would change the network beyond what nephrod runs.
        for (k, default_ok) in [
            ("nonlin_first", Json::Bool(false)),
            ("pool", Json::String("conv".into())),
            ("block", Json::String("BasicBlockD".into())),
            ("bottleneck_channels", Json::Null),
            ("stem_channels", Json::Null),
        ] {
            if let Some(v) = kw.get(k) {
                let ok = match (&default_ok, v) {
                    (Json::String(d), Json::String(s)) => class_tail(s) == d,
                    _ => *v == default_ok,
                };
                let stem_same =
                    k == "stem_channels" && v.as_u64() == features.first().map(|x| *x as u64);
                if !ok && !stem_same {
                    return Err(ctx.unsupported(&f(k), v, "non-default network option"));
                }
            }
        }
        let known = [
            "n_stages",
            "features_per_stage",
            "conv_op",
            "kernel_sizes",
            "strides",
            "n_conv_per_stage",
            "n_blocks_per_stage",
            "n_conv_per_stage_decoder",
            "conv_bias",
            "norm_op",
            "norm_op_kwargs",
            "dropout_op",
            "dropout_op_kwargs",
            "nonlin",
            "nonlin_kwargs",
            "nonlin_first",
            "pool",
            "block",
            "bottleneck_channels",
            "stem_channels",
            "deep_supervision",
        ];
        if let Some(k) = kw.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ctx.unsupported(&f(k), &kw[k], "unknown network option"));
        }
        if features.len() != n_stages {
            return Err(ctx.field(
                &f("features_per_stage"),
                format!("{} entries for {n_stages} stages", features.len()),
            ));
        }
        if n_stages < 2 {
            return Err(ctx.field(&f("n_stages"), "at least 2 stages"));
        }
        Ok(UNetArchitecture {
            class,
            input_channels,
            output_channels,
            features_per_stage: features,
            kernel_sizes: kernels,
            strides,
            n_conv_per_stage: n_conv,
            n_conv_per_stage_decoder: n_conv_dec,
            conv_bias,
            norm_eps: eps,
            nonlinearity,
        })
    } else {
        // v2.0–2.2 format (§1.3), as ConfigurationManager converts it.
        let cf = cfg_field;
        let f = |k: &str| join(cf, k);
        let cls_v = ctx.get(cfg, cf, "UNet_class_name")?;
        let class = match cls_v.as_str().unwrap_or("") {
            "PlainConvUNet" => NetworkClass::PlainConvUNet,
            "ResidualEncoderUNet" => NetworkClass::ResidualEncoderUNet,
            _ => {
                return Err(ctx.unsupported(
                    &f("UNet_class_name"),
                    cls_v,
                    "only PlainConvUNet and ResidualEncoderUNet",
                ))
            }
        };
        let n_conv = ctx.usizes(
            ctx.get(cfg, cf, "n_conv_per_stage_encoder")?,
            &f("n_conv_per_stage_encoder"),
        )?;
        let n_stages = n_conv.len();
        if n_stages < 2 {
            return Err(ctx.field(&f("n_conv_per_stage_encoder"), "at least 2 stages"));
        }
        let n_conv_dec = per_stage(
            &ctx,
            ctx.get(cfg, cf, "n_conv_per_stage_decoder")?,
            &f("n_conv_per_stage_decoder"),
            n_stages - 1,
        )?;
        let base = ctx.usize(
            ctx.get(cfg, cf, "UNet_base_num_features")?,
            &f("UNet_base_num_features"),
        )?;
        let max = ctx.usize(
            ctx.get(cfg, cf, "unet_max_num_features")?,
            &f("unet_max_num_features"),
        )?;
        let features = (0..n_stages)
            .map(|i| base.checked_shl(i as u32).unwrap_or(usize::MAX).min(max))
            .collect();
        let patch = ctx.list(ctx.get(cfg, cf, "patch_size")?, &f("patch_size"))?;
        if patch.len() != 3 {
            return Err(ctx.unsupported(
                &f("patch_size"),
                &Json::Array(patch.clone()),
                "only 3-D configurations are supported",
            ));
        }
        Ok(UNetArchitecture {
            class,
            input_channels,
            output_channels,
            features_per_stage: features,
            kernel_sizes: triples(
                &ctx,
                ctx.get(cfg, cf, "conv_kernel_sizes")?,
                &f("conv_kernel_sizes"),
                n_stages,
            )?,
            strides: triples(
                &ctx,
                ctx.get(cfg, cf, "pool_op_kernel_sizes")?,
                &f("pool_op_kernel_sizes"),
                n_stages,
            )?,
            n_conv_per_stage: n_conv,
            n_conv_per_stage_decoder: n_conv_dec,
            conv_bias: true,
            norm_eps: 1e-5,
            nonlinearity: Nonlinearity::LeakyRelu {
                negative_slope: 0.01,
            },
        })
    }
}

fn triples(ctx: &Ctx, v: &Json, field: &str, n: usize) -> Result<Vec<[usize; 3]>, NnunetError> {
    let xs = ctx.list(v, field)?;
    if xs.len() != n {
        return Err(ctx.field(field, format!("{} entries for {n} stages", xs.len())));
    }
    xs.iter()
        .enumerate()
        .map(|(i, x)| {
            let fi = format!("{field}[{i}]");
            match x.as_u64() {
                // a scalar means the same size on every axis
                Some(k) => Ok([k as usize; 3]),
                None => ctx.triple(x, &fi),
            }
        })
        .collect()
}

fn per_stage(ctx: &Ctx, v: &Json, field: &str, n: usize) -> Result<Vec<usize>, NnunetError> {
    if let Some(k) = v.as_u64() {
        return Ok(vec![k as usize; n]);
    }
    let xs = ctx.usizes(v, field)?;
    if xs.len() != n {
        return Err(ctx.field(field, format!("{} entries, expected {n}", xs.len())));
    }
    Ok(xs)
}

fn resampling(
    ctx: &Ctx,
    cfg: &Map<String, Json>,
    cf: &str,
    which: &str,
) -> Result<ResamplingSettings, NnunetError> {
    let fn_field = join(cf, which);
    if let Some(name) = cfg.get(which) {
        if name.as_str() != Some("resample_data_or_seg_to_shape") {
            return Err(ctx.unsupported(&fn_field, name, "only resample_data_or_seg_to_shape"));
        }
    }
    let kf = join(cf, &format!("{which}_kwargs"));
    let kw = ctx.object(ctx.get(cfg, cf, &format!("{which}_kwargs"))?, &kf)?;
    let order = ctx.usize(ctx.get(kw, &kf, "order")?, &join(&kf, "order"))?;
    let order_z = kw
        .get("order_z")
        .map(|v| ctx.usize(v, &join(&kf, "order_z")))
        .transpose()?
        .unwrap_or(0);
    let force = match kw.get("force_separate_z") {
        None | Some(Json::Null) => None,
        Some(Json::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ctx.field(
                &join(&kf, "force_separate_z"),
                format!("expected null or bool, found {other}"),
            ))
        }
    };
    if order > 5 || order_z > 5 {
        return Err(ctx.field(&kf, "spline order above 5"));
    }
    Ok(ResamplingSettings {
        order: order as u8,
        order_z: order_z as u8,
        force_separate_z: force,
    })
}

/// Builds the [`InferencePlan`] of `configuration` (§1.3, §2, §3, §4, §6).
pub fn build_plan(
    plans: &Json,
    dataset: &DatasetJson,
    configuration: &str,
    mirror_axes: &[usize],
    folds: &[String],
) -> Result<InferencePlan, NnunetError> {
    let ctx = Ctx { file: "plans.json" };
    let root = ctx.object(plans, "")?;
    let cfg = resolve_configuration(plans, configuration)?;
    let cf = format!("configurations.{configuration}");
    let f = |k: &str| join(&cf, k);

    let reader_v = ctx.get(root, "", "image_reader_writer")?;
    let reader = match reader_v.as_str().unwrap_or("") {
        "SimpleITKIO" => ReaderAxes::SimpleItk,
        "NibabelIO" => ReaderAxes::Nibabel,
        "NibabelIOWithReorient" => ReaderAxes::NibabelWithReorient,
        _ => {
            return Err(ctx.unsupported(
                "image_reader_writer",
                reader_v,
                "only SimpleITKIO, NibabelIO, NibabelIOWithReorient",
            ))
        }
    };
    let perm = |key: &str| -> Result<[usize; 3], NnunetError> {
        let t = ctx.triple(ctx.get(root, "", key)?, key)?;
        let mut seen = [false; 3];
        for a in t {
            if a > 2 || std::mem::replace(&mut seen[a], true) {
                return Err(ctx.field(key, format!("{t:?} is not a permutation of 0, 1, 2")));
            }
        }
        Ok(t)
    };
    let transpose_forward = perm("transpose_forward")?;
    let transpose_backward = perm("transpose_backward")?;
    for i in 0..3 {
        if transpose_forward[transpose_backward[i]] != i {
            return Err(ctx.field(
                "transpose_backward",
                "is not the inverse of transpose_forward",
            ));
        }
    }

    let patch_size = ctx.triple(ctx.get(&cfg, &cf, "patch_size")?, &f("patch_size"))?;
    let spacing_mm = ctx.f64_triple(ctx.get(&cfg, &cf, "spacing")?, &f("spacing"))?;
    if let Some(p) = cfg.get("preprocessor_name") {
        if p.as_str() != Some("DefaultPreprocessor") {
            return Err(ctx.unsupported(&f("preprocessor_name"), p, "only DefaultPreprocessor"));
        }
    }

    // normalisation per channel
    let n_channels = dataset.channel_names.len();
    let schemes = ctx.list(
        ctx.get(&cfg, &cf, "normalization_schemes")?,
        &f("normalization_schemes"),
    )?;
    if schemes.len() != n_channels {
        return Err(ctx.field(
            &f("normalization_schemes"),
            format!(
                "{} schemes for {n_channels} channels in dataset.json",
                schemes.len()
            ),
        ));
    }
    let use_mask: Vec<bool> = match cfg.get("use_mask_for_norm") {
        Some(Json::Array(xs)) => xs.iter().map(|x| x.as_bool().unwrap_or(false)).collect(),
        _ => vec![false; n_channels],
    };
    let props = root.get("foreground_intensity_properties_per_channel");
    let mut normalization = Vec::new();
    for (c, s) in schemes.iter().enumerate() {
        let sf = format!("{}[{c}]", f("normalization_schemes"));
        match s.as_str().unwrap_or("") {
            "CTNormalization" => {
                let pf = format!("foreground_intensity_properties_per_channel.{c}");
                let p = props
                    .and_then(|p| p.get(c.to_string()))
                    .ok_or_else(|| ctx.field(&pf, "missing (needed by CTNormalization)"))?;
                let p = ctx.object(p, &pf)?;
                let num = |k: &str| ctx.f64(ctx.get(p, &pf, k)?, &join(&pf, k));
                normalization.push(Normalization::Ct {
                    mean: num("mean")?,
                    std: num("std")?,
                    percentile_00_5: num("percentile_00_5")?,
                    percentile_99_5: num("percentile_99_5")?,
                });
            }
            "ZScoreNormalization" => normalization.push(Normalization::ZScore {
                use_mask: use_mask.get(c).copied().unwrap_or(false),
            }),
            _ => {
                return Err(ctx.unsupported(&sf, s, "only CTNormalization and ZScoreNormalization"))
            }
        }
    }

    let outputs = dataset.output_heads()?;
    let previous_stage = match cfg.get("previous_stage") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ctx.field(
                &f("previous_stage"),
                format!("expected a name, found {other}"),
            ))
        }
    };
    let input_channels = n_channels
        + if previous_stage.is_some() {
            dataset.foreground_labels().len()
        } else {
            0
        };
    let arch = architecture(&cfg, &cf, input_channels, outputs.channels())?;
    validate_architecture(&arch).map_err(|m| ctx.field(&f("architecture"), m))?;
    if let Some(a) = mirror_axes.iter().find(|a| **a > 2) {
        return Err(NnunetError::Field {
            file: "checkpoint".into(),
            field: "inference_allowed_mirroring_axes".into(),
            message: format!("axis {a} is not a 3-D spatial axis"),
        });
    }
    Ok(InferencePlan {
        dataset_name: ctx
            .get(root, "", "dataset_name")?
            .as_str()
            .ok_or_else(|| ctx.field("dataset_name", "expected a string"))?
            .to_string(),
        configuration: configuration.to_string(),
        reader,
        transpose_forward,
        transpose_backward,
        preprocessing: Preprocessing {
            spacing_mm,
            normalization,
            resample_data: resampling(&ctx, &cfg, &cf, "resampling_fn_data")?,
            resample_seg: resampling(&ctx, &cfg, &cf, "resampling_fn_seg")?,
            resample_probabilities: resampling(&ctx, &cfg, &cf, "resampling_fn_probabilities")?,
        },
        architecture: arch,
        sliding_window: SlidingWindow {
            patch_size,
            step_size: 0.5,
            gaussian_sigma_scale: 1.0 / 8.0,
            gaussian_value_scale: 10.0,
            mirror_axes: mirror_axes.to_vec(),
            accumulate_f16: true,
        },
        outputs,
        previous_stage,
        folds: folds.to_vec(),
        postprocessing: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------
// state-dict key scheme (§1.5)

/// Every unique tensor (name, shape) the nnU-Net network of `arch` has in its state dict
/// (deep-supervision heads included, alias keys excluded), in construction order.
/// `arch` must pass [`validate_architecture`] (it indexes the per-stage lists).
pub fn expected_tensors(arch: &UNetArchitecture) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let f = &arch.features_per_stage;
    let s_n = f.len();
    let conv = |out: &mut Vec<(String, Vec<usize>)>,
                p: &str,
                cout: usize,
                cin: usize,
                k: [usize; 3],
                bias: bool| {
        out.push((
            format!("{p}.conv.weight"),
            vec![cout, cin, k[0], k[1], k[2]],
        ));
        if bias {
            out.push((format!("{p}.conv.bias"), vec![cout]));
        }
        out.push((format!("{p}.norm.weight"), vec![cout]));
        out.push((format!("{p}.norm.bias"), vec![cout]));
    };
    match arch.class {
        NetworkClass::PlainConvUNet => {
            for s in 0..s_n {
                for j in 0..arch.n_conv_per_stage[s] {
                    let cin = match (s, j) {
                        (0, 0) => arch.input_channels,
                        (_, 0) => f[s - 1],
                        _ => f[s],
                    };
                    conv(
                        &mut out,
                        &format!("encoder.stages.{s}.0.convs.{j}"),
                        f[s],
                        cin,
                        arch.kernel_sizes[s],
                        arch.conv_bias,
                    );
                }
            }
        }
        NetworkClass::ResidualEncoderUNet => {
            conv(
                &mut out,
                "encoder.stem.convs.0",
                f[0],
                arch.input_channels,
                arch.kernel_sizes[0],
                arch.conv_bias,
            );
            for s in 0..s_n {
                for b in 0..arch.n_conv_per_stage[s] {
                    let cin = if b == 0 && s > 0 { f[s - 1] } else { f[s] };
                    let p = format!("encoder.stages.{s}.blocks.{b}");
                    let k = arch.kernel_sizes[s];
                    conv(
                        &mut out,
                        &format!("{p}.conv1"),
                        f[s],
                        cin,
                        k,
                        arch.conv_bias,
                    );
                    conv(
                        &mut out,
                        &format!("{p}.conv2"),
                        f[s],
                        f[s],
                        k,
                        arch.conv_bias,
                    );
                    if b == 0 && cin != f[s] {
                        let strided = arch.strides[s] != [1, 1, 1];
                        let idx = usize::from(strided);
                        conv(
                            &mut out,
                            &format!("{p}.skip.{idx}"),
                            f[s],
                            cin,
                            [1, 1, 1],
                            false,
                        );
                    }
                }
            }
        }
    }
    // UNetDecoder: t = 0 just above the bottleneck.
    for t in 0..s_n - 1 {
        let below = f[s_n - 1 - t];
        let skip = f[s_n - 2 - t];
        let st = arch.strides[s_n - 1 - t];
        out.push((
            format!("decoder.transpconvs.{t}.weight"),
            vec![below, skip, st[0], st[1], st[2]],
        ));
        if arch.conv_bias {
            out.push((format!("decoder.transpconvs.{t}.bias"), vec![skip]));
        }
        for j in 0..arch.n_conv_per_stage_decoder[t] {
            let cin = if j == 0 { 2 * skip } else { skip };
            conv(
                &mut out,
                &format!("decoder.stages.{t}.convs.{j}"),
                skip,
                cin,
                arch.kernel_sizes[s_n - 2 - t],
                arch.conv_bias,
            );
        }
        out.push((
            format!("decoder.seg_layers.{t}.weight"),
            vec![arch.output_channels, skip, 1, 1, 1],
        ));
        out.push((
            format!("decoder.seg_layers.{t}.bias"),
            vec![arch.output_channels],
        ));
    }
    out
}

/// Limits of what nephrod accepts as an nnU-Net network (far above any planner output; they
/// keep a corrupt plans.json or manifest from asking for absurd allocations).
pub const MAX_STAGES: usize = 16;
pub const MAX_CONVS_PER_STAGE: usize = 64;
pub const MAX_FEATURES: usize = 1 << 14;
pub const MAX_KERNEL: usize = 15;
pub const MAX_STRIDE: usize = 16;

/// Checks that `a` is internally consistent (per-stage list lengths, non-zero sizes, limits),
/// so that [`expected_tensors`] and the network code can index it freely.
pub fn validate_architecture(a: &UNetArchitecture) -> Result<(), String> {
    let n = a.features_per_stage.len();
    if !(2..=MAX_STAGES).contains(&n) {
        return Err(format!("{n} stages (2..={MAX_STAGES} supported)"));
    }
    for (what, len, want) in [
        ("kernel_sizes", a.kernel_sizes.len(), n),
        ("strides", a.strides.len(), n),
        ("n_conv_per_stage", a.n_conv_per_stage.len(), n),
        (
            "n_conv_per_stage_decoder",
            a.n_conv_per_stage_decoder.len(),
            n - 1,
        ),
    ] {
        if len != want {
            return Err(format!("{what} has {len} entries, expected {want}"));
        }
    }
    let in_range = |x: usize, max: usize| (1..=max).contains(&x);
    if !in_range(a.input_channels, MAX_FEATURES) || !in_range(a.output_channels, MAX_FEATURES) {
        return Err(format!(
            "{} input / {} output channels out of range",
            a.input_channels, a.output_channels
        ));
    }
    for s in 0..n {
        if !in_range(a.features_per_stage[s], MAX_FEATURES)
            || !a.kernel_sizes[s].iter().all(|k| in_range(*k, MAX_KERNEL))
            || !a.strides[s].iter().all(|k| in_range(*k, MAX_STRIDE))
            || !in_range(a.n_conv_per_stage[s], MAX_CONVS_PER_STAGE)
        {
            return Err(format!(
                "stage {s}: features {}, kernel {:?}, stride {:?}, convs {} out of range",
                a.features_per_stage[s], a.kernel_sizes[s], a.strides[s], a.n_conv_per_stage[s]
            ));
        }
    }
    if let Some(t) = a
        .n_conv_per_stage_decoder
        .iter()
        .position(|c| !in_range(*c, MAX_CONVS_PER_STAGE))
    {
        return Err(format!("decoder stage {t}: conv count out of range"));
    }
    if !(a.norm_eps > 0.0 && a.norm_eps.is_finite()) {
        return Err(format!("norm eps {} must be positive", a.norm_eps));
    }
    Ok(())
}

/// Whether a state-dict key is an alias of another one (§1.5).
pub fn is_alias_key(name: &str) -> bool {
    name.contains(".all_modules.") || name.starts_with("decoder.encoder.")
}

/// Compares found (name, shape) pairs with the expected ones.
pub fn check_state_dict(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    found: &[(String, Vec<usize>)],
) -> Result<(), NnunetError> {
    use std::collections::HashMap;
    let exp: HashMap<&str, &Vec<usize>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let got: HashMap<&str, &Vec<usize>> = found.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(n, _)| !got.contains_key(n.as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    let unexpected: Vec<String> = found
        .iter()
        .filter(|(n, _)| !exp.contains_key(n.as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    let misshaped: Vec<(String, Vec<usize>, Vec<usize>)> = expected
        .iter()
        .filter_map(|(n, s)| match got.get(n.as_str()) {
            Some(g) if *g != s => Some((n.clone(), s.clone(), (*g).clone())),
            _ => None,
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        Ok(())
    } else {
        Err(NnunetError::StateDict {
            path: path.to_path_buf(),
            missing,
            unexpected,
            misshaped,
        })
    }
}

// ---------------------------------------------------------------------------------------
// checkpoints and model folders

/// nnU-Net trainers that do not change the network (nnunetv2 2.8.1 `variants/`, minus
/// `nnUNetTrainerBN` and the Primus trainers).
pub const NETWORK_PRESERVING_TRAINERS: &[&str] = &[
    "nnUNetTrainer",
    "nnUNetTrainerAdam",
    "nnUNetTrainerAdam1en3",
    "nnUNetTrainerAdam3en4",
    "nnUNetTrainerAdan",
    "nnUNetTrainerAdan1en1",
    "nnUNetTrainerAdan1en3",
    "nnUNetTrainerAdan3en4",
    "nnUNetTrainerAdanCosAnneal",
    "nnUNetTrainerBenchmark_5epochs",
    "nnUNetTrainerBenchmark_5epochs_noDataLoading",
    "nnUNetTrainerCELoss",
    "nnUNetTrainerCELoss_5epochs",
    "nnUNetTrainerCosAnneal",
    "nnUNetTrainerDA5",
    "nnUNetTrainerDA5Segord0",
    "nnUNetTrainerDA5_10epochs",
    "nnUNetTrainerDA5ord0",
    "nnUNetTrainerDiceCELoss_noSmooth",
    "nnUNetTrainerDiceLoss",
    "nnUNetTrainerDiceTopK10Loss",
    "nnUNetTrainerNoDA",
    "nnUNetTrainerNoDeepSupervision",
    "nnUNetTrainerNoMirroring",
    "nnUNetTrainerTopk10Loss",
    "nnUNetTrainerTopk10LossLS01",
    "nnUNetTrainerVanillaAdam",
    "nnUNetTrainerVanillaAdam1en3",
    "nnUNetTrainerVanillaAdam3en4",
    "nnUNetTrainer_100epochs",
    "nnUNetTrainer_10epochs",
    "nnUNetTrainer_1epoch",
    "nnUNetTrainer_2000epochs",
    "nnUNetTrainer_2000epochs_NoMirroring",
    "nnUNetTrainer_20epochs",
    "nnUNetTrainer_250epochs",
    "nnUNetTrainer_250epochs_NoMirroring",
    "nnUNetTrainer_4000epochs",
    "nnUNetTrainer_4000epochs_NoMirroring",
    "nnUNetTrainer_500epochs",
    "nnUNetTrainer_50epochs",
    "nnUNetTrainer_5epochs",
    "nnUNetTrainer_750epochs",
    "nnUNetTrainer_8000epochs",
    "nnUNetTrainer_8000epochs_NoMirroring",
    "nnUNetTrainer_DASegOrd0",
    "nnUNetTrainer_DASegOrd0_NoMirroring",
    "nnUNetTrainer_noDummy2DDA",
    "nnUNetTrainer_onlyMirror01",
    "nnUNetTrainer_onlyMirror01_1500ep",
    "nnUNetTrainer_onlyMirror01_DA5",
    "nnUNetTrainer_onlyMirror01_DASegOrd0",
    "nnUNetTrainer_probabilisticOversampling",
    "nnUNetTrainer_probabilisticOversampling_010",
    "nnUNetTrainer_probabilisticOversampling_033",
    "nnUNetTrainer_warmup",
    "nnUNet_Trainer_BS8",
];

/// What inference uses from one checkpoint (§1.2).
#[derive(Debug)]
pub struct CheckpointMeta {
    pub trainer_name: String,
    /// `init_args['configuration']`, when present.
    pub configuration: Option<String>,
    /// `inference_allowed_mirroring_axes`; `None` when absent or None (= no mirroring).
    pub mirror_axes: Option<Vec<usize>>,
    /// Unique network tensors in state-dict order (aliases dropped, `module.` prefix removed).
    pub weights: Vec<(String, TensorRef)>,
}

/// Extracts [`CheckpointMeta`] from an opened nnU-Net checkpoint.
pub fn checkpoint_meta(ck: &TorchCheckpoint) -> Result<CheckpointMeta, NnunetError> {
    let path = ck.path();
    let bad = |field: &str, message: String| NnunetError::CheckpointContent {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let root = ck.root();
    if !matches!(root, Value::Dict(_)) {
        return Err(bad(
            "(root)",
            format!("expected a dict, found {}", root.type_name()),
        ));
    }
    let Some(Value::Dict(weights)) = root.get("network_weights") else {
        return Err(bad("network_weights", "missing or not a dict".into()));
    };
    let mut out = Vec::new();
    for (k, v) in weights {
        let Value::Str(name) = k else {
            return Err(bad(
                "network_weights",
                format!("key of type {}", k.type_name()),
            ));
        };
        let name = name.strip_prefix("module.").unwrap_or(name);
        if is_alias_key(name) {
            continue;
        }
        let Value::Tensor(t) = v else {
            return Err(bad(
                &format!("network_weights.{name}"),
                format!("{} is not a tensor", v.type_name()),
            ));
        };
        out.push((name.to_string(), t.clone()));
    }
    let trainer_name = match root.get("trainer_name") {
        Some(Value::Str(s)) => s.clone(),
        None => "nnUNetTrainer".to_string(),
        Some(other) => {
            return Err(bad(
                "trainer_name",
                format!("{} is not a string", other.type_name()),
            ))
        }
    };
    let configuration = root
        .get("init_args")
        .and_then(|a| a.get("configuration"))
        .and_then(|c| c.as_str())
        .map(str::to_string);
    let mirror_axes = match root.get("inference_allowed_mirroring_axes") {
        None | Some(Value::None) => None,
        Some(Value::Tuple(xs)) | Some(Value::List(xs)) => Some(
            xs.iter()
                .map(|x| {
                    x.as_int()
                        .and_then(|i| usize::try_from(i).ok())
                        .ok_or_else(|| {
                            bad(
                                "inference_allowed_mirroring_axes",
                                format!("{x:?} is not an axis"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => {
            return Err(bad(
                "inference_allowed_mirroring_axes",
                format!("{} is not a tuple", other.type_name()),
            ))
        }
    };
    Ok(CheckpointMeta {
        trainer_name,
        configuration,
        mirror_axes,
        weights: out,
    })
}

/// Options of [`prepare_import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Configuration name, e.g. `3d_fullres`.
    pub configuration: String,
    /// Fold names (`0`…, `all`); `None` = every `fold_<int>` folder holding the checkpoint.
    pub folds: Option<Vec<String>>,
    /// Checkpoint file name in each fold folder.
    pub checkpoint_name: String,
    /// Accept trainers outside [`NETWORK_PRESERVING_TRAINERS`] (the state-dict check remains).
    pub allow_custom_trainer: bool,
    /// nnU-Net post-processing rules to store with the model.
    pub postprocessing: PostprocessingSource,
}

/// Where [`prepare_import`] takes nnU-Net's post-processing rules from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostprocessingSource {
    /// `<model dir>/crossval_results_folds_<folds joined by _>/postprocessing.json` when it
    /// exists (where `nnUNetv2_find_best_configuration` writes it), else none.
    Auto,
    /// This postprocessing.json (must exist).
    File(PathBuf),
    /// No post-processing.
    Off,
}

impl ImportOptions {
    pub fn new(configuration: &str) -> Self {
        Self {
            configuration: configuration.to_string(),
            folds: None,
            checkpoint_name: "checkpoint_final.pth".into(),
            allow_custom_trainer: false,
            postprocessing: PostprocessingSource::Auto,
        }
    }
}

/// A source file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// Hashes a file in 1 MiB chunks (lower-case hex).
pub fn sha256_file(path: &Path) -> Result<String, NnunetError> {
    use std::io::Read;
    let rerr = |source| NnunetError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(rerr)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(rerr)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A validated model folder, ready to convert fold by fold.
#[derive(Debug)]
pub struct PreparedImport {
    pub dir: PathBuf,
    pub plan: InferencePlan,
    pub trainer_name: String,
    pub plans_json: SourceFile,
    pub dataset_json: SourceFile,
    /// The postprocessing.json the plan's rules come from, if any.
    pub postprocessing_json: Option<SourceFile>,
    /// (fold name, checkpoint path) in import order.
    pub checkpoints: Vec<(String, PathBuf)>,
    /// The tensors every fold must hold.
    pub expected: Vec<(String, Vec<usize>)>,
}

/// One fold converted: tensors rounded to f16 (torch `.half()`), in [`expected_tensors`] order.
#[derive(Debug)]
pub struct FoldWeights {
    pub fold: String,
    pub checkpoint: SourceFile,
    pub tensors: Vec<(String, Vec<usize>, Vec<f16>)>,
}

/// `fold_<int>` folders of `dir` holding `checkpoint`, sorted by number (never `fold_all`).
pub fn detect_folds(dir: &Path, checkpoint: &str) -> Result<Vec<String>, NnunetError> {
    let rd = std::fs::read_dir(dir).map_err(|source| NnunetError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut folds: Vec<(u64, String)> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("fold_")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if e.path().join(checkpoint).is_file() {
                folds.push((n, n.to_string()));
            }
        }
    }
    folds.sort();
    if folds.is_empty() {
        return Err(NnunetError::NoFolds {
            dir: dir.to_path_buf(),
            checkpoint: checkpoint.to_string(),
        });
    }
    Ok(folds.into_iter().map(|(_, s)| s).collect())
}

/// Reads plans.json, dataset.json and the first fold's checkpoint metadata; builds and checks
/// the plan. Weights are converted later, fold by fold, by [`PreparedImport::load_fold`].
pub fn prepare_import(dir: &Path, opts: &ImportOptions) -> Result<PreparedImport, NnunetError> {
    let plans_path = dir.join("plans.json");
    let dataset_path = dir.join("dataset.json");
    let plans = read_json(&plans_path)?;
    let dataset_text =
        std::fs::read_to_string(&dataset_path).map_err(|source| NnunetError::Read {
            path: dataset_path.clone(),
            source,
        })?;
    let dataset = DatasetJson::parse(&dataset_text)?;
    let folds = match &opts.folds {
        Some(f) if !f.is_empty() => f.clone(),
        _ => detect_folds(dir, &opts.checkpoint_name)?,
    };
    let mut checkpoints = Vec::new();
    for f in &folds {
        let p = dir.join(format!("fold_{f}")).join(&opts.checkpoint_name);
        if !p.is_file() {
            return Err(NnunetError::MissingCheckpoint {
                path: p,
                fold: f.clone(),
            });
        }
        checkpoints.push((f.clone(), p));
    }
    // §1.2: trainer, configuration and mirroring axes come from the first fold.
    let first = TorchCheckpoint::open(&checkpoints[0].1)?;
    let meta = checkpoint_meta(&first)?;
    check_trainer(
        &checkpoints[0].1,
        &meta.trainer_name,
        opts.allow_custom_trainer,
    )?;
    if let Some(c) = &meta.configuration {
        if *c != opts.configuration {
            return Err(NnunetError::CheckpointContent {
                path: checkpoints[0].1.clone(),
                field: "init_args.configuration".into(),
                message: format!(
                    "checkpoint was trained as {c}, import asked for {}",
                    opts.configuration
                ),
            });
        }
    }
    let mirror = meta.mirror_axes.clone().unwrap_or_default();
    let mut plan = build_plan(&plans, &dataset, &opts.configuration, &mirror, &folds)?;
    let pp_path = match &opts.postprocessing {
        PostprocessingSource::Off => None,
        PostprocessingSource::File(p) => Some(p.clone()),
        PostprocessingSource::Auto => {
            let p = dir
                .join(format!("crossval_results_folds_{}", folds.join("_")))
                .join("postprocessing.json");
            p.is_file().then_some(p)
        }
    };
    let postprocessing_json = match pp_path {
        Some(path) => {
            plan.postprocessing = read_postprocessing_json(&path, &dataset.foreground_labels())?;
            Some(SourceFile {
                sha256: sha256_file(&path)?,
                path,
            })
        }
        None => None,
    };
    let expected = expected_tensors(&plan.architecture);
    Ok(PreparedImport {
        dir: dir.to_path_buf(),
        plan,
        trainer_name: meta.trainer_name,
        plans_json: SourceFile {
            sha256: sha256_file(&plans_path)?,
            path: plans_path,
        },
        dataset_json: SourceFile {
            sha256: sha256_file(&dataset_path)?,
            path: dataset_path,
        },
        postprocessing_json,
        checkpoints,
        expected,
    })
}

fn check_trainer(path: &Path, trainer: &str, allow_custom: bool) -> Result<(), NnunetError> {
    if NETWORK_PRESERVING_TRAINERS.contains(&trainer) || allow_custom {
        Ok(())
    } else {
        Err(NnunetError::UnsupportedTrainer {
            path: path.to_path_buf(),
            trainer: trainer.to_string(),
        })
    }
}

impl PreparedImport {
    /// Number of network parameters (all unique tensors, deep-supervision heads included).
    pub fn parameters(&self) -> u64 {
        self.expected
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum()
    }

    /// Reads fold `i`'s checkpoint, checks it against the architecture and the first fold, and
    /// converts every tensor to f16. Values that are not finite in f16 are refused.
    pub fn load_fold(&self, i: usize) -> Result<FoldWeights, NnunetError> {
        let (fold, path) = &self.checkpoints[i];
        let ck = TorchCheckpoint::open(path)?;
        let meta = checkpoint_meta(&ck)?;
        if meta.trainer_name != self.trainer_name {
            return Err(NnunetError::CheckpointContent {
                path: path.clone(),
                field: "trainer_name".into(),
                message: format!(
                    "{} differs from the first fold's {}",
                    meta.trainer_name, self.trainer_name
                ),
            });
        }
        if let Some(c) = &meta.configuration {
            if *c != self.plan.configuration {
                return Err(NnunetError::CheckpointContent {
                    path: path.clone(),
                    field: "init_args.configuration".into(),
                    message: format!("{c} differs from {}", self.plan.configuration),
                });
            }
        }
        let found: Vec<(String, Vec<usize>)> = meta
            .weights
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.iter().map(|d| *d as usize).collect()))
            .collect();
        check_state_dict(path, &self.expected, &found)?;
        let by_name: std::collections::HashMap<&str, &TensorRef> =
            meta.weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut tensors = Vec::with_capacity(self.expected.len());
        for (name, shape) in &self.expected {
            let t = by_name
                .get(name.as_str())
                .ok_or_else(|| NnunetError::Tensor {
                    path: path.clone(),
                    name: name.clone(),
                    message: "missing".into(),
                })?;
            let values = ck.tensor_f16(t)?;
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(NnunetError::Tensor {
                    path: path.clone(),
                    name: name.clone(),
                    message: format!(
                        "element {bad} is {} after rounding to f16 (outside the f16 range or NaN)",
                        values[bad]
                    ),
                });
            }
            tensors.push((name.clone(), shape.clone(), values));
        }
        Ok(FoldWeights {
            fold: fold.clone(),
            checkpoint: SourceFile {
                path: path.clone(),
                sha256: sha256_file(path)?,
            },
            tensors,
        })
    }
}
