//! Fuzz target: arbitrary bytes as a safetensors weights file → open, manifest, read every
//! tensor. Must never panic; bad files are typed errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("nephrod-fuzz-w-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(w) = nephrod::engine::weights::WeightFile::open(&path) {
        let m = w.manifest();
        for t in &m.tensors {
            let _ = w.tensor_f32(&t.name);
        }
        let _ = w.verify(&m);
    }
});
