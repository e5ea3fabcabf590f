// Portability macros shared by the CPU kernels, the CUDA kernels and the
// host-side simulation of the CUDA kernels used in tests. No torch here.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define A2S_HD __host__ __device__
#else
#define A2S_HD
#endif

#define A2S_INLINE A2S_HD inline

namespace a2s {

// Largest number of scales a single scale_merge call accepts. Kernels keep
// per-scale state in fixed-size local arrays of this length.
constexpr int kMaxScales = 16;

// Interp coordinates are computed in float32 (as Caffe does), so every
// coordinate must be exactly representable: spatial sizes stay below 2^24.
constexpr int64_t kMaxSpatial = int64_t(1) << 24;

// Value traits: how a stored element converts to and from its accumulation
// type. The primary template covers float and double; the CPU and CUDA sides
// specialise it for their half and bfloat16 types.
template <typename T>
struct Num {
  using acc = T;
  static A2S_INLINE acc load(T v) { return v; }
  static A2S_INLINE T store(acc v) { return v; }
};

}  // namespace a2s
