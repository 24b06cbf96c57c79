//! NIfTI-1 single-file images (`.nii`, `.nii.gz`): read and write.
//!
//! * The affine in the file is **RAS**: `A_ras = diag(-1, -1, 1, 1) · A_lps`.
//! * On write both the sform and the qform are set (code 1, scanner anatomy) and agree, so
//!   nibabel (which prefers the sform) and ITK/SimpleITK (which prefer the qform) read the same
//!   geometry. A direction with a flip (det < 0) is stored in the qform with `qfac = -1`.
//! * On read the sform is used when `sform_code > 0`, else the qform when `qform_code > 0`
//!   (nibabel's order), else nibabel's fallback: `diag(-pixdim1, pixdim2, pixdim3)` centred on
//!   the volume (the Analyze convention).
//! * `scl_slope`/`scl_inter` are applied on read when the slope is non-zero and finite.
//! * Only 3-D images are accepted (a 4th dimension of length 1 is allowed); the voxel array's
//!   first axis is `i`, matching [`crate::volume`].

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::{Geometry, GeometryError, Volume, VolumeError};

const HEADER_SIZE: usize = 348;
const VOX_OFFSET: usize = 352;

/// NIfTI datatype codes.
mod dt {
    pub const UINT8: i16 = 2;
    pub const INT16: i16 = 4;
    pub const INT32: i16 = 8;
    pub const FLOAT32: i16 = 16;
    pub const FLOAT64: i16 = 64;
    pub const INT8: i16 = 256;
    pub const UINT16: i16 = 512;
    pub const UINT32: i16 = 768;
}

/// Errors reading or writing NIfTI.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a NIfTI-1 file ({why})")]
    NotNifti { path: PathBuf, why: String },
    #[error("{path}: unsupported datatype code {code}")]
    Datatype { path: PathBuf, code: i16 },
    #[error("{path}: only 3-D images are supported, dim = {dim:?}")]
    Dimensions { path: PathBuf, dim: [i16; 8] },
    #[error("{path}: file holds {got} bytes of voxels, header needs {need}")]
    Truncated {
        path: PathBuf,
        need: usize,
        got: usize,
    },
    #[error("{path}: bad geometry: {source}")]
    Geometry {
        path: PathBuf,
        source: GeometryError,
    },
    #[error("{path}: {source}")]
    Volume { path: PathBuf, source: VolumeError },
    #[error("{path}: voxel {index} = {value} is not a label in 0..=255")]
    NotALabel {
        path: PathBuf,
        index: usize,
        value: f64,
    },
}

/// A voxel type nephrod writes.
pub trait NiftiScalar: Copy {
    const DATATYPE: i16;
    const BITPIX: i16;
    fn put_le(self, out: &mut Vec<u8>);
}

impl NiftiScalar for f32 {
    const DATATYPE: i16 = dt::FLOAT32;
    const BITPIX: i16 = 32;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NiftiScalar for u8 {
    const DATATYPE: i16 = dt::UINT8;
    const BITPIX: i16 = 8;
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}
impl NiftiScalar for i16 {
    const DATATYPE: i16 = dt::INT16;
    const BITPIX: i16 = 16;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Writes `vol` to `path` (gzip-compressed when the name ends in `.gz`).
pub fn write<T: NiftiScalar>(path: &Path, vol: &Volume<T>) -> Result<(), NiftiError> {
    let io = |source| NiftiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = header_bytes::<T>(vol);
    bytes.reserve(vol.len() * (T::BITPIX as usize / 8));
    for &v in vol.data() {
        v.put_le(&mut bytes);
    }
    let file = File::create(path).map_err(io)?;
    if is_gz(path) {
        let mut enc = GzEncoder::new(BufWriter::new(file), Compression::fast());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?.flush().map_err(io)?;
    } else {
        let mut w = BufWriter::new(file);
        w.write_all(&bytes).map_err(io)?;
        w.flush().map_err(io)?;
    }
    Ok(())
}

fn header_bytes<T: NiftiScalar>(vol: &Volume<T>) -> Vec<u8> {
    let mut h = vec![0u8; VOX_OFFSET];
    let put_i32 =
        |h: &mut Vec<u8>, at: usize, v: i32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put_i32(&mut h, 0, HEADER_SIZE as i32);
    h[38] = b'r';
    let [ni, nj, nk] = vol.dims();
    let dim = [3i16, ni as i16, nj as i16, nk as i16, 1, 1, 1, 1];
    for (n, d) in dim.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * n, *d);
    }
    put_i16(&mut h, 70, T::DATATYPE);
    put_i16(&mut h, 72, T::BITPIX);
    let g = vol.geometry();
    let ras = ras_affine(g);
    let (quat, qfac) = quaternion_of(&ras, &g.spacing_mm);
    let pixdim = [
        qfac as f32,
        g.spacing_mm[0] as f32,
        g.spacing_mm[1] as f32,
        g.spacing_mm[2] as f32,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    for (n, p) in pixdim.iter().enumerate() {
        put_f32(&mut h, 76 + 4 * n, *p);
    }
    put_f32(&mut h, 108, VOX_OFFSET as f32);
    put_f32(&mut h, 112, 1.0); // scl_slope
    put_f32(&mut h, 116, 0.0); // scl_inter
    h[123] = 2 | 8; // mm, sec
    let descrip = b"nephrod";
    h[148..148 + descrip.len()].copy_from_slice(descrip);
    put_i16(&mut h, 252, 1); // qform_code: scanner
    put_i16(&mut h, 254, 1); // sform_code: scanner
    put_f32(&mut h, 256, quat[0] as f32);
    put_f32(&mut h, 260, quat[1] as f32);
    put_f32(&mut h, 264, quat[2] as f32);
    put_f32(&mut h, 268, ras[0][3] as f32);
    put_f32(&mut h, 272, ras[1][3] as f32);
    put_f32(&mut h, 276, ras[2][3] as f32);
    for r in 0..3 {
        for c in 0..4 {
            put_f32(&mut h, 280 + 16 * r + 4 * c, ras[r][c] as f32);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// `diag(-1,-1,1,1) · A_lps`.
pub fn ras_affine(g: &Geometry) -> [[f64; 4]; 4] {
    let mut a = g.affine_lps();
    for c in 0..4 {
        a[0][c] = -a[0][c];
        a[1][c] = -a[1][c];
    }
    a
}

/// Quaternion (b, c, d) and qfac of the rotation part of a RAS affine (nifti1_io's algorithm).
fn quaternion_of(ras: &[[f64; 4]; 4], spacing: &[f64; 3]) -> ([f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = ras[i][j] / spacing[j];
        }
    }
    let qfac = if super::geometry::det3(&r) < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let trace1 = r11 + r22 + r33 + 1.0;
    let (a, mut b, mut c, mut d): (f64, f64, f64, f64);
    if trace1 > 0.5 {
        a = 0.5 * trace1.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
        }
    }
    ([b, c, d], qfac)
}

/// RAS affine from qform parameters (nifti1_io's `quatern_to_mat44`).
fn qform_affine(quat: [f64; 3], offset: [f64; 3], pixdim: [f64; 4]) -> [[f64; 4]; 4] {
    let [mut b, mut c, mut d] = quat;
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        let s = 1.0 / (b * b + c * c + d * d).sqrt();
        b *= s;
        c *= s;
        d *= s;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let (x, y, z) = (
        pixdim[1].abs().max(f64::MIN_POSITIVE),
        pixdim[2].abs().max(f64::MIN_POSITIVE),
        pixdim[3].abs().max(f64::MIN_POSITIVE) * qfac,
    );
    let rot = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        m[r][0] = rot[r][0] * x;
        m[r][1] = rot[r][1] * y;
        m[r][2] = rot[r][2] * z;
        m[r][3] = offset[r];
    }
    m[3][3] = 1.0;
    m
}

/// A NIfTI image read as `f32` (after `scl_slope`/`scl_inter`), with its stored datatype.
pub struct NiftiImage {
    pub volume: Volume<f32>,
    pub datatype: i16,
}

/// Reads a `.nii` or `.nii.gz` file into `f32` voxels.
pub fn read(path: &Path) -> Result<NiftiImage, NiftiError> {
    let bytes = read_all(path)?;
    parse(path, &bytes)
}

/// Reads a label map: every voxel must be an integer in 0..=255.
pub fn read_labels(path: &Path) -> Result<Volume<u8>, NiftiError> {
    use rayon::prelude::*;
    let img = read(path)?;
    const CHUNK: usize = 1 << 16;
    let bad = img
        .volume
        .data()
        .par_chunks(CHUNK)
        .enumerate()
        .filter_map(|(c, ch)| {
            ch.iter()
                .position(|&v| !((0.0..=255.0).contains(&v) && (v as u8) as f32 == v))
                .map(|p| c * CHUNK + p)
        })
        .min();
    if let Some(index) = bad {
        return Err(NiftiError::NotALabel {
            path: path.to_path_buf(),
            index,
            value: img.volume.data()[index] as f64,
        });
    }
    let out: Vec<u8> = img.volume.data().par_iter().map(|&v| v as u8).collect();
    Volume::new(img.volume.dims(), img.volume.geometry().clone(), out).map_err(|source| {
        NiftiError::Volume {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn read_all(path: &Path) -> Result<Vec<u8>, NiftiError> {
    let io = |source| NiftiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = BufReader::new(File::open(path).map_err(io)?);
    let mut raw = Vec::new();
    f.read_to_end(&mut raw).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn i16(&self, at: usize) -> i16 {
        let a = [self.b[at], self.b[at + 1]];
        if self.big_endian {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    }
    fn u32(&self, at: usize) -> u32 {
        let a = [self.b[at], self.b[at + 1], self.b[at + 2], self.b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_bits(self.u32(at))
    }
}

/// Decodes `W`-byte voxels (byte order fixed to little-endian first), applies
/// `x · slope + inter` in f64 and rounds to f32; in parallel chunks.
fn decode<const W: usize>(
    raw: &[u8],
    big_endian: bool,
    value: fn([u8; W]) -> f64,
    slope: f64,
    inter: f64,
) -> Vec<f32> {
    use rayon::prelude::*;
    let n = raw.len() / W;
    let mut out = vec![0f32; n];
    const CHUNK: usize = 1 << 16;
    out.par_chunks_mut(CHUNK)
        .zip(raw.par_chunks(CHUNK * W))
        .for_each(|(o, src)| {
            for (v, c) in o.iter_mut().zip(src.chunks_exact(W)) {
                let mut a = [0u8; W];
                a.copy_from_slice(c);
                if big_endian {
                    a.reverse();
                }
                *v = (value(a) * slope + inter) as f32;
            }
        });
    out
}

fn parse(path: &Path, b: &[u8]) -> Result<NiftiImage, NiftiError> {
    let not = |why: &str| NiftiError::NotNifti {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if b.len() < HEADER_SIZE {
        return Err(not("shorter than the 348-byte header"));
    }
    let le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let r = match (le, be) {
        (348, _) => Reader {
            b,
            big_endian: false,
        },
        (_, 348) => Reader {
            b,
            big_endian: true,
        },
        _ => return Err(not("sizeof_hdr is not 348")),
    };
    if &b[344..348] != b"n+1\0" {
        return Err(not(
            "magic is not \"n+1\" (only single-file NIfTI-1 is read)",
        ));
    }
    let mut dim = [0i16; 8];
    for (n, d) in dim.iter_mut().enumerate() {
        *d = r.i16(40 + 2 * n);
    }
    let ndim = dim[0];
    let extra_ok = (4..=7).all(|n| n as i16 > ndim || dim[n] <= 1);
    if !(2..=7).contains(&ndim) || !extra_ok || dim[1..=3].iter().any(|&d| d < 1 && ndim >= 3) {
        return Err(NiftiError::Dimensions {
            path: path.to_path_buf(),
            dim,
        });
    }
    let dims = [
        dim[1].max(1) as usize,
        dim[2].max(1) as usize,
        if ndim >= 3 { dim[3].max(1) as usize } else { 1 },
    ];
    let datatype = r.i16(70);
    let width = match datatype {
        dt::UINT8 | dt::INT8 => 1,
        dt::INT16 | dt::UINT16 => 2,
        dt::INT32 | dt::UINT32 | dt::FLOAT32 => 4,
        dt::FLOAT64 => 8,
        code => {
            return Err(NiftiError::Datatype {
                path: path.to_path_buf(),
                code,
            })
        }
    };
    let vox_offset = r.f32(108);
    if !(vox_offset.is_finite() && vox_offset >= HEADER_SIZE as f32) {
        return Err(not("vox_offset is below 348"));
    }
    let vox_offset = vox_offset as usize;
    let n = super::voxel_count(dims).ok_or_else(|| NiftiError::Dimensions {
        path: path.to_path_buf(),
        dim,
    })?;
    let need = n.saturating_mul(width);
    let avail = b.len().saturating_sub(vox_offset);
    if avail < need {
        return Err(NiftiError::Truncated {
            path: path.to_path_buf(),
            need,
            got: avail,
        });
    }
    let slope = r.f32(112);
    let inter = r.f32(116);
    let (slope, inter) = if slope != 0.0 && slope.is_finite() && inter.is_finite() {
        (slope as f64, inter as f64)
    } else {
        (1.0, 0.0)
    };
    let raw = &b[vox_offset..vox_offset + need];
    let big = r.big_endian;
    let data: Vec<f32> = match datatype {
        dt::UINT8 => decode::<1>(raw, big, |a| a[0] as f64, slope, inter),
        dt::INT8 => decode::<1>(raw, big, |a| a[0] as i8 as f64, slope, inter),
        dt::INT16 => decode::<2>(raw, big, |a| i16::from_le_bytes(a) as f64, slope, inter),
        dt::UINT16 => decode::<2>(raw, big, |a| u16::from_le_bytes(a) as f64, slope, inter),
        dt::INT32 => decode::<4>(raw, big, |a| i32::from_le_bytes(a) as f64, slope, inter),
        dt::UINT32 => decode::<4>(raw, big, |a| u32::from_le_bytes(a) as f64, slope, inter),
        dt::FLOAT32 => decode::<4>(raw, big, |a| f32::from_le_bytes(a) as f64, slope, inter),
        _ => decode::<8>(raw, big, f64::from_le_bytes, slope, inter),
    };
    let sform_code = r.i16(254);
    let qform_code = r.i16(252);
    let pixdim = [
        r.f32(76) as f64,
        r.f32(80) as f64,
        r.f32(84) as f64,
        r.f32(88) as f64,
    ];
    let ras = if sform_code > 0 {
        let mut m = [[0.0; 4]; 4];
        for (row, mr) in m.iter_mut().enumerate().take(3) {
            for (c, v) in mr.iter_mut().enumerate() {
                *v = r.f32(280 + 16 * row + 4 * c) as f64;
            }
        }
        m[3][3] = 1.0;
        m
    } else if qform_code > 0 {
        qform_affine(
            [r.f32(256) as f64, r.f32(260) as f64, r.f32(264) as f64],
            [r.f32(268) as f64, r.f32(272) as f64, r.f32(276) as f64],
            pixdim,
        )
    } else {
        // nibabel's base affine (Analyze convention): x flipped, centred on the volume.
        let mut m = [[0.0; 4]; 4];
        for a in 0..3 {
            let z = if pixdim[a + 1].abs() > 0.0 {
                pixdim[a + 1].abs()
            } else {
                1.0
            };
            let s = if a == 0 { -z } else { z };
            m[a][a] = s;
            m[a][3] = -s * (dims[a] as f64 - 1.0) / 2.0;
        }
        m[3][3] = 1.0;
        m
    };
    let mut lps = ras;
    for c in 0..4 {
        lps[0][c] = -lps[0][c];
        lps[1][c] = -lps[1][c];
    }
    let geometry = Geometry::from_affine_lps(&lps).map_err(|source| NiftiError::Geometry {
        path: path.to_path_buf(),
        source,
    })?;
    let volume = Volume::new(dims, geometry, data).map_err(|source| NiftiError::Volume {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(NiftiImage { volume, datatype })
}
