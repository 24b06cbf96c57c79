//! Typed attribute access on a parsed DICOM data set, robust to the encodings met in the wild.
//!
//! * Values with VR `UN` (an explicit-VR writer that did not know the tag) are re-read from
//!   their raw bytes: text VRs (DS, IS, TM, DA, CS, LO, …) as text, US as little-endian `u16`.
//!   dicom-rs would otherwise reinterpret the text bytes as binary numbers.
//! * Decimal strings are parsed by hand (leading/trailing spaces and NULs allowed).
//! * Every accessor returns `None` for an absent or unreadable value; callers decide whether
//!   absence is an error.

use dicom_core::{DataDictionary, Tag, VR};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

pub type Obj = InMemDicomObject;

fn element(obj: &Obj, tag: Tag) -> Option<&InMemElement> {
    obj.get(tag)
}

/// Raw text of a text-valued attribute, with padding trimmed; handles VR UN.
pub fn text(obj: &Obj, tag: Tag) -> Option<String> {
    let e = element(obj, tag)?;
    let s = if e.vr() == VR::UN {
        let bytes = e.to_bytes().ok()?;
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        e.to_str().ok()?.into_owned()
    };
    let t = s.trim_matches(|c: char| c == ' ' || c == '\0').to_string();
    (!t.is_empty()).then_some(t)
}

/// All values of a multi-valued text attribute (split on `\`).
pub fn texts(obj: &Obj, tag: Tag) -> Vec<String> {
    text(obj, tag)
        .map(|s| {
            s.split('\\')
                .map(|p| p.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Decimal values (DS, IS, FD, FL, US, SS…) of an attribute.
pub fn numbers(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    let e = element(obj, tag)?;
    match e.vr() {
        VR::UN => {
            let bytes = e.to_bytes().ok()?;
            // Text VRs are the ones that carry decimals in the tags we read as UN.
            let s = String::from_utf8_lossy(&bytes);
            let dict_vr = dicom_dictionary_std::StandardDataDictionary
                .by_tag(tag)
                .map(|entry| entry.vr.relaxed());
            match dict_vr {
                Some(VR::US) if bytes.len() >= 2 => Some(
                    bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
                        .collect(),
                ),
                Some(VR::SS) if bytes.len() >= 2 => Some(
                    bytes
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                        .collect(),
                ),
                _ => parse_decimals(&s),
            }
        }
        VR::DS | VR::IS => parse_decimals(&e.to_str().ok()?),
        _ => {
            let v = e.to_multi_float64().ok()?;
            (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
        }
    }
}

/// First value of a numeric attribute.
pub fn number(obj: &Obj, tag: Tag) -> Option<f64> {
    numbers(obj, tag)?.first().copied()
}

/// First value as an unsigned 16-bit integer.
pub fn u16_value(obj: &Obj, tag: Tag) -> Option<u16> {
    let v = number(obj, tag)?;
    (v >= 0.0 && v <= u16::MAX as f64 && v.fract() == 0.0).then_some(v as u16)
}

/// `\`-separated decimal strings; `None` if any part is not a finite number.
pub fn parse_decimals(s: &str) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    for part in s.split('\\') {
        let p = part.trim_matches(|c: char| c == ' ' || c == '\0');
        if p.is_empty() {
            continue;
        }
        let v: f64 = p.parse().ok()?;
        if !v.is_finite() {
            return None;
        }
        out.push(v);
    }
    (!out.is_empty()).then_some(out)
}

/// Items of a sequence attribute (empty if absent or not a sequence).
pub fn items(obj: &Obj, tag: Tag) -> &[Obj] {
    element(obj, tag)
        .and_then(|e| e.value().items())
        .unwrap_or(&[])
}

/// Raw bytes of an attribute (for LUT data).
pub fn bytes(obj: &Obj, tag: Tag) -> Option<Vec<u8>> {
    element(obj, tag)?.to_bytes().ok().map(|b| b.into_owned())
}

/// VR of an attribute as stored.
pub fn vr(obj: &Obj, tag: Tag) -> Option<VR> {
    element(obj, tag).map(|e| e.vr())
}

/// DICOM TM (`HHMMSS.FFFFFF`, also the legacy `HH:MM:SS`) → seconds since midnight.
pub fn parse_tm(s: &str) -> Option<f64> {
    let s: String = s.trim().chars().filter(|c| *c != ':').collect();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w.to_string(), f.to_string()),
        None => (s.clone(), String::new()),
    };
    if whole.len() < 2 || whole.len() > 6 || whole.len() % 2 != 0 {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let field = |a: usize| whole.get(a..a + 2).and_then(|x| x.parse::<u32>().ok());
    let h = field(0)?;
    let m = field(2).unwrap_or(0);
    let sec = field(4).unwrap_or(0);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let f: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    Some(h as f64 * 3600.0 + m as f64 * 60.0 + sec as f64 + f)
}

/// DICOM DA (`YYYYMMDD`) → days since 1970-01-01.
pub fn parse_da(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 8 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: i64 = s[4..6].parse().ok()?;
    let d: i64 = s[6..8].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

/// DICOM DT (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`) → seconds since 1970-01-01 (offset ignored).
pub fn parse_dt(s: &str) -> Option<f64> {
    let s = s.trim();
    let body = s.split(['+', '-']).next()?;
    let days = parse_da(body.get(0..8)?)?;
    let t = body.get(8..).map(parse_tm).unwrap_or(Some(0.0))?;
    Some(days as f64 * 86400.0 + t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_date_parsing() {
        assert_eq!(
            parse_tm("101530.5"),
            Some(10.0 * 3600.0 + 15.0 * 60.0 + 30.5)
        );
        assert_eq!(parse_tm("10:15:30"), Some(36930.0));
        assert_eq!(parse_tm("07"), Some(7.0 * 3600.0));
        assert_eq!(parse_tm("1a"), None);
        assert_eq!(parse_da("19700101"), Some(0));
        assert_eq!(parse_da("20000301"), Some(11017));
        assert_eq!(parse_dt("19700102000001"), Some(86401.0));
        assert_eq!(parse_decimals(" 1.5\\-2e1 "), Some(vec![1.5, -20.0]));
        assert_eq!(parse_decimals("abc"), None);
    }
}
