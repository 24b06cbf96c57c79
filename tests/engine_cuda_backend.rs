//! Backend selection on any machine: `engine::cuda::select_backend(true)` never panics for lack
//! of a CUDA driver — it returns the CPU backend and logs why — and `CudaBackend::new()`
//! returns a typed error naming the reason (no driver; or, in a build without the `cuda`
//! feature, "built without CUDA support"). On a machine with a working driver the CUDA backend
//! must start instead.

use std::io::Write;
use std::sync::{Arc, Mutex};

use nephrod::engine::cuda::{driver_present, select_backend, CudaBackend};
use nephrod::engine::Tensor;

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn select_backend_falls_back_to_cpu_with_a_log_line() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let backend = tracing::subscriber::with_default(subscriber, || select_backend(true));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    if driver_present() {
        assert_eq!(
            backend.name(),
            "cuda",
            "a driver is present but CUDA did not start:\n{text}"
        );
    } else {
        assert_eq!(backend.name(), "cpu");
        assert!(
            text.contains("WARN")
                && text.contains("CUDA backend unavailable; using the CPU backend"),
            "no fallback log line: {text:?}"
        );
    }
    // The selected backend computes.
    let x = Tensor::from_fn([1, 2, 2, 3, 1], |[_, c, d, h, _]| (c + d + h) as f32);
    assert_eq!(backend.scale(&x, 2.0).unwrap().at([0, 1, 1, 2, 0]), 8.0);
    assert_eq!(select_backend(false).name(), "cpu");
}

#[test]
fn cuda_backend_new_names_the_reason() {
    match CudaBackend::new() {
        Ok(b) => assert!(
            driver_present(),
            "started without a driver?! {:?}",
            b.device()
        ),
        Err(e) => {
            #[cfg(not(feature = "cuda"))]
            {
                assert_eq!(e.kind(), "not_built");
                assert!(e.to_string().contains("built without CUDA support"), "{e}");
            }
            #[cfg(feature = "cuda")]
            {
                assert!(
                    !driver_present(),
                    "a driver is present but the backend failed: {e}"
                );
                assert_eq!(e.kind(), "no_driver", "{e}");
                assert!(e.to_string().contains("libcuda"), "{e}");
            }
        }
    }
}
