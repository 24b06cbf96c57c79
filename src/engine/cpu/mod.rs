//! Fast CPU convolutions: conv3d and conv_transpose3d with explicit SIMD (AVX-512F, AVX2+FMA,
//! NEON, portable fallback) chosen at run time, multi-threaded with rayon (the current pool),
//! weights repacked once into the kernel's layout ([`PackedConv3d`], [`PackedConvTranspose3d`]).
//!
//! # How conv3d runs
//! The output is cut into work units (batch, a block of output planes `od` — several only when
//! planes are small —, a block of output rows, a range of output channels), run in parallel.
//! Per unit, the input rows it needs are gathered into a thread-local *slab*, zero-padded, so
//! that every tap of every output position is a constant offset and the micro-kernel
//! (`kernel.rs`) needs no edge handling. Two register tilings ([`ConvKernel`]):
//! * **channel** (most layers): a tile is up to 12 consecutive output positions of one row
//!   (or several whole rows when rows are short) × 32 output channels (AVX-512; 16 with
//!   AVX2), one input value broadcast against two weight vectors per FMA pair. Stride 2 is a
//!   stride between the broadcast positions. The tile is transposed into NCDHW rows at the end
//!   (in registers with AVX-512).
//! * **spatial** (few channels, e.g. the 1-channel first layer): a tile is 6 output channels
//!   × 64 consecutive positions (vectors along W); the slab is split into stride phases along
//!   H and W and output rows are flattened end to end (a row's last `wq − Wo` positions are
//!   computed and discarded).
//!
//! The reduction (input channels × taps) runs in blocks of input channels sized so that a
//! block's weights for one tile stay in L1; partial sums of all the unit's tiles are kept in a
//! per-unit buffer between blocks. Taps whose input plane lies in the D padding are skipped.
//!
//! # conv_transpose3d
//! With kernel = stride and no padding (nnU-Net's up-convolutions) every output voxel receives
//! exactly one tap: the op is a GEMM of (output channel, tap) rows × input positions, run by
//! the same micro-kernels and scattered (interleaved along W) into the output. Other
//! configurations use a correct, threaded, unvectorised path.
//!
//! # Numerics
//! f32 accumulation (fused multiply-add where the instruction set has it) in a different
//! order from [`crate::engine::reference`] (which uses f64): `tests/engine_cpu_conv.rs` states
//! the bound.
//!
//! # Instruction set
//! [`Isa::selected`] is the best one the CPU has, unless `NEPHROD_CPU_ISA` (avx512, avx2,
//! neon, scalar) names another that it has. Tests and benchmarks pick one explicitly with
//! [`PackedConv3d::with_isa`] / [`PackedConv3d::with_kernel`]. All `unsafe` code of the
//! module is in `kernel.rs` and `simd.rs`, behind safe functions that check bounds once per
//! tile.

mod conv;
mod conv_transpose;
mod kernel;
mod simd;

use std::sync::OnceLock;

pub use conv::{ConvKernel, PackedConv3d};
pub use conv_transpose::PackedConvTranspose3d;

use super::ops::{Conv3d, ConvTranspose3d};
use super::tensor::Tensor;
use super::EngineError;

/// Instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F (16 lanes).
    Avx512,
    /// x86-64 AVX2 with FMA3 (8 lanes).
    Avx2Fma,
    /// aarch64 Advanced SIMD (4 lanes).
    Neon,
    /// Portable code, no CPU feature required.
    Scalar,
}

impl Isa {
    /// Every instruction set, best first.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2Fma, Isa::Neon, Isa::Scalar];

    /// Short stable name ("avx512", "avx2", "neon", "scalar").
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }

    /// Parses [`Isa::name`].
    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the instruction set (run-time detection).
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Isa::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The instruction sets this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best instruction set this CPU can run.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// [`Isa::detect`], or the one named by `NEPHROD_CPU_ISA` if this CPU has it (otherwise a
    /// warning is logged and the detected one is used). Decided once per process.
    pub fn selected() -> Isa {
        static SELECTED: OnceLock<Isa> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let best = Isa::detect();
            match std::env::var("NEPHROD_CPU_ISA") {
                Ok(v) if !v.trim().is_empty() => match Isa::from_name(&v) {
                    Some(i) if i.is_available() => i,
                    _ => {
                        tracing::warn!(
                            requested = %v,
                            using = best.name(),
                            "NEPHROD_CPU_ISA names an instruction set this CPU lacks or an unknown one"
                        );
                        best
                    }
                },
                _ => best,
            }
        })
    }
}

/// conv3d on the CPU with [`Isa::selected`] (packs the weights, then runs).
pub fn conv3d(x: &Tensor, conv: &Conv3d) -> Result<Tensor, EngineError> {
    PackedConv3d::new(conv)?.forward(x)
}

/// conv_transpose3d on the CPU with [`Isa::selected`] (packs the weights, then runs).
pub fn conv_transpose3d(x: &Tensor, conv: &ConvTranspose3d) -> Result<Tensor, EngineError> {
    PackedConvTranspose3d::new(conv)?.forward(x)
}

/// Error for a caller-chosen instruction set this CPU lacks.
fn unavailable(op: &'static str, isa: Isa) -> EngineError {
    EngineError::Unsupported {
        op,
        backend: "cpu",
        why: format!("instruction set {} not available on this CPU", isa.name()),
    }
}

/// How many work units to aim for: enough for load balance on the current rayon pool.
fn target_units() -> usize {
    4 * rayon::current_num_threads().max(1)
}

/// A zeroed f32 buffer whose first element is 64-byte aligned (one cache line, one AVX-512
/// vector), so that packed weight vectors never straddle cache lines. Safe code only: the
/// alignment offset is found with `align_offset` inside an over-allocated `Vec`.
#[derive(Debug)]
struct AlignedVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedVec {
    const ALIGN_FLOATS: usize = 16;

    fn zeroed(len: usize) -> Self {
        let buf = vec![0f32; len + Self::ALIGN_FLOATS];
        // align_offset may give usize::MAX in principle; fall back to an unaligned start.
        let off = buf.as_ptr().align_offset(64);
        let off = if off < Self::ALIGN_FLOATS { off } else { 0 };
        Self { buf, off, len }
    }

    fn as_slice(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl Clone for AlignedVec {
    fn clone(&self) -> Self {
        let mut v = AlignedVec::zeroed(self.len);
        v.as_mut_slice().copy_from_slice(self.as_slice());
        v
    }
}
