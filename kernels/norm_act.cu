// norm_act.cu — instance normalisation with affine and a fused activation, f32. Semantics:
// src/engine/reference.rs (instance_norm_act): per (n, c), biased variance over D·H·W,
// y = act((x − mean)/√(var + eps)·γ + β), act ∈ {identity, ReLU, LeakyReLU(slope)}.
//
// Two kernels, run in this order on the same stream:
//
// instance_norm_stats_f32(x, partial, len, splits)
//   x        (N·C, len) f32, len = D·H·W
//   partial  (N·C, splits, 2) f32 out: mean and M2 (sum of squared deviations) of chunk b of
//            channel nc, chunk b = [⌊len·b/splits⌋, ⌊len·(b+1)/splits⌋); every entry written
//   block = (NORM_THREADS = 256, 1, 1), exactly; grid = (splits, N·C, 1), N·C ≤ 65535,
//   1 ≤ splits ≤ NORM_MAX_SPLITS = 64, len ≥ 1.
//   Each thread runs Welford over a strided part of the chunk; the block merges the 256
//   (count, mean, M2) triples pairwise in shared memory (Chan et al.), 8 __syncthreads rounds.
//
// instance_norm_apply_f32(x, partial, gamma, beta, y, len, C, splits, eps, act, slope)
//   gamma, beta (C) f32; y (N·C, len) f32 out, every element written once; act: 0 identity,
//   1 ReLU, 2 LeakyReLU with `slope`.
//   block = (256, 1, 1), exactly; grid = (any gx ≥ 1, N·C, 1) — a grid-stride loop covers len.
//   Thread 0 merges the channel's `splits` partials (counts recomputed from the chunk bounds)
//   into the mean and the scale a = γ/√(var+eps) in shared memory; after a __syncthreads
//   every thread writes act(fma(x − mean, a, β)) (x − mean first: folding mean into the shift
//   would cancel catastrophically when |mean·a| ≫ |β|).

#define NORM_THREADS 256
#define NORM_MAX_SPLITS 64

// Chan et al.'s merge of (count, mean, M2) b into a.
__device__ __forceinline__ void welford_merge(float &n_a, float &mean_a, float &m2_a, float n_b,
                                              float mean_b, float m2_b) {
    if (n_b == 0.0f) {
        return;
    }
    if (n_a == 0.0f) {
        n_a = n_b;
        mean_a = mean_b;
        m2_a = m2_b;
        return;
    }
    const float n = n_a + n_b;
    const float delta = mean_b - mean_a;
    const float fb = n_b / n;
    mean_a = fmaf(delta, fb, mean_a);
    m2_a = m2_a + m2_b + delta * delta * n_a * fb;
    n_a = n;
}

__device__ __forceinline__ long long chunk_start(long long len, int splits, int b) {
    return len * b / splits;
}

extern "C" __global__ void __launch_bounds__(NORM_THREADS)
    instance_norm_stats_f32(const float *__restrict__ x, float *__restrict__ partial,
                            long long len, int splits) {
    __shared__ float s_n[NORM_THREADS];
    __shared__ float s_mean[NORM_THREADS];
    __shared__ float s_m2[NORM_THREADS];
    const int tid = threadIdx.x;
    const int b = blockIdx.x;
    const long long nc = blockIdx.y;
    const float *xc = x + nc * len;
    const long long start = chunk_start(len, splits, b);
    const long long end = chunk_start(len, splits, b + 1);

    int count = 0;
    float mean = 0.0f;
    float m2 = 0.0f;
    for (long long i = start + tid; i < end; i += NORM_THREADS) {
        const float v = xc[i];
        ++count;
        const float d = v - mean;
        mean += d / (float)count;
        m2 = fmaf(d, v - mean, m2);
    }
    s_n[tid] = (float)count;
    s_mean[tid] = mean;
    s_m2[tid] = m2;
    __syncthreads();
    for (int stride = NORM_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            float n_a = s_n[tid], mean_a = s_mean[tid], m2_a = s_m2[tid];
            welford_merge(n_a, mean_a, m2_a, s_n[tid + stride], s_mean[tid + stride],
                          s_m2[tid + stride]);
            s_n[tid] = n_a;
            s_mean[tid] = mean_a;
            s_m2[tid] = m2_a;
        }
        __syncthreads();
    }
    if (tid == 0) {
        float *p = partial + (nc * splits + b) * 2;
        p[0] = s_mean[0];
        p[1] = s_m2[0];
    }
}

extern "C" __global__ void __launch_bounds__(NORM_THREADS)
    instance_norm_apply_f32(const float *__restrict__ x, const float *__restrict__ partial,
                            const float *__restrict__ gamma, const float *__restrict__ beta,
                            float *__restrict__ y, long long len, int C, int splits, float eps,
                            int act, float slope) {
    __shared__ float s_stats[3];
    const int tid = threadIdx.x;
    const long long nc = blockIdx.y;
    if (tid == 0) {
        float n = 0.0f, mean = 0.0f, m2 = 0.0f;
        for (int b = 0; b < splits; ++b) {
            const float *p = partial + (nc * splits + b) * 2;
            const float nb =
                (float)(chunk_start(len, splits, b + 1) - chunk_start(len, splits, b));
            welford_merge(n, mean, m2, nb, p[0], p[1]);
        }
        const float var = m2 / (float)len;
        const int c = (int)(nc % C);
        s_stats[0] = mean;
        s_stats[1] = gamma[c] / sqrtf(var + eps);
        s_stats[2] = beta[c];
    }
    __syncthreads();
    const float mean = s_stats[0];
    const float a = s_stats[1];
    const float b = s_stats[2];
    const float *xc = x + nc * len;
    float *yc = y + nc * len;
    for (long long i = (long long)blockIdx.x * NORM_THREADS + tid; i < len;
         i += (long long)gridDim.x * NORM_THREADS) {
        float v = fmaf(xc[i] - mean, a, b);
        if (act == 1) {
            v = v > 0.0f ? v : 0.0f;
        } else if (act == 2) {
            v = v >= 0.0f ? v : slope * v;
        }
        yc[i] = v;
    }
}
