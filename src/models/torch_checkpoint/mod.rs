//! PyTorch `.pth` checkpoints (the `torch.save` zip format of PyTorch ≥ 1.6) read in pure Rust,
//! without Python and without executing anything.
//!
//! # Format
//! A zip archive with one top folder `<prefix>/` holding `data.pkl` (the pickled object),
//! `data/<key>` (one record per tensor storage, raw little- or big-endian elements, C order of
//! the storage), `byteorder` (`little`/`big`, absent = little) and `version`. Tensors appear in
//! the pickle as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` where
//! `storage` is a persistent id `('storage', torch.<T>Storage, key, location, numel)`.
//!
//! # Guarantees
//! * The pickle is run by a restricted VM (module `pickle`) with a whitelist of globals; anything
//!   else (e.g. `os.system`) is [`CheckpointError::ForbiddenGlobal`]. Nothing is ever called.
//! * The archive is indexed once (central directory only); `data.pkl` is read once; storages are
//!   read on demand, one at a time, each CRC-checked.
//! * [`TorchCheckpoint::tensor_f32`] / [`TorchCheckpoint::tensor_f16`] materialise a tensor of
//!   any stride pattern (views, transposes, offsets, stride 0, shared storages) in C order,
//!   after checking that every addressed element lies inside its storage. Conversions: f16/bf16
//!   → f32 exact; f64 → f32 → f16 (what torch's `.half()` does); f32 → f16 round-to-nearest-even.
//! * Malformed input gives a typed [`CheckpointError`] naming the file, never a panic.

mod pickle;
mod zip;

use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

pub use pickle::{MAX_DEPTH, MAX_EXPANDED_BYTES};

/// Most elements a tensor may have to be materialised (4 GiB as f32).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 30;

/// A pickled global reference (`module.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

/// Element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDType {
    /// From a legacy storage class name (`FloatStorage`, …; `UntypedStorage` = bytes).
    pub fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" | "UntypedStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// torch's name (`float32`, …).
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// A storage record of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// Record name under `<prefix>/data/`.
    pub key: String,
    pub dtype: StorageDType,
    /// Where it was saved from (`cpu`, `cuda:0`); informational.
    pub location: String,
    /// Elements in the storage.
    pub numel: u64,
}

/// A tensor: a strided view of a storage (elements, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub storage_offset: u64,
    pub shape: Vec<u64>,
    pub strides: Vec<u64>,
    pub requires_grad: bool,
}

impl TensorRef {
    /// Number of elements (`None` on overflow).
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |a, b| a.checked_mul(*b))
    }
}

/// The unpickled object tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Python int (up to 128 bits).
    Int(i128),
    /// A wider Python int: little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// set or frozenset, in pickle order.
    Set(Vec<Value>),
    /// dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    Tensor(TensorRef),
    /// A bare storage (not wrapped in a tensor).
    Storage(StorageRef),
    /// `torch.device`, e.g. `cpu`, `cuda:1`.
    Device(String),
    /// A whitelisted global that was not called (e.g. `torch.float32`).
    Global(Global),
    /// An inert object of a whitelisted class (e.g. a numpy array): kept, never interpreted.
    Object {
        class: Global,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
}

impl Value {
    /// `self[key]` for a dict with string keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs.iter().find_map(|(k, v)| match k {
                Value::Str(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Complex(..) => "complex",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
            Value::Tensor(_) => "tensor",
            Value::Storage(_) => "storage",
            Value::Device(_) => "torch.device",
            Value::Global(_) => "global",
            Value::Object { .. } => "object",
        }
    }
}

/// Errors reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a torch zip checkpoint: {message}")]
    Archive { path: PathBuf, message: String },
    #[error("{path}: record {entry}: {message}")]
    Record {
        path: PathBuf,
        entry: String,
        message: String,
    },
    #[error("{path}: legacy (pre-1.6, non-zip) torch serialization is not supported; re-save it with a current torch")]
    LegacyFormat { path: PathBuf },
    #[error("{path}: malformed pickle at byte {offset}: {message}")]
    Pickle {
        path: PathBuf,
        offset: usize,
        message: String,
    },
    #[error("{path}: the pickle refers to {module}.{name}, which is not on nephrod's whitelist (refused, nothing was executed)")]
    ForbiddenGlobal {
        path: PathBuf,
        module: String,
        name: String,
    },
    #[error("{path}: tensor in storage {key}: {message}")]
    Tensor {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl CheckpointError {
    /// Short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Archive { .. } => "archive",
            Self::Record { .. } => "record",
            Self::LegacyFormat { .. } => "legacy_format",
            Self::Pickle { .. } => "pickle",
            Self::ForbiddenGlobal { .. } => "forbidden_global",
            Self::Tensor { .. } => "tensor",
        }
    }
}

/// An opened checkpoint: the archive index and the unpickled tree; storages read on demand.
#[derive(Debug)]
pub struct TorchCheckpoint {
    path: PathBuf,
    file: File,
    file_len: u64,
    index: zip::ZipIndex,
    prefix: String,
    big_endian: bool,
    root: Value,
}

impl TorchCheckpoint {
    /// Opens `path`, indexes the archive and runs the pickle.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let conv = |p: zip::ZipProblem| match p {
            zip::ZipProblem::Io(source) => CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            },
            zip::ZipProblem::Structure(message) => CheckpointError::Archive {
                path: path.to_path_buf(),
                message,
            },
            zip::ZipProblem::Entry { entry, message } => CheckpointError::Record {
                path: path.to_path_buf(),
                entry,
                message,
            },
        };
        // Legacy torch files are a bare pickle stream starting with PROTO 2 and a magic number.
        let head = zip::read_at(&file, 0, file_len.min(4) as usize).map_err(conv)?;
        if head.first() == Some(&0x80) {
            return Err(CheckpointError::LegacyFormat {
                path: path.to_path_buf(),
            });
        }
        let index = zip::ZipIndex::read(&file, file_len).map_err(conv)?;
        let pkl = index
            .entries
            .keys()
            .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .cloned()
            .ok_or_else(|| CheckpointError::Archive {
                path: path.to_path_buf(),
                message: "no <name>/data.pkl record".into(),
            })?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let big_endian = match index.entries.get(&format!("{prefix}byteorder")) {
            Some(e) => {
                let b = index.read_entry(&file, file_len, e).map_err(conv)?;
                match &b[..] {
                    b"little" => false,
                    b"big" => true,
                    other => {
                        return Err(CheckpointError::Archive {
                            path: path.to_path_buf(),
                            message: format!(
                                "byteorder record says {:?}",
                                String::from_utf8_lossy(other)
                            ),
                        })
                    }
                }
            }
            None => false,
        };
        let entry = &index.entries[&pkl];
        let bytes = index.read_entry(&file, file_len, entry).map_err(conv)?;
        let root = pickle::unpickle(&bytes).map_err(|p| match p {
            pickle::PickleProblem::Malformed { offset, message } => CheckpointError::Pickle {
                path: path.to_path_buf(),
                offset,
                message,
            },
            pickle::PickleProblem::Forbidden { module, name } => CheckpointError::ForbiddenGlobal {
                path: path.to_path_buf(),
                module,
                name,
            },
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            file_len,
            index,
            prefix,
            big_endian,
            root,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The unpickled object.
    pub fn root(&self) -> &Value {
        &self.root
    }

    fn tensor_err(&self, t: &TensorRef, message: impl Into<String>) -> CheckpointError {
        CheckpointError::Tensor {
            path: self.path.clone(),
            key: t.storage.key.clone(),
            message: message.into(),
        }
    }

    /// Reads a storage record (native-endian element bytes after this call).
    fn storage_bytes(&self, t: &TensorRef) -> Result<Vec<u8>, CheckpointError> {
        let name = format!("{}data/{}", self.prefix, t.storage.key);
        let entry = self
            .index
            .entries
            .get(&name)
            .ok_or_else(|| self.tensor_err(t, format!("record {name} is missing")))?;
        let want = t
            .storage
            .numel
            .checked_mul(t.storage.dtype.size() as u64)
            .ok_or_else(|| self.tensor_err(t, "storage size overflows"))?;
        if entry.size != want {
            return Err(self.tensor_err(
                t,
                format!(
                    "record holds {} bytes, {} elements of {} need {want}",
                    entry.size,
                    t.storage.numel,
                    t.storage.dtype.torch_name()
                ),
            ));
        }
        let mut bytes = self
            .index
            .read_entry(&self.file, self.file_len, entry)
            .map_err(|p| match p {
                zip::ZipProblem::Io(source) => CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                },
                zip::ZipProblem::Structure(message) => CheckpointError::Archive {
                    path: self.path.clone(),
                    message,
                },
                zip::ZipProblem::Entry { entry, message } => CheckpointError::Record {
                    path: self.path.clone(),
                    entry,
                    message,
                },
            })?;
        if self.big_endian {
            let s = t.storage.dtype.size();
            for c in bytes.chunks_exact_mut(s) {
                c.reverse();
            }
        }
        Ok(bytes)
    }

    /// Storage element indices of `t` in C order, bounds-checked.
    fn element_indices(&self, t: &TensorRef) -> Result<Vec<usize>, CheckpointError> {
        let numel = t
            .numel()
            .ok_or_else(|| self.tensor_err(t, "shape overflows"))?;
        if numel == 0 {
            return Ok(Vec::new());
        }
        if numel > MAX_TENSOR_ELEMENTS {
            return Err(self.tensor_err(t, format!("{numel} elements is too many")));
        }
        let mut last = t.storage_offset;
        for (d, s) in t.shape.iter().zip(&t.strides) {
            last = (d - 1)
                .checked_mul(*s)
                .and_then(|x| x.checked_add(last))
                .ok_or_else(|| self.tensor_err(t, "strides overflow"))?;
        }
        if last >= t.storage.numel {
            return Err(self.tensor_err(
                t,
                format!(
                    "view (offset {}, shape {:?}, strides {:?}) reaches element {last} of a {}-element storage",
                    t.storage_offset, t.shape, t.strides, t.storage.numel
                ),
            ));
        }
        let numel = usize::try_from(numel).map_err(|_| self.tensor_err(t, "too large"))?;
        let mut out = Vec::with_capacity(numel);
        let nd = t.shape.len();
        let mut idx = vec![0u64; nd];
        let mut at = t.storage_offset;
        for _ in 0..numel {
            out.push(at as usize);
            // increment the multi-index, last axis fastest
            // Wrapping arithmetic: every index actually used is < storage numel (checked above);
            // the transient value after the last element may exceed it.
            for d in (0..nd).rev() {
                idx[d] += 1;
                at = at.wrapping_add(t.strides[d]);
                if idx[d] < t.shape[d] {
                    break;
                }
                at = at.wrapping_sub(t.strides[d].wrapping_mul(t.shape[d]));
                idx[d] = 0;
            }
        }
        Ok(out)
    }

    /// Whether `t` is a C-contiguous view (fast path).
    fn contiguous(t: &TensorRef) -> bool {
        let mut expect = 1u64;
        for (d, s) in t.shape.iter().zip(&t.strides).rev() {
            if *d != 1 && *s != expect {
                return false;
            }
            expect = expect.saturating_mul(*d);
        }
        true
    }

    /// Gathers `t` as f32 values (C order). Float dtypes only.
    pub fn tensor_f32(&self, t: &TensorRef) -> Result<Vec<f32>, CheckpointError> {
        self.gather(t, |b, dtype| match dtype {
            StorageDType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageDType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageDType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            // F64: the only remaining float dtype (checked in gather)
            _ => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        })
    }

    /// Gathers `t` rounded to f16 as torch's `.half()` does (C order). Float dtypes only.
    pub fn tensor_f16(&self, t: &TensorRef) -> Result<Vec<f16>, CheckpointError> {
        self.gather(t, |b, dtype| match dtype {
            StorageDType::F16 => f16::from_le_bytes([b[0], b[1]]),
            StorageDType::F32 => f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            StorageDType::BF16 => f16::from_f32(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            _ => f16::from_f32(
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            ),
        })
    }

    fn gather<T>(
        &self,
        t: &TensorRef,
        conv: impl Fn(&[u8], StorageDType) -> T,
    ) -> Result<Vec<T>, CheckpointError> {
        let dtype = t.storage.dtype;
        if !matches!(
            dtype,
            StorageDType::F32 | StorageDType::F16 | StorageDType::BF16 | StorageDType::F64
        ) {
            return Err(self.tensor_err(
                t,
                format!("dtype {} is not a floating-point type", dtype.torch_name()),
            ));
        }
        if t.shape.len() != t.strides.len() {
            return Err(self.tensor_err(t, "shape and strides differ in length"));
        }
        let bytes = self.storage_bytes(t)?;
        let s = dtype.size();
        if Self::contiguous(t) {
            let numel = t
                .numel()
                .ok_or_else(|| self.tensor_err(t, "shape overflows"))?;
            let start = t.storage_offset.checked_mul(s as u64);
            let end = t
                .storage_offset
                .checked_add(numel)
                .and_then(|e| e.checked_mul(s as u64));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(self.tensor_err(t, "offset overflows"));
            };
            let slice = bytes.get(start as usize..end as usize).ok_or_else(|| {
                self.tensor_err(
                    t,
                    format!(
                        "view [{}, +{numel}) outside the {}-element storage",
                        t.storage_offset, t.storage.numel
                    ),
                )
            })?;
            return Ok(slice.chunks_exact(s).map(|b| conv(b, dtype)).collect());
        }
        let idx = self.element_indices(t)?;
        Ok(idx
            .into_iter()
            .map(|i| conv(&bytes[i * s..(i + 1) * s], dtype))
            .collect())
    }
}
