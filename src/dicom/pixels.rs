//! Pixel data → Hounsfield units.
//!
//! The codec (native, deflate, RLE, JPEG baseline/lossless, JPEG 2000) is dicom-pixeldata's;
//! everything after the codec is ours: stored values are read with BitsAllocated, BitsStored
//! and PixelRepresentation (two's-complement sign extension from BitsStored), then mapped by the
//! frame's modality transform (Rescale Slope/Intercept, including values stored with VR UN, or a
//! Modality LUT Sequence). This is pydicom's `apply_modality_lut(ds.pixel_array, ds)`.
//!
//! Refused with a typed error: JPEG-LS (no codec is built in: the C++ CharLS library would need
//! an extra system build step), 1-bit and colour data, 32-bit big-endian data; 12-bit JPEG
//! Extended and 32-bit RLE fail inside dicom-rs with a typed decode error.
//! Decoding runs under `catch_unwind`: a codec that panics on a corrupt file yields
//! [`DicomError::DecoderPanic`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_pixeldata::PixelDecoder;

use super::error::panic_message;
use super::header::InstanceHeader;
use super::DicomError;

/// Decoded frames of one file, in HU. `hu.len() == frames * rows * cols`; frame-major, then
/// row-major (index `i` along a row fastest).
#[derive(Debug, Clone)]
pub struct DecodedFrames {
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    pub hu: Vec<f32>,
    /// Stored values equal to PixelPaddingValue (or within its range), per voxel.
    pub padding: Option<Vec<bool>>,
}

/// Transfer syntaxes refused before decoding, with the reason.
pub fn refused_transfer_syntax(uid: &str) -> Option<(&'static str, &'static str)> {
    match uid {
        "1.2.840.10008.1.2.4.80" => Some((
            "JPEG-LS Lossless",
            "JPEG-LS is not supported: no JPEG-LS decoder is built in",
        )),
        "1.2.840.10008.1.2.4.81" => Some((
            "JPEG-LS Near-Lossless",
            "JPEG-LS is not supported: no JPEG-LS decoder is built in",
        )),
        _ => None,
    }
}

/// Whether the transfer syntax is lossy (values compared with a tolerance, not exactly).
pub fn is_lossy(uid: &str) -> bool {
    matches!(
        uid,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.203"
    )
}

/// Decodes every frame of the file at `path` (read whole) into HU.
pub fn decode_file(path: &Path, header: &InstanceHeader) -> Result<DecodedFrames, DicomError> {
    if let Some((name, why)) = refused_transfer_syntax(&header.transfer_syntax) {
        return Err(DicomError::UnsupportedTransferSyntax {
            path: path.to_path_buf(),
            uid: header.transfer_syntax.clone(),
            name: name.to_string(),
            why: why.to_string(),
        });
    }
    let px = header
        .pixels
        .as_ref()
        .ok_or_else(|| DicomError::MissingAttribute {
            path: path.to_path_buf(),
            attribute: "Rows/Columns/BitsAllocated",
        })?;
    if px.samples_per_pixel != 1 || !px.photometric.starts_with("MONOCHROME") {
        return Err(DicomError::UnsupportedPixels {
            path: path.to_path_buf(),
            why: format!(
                "{} with {} samples per pixel is not greyscale",
                px.photometric, px.samples_per_pixel
            ),
        });
    }
    if !matches!(px.bits_allocated, 8 | 16 | 32)
        || px.bits_stored == 0
        || px.bits_stored > px.bits_allocated
    {
        return Err(DicomError::UnsupportedPixels {
            path: path.to_path_buf(),
            why: format!(
                "BitsAllocated {} / BitsStored {}",
                px.bits_allocated, px.bits_stored
            ),
        });
    }
    if px.bits_allocated == 32 && header.transfer_syntax == "1.2.840.10008.1.2.2" {
        return Err(DicomError::UnsupportedPixels {
            path: path.to_path_buf(),
            why: "32-bit pixel data in Explicit VR Big Endian (dicom-rs swaps it as 16-bit words)"
                .into(),
        });
    }
    let raw = decode_raw(path)?;
    let rows = px.rows as usize;
    let cols = px.cols as usize;
    let frames = px.number_of_frames as usize;
    let bytes_per = px.bits_allocated as usize / 8;
    let per_frame = rows * cols;
    let need = per_frame * frames * bytes_per;
    if raw.len() < need {
        return Err(DicomError::PixelDataLength {
            path: path.to_path_buf(),
            need,
            got: raw.len(),
        });
    }
    let stored = stored_values(&raw[..need], px.bits_allocated, px.bits_stored, px.signed);
    let mut hu = Vec::with_capacity(stored.len());
    for f in 0..frames {
        let t = header
            .frames
            .get(f)
            .map(|g| &g.transform)
            .unwrap_or(&header.modality_transform);
        hu.extend(
            stored[f * per_frame..(f + 1) * per_frame]
                .iter()
                .map(|&s| t.apply(s as f64) as f32),
        );
    }
    let padding = px.padding_value.map(|pad| {
        let (lo, hi) = match px.padding_range_limit {
            Some(lim) => (pad.min(lim), pad.max(lim)),
            None => (pad, pad),
        };
        stored
            .iter()
            .map(|&s| (s as f64) >= lo && (s as f64) <= hi)
            .collect()
    });
    Ok(DecodedFrames {
        rows,
        cols,
        frames,
        hu,
        padding,
    })
}

/// Parses and decodes any greyscale file (not only CT): the parity tests' entry point.
pub fn decode_path(path: &Path) -> Result<DecodedFrames, DicomError> {
    let header = super::scan::parse_file(path, false)?;
    if !header.has_pixel_data {
        return Err(DicomError::MissingAttribute {
            path: path.to_path_buf(),
            attribute: "PixelData",
        });
    }
    decode_file(path, &header)
}

/// Opens the whole file and runs the codec under `catch_unwind`; native-form bytes.
fn decode_raw(path: &Path) -> Result<Vec<u8>, DicomError> {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>, DicomError> {
        let obj = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Auto)
            .open_file(path)
            .map_err(|e| DicomError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let decoded = obj.decode_pixel_data().map_err(|e| DicomError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(decoded.into_data())
    }));
    match result {
        Ok(r) => r,
        Err(payload) => Err(DicomError::DecoderPanic {
            path: path.to_path_buf(),
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// Little-endian samples → stored values, sign-extended from `bits_stored` when signed, masked
/// to `bits_stored` when unsigned.
pub fn stored_values(raw: &[u8], bits_allocated: u16, bits_stored: u16, signed: bool) -> Vec<i64> {
    let shift = 64 - bits_stored as u32;
    let fix = |v: u64| -> i64 {
        if signed {
            ((v << shift) as i64) >> shift
        } else {
            ((v << shift) >> shift) as i64
        }
    };
    match bits_allocated {
        8 => raw.iter().map(|&b| fix(b as u64)).collect(),
        16 => raw
            .chunks_exact(2)
            .map(|c| fix(u16::from_le_bytes([c[0], c[1]]) as u64))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| fix(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::header::ModalityTransform;

    #[test]
    fn sign_extension_from_bits_stored() {
        // 12-bit two's complement -1 = 0xFFF stored in 16 bits.
        assert_eq!(stored_values(&[0xFF, 0x0F], 16, 12, true), vec![-1]);
        assert_eq!(stored_values(&[0xFF, 0x0F], 16, 12, false), vec![4095]);
        // High garbage bits above BitsStored are ignored.
        assert_eq!(stored_values(&[0x01, 0xF0], 16, 12, false), vec![1]);
        assert_eq!(stored_values(&[0x00, 0x80], 16, 16, true), vec![-32768]);
        assert_eq!(stored_values(&[0x80], 8, 8, true), vec![-128]);
    }

    #[test]
    fn lut_clamps_like_pydicom() {
        let t = ModalityTransform::Lut {
            first_mapped: 10,
            data: vec![100.0, 200.0, 300.0],
        };
        assert_eq!(t.apply(5.0), 100.0);
        assert_eq!(t.apply(11.0), 200.0);
        assert_eq!(t.apply(99.0), 300.0);
    }
}
