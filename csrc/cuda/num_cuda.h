// Value traits for CUDA's half types: accumulate in float. Explicit
// conversion intrinsics, since torch builds with __CUDA_NO_HALF_CONVERSIONS__.
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../macros.h"

namespace a2s {

template <>
struct Num<__half> {
  using acc = float;
  static __host__ __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __host__ __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};

template <>
struct Num<__nv_bfloat16> {
  using acc = float;
  static __host__ __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __host__ __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace a2s
#endif
