//! Classifier bundles: a directory with `manifest.json` and `weights.safetensors`
//! (torchvision state-dict names plus `input_conv.*`; convolution and linear weights F16,
//! BatchNorm parameters/statistics and biases F32 — f16 would flush small running variances).
//!
//! # Manifest (`schema` = [`SCHEMA`], `schema_version` = [`SCHEMA_VERSION`])
//! The architecture ([`ResNetConfig`]), the class names in output order (must equal
//! [`CLASSES`]), the input preparation ([`CropSettings`]), the weights' [`WeightsManifest`]
//! (SHA-256 of the file, every tensor's name/dtype/shape), where the weights came from, and
//! optionally what the training recorded (free-form JSON, shown in reports).
//!
//! # Guarantees
//! * [`import_weights`] writes into a temporary sibling directory and renames it into place
//!   only when complete; a failed import leaves nothing behind.
//! * [`ClassifierBundle::open`] refuses other schemas/versions, other class lists, invalid crop
//!   settings, a weights file whose hash, tensor names, dtypes or shapes differ from the
//!   manifest, and tensors the architecture does not need or lacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::f16;
use serde::{Deserialize, Serialize};

use super::resnet::{ResNet, ResNetConfig};
use super::settings::{CropSettings, CLASSES};
use crate::engine::weights::{
    f16_bytes, f32_bytes, write_safetensors, DType, TensorToWrite, WeightFile, WeightsError,
    WeightsManifest,
};
use crate::models::bundle::rfc3339_utc;
use crate::models::torch_checkpoint::{CheckpointError, TorchCheckpoint, Value};

pub const SCHEMA: &str = "nephrod.classifier-bundle";
pub const SCHEMA_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Where the weights came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierSource {
    /// `safetensors` or `torch_state_dict`.
    pub kind: String,
    /// The file as given at import.
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierManifest {
    pub schema: String,
    pub schema_version: u32,
    pub architecture: ResNetConfig,
    pub classes: Vec<String>,
    pub crop: CropSettings,
    pub weights_file: String,
    pub weights: WeightsManifest,
    pub parameters: usize,
    pub source: ClassifierSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    pub nephrod_version: String,
    pub created_utc: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierBundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a classifier manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: schema {found} version {version}, this build reads {SCHEMA} version {SCHEMA_VERSION}")]
    Schema {
        path: PathBuf,
        found: String,
        version: u32,
    },
    #[error("{path}: classes {found:?}, expected {CLASSES:?}")]
    Classes { path: PathBuf, found: Vec<String> },
    #[error("{path}: {message}")]
    Tensors { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Crop(#[from] super::crop::CropError),
    #[error(transparent)]
    Model(#[from] super::error::ClassifyError),
}

/// An opened, verified bundle with its network loaded.
pub struct ClassifierBundle {
    pub dir: PathBuf,
    pub manifest: ClassifierManifest,
    pub network: ResNet,
}

impl ClassifierBundle {
    pub fn open(dir: &Path) -> Result<Self, ClassifierBundleError> {
        let mpath = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&mpath).map_err(|source| ClassifierBundleError::Io {
            path: mpath.clone(),
            source,
        })?;
        let head: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClassifierBundleError::Manifest {
                path: mpath.clone(),
                message: e.to_string(),
            })?;
        let found = head["schema"].as_str().unwrap_or("(none)").to_string();
        let version = head["schema_version"].as_u64().unwrap_or(0) as u32;
        if found != SCHEMA || version != SCHEMA_VERSION {
            return Err(ClassifierBundleError::Schema {
                path: mpath,
                found,
                version,
            });
        }
        let manifest: ClassifierManifest =
            serde_json::from_value(head).map_err(|e| ClassifierBundleError::Manifest {
                path: mpath.clone(),
                message: e.to_string(),
            })?;
        if manifest.classes.iter().map(String::as_str).ne(CLASSES) {
            return Err(ClassifierBundleError::Classes {
                path: mpath,
                found: manifest.classes,
            });
        }
        manifest.crop.validate()?;
        let wname = &manifest.weights_file;
        if Path::new(wname).file_name().and_then(|n| n.to_str()) != Some(wname.as_str()) {
            return Err(ClassifierBundleError::Manifest {
                path: mpath,
                message: format!("weights file {wname:?} is not a plain file name"),
            });
        }
        let wpath = dir.join(wname);
        let file = WeightFile::open(&wpath)?;
        file.verify(&manifest.weights)?;
        check_names(&wpath, &file, &manifest.architecture)?;
        drop(file);
        let network = ResNet::load_safetensors(&wpath, &manifest.architecture)?;
        Ok(ClassifierBundle {
            dir: dir.to_path_buf(),
            manifest,
            network,
        })
    }
}

fn check_names(
    path: &Path,
    file: &WeightFile,
    config: &ResNetConfig,
) -> Result<(), ClassifierBundleError> {
    let want: BTreeMap<String, Vec<usize>> = ResNet::expected_tensors(config).into_iter().collect();
    for (name, shape) in &want {
        match file.tensors().get(name) {
            None => {
                return Err(ClassifierBundleError::Tensors {
                    path: path.to_path_buf(),
                    message: format!("missing tensor {name}"),
                })
            }
            Some(t) if &t.shape != shape => {
                return Err(ClassifierBundleError::Tensors {
                    path: path.to_path_buf(),
                    message: format!("tensor {name} has shape {:?}, needs {shape:?}", t.shape),
                })
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = file.tensors().keys().find(|k| !want.contains_key(*k)) {
        return Err(ClassifierBundleError::Tensors {
            path: path.to_path_buf(),
            message: format!("unexpected tensor {extra}"),
        });
    }
    Ok(())
}

/// Shape and f32 values of every tensor, by name.
type StateDict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Tensors of a state dict as f32, by name (`module.` prefixes removed,
/// `*.num_batches_tracked` dropped).
fn read_state_dict(path: &Path) -> Result<(String, StateDict), ClassifierBundleError> {
    let tensors_err = |message: String| ClassifierBundleError::Tensors {
        path: path.to_path_buf(),
        message,
    };
    let mut out = BTreeMap::new();
    let is_safetensors = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        let f = WeightFile::open(path)?;
        for name in f.tensors().keys() {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            let (shape, v) = f.tensor_f32(name)?;
            out.insert(
                name.strip_prefix("module.").unwrap_or(name).to_string(),
                (shape, v),
            );
        }
        return Ok(("safetensors".to_string(), out));
    }
    let ck = TorchCheckpoint::open(path)?;
    let root = ck.root();
    let dict = ["state_dict", "model_state_dict", "model", "network_weights"]
        .iter()
        .find_map(|k| match root.get(k) {
            Some(d @ Value::Dict(_)) => Some(d),
            _ => None,
        })
        .unwrap_or(root);
    let Value::Dict(pairs) = dict else {
        return Err(tensors_err(format!(
            "the checkpoint holds a {}, not a state dict",
            dict.type_name()
        )));
    };
    for (k, v) in pairs {
        let Value::Str(name) = k else {
            return Err(tensors_err(format!(
                "state-dict key of type {}",
                k.type_name()
            )));
        };
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let Value::Tensor(t) = v else {
            return Err(tensors_err(format!(
                "{name} is a {}, not a tensor",
                v.type_name()
            )));
        };
        let shape = t.shape.iter().map(|s| *s as usize).collect();
        let data = ck.tensor_f32(t)?;
        out.insert(
            name.strip_prefix("module.").unwrap_or(name).to_string(),
            (shape, data),
        );
    }
    Ok(("torch_state_dict".to_string(), out))
}

/// Whether a tensor is stored as F16 (convolution and linear weights) or F32.
fn stored_f16(name: &str, shape: &[usize]) -> bool {
    name.ends_with(".weight") && shape.len() >= 2
}

/// What to import.
pub struct ImportRequest<'a> {
    pub weights: &'a Path,
    pub architecture: ResNetConfig,
    pub crop: CropSettings,
    pub training: Option<serde_json::Value>,
    pub out: &'a Path,
}

/// Converts a state dict (safetensors or a PyTorch `.pth`) into a bundle at `out`, which must
/// not exist.
pub fn import_weights(req: &ImportRequest) -> Result<ClassifierManifest, ClassifierBundleError> {
    req.crop.validate()?;
    let (kind, tensors) = read_state_dict(req.weights)?;
    let want = ResNet::expected_tensors(&req.architecture);
    let terr = |message: String| ClassifierBundleError::Tensors {
        path: req.weights.to_path_buf(),
        message,
    };
    if let Some(extra) = tensors.keys().find(|k| !want.iter().any(|(n, _)| n == *k)) {
        return Err(terr(format!(
            "unexpected tensor {extra} for {:?}",
            req.architecture
        )));
    }
    let mut encoded = Vec::with_capacity(want.len());
    let mut parameters = 0usize;
    for (name, shape) in &want {
        let Some((got, data)) = tensors.get(name) else {
            return Err(terr(format!("missing tensor {name}")));
        };
        if got != shape {
            return Err(terr(format!(
                "tensor {name} has shape {got:?}, needs {shape:?}"
            )));
        }
        if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
            return Err(terr(format!("tensor {name} holds {bad}")));
        }
        parameters += data.len();
        if stored_f16(name, shape) {
            let max = f16::MAX.to_f32();
            if let Some(big) = data.iter().find(|v| v.abs() > max) {
                return Err(terr(format!(
                    "tensor {name} holds {big}, beyond f16's range"
                )));
            }
            encoded.push((name.as_str(), DType::F16, f16_bytes(data)));
        } else {
            encoded.push((name.as_str(), DType::F32, f32_bytes(data)));
        }
    }
    if req.out.exists() {
        return Err(ClassifierBundleError::Io {
            path: req.out.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    let parent = req
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClassifierBundleError::Io { path, source }
    };
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        req.out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bundle"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        let wpath = tmp.join(WEIGHTS_FILE);
        let to_write: Vec<TensorToWrite> = encoded
            .iter()
            .zip(&want)
            .map(|((name, dtype, bytes), (_, shape))| TensorToWrite {
                name,
                dtype: *dtype,
                shape,
                bytes,
            })
            .collect();
        write_safetensors(&wpath, &to_write, &BTreeMap::new())?;
        let weights = WeightFile::open(&wpath)?.manifest();
        let source_sha = sha256_file(req.weights)?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let manifest = ClassifierManifest {
            schema: SCHEMA.to_string(),
            schema_version: SCHEMA_VERSION,
            architecture: req.architecture.clone(),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            crop: req.crop.clone(),
            weights_file: WEIGHTS_FILE.to_string(),
            weights,
            parameters,
            source: ClassifierSource {
                kind: kind.clone(),
                file: req.weights.display().to_string(),
                sha256: source_sha,
            },
            training: req.training.clone(),
            nephrod_version: env!("CARGO_PKG_VERSION").to_string(),
            created_utc: rfc3339_utc(secs),
        };
        let mpath = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| {
            ClassifierBundleError::Manifest {
                path: mpath.clone(),
                message: e.to_string(),
            }
        })?;
        std::fs::write(&mpath, text).map_err(io(&mpath))?;
        std::fs::File::open(&mpath)
            .and_then(|f| f.sync_all())
            .map_err(io(&mpath))?;
        std::fs::rename(&tmp, req.out).map_err(io(req.out))?;
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn sha256_file(path: &Path) -> Result<String, ClassifierBundleError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|source| ClassifierBundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|source| ClassifierBundleError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
