//! The CUDA parity suite (tests/cuda_parity/) through the real CUDA backend: the same test
//! bodies the host emulation runs (tests/engine_cuda_emulation.rs), now on a GPU. Ignored by
//! default; on a machine with an NVIDIA GPU, its driver and NVRTC (libnvrtc.so.12 on the loader
//! path, or NEPHROD_NVRTC_LIBRARY pointing at it):
//!
//!     cargo test --features cuda --test engine_cuda_gpu -- --ignored --nocapture
//!
//! A machine where the backend cannot start fails every test with the reason (no silent pass).
#![cfg(feature = "cuda")]

mod cuda_parity;

use std::sync::OnceLock;

use nephrod::engine::cuda::CudaBackend;
use nephrod::engine::Backend;

fn gpu() -> &'static CudaBackend {
    static GPU: OnceLock<CudaBackend> = OnceLock::new();
    GPU.get_or_init(|| {
        let b = CudaBackend::new()
            .unwrap_or_else(|e| panic!("CUDA backend did not start ({}): {e}", e.kind()));
        println!("running on {:?}", b.device());
        assert_eq!(b.name(), "cuda");
        b
    })
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn conv3d_matches_reference() {
    cuda_parity::conv3d(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn conv_with_f16_weights_matches_the_f32_kernels_bit_for_bit() {
    cuda_parity::conv_f16_weights(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn conv_transpose3d_matches_reference() {
    cuda_parity::conv_transpose3d(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn instance_norm_matches_reference() {
    cuda_parity::instance_norm(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn channel_and_elementwise_ops_match_reference() {
    cuda_parity::channel_ops(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn concat_matches_reference() {
    cuda_parity::concat(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn accumulate_patch_matches_reference() {
    cuda_parity::accumulate_patch(gpu());
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --features cuda -- --ignored"]
fn resample_and_gradient_match_reference() {
    cuda_parity::resample(gpu());
}
