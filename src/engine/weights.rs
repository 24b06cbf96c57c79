//! Model weights in the safetensors format, memory-mapped (never read whole into the heap).
//!
//! # Format (safetensors 0.4)
//! `u64` little-endian header length `N`, then `N` bytes of JSON — `{name: {"dtype", "shape",
//! "data_offsets": [begin, end]}, "__metadata__": {string: string}}` — then the data area;
//! offsets are relative to the start of the data area. nephrod reads F16, BF16 and F32 tensors,
//! little-endian, C order.
//!
//! # Guarantees
//! [`WeightFile::open`] maps the file read-only and validates the header before any tensor is
//! touched: JSON well-formed, every dtype known, `shape` product × element size = byte length,
//! every range inside the data area, ranges non-overlapping and covering the data area exactly
//! (as the format requires). Bad files give a typed [`WeightsError`] naming the file and the
//! tensor, never a panic. [`WeightFile::verify`] checks names, shapes, dtypes and the file's
//! SHA-256 against a [`WeightsManifest`] (recorded in a model bundle). Tensors are converted to
//! f32 once, at load, by [`WeightFile::tensor_f32`]; [`WeightFile::raw`] is a zero-copy view.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest header accepted (the format's reference implementation uses 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    F16,
    BF16,
    F32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    fn parse(s: &str) -> Option<DType> {
        match s {
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            "F32" => Some(DType::F32),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub range: Range<usize>,
}

/// What a bundle records about its weights file, checked by [`WeightFile::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsManifest {
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    pub tensors: Vec<TensorSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Errors opening, validating or reading weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid safetensors header: {message}")]
    Header { path: PathBuf, message: String },
    #[error("{path}: tensor {name}: {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: no tensor named {name}")]
    Missing { path: PathBuf, name: String },
    #[error("{path}: does not match its manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl WeightsError {
    pub fn kind(&self) -> &'static str {
        match self {
            WeightsError::Open { .. } => "open",
            WeightsError::Header { .. } => "header",
            WeightsError::Tensor { .. } => "tensor",
            WeightsError::Missing { .. } => "missing",
            WeightsError::Manifest { .. } => "manifest",
            WeightsError::Write { .. } => "write",
        }
    }
}

/// A memory-mapped, validated safetensors file.
#[derive(Debug)]
pub struct WeightFile {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl WeightFile {
    /// Maps `path` read-only and validates its header (see the module doc).
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let file = File::open(path).map_err(|source| WeightsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only and private to this process; nephrod's model store
        // never rewrites an installed weights file in place (installs are new files renamed
        // into place), so the mapped bytes do not change while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| WeightsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let (tensors, metadata) = parse_header(&map).map_err(|e| e.at(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            tensors,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names and entries, sorted by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The header's `__metadata__` (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, WeightsError> {
        self.tensors.get(name).ok_or_else(|| WeightsError::Missing {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// The stored bytes of one tensor (zero-copy view of the map).
    pub fn raw(&self, name: &str) -> Result<(&TensorInfo, &[u8]), WeightsError> {
        let info = self.info(name)?;
        Ok((info, &self.map[info.range.clone()]))
    }

    /// One tensor converted to f32 (F16 and BF16 widened exactly).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), WeightsError> {
        let (info, bytes) = self.raw(name)?;
        let values = match info.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        Ok((info.shape.clone(), values))
    }

    /// Lower-case hex SHA-256 of the whole file (reads every mapped byte once).
    pub fn sha256_hex(&self) -> String {
        hex(&Sha256::digest(&self.map[..]))
    }

    /// Checks the file against `manifest`: same tensor names, dtypes and shapes, same SHA-256.
    pub fn verify(&self, manifest: &WeightsManifest) -> Result<(), WeightsError> {
        let err = |message: String| WeightsError::Manifest {
            path: self.path.clone(),
            message,
        };
        let expected: BTreeMap<&str, &TensorSpec> = manifest
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        for (name, spec) in &expected {
            let Some(info) = self.tensors.get(*name) else {
                return Err(err(format!("tensor {name} is missing")));
            };
            if info.dtype != spec.dtype || info.shape != spec.shape {
                return Err(err(format!(
                    "tensor {name} is {} {:?}, the manifest says {} {:?}",
                    info.dtype.as_str(),
                    info.shape,
                    spec.dtype.as_str(),
                    spec.shape
                )));
            }
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !expected.contains_key(k.as_str()))
        {
            return Err(err(format!("unexpected tensor {extra}")));
        }
        let got = self.sha256_hex();
        if !got.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(err(format!(
                "SHA-256 {got} differs from the manifest's {}",
                manifest.sha256
            )));
        }
        Ok(())
    }

    /// The manifest describing this file as it is.
    pub fn manifest(&self) -> WeightsManifest {
        WeightsManifest {
            sha256: self.sha256_hex(),
            tensors: self
                .tensors
                .iter()
                .map(|(name, i)| TensorSpec {
                    name: name.clone(),
                    dtype: i.dtype,
                    shape: i.shape.clone(),
                })
                .collect(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A header problem before the path is known.
struct HeaderProblem {
    tensor: Option<String>,
    message: String,
}

impl HeaderProblem {
    fn new(message: impl Into<String>) -> Self {
        Self {
            tensor: None,
            message: message.into(),
        }
    }
    fn tensor(name: &str, message: impl Into<String>) -> Self {
        Self {
            tensor: Some(name.to_string()),
            message: message.into(),
        }
    }
    fn at(self, path: &Path) -> WeightsError {
        match self.tensor {
            Some(name) => WeightsError::Tensor {
                path: path.to_path_buf(),
                name,
                message: self.message,
            },
            None => WeightsError::Header {
                path: path.to_path_buf(),
                message: self.message,
            },
        }
    }
}

type Parsed = (BTreeMap<String, TensorInfo>, BTreeMap<String, String>);

fn parse_header(bytes: &[u8]) -> Result<Parsed, HeaderProblem> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(HeaderProblem::new(
            "file shorter than the 8-byte header length",
        ));
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(len8);
    if header_len > MAX_HEADER_BYTES {
        return Err(HeaderProblem::new(format!(
            "header length {header_len} is implausible"
        )));
    }
    let data_start = 8 + header_len as usize;
    let Some(header) = bytes.get(8..data_start) else {
        return Err(HeaderProblem::new(format!(
            "header length {header_len} runs past the end of the file ({} bytes)",
            bytes.len()
        )));
    };
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| HeaderProblem::new(format!("header is not a JSON object: {e}")))?;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in json {
        if name == "__metadata__" {
            let m: BTreeMap<String, String> = serde_json::from_value(value).map_err(|e| {
                HeaderProblem::new(format!("__metadata__ must map strings to strings: {e}"))
            })?;
            metadata = m;
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| HeaderProblem::tensor(&name, format!("malformed entry: {e}")))?;
        let dtype = DType::parse(&raw.dtype).ok_or_else(|| {
            HeaderProblem::tensor(&name, format!("unsupported dtype {}", raw.dtype))
        })?;
        let [begin, end] = raw.data_offsets;
        if begin > end || end > data_len {
            return Err(HeaderProblem::tensor(
                &name,
                format!("data offsets [{begin}, {end}] outside the {data_len}-byte data area"),
            ));
        }
        let elements = raw
            .shape
            .iter()
            .try_fold(1usize, |a, b| a.checked_mul(*b))
            .ok_or_else(|| HeaderProblem::tensor(&name, "shape overflows"))?;
        if elements.checked_mul(dtype.size()) != Some(end - begin) {
            return Err(HeaderProblem::tensor(
                &name,
                format!(
                    "shape {:?} of {} needs {} bytes, offsets give {}",
                    raw.shape,
                    dtype.as_str(),
                    elements.saturating_mul(dtype.size()),
                    end - begin
                ),
            ));
        }
        tensors.insert(
            name,
            TensorInfo {
                dtype,
                shape: raw.shape,
                range: data_start + begin..data_start + end,
            },
        );
    }
    // Ranges must tile the data area: sorted by start, each begins where the last ended.
    let mut ranges: Vec<(&String, &Range<usize>)> =
        tensors.iter().map(|(n, i)| (n, &i.range)).collect();
    ranges.sort_by_key(|(_, r)| (r.start, r.end));
    let mut cursor = data_start;
    for (name, r) in ranges {
        if r.start != cursor {
            return Err(HeaderProblem::tensor(
                name,
                if r.start < cursor {
                    "overlaps another tensor".to_string()
                } else {
                    "leaves a gap before it in the data area".to_string()
                },
            ));
        }
        cursor = r.end;
    }
    if cursor != bytes.len() {
        return Err(HeaderProblem::new(format!(
            "{} trailing bytes after the last tensor",
            bytes.len() - cursor
        )));
    }
    Ok((tensors, metadata))
}

/// A tensor to write: name, dtype, shape and its little-endian bytes.
pub struct TensorToWrite<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Writes a safetensors file (tensors in the order given; header padded with spaces to a
/// multiple of 8 bytes as the reference writer does). Used by importers and tests.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorToWrite<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".to_string(),
            serde_json::to_value(metadata).unwrap_or_default(),
        );
    }
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.bytes.len();
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": t.dtype.as_str(), "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let werr = |source| WeightsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::create(path).map_err(werr)?;
    f.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    for t in tensors {
        f.write_all(t.bytes).map_err(werr)?;
    }
    f.sync_all().map_err(werr)
}

/// f32 values as little-endian f16 bytes (round to nearest even).
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

/// f32 values as little-endian bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
