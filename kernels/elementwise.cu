// elementwise.cu — element-wise and per-voxel channel ops, f32. Semantics:
// src/engine/reference.rs (add, scale, sigmoid, softmax_channels, argmax_channels,
// concat_channels, accumulate_patch).
//
// Launch contract shared by every kernel here:
//   block = (EW_THREADS = 256, 1, 1), exactly; grid = (gx, gy, 1) with any gx ≥ 1 — each
//   kernel runs a grid-stride loop over its `total` items along x; gy is 1 except where noted.
//   Every output element is written exactly once; no shared memory, no atomics.
//
// add_f32(a, b, y, total)          y[i] = a[i] + b[i]                 a, b, y: total f32
// scale_f32(a, s, y, total)        y[i] = s·a[i]
// sigmoid_f32(x, y, total)         y[i] = 1/(1 + e^(−x[i]))
// softmax_channels_f32(x, y, C, S, total)
//   x, y (N, C, S) with S = D·H·W; item t ∈ [0, total = N·S) is (n = t / S, s = t % S):
//   y[n, c, s] = e^(x − m)/Σ_c e^(x − m), m = max_c x[n, c, s]. Reads stride S (coalesced).
// argmax_channels_f32(x, out, C, S, total)
//   x (N, C, S) f32; out (N, S) u32: the first channel holding the maximum (strict >).
// copy_rows_f32(src, dst, row, dst_stride, dst_offset, total)
//   Row-wise copy for channel concat: src is (rows, row) contiguous with total = rows·row;
//   element (r, i) goes to dst[r·dst_stride + dst_offset + i].
// accumulate_patch_f32(acc, wsum, patch, g, C, H, W, pd, ph, pw, od, oh, ow)
//   acc (1, C, D, H, W) and wsum (D, H, W) f32 in/out; patch (1, C, pd, ph, pw) and g
//   (pd, ph, pw) f32; item t ∈ [0, pd·ph·pw) is one patch voxel, which adds g into wsum and
//   patch·g into acc for every channel at (d + od, h + oh, w + ow). The host checks that the
//   patch lies inside acc; distinct items touch distinct voxels, so there are no races.

#define EW_THREADS 256

#define GRID_STRIDE_LOOP(i, total)                                                             \
    for (long long i = (long long)blockIdx.x * EW_THREADS + threadIdx.x; i < (total);          \
         i += (long long)gridDim.x * EW_THREADS)

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    add_f32(const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ y,
            long long total) {
    GRID_STRIDE_LOOP(i, total) { y[i] = a[i] + b[i]; }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    scale_f32(const float *__restrict__ a, float s, float *__restrict__ y, long long total) {
    GRID_STRIDE_LOOP(i, total) { y[i] = s * a[i]; }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    sigmoid_f32(const float *__restrict__ x, float *__restrict__ y, long long total) {
    GRID_STRIDE_LOOP(i, total) { y[i] = 1.0f / (1.0f + expf(-x[i])); }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    softmax_channels_f32(const float *__restrict__ x, float *__restrict__ y, int C, long long S,
                         long long total) {
    GRID_STRIDE_LOOP(t, total) {
        const long long n = t / S;
        const long long s = t - n * S;
        const float *xp = x + n * C * S + s;
        float *yp = y + n * C * S + s;
        float m = xp[0];
        for (int c = 1; c < C; ++c) {
            m = fmaxf(m, xp[c * S]);
        }
        float z = 0.0f;
        for (int c = 0; c < C; ++c) {
            z += expf(xp[c * S] - m);
        }
        const float inv = 1.0f / z;
        for (int c = 0; c < C; ++c) {
            yp[c * S] = expf(xp[c * S] - m) * inv;
        }
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    argmax_channels_f32(const float *__restrict__ x, unsigned int *__restrict__ out, int C,
                        long long S, long long total) {
    GRID_STRIDE_LOOP(t, total) {
        const long long n = t / S;
        const long long s = t - n * S;
        const float *xp = x + n * C * S + s;
        unsigned int best = 0;
        float best_v = xp[0];
        for (int c = 1; c < C; ++c) {
            const float v = xp[c * S];
            if (v > best_v) {
                best = (unsigned int)c;
                best_v = v;
            }
        }
        out[t] = best;
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    copy_rows_f32(const float *__restrict__ src, float *__restrict__ dst, long long row,
                  long long dst_stride, long long dst_offset, long long total) {
    GRID_STRIDE_LOOP(t, total) {
        const long long r = t / row;
        const long long i = t - r * row;
        dst[r * dst_stride + dst_offset + i] = src[t];
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    accumulate_patch_f32(float *__restrict__ acc, float *__restrict__ wsum,
                         const float *__restrict__ patch, const float *__restrict__ g, int C,
                         int D, int H, int W, int pd, int ph, int pw, int od, int oh, int ow) {
    const long long psp = (long long)pd * ph * pw;
    const long long asp = (long long)D * H * W;
    GRID_STRIDE_LOOP(t, psp) {
        const int w = (int)(t % pw);
        const long long r = t / pw;
        const int h = (int)(r % ph);
        const int d = (int)(r / ph);
        const long long a = ((long long)(d + od) * H + (h + oh)) * W + (w + ow);
        const float gv = g[t];
        wsum[a] += gv;
        for (int c = 0; c < C; ++c) {
            acc[c * asp + a] += patch[c * psp + t] * gv;
        }
    }
}
