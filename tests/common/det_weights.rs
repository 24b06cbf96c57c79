//! Deterministic classifier weights and images, bit-identical to the formula of
//! tools/oracle/classifier_golden.py (see its docstring), written as safetensors files so the
//! tests need no committed weights. Include with
//! `#[path = "common/det_weights.rs"] mod det_weights;`.
//!
//! value_i = f32(lo + (hi − lo)·u_i), u_i = (splitmix64(fnv1a64(name) + (i+1)·γ) >> 11)·2⁻⁵³,
//! all integer arithmetic mod 2⁶⁴, the affine map in f64 with one rounding to f32.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a 64 of the UTF-8 bytes of `name`.
pub fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

fn splitmix_finalise(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` values of the named tensor, uniform in [lo, hi).
pub fn det_values(name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let key = fnv1a64(name);
    (0..n as u64)
        .map(|i| {
            let z = splitmix_finalise(key.wrapping_add((i + 1).wrapping_mul(GOLDEN_GAMMA)));
            let u = (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            (lo + (hi - lo) * u) as f32
        })
        .collect()
}

/// The [lo, hi] range of a state-dict tensor (the oracle's `value_range`); names it does not
/// know (only used to build deliberately wrong files) get ±0.1.
pub fn value_range(name: &str, shape: &[usize]) -> (f64, f64) {
    let sym = |s: f64| (-s, s);
    if name == "input_conv.weight" {
        return sym(1.0); // sqrt(3 / fan_in), fan_in = 3
    }
    if name == "input_conv.bias" || name == "fc.bias" {
        return sym(0.1);
    }
    if name == "fc.weight" && shape.len() == 2 {
        return sym((3.0 / shape[1] as f64).sqrt());
    }
    if shape.len() == 4 {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        return sym((3.0 / fan_in).sqrt());
    }
    if name.ends_with(".bn3.weight") {
        return (0.25, 0.75);
    }
    if name.ends_with(".weight") {
        return (0.5, 1.5);
    }
    if name.ends_with(".running_var") {
        return (0.5, 1.5);
    }
    sym(0.1)
}

/// The oracle's input images `images/{n}x3x{h}x{w}`, uniform in [−2, 2).
pub fn image(n: usize, h: usize, w: usize) -> Vec<f32> {
    det_values(&format!("images/{n}x3x{h}x{w}"), n * 3 * h * w, -2.0, 2.0)
}

/// How float tensors are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    F32,
    /// Rounded to f16, nearest even (as numpy's `astype(float16)`).
    F16,
}

/// Writes a safetensors file holding `tensors` (name, shape) with the deterministic values,
/// streamed tensor by tensor. Names ending in `num_batches_tracked` are written as I64 zeros,
/// as `torch.save`-exported state dicts hold them.
pub fn write_weights(path: &Path, tensors: &[(String, Vec<usize>)], store: Store) {
    let float_dtype = match store {
        Store::F32 => ("F32", 4),
        Store::F16 => ("F16", 2),
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let (dtype, size) = if name.ends_with("num_batches_tracked") {
            ("I64", 8)
        } else {
            float_dtype
        };
        let len = shape.iter().product::<usize>() * size;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).expect("header json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BufWriter::new(file);
    out.write_all(&(h.len() as u64).to_le_bytes())
        .expect("write");
    out.write_all(&h).expect("write");
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        if name.ends_with("num_batches_tracked") {
            out.write_all(&vec![0u8; n * 8]).expect("write");
            continue;
        }
        let (lo, hi) = value_range(name, shape);
        let v = det_values(name, n, lo, hi);
        let bytes: Vec<u8> = match store {
            Store::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Store::F16 => v
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
        };
        out.write_all(&bytes).expect("write");
    }
    out.flush().expect("flush");
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv_reference() {
        // FNV-1a 64 test vectors.
        assert_eq!(super::fnv1a64(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(super::fnv1a64("a"), 0xAF63_DC4C_8601_EC8C);
    }
}
