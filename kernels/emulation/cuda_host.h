// cuda_host.h — runs nephrod's CUDA kernels (kernels/*.cu) on the CPU, from the same source,
// for tests on machines without a GPU (tests/engine_cuda_emulation.rs). Not shipped.
//
// Use: g++ -std=c++20 -pthread -include kernels/emulation/cuda_host.h -x c++ kernel.cu
// (the .cu files never include this header; on NVRTC it does not exist).
//
// Execution model of a launch (cuda_emu::launch):
// * Launches are serialised by a mutex per loaded library (cargo runs tests in parallel).
// * The grid's blocks run one after another, in blockIdx order (x fastest).
// * A block's threads are real OS threads (std::thread, one per CUDA thread), created once per
//   launch and reused for every block; they run the kernel concurrently, so data races between
//   threads of a block are real races here too (build with -fsanitize=thread to find them).
// * __syncthreads() is a barrier over the block's threads. A thread that returns from the
//   kernel while others of its block wait at, or later reach, a __syncthreads is reported as a
//   divergent barrier (an error of the launch; CUDA leaves it undefined).
// * __shared__ variables are function-level statics placed in the ELF section
//   "cuda_emu_shared": every thread of the running block sees the same storage, and because
//   blocks run in turn that storage is per block. Before every block the whole section is
//   filled with 0xFF bytes (NaN for floats, -1 for integers), so a kernel that reads shared
//   memory it did not write in this block sees poison, as on a GPU it would see garbage.
//   `extern __shared__` (dynamic shared memory) is not supported: kernels use static sizes.
// * threadIdx/blockIdx/blockDim/gridDim are thread-local.
// * atomicAdd/atomicMax/atomicMin/atomicExch/atomicCAS use std::atomic_ref.
// * CUDA's limits are checked: at most 1024 threads per block, grid.y and grid.z ≤ 65535, no
//   zero dimension (cuLaunchKernel rejects these too).
// * No warp semantics: kernels must not rely on implicit warp synchrony (nephrod's do not use
//   shuffles or warp-synchronous code).
// * Math: the float functions are the C library's (CUDA's differ by a few ulp); __dmul_rn,
//   __dadd_rn, __fmul_rn, __fadd_rn are plain IEEE operations (compile with
//   -ffp-contract=off so that nothing is fused where CUDA would not fuse).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static __attribute__((section("cuda_emu_shared"), used))

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
};

extern "C" {
// Bounds of the "cuda_emu_shared" section, provided by the linker (weak: a library whose
// kernels declare no __shared__ variable has no such section).
extern char __start_cuda_emu_shared[] __attribute__((weak));
extern char __stop_cuda_emu_shared[] __attribute__((weak));
}

namespace cuda_emu {

struct ThreadCoords {
    uint3 thread_idx{0, 0, 0};
    uint3 block_idx{0, 0, 0};
    dim3 block_dim{1, 1, 1};
    dim3 grid_dim{1, 1, 1};
};

inline thread_local ThreadCoords coords;

// One block's threads: a reusable barrier for __syncthreads that knows how many threads are
// still running the kernel body, plus the barrier between blocks.
class Block {
  public:
    explicit Block(int threads) : threads_(threads), running_(threads) {}

    // __syncthreads: all threads still in the kernel body meet here.
    void sync() {
        std::unique_lock<std::mutex> lock(mutex_);
        if (running_ != threads_) {
            divergent_ = true;
        }
        const unsigned long phase = sync_phase_;
        if (++arrived_ == running_) {
            arrived_ = 0;
            ++sync_phase_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lock, [&] { return sync_phase_ != phase; });
    }

    // A thread returned from the kernel body for this block. The last one runs `next` (which
    // prepares the next block) and releases everybody; the others wait for that.
    template <class F> void finish(F &&next) {
        std::unique_lock<std::mutex> lock(mutex_);
        --running_;
        if (arrived_ > 0) {
            // Others wait at a __syncthreads this thread never reached.
            divergent_ = true;
            if (arrived_ == running_) {
                arrived_ = 0;
                ++sync_phase_;
                cv_.notify_all();
            }
        }
        const unsigned long epoch = block_epoch_;
        if (running_ == 0) {
            next();
            running_ = threads_;
            arrived_ = 0;
            ++block_epoch_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lock, [&] { return block_epoch_ != epoch; });
    }

    bool divergent() const { return divergent_; }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    const int threads_;
    int running_;
    int arrived_ = 0;
    unsigned long sync_phase_ = 0;
    unsigned long block_epoch_ = 0;
    bool divergent_ = false;
};

inline thread_local Block *current_block = nullptr;

inline std::mutex &launch_mutex() {
    static std::mutex m;
    return m;
}

// Fills every __shared__ variable of this library with 0xFF bytes.
inline void poison_shared() {
    if (__start_cuda_emu_shared != nullptr && __stop_cuda_emu_shared != nullptr) {
        std::memset(__start_cuda_emu_shared, 0xFF,
                    static_cast<size_t>(__stop_cuda_emu_shared - __start_cuda_emu_shared));
    }
}

// Launch status codes (returned by the test launcher).
enum Status : int {
    kOk = 0,
    kBadConfig = 1,
    kDivergentBarrier = 2,
};

// Runs `body()` as a kernel over `grid` × `block`. Returns a Status.
template <class Body> int launch(dim3 grid, dim3 block, Body &&body) {
    const unsigned long long threads =
        static_cast<unsigned long long>(block.x) * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 ||
        block.z == 0 || threads > 1024 || block.z > 64 || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 2147483647u) {
        return kBadConfig;
    }
    std::lock_guard<std::mutex> guard(launch_mutex());
    const unsigned long long blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
    Block state(static_cast<int>(threads));
    poison_shared();
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned long long t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            coords.block_dim = block;
            coords.grid_dim = grid;
            coords.thread_idx = uint3{static_cast<unsigned>(t % block.x),
                                      static_cast<unsigned>((t / block.x) % block.y),
                                      static_cast<unsigned>(t / (block.x * block.y))};
            current_block = &state;
            for (unsigned long long b = 0; b < blocks; ++b) {
                coords.block_idx = uint3{static_cast<unsigned>(b % grid.x),
                                         static_cast<unsigned>((b / grid.x) % grid.y),
                                         static_cast<unsigned>(b / (grid.x * grid.y))};
                body();
                state.finish([] { poison_shared(); });
            }
            current_block = nullptr;
        });
    }
    for (auto &th : pool) {
        th.join();
    }
    return state.divergent() ? kDivergentBarrier : kOk;
}

// Calls `kernel` with arguments unpacked from `args`, cuLaunchKernel's convention: args[i]
// points at the value of parameter i.
template <class... A, size_t... I>
void call_unpacked(void (*kernel)(A...), void **args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<A> *>(args[I])...);
}

template <class... A>
int launch_kernel(void (*kernel)(A...), dim3 grid, dim3 block, void **args, int nargs) {
    if (nargs != static_cast<int>(sizeof...(A))) {
        return kBadConfig;
    }
    return launch(grid, block,
                  [&] { call_unpacked(kernel, args, std::index_sequence_for<A...>{}); });
}

} // namespace cuda_emu

#define threadIdx (::cuda_emu::coords.thread_idx)
#define blockIdx (::cuda_emu::coords.block_idx)
#define blockDim (::cuda_emu::coords.block_dim)
#define gridDim (::cuda_emu::coords.grid_dim)

inline void __syncthreads() { ::cuda_emu::current_block->sync(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- atomics -------------------------------------------------------------------------------
template <class T> inline T atomicAdd(T *address, T val) {
    return std::atomic_ref<T>(*address).fetch_add(val);
}
template <class T> inline T atomicExch(T *address, T val) {
    return std::atomic_ref<T>(*address).exchange(val);
}
template <class T> inline T atomicCAS(T *address, T compare, T val) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, val);
    return compare;
}
template <class T> inline T atomicMax(T *address, T val) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (old < val && !a.compare_exchange_weak(old, val)) {
    }
    return old;
}
template <class T> inline T atomicMin(T *address, T val) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (old > val && !a.compare_exchange_weak(old, val)) {
    }
    return old;
}

// ---- math (device functions without a C library equivalent) --------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
