//! JPEG 2000 lossless encoder for one greyscale frame, through OpenJPEG's C API (openjpeg-sys,
//! the same OpenJPEG build that dicom-pixeldata decodes with).
//!
//! Output: a raw J2K codestream (SOC … EOC, no JP2 boxes), as transfer syntax
//! 1.2.840.10008.1.2.4.90 requires: one component, reversible 5/3 wavelet, one quality layer at
//! rate 0 (lossless), no multi-component transform, up to 6 resolution levels (fewer for frames
//! narrower than 32 pixels). The codestream's precision and signedness are the caller's
//! BitsStored and PixelRepresentation, so decoders need no conversion.
//!
//! This is the only module of nephrod with `unsafe` code: OpenJPEG objects are owned by small
//! guards that free them on every path, the output stream writes into a Rust `Vec` through
//! callbacks that cannot panic, and OpenJPEG's error messages are collected into the typed error.

use std::ffi::{c_char, c_void, CStr};

use openjpeg_sys as opj;

/// Why a frame could not be JPEG 2000-encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum J2kError {
    #[error("empty frame ({rows} rows × {cols} columns)")]
    EmptyFrame { rows: usize, cols: usize },
    #[error("{got} samples for a frame of {rows}×{cols}")]
    Length {
        rows: usize,
        cols: usize,
        got: usize,
    },
    #[error("precision of {bits} bits is outside 1–16")]
    Precision { bits: u32 },
    #[error("sample {value} at index {index} does not fit {bits} {signedness} bits")]
    SampleRange {
        index: usize,
        value: i32,
        bits: u32,
        signedness: &'static str,
    },
    #[error("frame of {rows}×{cols} is too large for OpenJPEG")]
    TooLarge { rows: usize, cols: usize },
    #[error("OpenJPEG failed to {step}: {message}")]
    OpenJpeg { step: &'static str, message: String },
}

impl J2kError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            J2kError::EmptyFrame { .. } => "j2k_empty_frame",
            J2kError::Length { .. } => "j2k_length",
            J2kError::Precision { .. } => "j2k_precision",
            J2kError::SampleRange { .. } => "j2k_sample_range",
            J2kError::TooLarge { .. } => "j2k_too_large",
            J2kError::OpenJpeg { .. } => "j2k_openjpeg",
        }
    }
}

/// Most resolution levels used (OpenJPEG's default); fewer when the frame is small.
const MAX_RESOLUTIONS: u32 = 6;

/// Resolution levels allowed for a `cols × rows` frame: the smallest side must hold
/// `2^(levels − 1)` samples.
fn resolutions(rows: u32, cols: u32) -> u32 {
    let side = rows.min(cols).max(1);
    (side.ilog2() + 1).min(MAX_RESOLUTIONS)
}

/// Encodes `samples` (`rows × cols`, row-major) as a lossless J2K codestream of `bits`
/// precision, signed when `signed`. Every sample must fit that range.
pub fn encode_lossless(
    samples: &[i32],
    rows: usize,
    cols: usize,
    bits: u32,
    signed: bool,
) -> Result<Vec<u8>, J2kError> {
    if rows == 0 || cols == 0 {
        return Err(J2kError::EmptyFrame { rows, cols });
    }
    if !(1..=16).contains(&bits) {
        return Err(J2kError::Precision { bits });
    }
    if rows.checked_mul(cols) != Some(samples.len()) {
        return Err(J2kError::Length {
            rows,
            cols,
            got: samples.len(),
        });
    }
    let (lo, hi) = if signed {
        (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1)
    } else {
        (0, (1i32 << bits) - 1)
    };
    if let Some((index, &value)) = samples
        .iter()
        .enumerate()
        .find(|(_, v)| !(lo..=hi).contains(*v))
    {
        return Err(J2kError::SampleRange {
            index,
            value,
            bits,
            signedness: if signed { "signed" } else { "unsigned" },
        });
    }
    let (Ok(w), Ok(h)) = (u32::try_from(cols), u32::try_from(rows)) else {
        return Err(J2kError::TooLarge { rows, cols });
    };
    if i32::try_from(w).is_err() || i32::try_from(h).is_err() {
        return Err(J2kError::TooLarge { rows, cols });
    }
    encode_checked(samples, w, h, bits, signed)
}

/// Signed 16-bit stored values → lossless J2K codestream (precision 16, signed).
pub fn encode_i16_lossless(values: &[i16], rows: usize, cols: usize) -> Result<Vec<u8>, J2kError> {
    let samples: Vec<i32> = values.iter().map(|v| i32::from(*v)).collect();
    encode_lossless(&samples, rows, cols, 16, true)
}

/// Owns an `opj_image_t`.
struct Image(*mut opj::opj_image_t);
impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opj_image_create`, is non-null (checked at creation)
        // and is destroyed exactly once, here.
        unsafe { opj::opj_image_destroy(self.0) }
    }
}

/// Owns an OpenJPEG codec.
struct Codec(*mut opj::opj_codec_t);
impl Drop for Codec {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opj_create_compress`, is non-null (checked at
        // creation) and is destroyed exactly once, here.
        unsafe { opj::opj_destroy_codec(self.0) }
    }
}

/// Owns an OpenJPEG stream. Must be dropped before the [`Sink`] it writes into.
struct Stream(*mut opj::opj_stream_t);
impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opj_stream_create`, is non-null (checked at creation)
        // and is destroyed exactly once, here. It has no user-data free function, so the sink
        // stays owned by Rust.
        unsafe { opj::opj_stream_destroy(self.0) }
    }
}

/// In-memory output of a write stream: a buffer and a cursor (OpenJPEG may seek back to patch
/// marker lengths).
#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    pos: usize,
}

/// OpenJPEG write callback: copies `n` bytes at the cursor. Returns `n`, or `usize::MAX`
/// (OpenJPEG's `(OPJ_SIZE_T)-1` error value) on a null pointer or an impossible size.
unsafe extern "C" fn sink_write(buffer: *mut c_void, n: usize, user: *mut c_void) -> usize {
    if buffer.is_null() || user.is_null() {
        return usize::MAX;
    }
    // SAFETY: `user` is the `Sink` registered in `encode_checked`, alive and not otherwise
    // borrowed until the stream is destroyed; OpenJPEG calls back on the encoding thread only.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    // SAFETY: OpenJPEG passes its stream buffer holding `n` initialised bytes.
    let src = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>().cast_const(), n) };
    let Some(end) = sink.pos.checked_add(n) else {
        return usize::MAX;
    };
    if sink.buf.len() < end {
        // Fallible growth: an absurd cursor must not abort the process inside a C callback.
        if sink.buf.try_reserve(end - sink.buf.len()).is_err() {
            return usize::MAX;
        }
        sink.buf.resize(end, 0);
    }
    if let Some(dst) = sink.buf.get_mut(sink.pos..end) {
        dst.copy_from_slice(src);
    }
    sink.pos = end;
    n
}

/// OpenJPEG skip callback: moves the cursor by `n` (may be negative). Returns `n`, or −1.
unsafe extern "C" fn sink_skip(n: i64, user: *mut c_void) -> i64 {
    if user.is_null() {
        return -1;
    }
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match i64::try_from(sink.pos)
        .ok()
        .and_then(|p| p.checked_add(n))
        .and_then(|p| usize::try_from(p).ok())
    {
        Some(p) => {
            sink.pos = p;
            n
        }
        None => -1,
    }
}

/// OpenJPEG seek callback: puts the cursor at absolute offset `n`. Returns OPJ_TRUE/OPJ_FALSE.
unsafe extern "C" fn sink_seek(n: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    if user.is_null() {
        return 0;
    }
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match usize::try_from(n) {
        Ok(p) => {
            sink.pos = p;
            1
        }
        Err(_) => 0,
    }
}

/// OpenJPEG error handler: appends the message to the `String` registered as client data.
unsafe extern "C" fn collect_error(msg: *const c_char, user: *mut c_void) {
    if msg.is_null() || user.is_null() {
        return;
    }
    // SAFETY: `user` is the `String` registered in `encode_checked`, alive until the codec is
    // destroyed and not otherwise borrowed while OpenJPEG runs.
    let out = unsafe { &mut *user.cast::<String>() };
    // SAFETY: OpenJPEG passes a NUL-terminated message.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    if !out.is_empty() {
        out.push_str("; ");
    }
    out.push_str(text.trim_end());
}

/// The FFI part of [`encode_lossless`]; arguments already validated (sizes fit `i32`, samples
/// fit `bits`).
fn encode_checked(
    samples: &[i32],
    w: u32,
    h: u32,
    bits: u32,
    signed: bool,
) -> Result<Vec<u8>, J2kError> {
    let fail = |step: &'static str, messages: &str| J2kError::OpenJpeg {
        step,
        message: if messages.is_empty() {
            "no message".to_string()
        } else {
            messages.to_string()
        },
    };
    // Rust-owned targets of OpenJPEG's callbacks, declared first so that they outlive the
    // image, codec and stream guards below on every return path.
    let mut messages = Box::new(String::new());
    let messages_ptr: *mut String = &mut *messages;
    let mut sink = Box::new(Sink::default());
    let sink_ptr: *mut Sink = &mut *sink;
    let mut component = opj::opj_image_cmptparm_t {
        dx: 1,
        dy: 1,
        w,
        h,
        x0: 0,
        y0: 0,
        prec: bits,
        bpp: bits,
        sgnd: u32::from(signed),
    };
    // SAFETY: `component` is one valid parameter record for the one component requested.
    let raw_image =
        unsafe { opj::opj_image_create(1, &mut component, opj::COLOR_SPACE::OPJ_CLRSPC_GRAY) };
    if raw_image.is_null() {
        return Err(fail("create the image", ""));
    }
    let image = Image(raw_image);
    // SAFETY: `image.0` is a valid image with one component whose `data` buffer holds `w × h`
    // `i32` samples (allocated by `opj_image_create`); `samples.len() == w × h` was checked.
    unsafe {
        let img = &mut *image.0;
        img.x0 = 0;
        img.y0 = 0;
        img.x1 = w;
        img.y1 = h;
        if img.comps.is_null() || (*img.comps).data.is_null() {
            return Err(fail("allocate the image samples", ""));
        }
        let comp = &mut *img.comps;
        std::slice::from_raw_parts_mut(comp.data, samples.len()).copy_from_slice(samples);
    }

    // SAFETY: an all-zero `opj_cparameters_t` is a valid value (integers, null pointers and
    // enums whose zero is a declared variant); OpenJPEG then fills in its defaults.
    let mut params: opj::opj_cparameters_t = unsafe { std::mem::zeroed() };
    // SAFETY: `params` is a valid, writable parameter record.
    unsafe { opj::opj_set_default_encoder_parameters(&mut params) };
    params.tcp_numlayers = 1;
    params.tcp_rates[0] = 0.0; // rate 0 = lossless
    params.cp_disto_alloc = 1;
    params.irreversible = 0; // reversible 5/3 wavelet
    params.tcp_mct = 0;
    params.numresolution = resolutions(h, w) as i32;

    // SAFETY: plain constructor call.
    let raw_codec = unsafe { opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) };
    if raw_codec.is_null() {
        return Err(fail("create the encoder", ""));
    }
    let codec = Codec(raw_codec);
    // SAFETY: `codec.0` is valid; `messages` is boxed (stable address), declared before the
    // codec so it outlives it on every path, and read only between OpenJPEG calls or after the
    // codec is gone.
    let ok = unsafe {
        opj::opj_set_error_handler(codec.0, Some(collect_error), messages_ptr.cast::<c_void>())
    };
    if ok == 0 {
        return Err(fail("install the error handler", ""));
    }
    // SAFETY: `codec.0`, `params` and `image.0` are valid; OpenJPEG copies what it needs.
    if unsafe { opj::opj_setup_encoder(codec.0, &mut params, image.0) } == 0 {
        // SAFETY: no OpenJPEG call is running; the handler wrote through `messages_ptr`.
        return Err(fail("set up the encoder", unsafe { &*messages_ptr }));
    }

    // SAFETY: plain constructor call (an output stream with OpenJPEG's default chunk size).
    let raw_stream = unsafe { opj::opj_stream_create(opj::OPJ_J2K_STREAM_CHUNK_SIZE as usize, 0) };
    if raw_stream.is_null() {
        return Err(fail("create the output stream", ""));
    }
    let stream = Stream(raw_stream);
    // SAFETY: `stream.0` is valid; the callbacks match OpenJPEG's signatures; `sink` is boxed
    // (stable address), declared before the stream so it outlives it on every path, and not
    // touched from Rust until the stream is dropped; no free function, so OpenJPEG never frees
    // it.
    unsafe {
        opj::opj_stream_set_write_function(stream.0, Some(sink_write));
        opj::opj_stream_set_skip_function(stream.0, Some(sink_skip));
        opj::opj_stream_set_seek_function(stream.0, Some(sink_seek));
        opj::opj_stream_set_user_data(stream.0, sink_ptr.cast::<c_void>(), None);
    }
    // SAFETY: codec, image and stream are valid and set up as OpenJPEG requires, in the
    // documented order start → encode → end.
    let steps = unsafe {
        if opj::opj_start_compress(codec.0, image.0, stream.0) == 0 {
            Err("start compressing")
        } else if opj::opj_encode(codec.0, stream.0) == 0 {
            Err("encode")
        } else if opj::opj_end_compress(codec.0, stream.0) == 0 {
            Err("finish the codestream")
        } else {
            Ok(())
        }
    };
    drop(stream);
    drop(codec);
    drop(image);
    // The codec (the only writer of `messages`) and the stream (the only writer of `sink`) are
    // gone: the boxes are exclusively Rust's again.
    if let Err(step) = steps {
        return Err(fail(step, &messages));
    }
    let out = std::mem::take(&mut sink.buf);
    let well_formed = out.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) && out.ends_with(&[0xFF, 0xD9]);
    if !well_formed {
        return Err(fail(
            "produce a codestream",
            "output does not run from SOC/SIZ to EOC",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (width, height, precision, signed) from the SIZ marker segment, and whether the COD
    /// marker segment asks for the reversible 5/3 wavelet.
    fn siz_and_cod(cs: &[u8]) -> (u32, u32, u32, bool, bool) {
        assert_eq!(
            &cs[..4],
            &[0xFF, 0x4F, 0xFF, 0x51],
            "J2K codestream (SOC, SIZ), not JP2"
        );
        let be32 = |o: usize| u32::from_be_bytes(cs[o..o + 4].try_into().unwrap());
        // SIZ: marker at 2, Lsiz 4, Rsiz 6, Xsiz 8, Ysiz 12, XOsiz 16, YOsiz 20, …, Csiz 40.
        let (xsiz, ysiz) = (be32(8) - be32(16), be32(12) - be32(20));
        assert_eq!(u16::from_be_bytes([cs[40], cs[41]]), 1, "one component");
        let ssiz = cs[42];
        let cod = cs
            .windows(2)
            .position(|w| w == [0xFF, 0x52])
            .expect("COD marker");
        // COD: marker, Lcod (2), Scod, SGcod (4), SPcod: levels, cb w, cb h, cb style, wavelet.
        let wavelet = cs[cod + 2 + 2 + 1 + 4 + 4];
        (
            xsiz,
            ysiz,
            (ssiz & 0x7F) as u32 + 1,
            ssiz & 0x80 != 0,
            wavelet == 1,
        )
    }

    /// Decodes through nephrod's reader (dicom-rs → OpenJPEG) in a JPEG 2000 Lossless file.
    fn decode(cs: Vec<u8>, rows: usize, cols: usize) -> Vec<i16> {
        crate::dicom::writer::test_support::decode_one_fragment(
            crate::dicom::writer::JPEG2000_LOSSLESS,
            cs,
            rows,
            cols,
        )
    }

    fn pattern(rows: usize, cols: usize) -> Vec<i16> {
        let mut state = 0x9E37_79B9u32;
        (0..rows * cols)
            .map(|p| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match p % 5 {
                    0 => -1024,
                    1 => 3000,
                    _ => (state % 4025) as i16 - 1024,
                }
            })
            .collect()
    }

    #[test]
    fn lossless_round_trip_signed_16() {
        for (rows, cols) in [(17, 23), (1, 1), (1, 40), (33, 2), (64, 70)] {
            let mut v = pattern(rows, cols);
            v[0] = i16::MIN;
            *v.last_mut().unwrap() = i16::MAX;
            let cs = encode_i16_lossless(&v, rows, cols).unwrap();
            assert_eq!(&cs[cs.len() - 2..], &[0xFF, 0xD9], "ends with EOC");
            let (w, h, prec, sgnd, reversible) = siz_and_cod(&cs);
            assert_eq!((w, h, prec, sgnd), (cols as u32, rows as u32, 16, true));
            assert!(reversible, "5/3 wavelet");
            assert_eq!(decode(cs, rows, cols), v, "{rows}×{cols}");
        }
    }

    #[test]
    fn unsigned_12_bit_round_trip() {
        let (rows, cols) = (9, 31);
        let v: Vec<i32> = (0..rows * cols).map(|p| (p * 131 % 4096) as i32).collect();
        let cs = encode_lossless(&v, rows, cols, 12, false).unwrap();
        let (w, h, prec, sgnd, reversible) = siz_and_cod(&cs);
        assert_eq!((w, h, prec, sgnd, reversible), (31, 9, 12, false, true));
        let want: Vec<i16> = v.iter().map(|x| *x as i16).collect();
        assert_eq!(decode(cs, rows, cols), want);
    }

    #[test]
    fn resolution_levels_fit_small_frames() {
        assert_eq!(resolutions(1, 1), 1);
        assert_eq!(resolutions(2, 100), 2);
        assert_eq!(resolutions(17, 23), 5);
        assert_eq!(resolutions(512, 512), 6);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(
            encode_lossless(&[0; 3], 2, 2, 16, true),
            Err(J2kError::Length {
                rows: 2,
                cols: 2,
                got: 3
            })
        );
        assert!(matches!(
            encode_lossless(&[], 0, 2, 16, true),
            Err(J2kError::EmptyFrame { .. })
        ));
        assert!(matches!(
            encode_lossless(&[4096], 1, 1, 12, false),
            Err(J2kError::SampleRange { index: 0, .. })
        ));
        assert!(matches!(
            encode_lossless(&[-1], 1, 1, 8, false),
            Err(J2kError::SampleRange { .. })
        ));
        assert!(matches!(
            encode_lossless(&[0], 1, 1, 17, true),
            Err(J2kError::Precision { bits: 17 })
        ));
    }
}
