//! A test-only safetensors reader for golden files whose tensors are integers (I8, I16, I32,
//! U8) or floats (F32, F64), returned as f64 with their shape. (The library's WeightFile
//! reads only the weight dtypes F16/BF16/F32.) Include with
//! `#[path = "common/safetensors_any.rs"] mod safetensors_any;`.

use std::collections::BTreeMap;
use std::path::Path;

/// Every tensor of the file: name → (shape, values).
pub fn read_all(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let off: Vec<usize> = info["data_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let raw = &data[off[0]..off[1]];
        let values: Vec<f64> = match info["dtype"].as_str().unwrap() {
            "I8" => raw.iter().map(|b| *b as i8 as f64).collect(),
            "U8" => raw.iter().map(|b| *b as f64).collect(),
            "I16" => raw
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            "I32" => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            "F64" => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            other => panic!("{}: dtype {other} not handled", path.display()),
        };
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        out.insert(name.clone(), (shape, values));
    }
    out
}
