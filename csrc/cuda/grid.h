// Kernel portability layer. In a CUDA build (__CUDACC__) kernels are
// __global__ functions launched with <<<>>>. In the test-only host
// simulation (A2S_HOST_SIM) the very same kernel templates compile as host
// code and a launcher runs them over the launch grid sequentially: every
// kernel is a grid-stride loop in which each iteration writes its own
// output element and reads only inputs (no shared memory, no warp
// intrinsics, no atomics), so sequential execution gives the GPU's result.
#pragma once

#include <cstdint>

#include "../macros.h"

#if defined(A2S_HOST_SIM)

namespace a2s {
namespace sim {
struct Dim {
  unsigned x = 0;
};
inline Dim& block_idx() { static thread_local Dim d; return d; }
inline Dim& thread_idx() { static thread_local Dim d; return d; }
inline Dim& block_dim() { static thread_local Dim d; return d; }
inline Dim& grid_dim() { static thread_local Dim d; return d; }

// Upper bound on simulated blocks; tests lower it so that the grid-stride
// loops wrap around as they do on a GPU for large inputs.
inline unsigned& max_blocks() { static unsigned m = 1u << 16; return m; }

template <typename... Params>
struct Launch {
  void (*kernel)(Params...);
  unsigned grid, block;
  template <typename... Args>
  void operator()(Args... args) const {
    grid_dim().x = grid;
    block_dim().x = block;
    for (unsigned b = 0; b < grid; ++b) {
      for (unsigned t = 0; t < block; ++t) {
        block_idx().x = b;
        thread_idx().x = t;
        kernel(args...);
      }
    }
  }
};

template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), unsigned grid, unsigned block) {
  return {kernel, grid, block};
}
}  // namespace sim
}  // namespace a2s

#define A2S_KERNEL
#define A2S_RESTRICT __restrict__
#define A2S_BLOCK_IDX (::a2s::sim::block_idx().x)
#define A2S_THREAD_IDX (::a2s::sim::thread_idx().x)
#define A2S_BLOCK_DIM (::a2s::sim::block_dim().x)
#define A2S_GRID_DIM (::a2s::sim::grid_dim().x)
#define A2S_LAUNCH(blocks, stream, ...) ::a2s::sim::launch(__VA_ARGS__, (blocks), ::a2s::kThreads)

#elif defined(__CUDACC__)

#define A2S_KERNEL __global__
#define A2S_RESTRICT __restrict__
#define A2S_BLOCK_IDX blockIdx.x
#define A2S_THREAD_IDX threadIdx.x
#define A2S_BLOCK_DIM blockDim.x
#define A2S_GRID_DIM gridDim.x
#define A2S_LAUNCH(blocks, stream, ...) \
  __VA_ARGS__<<<(blocks), ::a2s::kThreads, 0, ::a2s::cuda::as_stream(stream)>>>

#else
#error "csrc/cuda/grid.h is for nvcc or the host simulation (define A2S_HOST_SIM)"
#endif

#define A2S_GRID_STRIDE_LOOP(i, n)                                                   \
  for (int64_t i = int64_t(A2S_BLOCK_IDX) * A2S_BLOCK_DIM + A2S_THREAD_IDX; i < (n); \
       i += int64_t(A2S_BLOCK_DIM) * A2S_GRID_DIM)

namespace a2s {
// Launch geometry. attn2scale/ops/nvrtc.py reads these two constants from
// this file, so the runtime-compiled kernels launch exactly as the built ones.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;
// Blocks for n elements; grid-stride loops cover whatever a capped grid misses.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  b = b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b);
#if defined(A2S_HOST_SIM)
  if (b > sim::max_blocks()) b = sim::max_blocks();
#endif
  return static_cast<unsigned>(b);
}
}  // namespace a2s
