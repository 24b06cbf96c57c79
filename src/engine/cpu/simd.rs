//! A minimal f32 vector abstraction for the convolution micro-kernel: one zero-sized marker
//! type per instruction set, each with a vector type and the five operations the kernel uses.
//!
//! Every method is `#[inline(always)]` and carries no `#[target_feature]` itself: it is only
//! ever inlined into a `#[target_feature]` entry point of `kernel.rs` (which has the feature),
//! where the intrinsics inline in turn. The methods are `unsafe` because calling them on a CPU
//! without the instruction set is undefined behaviour, and `load`/`store` dereference raw
//! pointers.

/// f32 SIMD operations of one instruction set.
pub(super) trait Simd {
    /// f32 lanes per vector.
    const LANES: usize;
    type V: Copy;
    /// # Safety
    /// The CPU supports the instruction set.
    unsafe fn splat(v: f32) -> Self::V;
    /// # Safety
    /// The CPU supports the instruction set; `p..p + LANES` is readable.
    unsafe fn load(p: *const f32) -> Self::V;
    /// # Safety
    /// The CPU supports the instruction set; `p..p + LANES` is writable.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a · b + c` (fused where the instruction set has FMA).
    /// # Safety
    /// The CPU supports the instruction set.
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Hint that the cache line holding `p` will be read soon (no-op where unsupported).
    /// Never faults, whatever `p` is.
    #[inline(always)]
    fn prefetch(_p: *const f32) {}
}

/// Portable fallback: eight lanes as a plain array (LLVM lowers it to the baseline vector
/// unit, e.g. SSE2 or NEON); multiply and add are not fused.
pub(super) struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 8] {
        [v; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable floats at `p`; unaligned read.
        unsafe { std::ptr::read_unaligned(p.cast::<[f32; 8]>()) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable floats at `p`; unaligned write.
        unsafe { std::ptr::write_unaligned(p.cast::<[f32; 8]>(), v) }
    }
    #[inline(always)]
    unsafe fn mul_add(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        let mut r = c;
        for i in 0..8 {
            r[i] = a[i] * b[i] + c[i];
        }
        r
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2Fma, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// AVX-512F: 16 lanes, 32 registers.
    pub(in super::super) struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: AVX-512F present and 16 readable floats at `p` (caller); unaligned load.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: AVX-512F present and 16 writable floats at `p` (caller).
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is a hint that never
            // faults or reads architecturally, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
        }
    }

    /// AVX2 with FMA3: 8 lanes, 16 registers.
    pub(in super::super) struct Avx2Fma;

    impl Simd for Avx2Fma {
        const LANES: usize = 8;
        type V = __m256;
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: AVX present and 8 readable floats at `p` (caller); unaligned load.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: AVX present and 8 writable floats at `p` (caller).
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller guarantees FMA3.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is a hint that never
            // faults or reads architecturally, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(super) use arm::Neon;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::Simd;
    use std::arch::aarch64::*;

    /// NEON (Advanced SIMD): 4 lanes, 32 registers.
    pub(in super::super) struct Neon;

    impl Simd for Neon {
        const LANES: usize = 4;
        type V = float32x4_t;
        #[inline(always)]
        unsafe fn splat(v: f32) -> float32x4_t {
            // SAFETY: NEON is part of the aarch64 baseline.
            unsafe { vdupq_n_f32(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> float32x4_t {
            // SAFETY: 4 readable floats at `p` (caller); NEON loads need no alignment.
            unsafe { vld1q_f32(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: float32x4_t) {
            // SAFETY: 4 writable floats at `p` (caller).
            unsafe { vst1q_f32(p, v) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
            // SAFETY: NEON is part of the aarch64 baseline; vfmaq_f32(c, a, b) = c + a·b.
            unsafe { vfmaq_f32(c, a, b) }
        }
    }
}
