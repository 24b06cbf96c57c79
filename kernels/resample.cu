// resample.cu — affine resampling of a volume (trilinear / nearest) and the gradient of a
// resampled volume's loss with respect to the 12 affine parameters. Semantics and convention:
// src/engine/reference.rs, module doc ("Resampling convention"):
//   theta (3×4, row-major, f64) maps an OUTPUT voxel index q = (w, h, d, 1) to a continuous
//   INPUT voxel index p = θ·q = (pw, ph, pd); integer indices are voxel centres (PyTorch
//   grid_sample, align_corners=True, padding_mode="zeros").
//   trilinear: 8 neighbours weighted (1−f)/f per axis, neighbours outside the volume give 0;
//   nearest: the voxel at p rounded half-to-even per axis (rint), outside → 0.
// p is computed in f64 with unfused multiplies and adds in the reference's order
// ((θ0·w + θ1·h) + θ2·d) + θ3, so floor/rint decisions match the reference bit for bit.
//
// resample_affine_f32(x, theta, y, Di, Hi, Wi, Do, Ho, Wo, interp)
//   x (N·C, Di, Hi, Wi) f32; theta 12 f64 (device memory); y (N·C, Do, Ho, Wo) f32 out,
//   every element written once; interp: 0 nearest, 1 trilinear.
//   block = (RS_THREADS = 256, 1, 1), exactly; grid = (ceil(Do·Ho·Wo / 256), N·C, 1),
//   N·C ≤ 65535. Thread → one output voxel of channel blockIdx.y.
//
// resample_affine_grad_f32(x, theta, up, partial, Di, Hi, Wi, Do, Ho, Wo, total)
//   x as above; up (N·C, Do, Ho, Wo) f32, the upstream gradient ∂L/∂y; total = N·C·Do·Ho·Wo;
//   partial (gridDim.x, 12) f64 out: block b's share of ∂L/∂θ (row-major 3×4), every entry
//   written; the host sums the gridDim.x rows in f64 (deterministic, no atomics).
//   block = (256, 1, 1), exactly; grid = (any gx ≥ 1, 1, 1) — grid-stride loop over total.
//   Each thread accumulates its 12 sums in f64 registers; the block reduces them one after
//   another through a 256-entry f64 shared array (tree, __syncthreads per level).
//   At cell borders the one-sided derivative of the cell containing p (floor) is used.

#define RS_THREADS 256

__device__ __forceinline__ double map_axis(const double *t, double w, double h, double d) {
    return __dadd_rn(__dadd_rn(__dadd_rn(__dmul_rn(t[0], w), __dmul_rn(t[1], h)),
                               __dmul_rn(t[2], d)),
                     t[3]);
}

extern "C" __global__ void __launch_bounds__(RS_THREADS)
    resample_affine_f32(const float *__restrict__ x, const double *__restrict__ theta,
                        float *__restrict__ y, int Di, int Hi, int Wi, int Do, int Ho, int Wo,
                        int interp) {
    const long long out_sp = (long long)Do * Ho * Wo;
    const long long v = (long long)blockIdx.x * RS_THREADS + threadIdx.x;
    if (v >= out_sp) {
        return;
    }
    const long long nc = blockIdx.y;
    const float *xc = x + nc * ((long long)Di * Hi * Wi);
    const int w = (int)(v % Wo);
    const long long r = v / Wo;
    const int h = (int)(r % Ho);
    const int d = (int)(r / Ho);
    const double pw = map_axis(theta + 0, (double)w, (double)h, (double)d);
    const double ph = map_axis(theta + 4, (double)w, (double)h, (double)d);
    const double pd = map_axis(theta + 8, (double)w, (double)h, (double)d);

    float out = 0.0f;
    if (interp == 0) {
        const double rw = rint(pw), rh = rint(ph), rd = rint(pd);
        if (rw >= 0.0 && rw <= Wi - 1 && rh >= 0.0 && rh <= Hi - 1 && rd >= 0.0 &&
            rd <= Di - 1) {
            out = xc[((long long)rd * Hi + (long long)rh) * Wi + (long long)rw];
        }
    } else {
        const double fw = floor(pw), fh = floor(ph), fd = floor(pd);
        // Outside [−1, size − 1] on any axis every neighbour is outside (NaN fails too).
        if (fw >= -1.0 && fw <= Wi - 1 && fh >= -1.0 && fh <= Hi - 1 && fd >= -1.0 &&
            fd <= Di - 1) {
            const int bw = (int)fw, bh = (int)fh, bd = (int)fd;
            const float tw = (float)(pw - fw), th = (float)(ph - fh), td = (float)(pd - fd);
#pragma unroll
            for (int corner = 0; corner < 8; ++corner) {
                const int cw = corner & 1, ch = (corner >> 1) & 1, cd = (corner >> 2) & 1;
                const float wgt =
                    (cw ? tw : 1.0f - tw) * (ch ? th : 1.0f - th) * (cd ? td : 1.0f - td);
                const int iw = bw + cw, ih = bh + ch, id = bd + cd;
                if (wgt != 0.0f && iw >= 0 && iw < Wi && ih >= 0 && ih < Hi && id >= 0 &&
                    id < Di) {
                    out = fmaf(wgt, xc[((long long)id * Hi + ih) * Wi + iw], out);
                }
            }
        }
    }
    y[nc * out_sp + v] = out;
}

extern "C" __global__ void __launch_bounds__(RS_THREADS)
    resample_affine_grad_f32(const float *__restrict__ x, const double *__restrict__ theta,
                             const float *__restrict__ up, double *__restrict__ partial, int Di,
                             int Hi, int Wi, int Do, int Ho, int Wo, long long total) {
    __shared__ double s_red[RS_THREADS];
    const int tid = threadIdx.x;
    const long long out_sp = (long long)Do * Ho * Wo;
    const long long in_sp = (long long)Di * Hi * Wi;
    double acc[12];
#pragma unroll
    for (int k = 0; k < 12; ++k) {
        acc[k] = 0.0;
    }
    for (long long i = (long long)blockIdx.x * RS_THREADS + tid; i < total;
         i += (long long)gridDim.x * RS_THREADS) {
        const double g = (double)up[i];
        if (g == 0.0) {
            continue;
        }
        const long long nc = i / out_sp;
        const long long v = i - nc * out_sp;
        const int w = (int)(v % Wo);
        const long long r = v / Wo;
        const int h = (int)(r % Ho);
        const int d = (int)(r / Ho);
        const double q[4] = {(double)w, (double)h, (double)d, 1.0};
        const double p[3] = {map_axis(theta + 0, q[0], q[1], q[2]),
                             map_axis(theta + 4, q[0], q[1], q[2]),
                             map_axis(theta + 8, q[0], q[1], q[2])};
        const double f[3] = {floor(p[0]), floor(p[1]), floor(p[2])};
        if (!(f[0] >= -1.0 && f[0] <= Wi - 1 && f[1] >= -1.0 && f[1] <= Hi - 1 &&
              f[2] >= -1.0 && f[2] <= Di - 1)) {
            continue; // every neighbour outside: zero derivative
        }
        const double t[3] = {p[0] - f[0], p[1] - f[1], p[2] - f[2]};
        const int b[3] = {(int)f[0], (int)f[1], (int)f[2]};
        const float *xc = x + nc * in_sp;
        double dv[3] = {0.0, 0.0, 0.0};
#pragma unroll
        for (int corner = 0; corner < 8; ++corner) {
            const int o[3] = {corner & 1, (corner >> 1) & 1, (corner >> 2) & 1};
            const int iw = b[0] + o[0], ih = b[1] + o[1], id = b[2] + o[2];
            if (iw < 0 || iw >= Wi || ih < 0 || ih >= Hi || id < 0 || id >= Di) {
                continue;
            }
            const double val = (double)xc[((long long)id * Hi + ih) * Wi + iw];
#pragma unroll
            for (int a = 0; a < 3; ++a) {
                double wgt = o[a] ? 1.0 : -1.0;
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) {
                    if (bb != a) {
                        wgt *= o[bb] ? t[bb] : 1.0 - t[bb];
                    }
                }
                dv[a] += wgt * val;
            }
        }
#pragma unroll
        for (int row = 0; row < 3; ++row) {
            const double gd = g * dv[row];
#pragma unroll
            for (int col = 0; col < 4; ++col) {
                acc[row * 4 + col] += gd * q[col];
            }
        }
    }
#pragma unroll
    for (int k = 0; k < 12; ++k) {
        s_red[tid] = acc[k];
        __syncthreads();
        for (int stride = RS_THREADS / 2; stride > 0; stride >>= 1) {
            if (tid < stride) {
                s_red[tid] += s_red[tid + stride];
            }
            __syncthreads();
        }
        if (tid == 0) {
            partial[(long long)blockIdx.x * 12 + k] = s_red[0];
        }
        __syncthreads();
    }
}
