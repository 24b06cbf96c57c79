//! Errors of the DICOM layer: each variant names the step that failed and carries the path.

use std::path::PathBuf;

/// Why one file could not be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DicomError {
    #[error("{path}: cannot be read as DICOM: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: the parser panicked: {message}")]
    ParserPanic { path: PathBuf, message: String },
    #[error("{path}: missing or invalid {attribute}")]
    MissingAttribute {
        path: PathBuf,
        attribute: &'static str,
    },
    #[error("{path}: unsupported transfer syntax {uid} ({name}): {why}")]
    UnsupportedTransferSyntax {
        path: PathBuf,
        uid: String,
        name: String,
        why: String,
    },
    #[error("{path}: unsupported pixel format: {why}")]
    UnsupportedPixels { path: PathBuf, why: String },
    #[error("{path}: pixel data could not be decoded: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the pixel decoder panicked: {message}")]
    DecoderPanic { path: PathBuf, message: String },
    #[error("{path}: pixel data holds {got} bytes, {need} needed")]
    PixelDataLength {
        path: PathBuf,
        need: usize,
        got: usize,
    },
}

impl DicomError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            DicomError::Parse { .. } => "parse",
            DicomError::ParserPanic { .. } => "parser_panic",
            DicomError::MissingAttribute { .. } => "missing_attribute",
            DicomError::UnsupportedTransferSyntax { .. } => "unsupported_transfer_syntax",
            DicomError::UnsupportedPixels { .. } => "unsupported_pixels",
            DicomError::Decode { .. } => "decode",
            DicomError::DecoderPanic { .. } => "decoder_panic",
            DicomError::PixelDataLength { .. } => "pixel_data_length",
        }
    }
}

/// Why a whole series could not be assembled into a volume.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SeriesError {
    #[error("series {series}: {reason}")]
    Refused { series: String, reason: String },
    #[error("series {series}: {source}")]
    File {
        series: String,
        #[source]
        source: DicomError,
    },
}

impl SeriesError {
    pub fn kind(&self) -> &'static str {
        match self {
            SeriesError::Refused { .. } => "series_refused",
            SeriesError::File { source, .. } => source.kind(),
        }
    }
}

/// Text of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
