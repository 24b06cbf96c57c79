//! A minimal PNG encoder (8-bit RGB, no interlace, filter "none", zlib through `flate2`) for
//! figures and image overlays. Output is deterministic for a given input.

use std::io::Write;

/// Encodes `w`×`h` 8-bit RGB pixels (row-major, top row first; `rgb.len()` = 3·w·h) as a PNG: signature, IHDR, IDAT chunks of at most 1 MiB, IEND.
pub fn encode_rgb(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let row = w as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * h as usize);
    for r in rgb.chunks(row.max(1)).take(h as usize) {
        raw.push(0); // filter: none
        raw.extend_from_slice(r);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let data = z
        .write_all(&raw)
        .and_then(|()| z.finish())
        .expect("zlib into a Vec<u8> is infallible");

    let mut png = Vec::with_capacity(data.len() + 64);
    png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, filter 0, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    for part in data.chunks(1 << 20) {
        chunk(&mut png, b"IDAT", part);
    }
    if data.is_empty() {
        chunk(&mut png, b"IDAT", &[]);
    }
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}
