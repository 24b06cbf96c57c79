//! Safetensors weights: the golden file written by the reference `safetensors` library
//! (tools/oracle/weights_golden.py) reads back with its names, dtypes, shapes, metadata, exact
//! values and SHA-256; manifests catch every kind of mismatch; corrupt files give typed errors,
//! never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nephrod::engine::weights::{
    f16_bytes, f32_bytes, write_safetensors, DType, TensorSpec, TensorToWrite, WeightFile,
    WeightsError, WeightsManifest,
};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/weights")
}

fn golden_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join("golden.json")).unwrap())
        .unwrap()
}

fn golden_manifest() -> WeightsManifest {
    let g = golden_json();
    WeightsManifest {
        sha256: g["sha256"].as_str().unwrap().to_string(),
        tensors: g["tensors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, t)| TensorSpec {
                name: name.clone(),
                dtype: match t["dtype"].as_str().unwrap() {
                    "F16" => DType::F16,
                    "F32" => DType::F32,
                    other => panic!("{other}"),
                },
                shape: t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect(),
            })
            .collect(),
    }
}

#[test]
fn golden_file_reads_exactly() {
    let g = golden_json();
    let w = WeightFile::open(&golden_dir().join("golden.safetensors")).unwrap();
    assert_eq!(w.sha256_hex(), g["sha256"].as_str().unwrap());
    assert_eq!(
        w.metadata().get("producer").map(String::as_str),
        Some("weights_golden.py")
    );
    let tensors = g["tensors"].as_object().unwrap();
    assert_eq!(w.tensors().len(), tensors.len());
    for (name, t) in tensors {
        let (shape, values) = w.tensor_f32(name).unwrap();
        let want_shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, want_shape, "{name}");
        let want: Vec<f64> = t["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), want.len());
        for (a, b) in values.iter().zip(&want) {
            // f16 and f32 widen to f64 exactly: equality, sign of zero included.
            assert_eq!((*a as f64).to_bits(), b.to_bits(), "{name}: {a} vs {b}");
        }
    }
    w.verify(&golden_manifest()).unwrap();
}

#[test]
fn manifest_mismatches_are_reported() {
    let w = WeightFile::open(&golden_dir().join("golden.safetensors")).unwrap();
    let good = golden_manifest();
    let mut bad_sha = good.clone();
    bad_sha.sha256 = "0".repeat(64);
    let mut bad_shape = good.clone();
    bad_shape.tensors[0].shape[0] += 1;
    let mut bad_dtype = good.clone();
    bad_dtype.tensors[0].dtype = DType::BF16;
    let mut missing = good.clone();
    missing.tensors.push(TensorSpec {
        name: "not.there".into(),
        dtype: DType::F32,
        shape: vec![1],
    });
    let mut extra = good.clone();
    extra.tensors.pop();
    for (what, m) in [
        ("sha", bad_sha),
        ("shape", bad_shape),
        ("dtype", bad_dtype),
        ("missing", missing),
        ("extra", extra),
    ] {
        match w.verify(&m) {
            Err(WeightsError::Manifest { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn own_writer_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    let a: Vec<f32> = (0..2 * 3 * 5).map(|i| i as f32 * 0.37 - 4.0).collect();
    let b: Vec<f32> = vec![1.5, -2.25, 1e-3];
    let (ab, bb) = (f16_bytes(&a), f32_bytes(&b));
    write_safetensors(
        &p,
        &[
            TensorToWrite {
                name: "a",
                dtype: DType::F16,
                shape: &[2, 3, 5],
                bytes: &ab,
            },
            TensorToWrite {
                name: "b",
                dtype: DType::F32,
                shape: &[3],
                bytes: &bb,
            },
        ],
        &BTreeMap::from([("k".to_string(), "v".to_string())]),
    )
    .unwrap();
    let w = WeightFile::open(&p).unwrap();
    let (_, av) = w.tensor_f32("a").unwrap();
    for (x, y) in av.iter().zip(&a) {
        assert_eq!(*x, half::f16::from_f32(*y).to_f32());
    }
    assert_eq!(w.tensor_f32("b").unwrap().1, b);
    let m = w.manifest();
    w.verify(&m).unwrap();
    assert!(matches!(
        w.tensor_f32("c"),
        Err(WeightsError::Missing { .. })
    ));
}

/// Every truncation and every single-byte corruption of the golden file opens without a
/// panic; truncations always fail (the data area must be tiled exactly).
#[test]
fn corrupt_files_fail_cleanly() {
    let bytes = std::fs::read(golden_dir().join("golden.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    for len in 0..bytes.len() {
        std::fs::write(&p, &bytes[..len]).unwrap();
        assert!(WeightFile::open(&p).is_err(), "truncated to {len} opened");
    }
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for pos in 0..header_end {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= flip;
            std::fs::write(&p, &b).unwrap();
            let r = std::panic::catch_unwind(|| WeightFile::open(&p).map(|w| w.manifest()));
            assert!(r.is_ok(), "panic with byte {pos} ^ {flip:#x}");
        }
    }
}

/// Hand-made headers: overlap, gap, bad dtype, shape/size mismatch, implausible length.
#[test]
fn malformed_headers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let write = |header: &str, data: usize| {
        let mut h = header.as_bytes().to_vec();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h);
        b.extend(vec![0u8; data]);
        std::fs::write(&p, b).unwrap();
    };
    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            "overlaps",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            "gap",
        ),
        (
            r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
            8,
            "dtype",
        ),
        (
            r#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#,
            8,
            "needs",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            8,
            "trailing",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
            "outside",
        ),
        (r#"[1,2]"#, 0, "JSON object"),
    ];
    for (header, data, needle) in cases {
        write(header, data);
        let e = WeightFile::open(&p).unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    let mut b = u64::MAX.to_le_bytes().to_vec();
    b.extend(b"{}");
    std::fs::write(&p, b).unwrap();
    assert!(matches!(
        WeightFile::open(&p),
        Err(WeightsError::Header { .. })
    ));
}
