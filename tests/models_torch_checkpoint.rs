//! PyTorch checkpoint reader against files written by the real `torch.save`
//! (tools/oracle/torch_checkpoint_golden.py → tests/data/models/torch): the whole value tree,
//! every tensor's dtype/shape/strides/offset/storage sharing and its values as f32 and rounded to
//! f16 (torch `.float()` / `.half()`), bit for bit, for pickle protocols 2 and 4. Malicious,
//! legacy, truncated and bit-flipped files give typed errors, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nephrod::models::torch_checkpoint::{CheckpointError, TorchCheckpoint, Value};
use serde_json::json;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/torch")
}

/// The same description tools/oracle/torch_checkpoint_golden.py::describe writes.
fn describe(
    ck: &TorchCheckpoint,
    v: &Value,
    storages: &mut HashMap<String, usize>,
) -> serde_json::Value {
    match v {
        Value::None => json!({"t": "none"}),
        Value::Bool(b) => json!({"t": "bool", "v": b}),
        Value::Int(i) => json!({"t": "int", "v": i.to_string()}),
        Value::Float(f) => json!({"t": "float", "v": f}),
        Value::Complex(a, b) => json!({"t": "complex", "v": [a, b]}),
        Value::Str(s) => json!({"t": "str", "v": s}),
        Value::Bytes(b) => {
            json!({"t": "bytes", "v": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
        Value::Device(d) => json!({"t": "device", "v": d}),
        Value::Tuple(t) => {
            json!({"t": "tuple", "v": t.iter().map(|x| describe(ck, x, storages)).collect::<Vec<_>>()})
        }
        Value::List(t) => {
            json!({"t": "list", "v": t.iter().map(|x| describe(ck, x, storages)).collect::<Vec<_>>()})
        }
        Value::Set(t) => {
            let mut vs: Vec<String> = t
                .iter()
                .map(|x| describe(ck, x, storages)["v"].as_str().unwrap().to_string())
                .collect();
            vs.sort();
            json!({"t": "set", "v": vs})
        }
        Value::Dict(pairs) => json!({"t": "dict", "v": pairs
            .iter()
            .map(|(k, x)| json!([describe(ck, k, storages), describe(ck, x, storages)]))
            .collect::<Vec<_>>()}),
        Value::Tensor(t) => {
            let n = storages.len();
            let sid = *storages.entry(t.storage.key.clone()).or_insert(n);
            let mut d = json!({
                "t": "tensor",
                "dtype": t.storage.dtype.torch_name(),
                "shape": t.shape,
                "stride": t.strides,
                "offset": t.storage_offset,
                "storage": sid,
            });
            match ck.tensor_f32(t) {
                Ok(v) => {
                    d["f32"] = json!(v.iter().map(|x| *x as f64).collect::<Vec<_>>());
                    let h = ck.tensor_f16(t).unwrap();
                    d["f16"] = json!(h.iter().map(|x| x.to_f64()).collect::<Vec<_>>());
                }
                Err(e) => {
                    assert_eq!(e.kind(), "tensor", "{e}");
                    assert!(e.to_string().contains("not a floating-point"), "{e}");
                }
            }
            d
        }
        other => panic!("unexpected value {other:?}"),
    }
}

fn check_golden(file: &str) {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("basic.json")).unwrap()).unwrap();
    let ck = TorchCheckpoint::open(&dir().join(file)).unwrap();
    let got = describe(&ck, ck.root(), &mut HashMap::new());
    let want = &golden["value"];
    // Compare entry by entry for a readable failure.
    let (g, w) = (got["v"].as_array().unwrap(), want["v"].as_array().unwrap());
    assert_eq!(g.len(), w.len());
    for (a, b) in g.iter().zip(w) {
        assert_eq!(a, b, "{file}");
    }
    assert_eq!(&got, want);
}

#[test]
fn protocol2_checkpoint_matches_torch() {
    check_golden("basic_p2.pth");
}

#[test]
fn protocol4_checkpoint_matches_torch() {
    check_golden("basic_p4.pth");
}

#[test]
fn aliases_share_one_storage_and_views_read_through_strides() {
    let ck = TorchCheckpoint::open(&dir().join("basic_p2.pth")).unwrap();
    let w = ck.root().get("weights").unwrap();
    let get = |k: &str| match w.get(k) {
        Some(Value::Tensor(t)) => t.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let (base, alias, tr, off) = (
        get("f32"),
        get("alias"),
        get("transposed"),
        get("offset_view"),
    );
    assert_eq!(base, alias);
    assert_eq!(base.storage.key, tr.storage.key);
    assert_eq!(base.storage.key, off.storage.key);
    // Naive reference: transposed[i][j] == base[j][i]; offset_view[i][j] == base[1+i][2+j].
    let b = ck.tensor_f32(&base).unwrap();
    let t = ck.tensor_f32(&tr).unwrap();
    let o = ck.tensor_f32(&off).unwrap();
    for i in 0..5 {
        for j in 0..4 {
            assert_eq!(t[i * 4 + j].to_bits(), b[j * 5 + i].to_bits());
        }
    }
    for i in 0..2 {
        for j in 0..3 {
            assert_eq!(o[i * 3 + j].to_bits(), b[(1 + i) * 5 + 2 + j].to_bits());
        }
    }
}

#[test]
fn forbidden_global_is_refused() {
    match TorchCheckpoint::open(&dir().join("evil.pth")) {
        Err(CheckpointError::ForbiddenGlobal { module, name, .. }) => {
            assert_eq!((module.as_str(), name.as_str()), ("posix", "system"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn legacy_format_is_a_typed_error() {
    let e = TorchCheckpoint::open(&dir().join("legacy.pth")).unwrap_err();
    assert_eq!(e.kind(), "legacy_format", "{e}");
}

#[test]
fn hand_made_pickles_are_refused_or_read_safely() {
    // A stored-zip with a pickle we write by hand (no torch needed): builtins.eval and
    // getattr are refused, a memo reference to an undefined key and a stack underflow are
    // malformed, a self-referencing list is refused.
    let cases: Vec<(&[u8], &str)> = vec![
        (
            b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.",
            "forbidden_global",
        ),
        (b"\x80\x02cbuiltins\ngetattr\n.", "forbidden_global"),
        (b"\x80\x02h\x05.", "pickle"),
        (b"\x80\x02a.", "pickle"),
        (b"\x80\x02]q\x00h\x00a.", "pickle"),
        (b"\x80\x02(K\x01K\x02l.", "ok"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (pkl, want)) in cases.into_iter().enumerate() {
        let path = tmp.path().join(format!("{i}.pth"));
        write_stored_zip(
            &path,
            &[("archive/data.pkl", pkl), ("archive/byteorder", b"little")],
        );
        match TorchCheckpoint::open(&path) {
            Ok(ck) => {
                assert_eq!(want, "ok", "case {i}");
                assert_eq!(ck.root(), &Value::List(vec![Value::Int(1), Value::Int(2)]));
            }
            Err(e) => assert_eq!(e.kind(), want, "case {i}: {e}"),
        }
    }
}

/// A minimal stored zip (method 0) with correct CRCs.
fn write_stored_zip(path: &Path, records: &[(&str, &[u8])]) {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in records {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let off = out.len() as u32;
        let mut h = Vec::new();
        h.extend(0x0403_4b50u32.to_le_bytes());
        h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend(crc.sum().to_le_bytes());
        h.extend((data.len() as u32).to_le_bytes());
        h.extend((data.len() as u32).to_le_bytes());
        h.extend((name.len() as u16).to_le_bytes());
        h.extend(0u16.to_le_bytes());
        out.extend(&h);
        out.extend(name.as_bytes());
        out.extend(*data);
        let mut c = Vec::new();
        c.extend(0x0201_4b50u32.to_le_bytes());
        c.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        c.extend(crc.sum().to_le_bytes());
        c.extend((data.len() as u32).to_le_bytes());
        c.extend((data.len() as u32).to_le_bytes());
        c.extend((name.len() as u16).to_le_bytes());
        c.extend([0u8; 12]);
        c.extend(off.to_le_bytes());
        c.extend(name.as_bytes());
        central.extend(c);
    }
    let cd_off = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((records.len() as u16).to_le_bytes());
    out.extend((records.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_off.to_le_bytes());
    out.extend([0u8; 2]);
    std::fs::write(path, out).unwrap();
}

/// Opens a checkpoint and materialises every float tensor of its tree.
fn read_everything(path: &Path) -> Result<usize, CheckpointError> {
    let ck = TorchCheckpoint::open(path)?;
    fn walk(ck: &TorchCheckpoint, v: &Value, n: &mut usize) -> Result<(), CheckpointError> {
        match v {
            Value::Tensor(t)
                if t.storage.dtype.torch_name().starts_with("float")
                    || t.storage.dtype.torch_name() == "bfloat16" =>
            {
                *n += ck.tensor_f16(t)?.len();
            }
            Value::Dict(p) => {
                for (k, x) in p {
                    walk(ck, k, n)?;
                    walk(ck, x, n)?;
                }
            }
            Value::List(l) | Value::Tuple(l) | Value::Set(l) => {
                for x in l {
                    walk(ck, x, n)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut n = 0;
    walk(&ck, ck.root(), &mut n)?;
    Ok(n)
}

#[test]
fn truncated_files_give_typed_errors() {
    let bytes = std::fs::read(dir().join("basic_p2.pth")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.pth");
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let e = read_everything(&path).expect_err("a truncated archive must not read");
        assert!(
            matches!(e.kind(), "archive" | "record" | "io"),
            "len {len}: {e}"
        );
    }
}

#[test]
fn flipped_bytes_never_panic_and_corrupt_payloads_are_caught() {
    let bytes = std::fs::read(dir().join("basic_p4.pth")).unwrap();
    // The pickle and the storages are CRC-protected: a flip inside them must fail.
    let pkl_start = bytes
        .windows(3)
        .position(|w| w == b"\x80\x04\x95")
        .expect("pickle start");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f.pth");
    let (mut ok, mut err) = (0, 0);
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[at] ^= mask;
            std::fs::write(&path, &b).unwrap();
            match read_everything(&path) {
                Ok(_) => {
                    ok += 1;
                    assert!(
                        !(pkl_start..pkl_start + 100).contains(&at),
                        "flip at {at} inside the pickle went unnoticed"
                    );
                }
                Err(_) => err += 1,
            }
        }
    }
    // Flips in timestamps, versions-needed and padding are harmless; most flips are caught.
    assert!(err > ok, "{err} errors, {ok} unnoticed flips");
}

/// The raw bytes of the first record `name` in a stored zip written by torch. torch puts the
/// sizes in data descriptors (local header sizes are 0), so the record ends at the next
/// zip signature.
fn stored_record(zip: &[u8], name: &str) -> Vec<u8> {
    let at = zip
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("record name")
        - 30;
    assert_eq!(&zip[at..at + 4], b"PK\x03\x04");
    let u16at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let data = at + 30 + u16at(at + 26) + u16at(at + 28);
    let len = zip[data..]
        .windows(4)
        .position(|w| matches!(w, b"PK\x07\x08" | b"PK\x03\x04" | b"PK\x01\x02"))
        .expect("next signature");
    zip[data..data + len].to_vec()
}

#[test]
fn corrupted_pickles_with_valid_crc_never_panic() {
    // The VM itself (not the CRC) must cope with every flipped byte of a real torch pickle.
    let zip = std::fs::read(dir().join("basic_p2.pth")).unwrap();
    let pkl = stored_record(&zip, "basic_p2/data.pkl");
    assert_eq!(&pkl[..2], b"\x80\x02");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.pth");
    write_stored_zip(&path, &[("archive/data.pkl", &pkl)]);
    let original = TorchCheckpoint::open(&dir().join("basic_p2.pth")).unwrap();
    assert_eq!(
        TorchCheckpoint::open(&path).unwrap().root(),
        original.root()
    );
    let (mut ok, mut err) = (0usize, 0usize);
    for at in 0..pkl.len() {
        for mask in [0x01u8, 0x20, 0x80, 0xFF] {
            let mut p = pkl.clone();
            p[at] ^= mask;
            write_stored_zip(&path, &[("archive/data.pkl", &p)]);
            match TorchCheckpoint::open(&path) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(matches!(e.kind(), "pickle" | "forbidden_global"), "{e}");
                    err += 1;
                }
            }
        }
    }
    // Also every truncation of the pickle.
    for len in 0..pkl.len() {
        write_stored_zip(&path, &[("archive/data.pkl", &pkl[..len])]);
        let e = TorchCheckpoint::open(&path).expect_err("truncated pickle");
        assert_eq!(e.kind(), "pickle", "{e}");
    }
    assert!(err > 0 && ok + err == pkl.len() * 4);
}

/// A protocol-2 pickle of one tensor over a 1-element FloatStorage with the given size/stride
/// (each a Python int tuple, ints written as LONG1).
fn one_tensor_pickle(size: &[u64], stride: &[u64]) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00".to_vec();
    for t in [size, stride] {
        p.push(b'(');
        for v in t {
            let b = (*v as u128).to_le_bytes();
            p.extend([0x8a, 9]);
            p.extend(&b[..9]);
        }
        p.push(b't');
    }
    p.extend(b"\x89ccollections\nOrderedDict\n)RtR.");
    p
}

#[test]
fn hostile_views_and_expansions_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("h.pth");
    let storage = 2.5f32.to_le_bytes();
    let open = |pkl: &[u8]| {
        write_stored_zip(
            &path,
            &[("archive/data.pkl", pkl), ("archive/data/0", &storage)],
        );
        TorchCheckpoint::open(&path)
    };
    let tensor = |ck: &TorchCheckpoint| match ck.root() {
        Value::Tensor(t) => ck.tensor_f32(t),
        other => panic!("{other:?}"),
    };
    // stride 0 broadcast of one element to 2^40 elements: refused, no giant allocation
    let ck = open(&one_tensor_pickle(&[1 << 40], &[0])).unwrap();
    let e = tensor(&ck).unwrap_err();
    assert!(e.to_string().contains("too many"), "{e}");
    // a legitimate small broadcast reads the element four times
    let ck = open(&one_tensor_pickle(&[2, 2], &[0, 0])).unwrap();
    assert_eq!(tensor(&ck).unwrap(), vec![2.5; 4]);
    // a huge stride on a size-1 axis is harmless; on a size-2 axis it leaves the storage
    let ck = open(&one_tensor_pickle(&[1, 1], &[1 << 63, 1])).unwrap();
    assert_eq!(tensor(&ck).unwrap(), vec![2.5]);
    let ck = open(&one_tensor_pickle(&[2], &[1 << 62])).unwrap();
    assert!(tensor(&ck).unwrap_err().to_string().contains("storage"));
    // "billion laughs": 40 nested (x, x) tuples expand to 2^40 values
    let mut laughs = b"\x80\x02]".to_vec();
    for _ in 0..40 {
        laughs.extend(b"2\x86");
    }
    laughs.push(b'.');
    let e = open(&laughs).unwrap_err();
    assert!(e.to_string().contains("expands beyond"), "{e}");
}
