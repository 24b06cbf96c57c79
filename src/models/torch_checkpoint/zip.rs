//! A minimal, read-only zip reader for `torch.save` archives.
//!
//! `torch.save` (PyTorch ≥ 1.6) writes a zip file whose records are *stored* (method 0), with
//! each record's data aligned to 64 bytes through padding in the local header's extra field, and
//! zip64 records when the archive needs them. This reader parses the central directory (zip64
//! aware), never trusts a size without checking it against the file length, reads one record at
//! a time by positioned reads (the archive is never read whole into memory), inflates deflated
//! records (method 8) for robustness, and checks every record's CRC-32. Nothing here panics on
//! malformed input: every problem is a [`ZipProblem`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// What went wrong, before the caller adds the path.
#[derive(Debug)]
pub(crate) enum ZipProblem {
    Io(std::io::Error),
    Structure(String),
    Entry { entry: String, message: String },
}

/// One record of the central directory.
#[derive(Debug, Clone)]
pub(crate) struct ZipEntry {
    pub name: String,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    pub size: u64,
    local_header_offset: u64,
}

/// The central directory of an archive, by record name.
#[derive(Debug)]
pub(crate) struct ZipIndex {
    pub entries: BTreeMap<String, ZipEntry>,
}

/// Central directories larger than this are refused (a torch checkpoint has a handful of
/// records per tensor storage; 64 MiB is far beyond any real one).
const MAX_CENTRAL_DIR_BYTES: u64 = 64 << 20;
/// Largest single record read into memory (a storage of ~4 G elements of f32).
const MAX_RECORD_BYTES: u64 = 16 << 30;
/// Largest deflated record inflated (torch never compresses; this only bounds zip bombs).
const MAX_INFLATED_BYTES: u64 = 1 << 30;

fn le16(b: &[u8], at: usize) -> Result<u16, ZipProblem> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| ZipProblem::Structure("record truncated".into()))
}
fn le32(b: &[u8], at: usize) -> Result<u32, ZipProblem> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| ZipProblem::Structure("record truncated".into()))
}
fn le64(b: &[u8], at: usize) -> Result<u64, ZipProblem> {
    b.get(at..at + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .ok_or_else(|| ZipProblem::Structure("record truncated".into()))
}

pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> Result<Vec<u8>, ZipProblem> {
    let mut f = file;
    f.seek(SeekFrom::Start(offset)).map_err(ZipProblem::Io)?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(ZipProblem::Io)?;
    Ok(buf)
}

impl ZipIndex {
    /// Reads the central directory of `file` (`file_len` bytes long).
    pub fn read(file: &File, file_len: u64) -> Result<Self, ZipProblem> {
        const EOCD_SIG: u32 = 0x0605_4b50;
        const EOCD_LEN: u64 = 22;
        if file_len < EOCD_LEN {
            return Err(ZipProblem::Structure(format!(
                "{file_len} bytes is too short for a zip archive"
            )));
        }
        let tail_len = file_len.min(EOCD_LEN + 65_535 + 20);
        let tail_start = file_len - tail_len;
        let tail = read_at(file, tail_start, tail_len as usize)?;
        // The end-of-central-directory record is the last one whose comment fits the file.
        let mut eocd_pos = None;
        for pos in (0..=tail.len() - EOCD_LEN as usize).rev() {
            if le32(&tail, pos)? == EOCD_SIG {
                let comment = le16(&tail, pos + 20)? as usize;
                if pos + EOCD_LEN as usize + comment == tail.len() {
                    eocd_pos = Some(pos);
                    break;
                }
            }
        }
        let Some(eocd) = eocd_pos else {
            return Err(ZipProblem::Structure(
                "no end-of-central-directory record (not a zip archive, or truncated)".into(),
            ));
        };
        let mut n_entries = le16(&tail, eocd + 10)? as u64;
        let mut cd_size = le32(&tail, eocd + 12)? as u64;
        let mut cd_offset = le32(&tail, eocd + 16)? as u64;
        if n_entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            // zip64: the locator sits right before the EOCD.
            let loc = eocd
                .checked_sub(20)
                .ok_or_else(|| ZipProblem::Structure("zip64 locator missing".into()))?;
            if le32(&tail, loc)? != 0x0706_4b50 {
                return Err(ZipProblem::Structure("zip64 locator missing".into()));
            }
            let z64_offset = le64(&tail, loc + 8)?;
            if z64_offset.checked_add(56).is_none_or(|e| e > file_len) {
                return Err(ZipProblem::Structure(
                    "zip64 end record outside the file".into(),
                ));
            }
            let z = read_at(file, z64_offset, 56)?;
            if le32(&z, 0)? != 0x0606_4b50 {
                return Err(ZipProblem::Structure(
                    "bad zip64 end record signature".into(),
                ));
            }
            n_entries = le64(&z, 32)?;
            cd_size = le64(&z, 40)?;
            cd_offset = le64(&z, 48)?;
        }
        if cd_size > MAX_CENTRAL_DIR_BYTES
            || cd_offset.checked_add(cd_size).is_none_or(|e| e > file_len)
        {
            return Err(ZipProblem::Structure(format!(
                "central directory [{cd_offset}, +{cd_size}) outside the {file_len}-byte file"
            )));
        }
        let cd = read_at(file, cd_offset, cd_size as usize)?;
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        for _ in 0..n_entries {
            if le32(&cd, pos)? != 0x0201_4b50 {
                return Err(ZipProblem::Structure(format!(
                    "bad central directory entry signature at +{pos}"
                )));
            }
            let method = le16(&cd, pos + 10)?;
            let crc32 = le32(&cd, pos + 16)?;
            let mut compressed_size = le32(&cd, pos + 20)? as u64;
            let mut size = le32(&cd, pos + 24)? as u64;
            let name_len = le16(&cd, pos + 28)? as usize;
            let extra_len = le16(&cd, pos + 30)? as usize;
            let comment_len = le16(&cd, pos + 32)? as usize;
            let mut local_header_offset = le32(&cd, pos + 42)? as u64;
            let name_bytes = cd
                .get(pos + 46..pos + 46 + name_len)
                .ok_or_else(|| ZipProblem::Structure("entry name truncated".into()))?;
            let name = String::from_utf8(name_bytes.to_vec())
                .map_err(|_| ZipProblem::Structure("entry name is not UTF-8".into()))?;
            let extra = cd
                .get(pos + 46 + name_len..pos + 46 + name_len + extra_len)
                .ok_or_else(|| ZipProblem::Structure("entry extra field truncated".into()))?;
            // zip64 extended information: the 0xFFFFFFFF fields, in this order.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = le16(extra, e)?;
                let len = le16(extra, e + 2)? as usize;
                let body = extra
                    .get(e + 4..e + 4 + len)
                    .ok_or_else(|| ZipProblem::Structure("entry extra field truncated".into()))?;
                if id == 0x0001 {
                    let mut k = 0usize;
                    for field in [&mut size, &mut compressed_size, &mut local_header_offset] {
                        if *field == 0xFFFF_FFFF {
                            *field = le64(body, k)?;
                            k += 8;
                        }
                    }
                }
                e += 4 + len;
            }
            pos += 46 + name_len + extra_len + comment_len;
            if entries
                .insert(
                    name.clone(),
                    ZipEntry {
                        name: name.clone(),
                        method,
                        crc32,
                        compressed_size,
                        size,
                        local_header_offset,
                    },
                )
                .is_some()
            {
                return Err(ZipProblem::Structure(format!("duplicate entry {name}")));
            }
        }
        Ok(Self { entries })
    }

    /// Reads and CRC-checks one record.
    pub fn read_entry(
        &self,
        file: &File,
        file_len: u64,
        entry: &ZipEntry,
    ) -> Result<Vec<u8>, ZipProblem> {
        let bad = |message: String| ZipProblem::Entry {
            entry: entry.name.clone(),
            message,
        };
        if entry
            .local_header_offset
            .checked_add(30)
            .is_none_or(|e| e > file_len)
        {
            return Err(bad("local header outside the file".into()));
        }
        let lh = read_at(file, entry.local_header_offset, 30)?;
        if le32(&lh, 0)? != 0x0403_4b50 {
            return Err(bad("bad local header signature".into()));
        }
        let name_len = le16(&lh, 26)? as u64;
        let extra_len = le16(&lh, 28)? as u64;
        let data_start = entry.local_header_offset + 30 + name_len + extra_len;
        if entry.compressed_size > MAX_RECORD_BYTES || entry.size > MAX_RECORD_BYTES {
            return Err(bad(format!("record of {} bytes is too large", entry.size)));
        }
        if data_start
            .checked_add(entry.compressed_size)
            .is_none_or(|e| e > file_len)
        {
            return Err(bad(format!(
                "data [{data_start}, +{}) runs past the end of the {file_len}-byte file",
                entry.compressed_size
            )));
        }
        let raw = read_at(file, data_start, entry.compressed_size as usize)?;
        let data = match entry.method {
            0 => {
                if entry.compressed_size != entry.size {
                    return Err(bad("stored record with different sizes".into()));
                }
                raw
            }
            8 => {
                if entry.size > MAX_INFLATED_BYTES {
                    return Err(bad(format!(
                        "deflated record of {} bytes is too large",
                        entry.size
                    )));
                }
                let mut out = Vec::with_capacity((entry.size as usize).min(64 << 20));
                flate2::read::DeflateDecoder::new(&raw[..])
                    .take(entry.size + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("cannot inflate: {e}")))?;
                if out.len() as u64 != entry.size {
                    return Err(bad(format!(
                        "inflates to {} bytes, the directory says {}",
                        out.len(),
                        entry.size
                    )));
                }
                out
            }
            m => return Err(bad(format!("unsupported compression method {m}"))),
        };
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        if crc.sum() != entry.crc32 {
            return Err(bad(format!(
                "CRC-32 {:08x} differs from the directory's {:08x} (corrupt file)",
                crc.sum(),
                entry.crc32
            )));
        }
        Ok(data)
    }
}
