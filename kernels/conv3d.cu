// conv3d.cu — direct 3-D convolution and transposed convolution, f32 activations, weights
// stored as f32 or as f16 (IEEE binary16 bits, as memory-mapped from the model bundle), f32
// accumulation (fused multiply-add). Semantics: src/engine/reference.rs (conv3d,
// conv_transpose3d): cross-correlation with zero padding, like PyTorch. An f16 weight is widened
// to f32 exactly when staged, so the *_f16w kernels compute exactly what the f32 kernels
// compute on the widened weights.
//
// Layouts (all contiguous, W fastest, element offsets as 64-bit):
//   x      (N, Ci, Di, Hi, Wi)  input activations, f32
//   w      conv3d_*:           (Co, Ci, kD, kH, kW)   PyTorch Conv3d order
//          conv_transpose3d_*: (Ci, Co, kD, kH, kW)   PyTorch ConvTranspose3d order
//          *_f32: float; *_f16w: unsigned short holding binary16 bits
//   bias   (Co) f32             always passed; zeros when the layer has no bias
//   y      (N, Co, Do, Ho, Wo)  f32 output, every element written exactly once
//
// Launch contract (all four kernels):
//   block = (CONV_THREADS = 256, 1, 1), exactly.
//   grid  = (ceil(Do·Ho·Wo / 256), ceil(Co / CONV_CO_TILE), N), CONV_CO_TILE = 4;
//           grid.y, grid.z ≤ 65535.
//   Thread (blockIdx.x·256 + threadIdx.x) computes one output voxel for the CONV_CO_TILE
//   consecutive output channels blockIdx.y·4 … +3 (those ≥ Co are skipped) of sample
//   blockIdx.z. The block stages the weights of its 4 output channels for CONV_CI_TILE = 8
//   input channels at a time in shared memory as f32 (4·8·125 floats = 16 KiB static).
//   Requires 1 ≤ kD, kH, kW ≤ 5 (CONV_KMAX = 125 taps), strides ≥ 1, paddings ≥ 0, and
//   output sizes as in src/engine/ops.rs; the host checks all of these before launching.
//   Every thread reaches every __syncthreads (threads without a voxel only help staging).
//
// Not yet: f16 activations, tensor cores (mma/wmma), register tiling over voxels — this is
// the simple, correct kernel family the faster ones are tested against.

#define CONV_THREADS 256
#define CONV_CO_TILE 4
#define CONV_CI_TILE 8
#define CONV_KMAX 125

// binary16 bits → f32, exact. On the device one cvt instruction; in the host emulation
// (g++, no __CUDA_ARCH__) the same value from the bit fields.
__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    const unsigned int sign = (h & 0x8000u) ? 1u : 0u;
    const unsigned int e = (h >> 10) & 0x1fu;
    const unsigned int m = h & 0x3ffu;
    float mag;
    if (e == 0x1fu) {
        mag = m ? __builtin_nanf("") : __builtin_inff();
    } else if (e == 0u) {
        mag = (float)m * 5.9604644775390625e-8f; // m · 2^-24, exact
    } else {
        mag = __builtin_ldexpf((float)(m | 0x400u), (int)e - 25); // (1024 + m) · 2^(e-25)
    }
    return sign ? -mag : mag;
#endif
}

__device__ __forceinline__ float load_weight(const float *__restrict__ w, long long i) {
    return w[i];
}

__device__ __forceinline__ float load_weight(const unsigned short *__restrict__ w, long long i) {
    return half_bits_to_float(w[i]);
}

template <typename W>
__device__ __forceinline__ void
conv3d_body(float *ws, const float *__restrict__ x, const W *__restrict__ w,
            const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di, int Hi, int Wi,
            int Co, int Do, int Ho, int Wo, int kD, int kH, int kW, int sD, int sH, int sW, int pD,
            int pH, int pW) {
    const int kvol = kD * kH * kW;
    const long long out_sp = (long long)Do * Ho * Wo;
    const long long in_sp = (long long)Di * Hi * Wi;
    const long long v = (long long)blockIdx.x * CONV_THREADS + threadIdx.x;
    const int co0 = blockIdx.y * CONV_CO_TILE;
    const int n = blockIdx.z;
    const bool active = v < out_sp;
    int ow = 0, oh = 0, od = 0;
    if (active) {
        ow = (int)(v % Wo);
        const long long t = v / Wo;
        oh = (int)(t % Ho);
        od = (int)(t / Ho);
    }
    const int id0 = od * sD - pD;
    const int ih0 = oh * sH - pH;
    const int iw0 = ow * sW - pW;

    float acc[CONV_CO_TILE];
#pragma unroll
    for (int j = 0; j < CONV_CO_TILE; ++j) {
        acc[j] = (co0 + j < Co) ? bias[co0 + j] : 0.0f;
    }

    for (int ci0 = 0; ci0 < Ci; ci0 += CONV_CI_TILE) {
        const int nci = min(CONV_CI_TILE, Ci - ci0);
        const int per_co = nci * kvol;
        // Stage w[co0 + j][ci0 + cl][k] at ws[(j·nci + cl)·kvol + k].
        for (int i = threadIdx.x; i < CONV_CO_TILE * per_co; i += CONV_THREADS) {
            const int j = i / per_co;
            const int r = i - j * per_co;
            const int cl = r / kvol;
            const int k = r - cl * kvol;
            const int co = co0 + j;
            ws[i] = co < Co ? load_weight(w, ((long long)co * Ci + ci0 + cl) * kvol + k) : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (int cl = 0; cl < nci; ++cl) {
                const float *xc = x + ((long long)n * Ci + ci0 + cl) * in_sp;
                const float *wc = ws + cl * kvol;
                for (int kd = 0; kd < kD; ++kd) {
                    const int id = id0 + kd;
                    if (id < 0 || id >= Di) {
                        continue;
                    }
                    for (int kh = 0; kh < kH; ++kh) {
                        const int ih = ih0 + kh;
                        if (ih < 0 || ih >= Hi) {
                            continue;
                        }
                        const float *xrow = xc + ((long long)id * Hi + ih) * Wi;
                        const float *wrow = wc + (kd * kH + kh) * kW;
                        for (int kw = 0; kw < kW; ++kw) {
                            const int iw = iw0 + kw;
                            if (iw < 0 || iw >= Wi) {
                                continue;
                            }
                            const float xv = xrow[iw];
#pragma unroll
                            for (int j = 0; j < CONV_CO_TILE; ++j) {
                                acc[j] = fmaf(xv, wrow[j * per_co + kw], acc[j]);
                            }
                        }
                    }
                }
            }
        }
        __syncthreads();
    }

    if (active) {
#pragma unroll
        for (int j = 0; j < CONV_CO_TILE; ++j) {
            const int co = co0 + j;
            if (co < Co) {
                y[((long long)n * Co + co) * out_sp + v] = acc[j];
            }
        }
    }
}

// Transposed convolution as a gather: output voxel o receives x[i]·w[k] for every tap k with
// o + pad − k = i·stride. Same launch contract and staging as conv3d, weight (Ci, Co, k…).
template <typename W>
__device__ __forceinline__ void
conv_transpose3d_body(float *ws, const float *__restrict__ x, const W *__restrict__ w,
                      const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di,
                      int Hi, int Wi, int Co, int Do, int Ho, int Wo, int kD, int kH, int kW,
                      int sD, int sH, int sW, int pD, int pH, int pW) {
    const int kvol = kD * kH * kW;
    const long long out_sp = (long long)Do * Ho * Wo;
    const long long in_sp = (long long)Di * Hi * Wi;
    const long long v = (long long)blockIdx.x * CONV_THREADS + threadIdx.x;
    const int co0 = blockIdx.y * CONV_CO_TILE;
    const int n = blockIdx.z;
    const bool active = v < out_sp;
    int ow = 0, oh = 0, od = 0;
    if (active) {
        ow = (int)(v % Wo);
        const long long t = v / Wo;
        oh = (int)(t % Ho);
        od = (int)(t / Ho);
    }

    float acc[CONV_CO_TILE];
#pragma unroll
    for (int j = 0; j < CONV_CO_TILE; ++j) {
        acc[j] = 0.0f;
    }

    for (int ci0 = 0; ci0 < Ci; ci0 += CONV_CI_TILE) {
        const int nci = min(CONV_CI_TILE, Ci - ci0);
        const int per_co = nci * kvol;
        // Stage w[ci0 + cl][co0 + j][k] at ws[(j·nci + cl)·kvol + k].
        for (int i = threadIdx.x; i < CONV_CO_TILE * per_co; i += CONV_THREADS) {
            const int j = i / per_co;
            const int r = i - j * per_co;
            const int cl = r / kvol;
            const int k = r - cl * kvol;
            const int co = co0 + j;
            ws[i] = co < Co ? load_weight(w, ((long long)(ci0 + cl) * Co + co) * kvol + k) : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (int cl = 0; cl < nci; ++cl) {
                const float *xc = x + ((long long)n * Ci + ci0 + cl) * in_sp;
                const float *wc = ws + cl * kvol;
                for (int kd = 0; kd < kD; ++kd) {
                    const int td = od + pD - kd;
                    if (td < 0 || td % sD != 0 || td / sD >= Di) {
                        continue;
                    }
                    const int id = td / sD;
                    for (int kh = 0; kh < kH; ++kh) {
                        const int th = oh + pH - kh;
                        if (th < 0 || th % sH != 0 || th / sH >= Hi) {
                            continue;
                        }
                        const int ih = th / sH;
                        const float *xrow = xc + ((long long)id * Hi + ih) * Wi;
                        const float *wrow = wc + (kd * kH + kh) * kW;
                        for (int kw = 0; kw < kW; ++kw) {
                            const int tw = ow + pW - kw;
                            if (tw < 0 || tw % sW != 0 || tw / sW >= Wi) {
                                continue;
                            }
                            const float xv = xrow[tw / sW];
#pragma unroll
                            for (int j = 0; j < CONV_CO_TILE; ++j) {
                                acc[j] = fmaf(xv, wrow[j * per_co + kw], acc[j]);
                            }
                        }
                    }
                }
            }
        }
        __syncthreads();
    }

    if (active) {
#pragma unroll
        for (int j = 0; j < CONV_CO_TILE; ++j) {
            const int co = co0 + j;
            if (co < Co) {
                y[((long long)n * Co + co) * out_sp + v] = acc[j] + bias[co];
            }
        }
    }
}

// Entry points: each declares its shared staging buffer and runs a body.

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv3d_f32(const float *__restrict__ x, const float *__restrict__ w,
        const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di, int Hi, int Wi,
        int Co, int Do, int Ho, int Wo, int kD, int kH, int kW, int sD, int sH, int sW, int pD,
        int pH, int pW) {
    __shared__ float ws[CONV_CO_TILE * CONV_CI_TILE * CONV_KMAX];
    conv3d_body<float>(ws, x, w, bias, y, Ci, Di, Hi, Wi, Co, Do, Ho, Wo, kD, kH, kW, sD, sH, sW, pD,
        pH, pW);
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv_transpose3d_f32(const float *__restrict__ x, const float *__restrict__ w,
        const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di, int Hi, int Wi,
        int Co, int Do, int Ho, int Wo, int kD, int kH, int kW, int sD, int sH, int sW, int pD,
        int pH, int pW) {
    __shared__ float ws[CONV_CO_TILE * CONV_CI_TILE * CONV_KMAX];
    conv_transpose3d_body<float>(ws, x, w, bias, y, Ci, Di, Hi, Wi, Co, Do, Ho, Wo, kD, kH, kW, sD, sH, sW, pD,
        pH, pW);
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv3d_f16w(const float *__restrict__ x, const unsigned short *__restrict__ w,
        const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di, int Hi, int Wi,
        int Co, int Do, int Ho, int Wo, int kD, int kH, int kW, int sD, int sH, int sW, int pD,
        int pH, int pW) {
    __shared__ float ws[CONV_CO_TILE * CONV_CI_TILE * CONV_KMAX];
    conv3d_body<unsigned short>(ws, x, w, bias, y, Ci, Di, Hi, Wi, Co, Do, Ho, Wo, kD, kH, kW, sD, sH, sW, pD,
        pH, pW);
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv_transpose3d_f16w(const float *__restrict__ x, const unsigned short *__restrict__ w,
        const float *__restrict__ bias, float *__restrict__ y, int Ci, int Di, int Hi, int Wi,
        int Co, int Do, int Ho, int Wo, int kD, int kH, int kW, int sD, int sH, int sW, int pD,
        int pH, int pW) {
    __shared__ float ws[CONV_CO_TILE * CONV_CI_TILE * CONV_KMAX];
    conv_transpose3d_body<unsigned short>(ws, x, w, bias, y, Ci, Di, Hi, Wi, Co, Do, Ho, Wo, kD, kH, kW, sD, sH, sW, pD,
        pH, pW);
}
