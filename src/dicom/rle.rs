//! RLE Lossless encoder (transfer syntax 1.2.840.10008.1.2.5, DICOM PS3.5 Annex G).
//!
//! One frame becomes one fragment: a 64-byte header (number of segments, then up to 15 segment
//! offsets, all little-endian `u32`, unused offsets zero) followed by one segment per byte plane,
//! most significant byte first. Each segment is the PackBits encoding of its plane, row by row:
//! no run crosses a row boundary (G.3.1), the no-op header byte −128 is never written, and a
//! segment of odd length is padded with one zero byte. Only `SamplesPerPixel` = 1 is handled
//! (nephrod writes greyscale CT). Decoding is dicom-rs's; the tests round-trip through it.

/// Bytes of the RLE header.
pub const HEADER_LEN: usize = 64;
/// Most segments an RLE header can describe.
pub const MAX_SEGMENTS: usize = 15;
/// Longest literal or replicate run of one PackBits packet.
const MAX_RUN: usize = 128;

/// Why a frame could not be RLE-encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RleError {
    #[error("empty frame ({rows} rows × {cols} columns)")]
    EmptyFrame { rows: usize, cols: usize },
    #[error(
        "{got} bytes of pixel data for {rows}×{cols} samples of {bytes_per_sample} byte(s) \
         ({need} needed)"
    )]
    Length {
        rows: usize,
        cols: usize,
        bytes_per_sample: usize,
        need: usize,
        got: usize,
    },
    #[error(
        "{segments} byte planes need more than the {MAX_SEGMENTS} segments an RLE header holds"
    )]
    TooManySegments { segments: usize },
    #[error("encoded frame of {bytes} bytes does not fit the 32-bit offsets of the RLE header")]
    TooLarge { bytes: usize },
}

impl RleError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            RleError::EmptyFrame { .. } => "rle_empty_frame",
            RleError::Length { .. } => "rle_length",
            RleError::TooManySegments { .. } => "rle_too_many_segments",
            RleError::TooLarge { .. } => "rle_too_large",
        }
    }
}

/// Encodes one greyscale frame. `pixels_le` holds `rows × cols` samples of `bytes_per_sample`
/// bytes each, little-endian, row-major (the native DICOM layout).
pub fn encode_frame(
    pixels_le: &[u8],
    rows: usize,
    cols: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, RleError> {
    if rows == 0 || cols == 0 || bytes_per_sample == 0 {
        return Err(RleError::EmptyFrame { rows, cols });
    }
    if bytes_per_sample > MAX_SEGMENTS {
        return Err(RleError::TooManySegments {
            segments: bytes_per_sample,
        });
    }
    let need = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(bytes_per_sample));
    if need != Some(pixels_le.len()) {
        return Err(RleError::Length {
            rows,
            cols,
            bytes_per_sample,
            need: need.unwrap_or(usize::MAX),
            got: pixels_le.len(),
        });
    }
    let mut segments: Vec<Vec<u8>> = Vec::with_capacity(bytes_per_sample);
    let mut plane_row = vec![0u8; cols];
    // Most significant byte first: byte `bytes_per_sample − 1` of each little-endian sample.
    for byte in (0..bytes_per_sample).rev() {
        let mut seg = Vec::new();
        for row in pixels_le.chunks_exact(cols * bytes_per_sample) {
            for (dst, sample) in plane_row.iter_mut().zip(row.chunks_exact(bytes_per_sample)) {
                *dst = sample[byte];
            }
            pack_row(&plane_row, &mut seg);
        }
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        segments.push(seg);
    }
    let total = HEADER_LEN + segments.iter().map(Vec::len).sum::<usize>();
    if u32::try_from(total).is_err() {
        return Err(RleError::TooLarge { bytes: total });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    let mut offset = HEADER_LEN;
    for s in 0..MAX_SEGMENTS {
        let v = match segments.get(s) {
            Some(seg) => {
                let here = offset;
                offset += seg.len();
                here as u32
            }
            None => 0,
        };
        out.extend_from_slice(&v.to_le_bytes());
    }
    for seg in &segments {
        out.extend_from_slice(seg);
    }
    Ok(out)
}

/// Encodes one frame of signed 16-bit stored values (`rows × cols`, row-major).
pub fn encode_frame_i16(values: &[i16], rows: usize, cols: usize) -> Result<Vec<u8>, RleError> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode_frame(&bytes, rows, cols, 2)
}

/// Appends the PackBits encoding of one row: replicate runs of 3–128 equal bytes
/// (header `1 − n`), everything else in literal runs of 1–128 bytes (header `n − 1`).
fn pack_row(row: &[u8], out: &mut Vec<u8>) {
    let n = row.len();
    let mut literal_start = 0;
    let mut i = 0;
    while i < n {
        let mut run = 1;
        while i + run < n && run < MAX_RUN && row[i + run] == row[i] {
            run += 1;
        }
        if run >= 3 {
            push_literal(&row[literal_start..i], out);
            // 1 − run as a two's-complement byte: 254 (run 3) … 129 (run 128).
            out.push((257 - run) as u8);
            out.push(row[i]);
            i += run;
            literal_start = i;
        } else {
            i += run;
        }
    }
    push_literal(&row[literal_start..n], out);
}

fn push_literal(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(MAX_RUN) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PackBits-decodes one segment, checking that every row ends on a packet boundary.
    fn unpack_rows(seg: &[u8], rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows * cols);
        let mut pos = 0;
        for r in 0..rows {
            let row_start = out.len();
            while out.len() - row_start < cols {
                let h = seg[pos] as i8;
                pos += 1;
                assert_ne!(h, -128, "no-op header written");
                if h >= 0 {
                    let len = h as usize + 1;
                    out.extend_from_slice(&seg[pos..pos + len]);
                    pos += len;
                } else {
                    let len = 1 - h as isize;
                    out.extend(std::iter::repeat_n(seg[pos], len as usize));
                    pos += 1;
                }
            }
            assert_eq!(
                out.len() - row_start,
                cols,
                "row {r} crosses a row boundary"
            );
        }
        assert!(seg.len() - pos <= 1, "trailing bytes beyond the padding");
        out
    }

    /// Reference decoder over the whole fragment (header + MSB-first planes).
    fn decode(frag: &[u8], rows: usize, cols: usize, bps: usize) -> Vec<u8> {
        assert_eq!(frag.len() % 2, 0);
        let word = |i: usize| u32::from_le_bytes(frag[4 * i..4 * i + 4].try_into().unwrap());
        let nseg = word(0) as usize;
        assert_eq!(nseg, bps);
        let mut offsets: Vec<usize> = (1..=nseg).map(|i| word(i) as usize).collect();
        assert_eq!(offsets[0], HEADER_LEN);
        for i in nseg + 1..=MAX_SEGMENTS {
            assert_eq!(word(i), 0, "unused offset {i} not zero");
        }
        offsets.push(frag.len());
        let mut px = vec![0u8; rows * cols * bps];
        for s in 0..nseg {
            let seg = &frag[offsets[s]..offsets[s + 1]];
            assert_eq!(seg.len() % 2, 0, "segment {s} has odd length");
            let plane = unpack_rows(seg, rows, cols);
            let byte = bps - 1 - s;
            for (p, v) in plane.into_iter().enumerate() {
                px[p * bps + byte] = v;
            }
        }
        px
    }

    /// Writes `values` as an RLE Lossless DICOM file and decodes it with nephrod's reader
    /// (dicom-rs's RLE decoder).
    fn dicom_rs_round_trip(values: &[i16], rows: usize, cols: usize) -> Vec<i16> {
        let frag = encode_frame_i16(values, rows, cols).unwrap();
        crate::dicom::writer::test_support::decode_one_fragment(
            crate::dicom::writer::RLE_LOSSLESS,
            frag,
            rows,
            cols,
        )
    }

    fn check(values: &[i16], rows: usize, cols: usize) {
        let frag = encode_frame_i16(values, rows, cols).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&frag, rows, cols, 2), bytes, "reference decoder");
        assert_eq!(dicom_rs_round_trip(values, rows, cols), values, "dicom-rs");
    }

    #[test]
    fn all_equal_rows_become_replicate_runs() {
        let (rows, cols) = (3, 300);
        let values = vec![-1024i16; rows * cols];
        check(&values, rows, cols);
        // 300 = 128 + 128 + 44 per row and plane: 3 packets of 2 bytes.
        let frag = encode_frame_i16(&values, rows, cols).unwrap();
        assert_eq!(frag.len(), HEADER_LEN + 2 * rows * 3 * 2);
    }

    #[test]
    fn alternating_values_become_literal_runs() {
        let (rows, cols) = (4, 257);
        let values: Vec<i16> = (0..rows * cols)
            .map(|p| if p % 2 == 0 { 3000 } else { -1024 })
            .collect();
        check(&values, rows, cols);
    }

    #[test]
    fn single_pixel_and_single_row_and_column() {
        check(&[-1], 1, 1);
        check(&[i16::MIN], 1, 1);
        check(&[7, 7], 1, 2);
        check(&[1, 2, 3], 3, 1);
        check(&[5, 5, 5, 5, 9], 1, 5);
    }

    #[test]
    fn rows_longer_than_128_with_mixed_runs() {
        let (rows, cols) = (5, 333);
        let mut state = 0x2545_F491u32;
        let values: Vec<i16> = (0..rows * cols)
            .map(|p| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match (p / 37) % 4 {
                    0 => -1024,
                    1 => (state % 4025) as i16 - 1024,
                    2 => ((p / 2) % 3) as i16,
                    _ => 40,
                }
            })
            .collect();
        check(&values, rows, cols);
    }

    #[test]
    fn runs_of_exactly_two_and_at_row_ends() {
        // Equal pixels straddling a row boundary must still be split at the boundary.
        let values: Vec<i16> = vec![1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4];
        check(&values, 2, 6);
        check(&values, 3, 4);
    }

    #[test]
    fn odd_segments_are_padded() {
        // Two pixels: each plane is one 3-byte literal packet, padded to 4.
        let frag = encode_frame_i16(&[1, 2], 1, 2).unwrap();
        assert_eq!(frag.len(), HEADER_LEN + 2 * 4);
        // Constant MSB plane: one 2-byte replicate packet, no padding; LSB plane 4 bytes.
        let frag = encode_frame_i16(&[1, 2, 3], 1, 3).unwrap();
        assert_eq!(frag.len(), HEADER_LEN + 2 + 4);
        // One plane of 3 distinct bytes: a 4-byte literal packet.
        let frag = encode_frame(&[1, 2, 3], 1, 3, 1).unwrap();
        assert_eq!(frag.len(), HEADER_LEN + 4);
        assert_eq!(decode(&frag, 1, 3, 1), vec![1, 2, 3]);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(
            encode_frame(&[0; 3], 2, 2, 1),
            Err(RleError::Length {
                rows: 2,
                cols: 2,
                bytes_per_sample: 1,
                need: 4,
                got: 3
            })
        );
        assert!(matches!(
            encode_frame(&[], 0, 4, 2),
            Err(RleError::EmptyFrame { .. })
        ));
        assert!(matches!(
            encode_frame(&[0; 16], 1, 1, 16),
            Err(RleError::TooManySegments { segments: 16 })
        ));
    }
}
