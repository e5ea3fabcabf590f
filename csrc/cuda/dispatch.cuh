// Element-type dispatch and launch-error reporting for the .cu launchers.
#pragma once

#include "launch.h"
#if !defined(A2S_HOST_SIM)
#include <cuda_runtime.h>

#include "num_cuda.h"
#endif
#include "../scale_merge_math.h"


namespace a2s {
namespace cuda {

template <typename T>
struct Type {
  using type = T;
};

template <typename F>
const char* dispatch(Dtype dt, F&& f) {
  switch (dt) {
    case Dtype::kFloat: f(Type<float>()); break;
    case Dtype::kDouble: f(Type<double>()); break;
#if defined(A2S_HOST_SIM)
    default: return "the host simulation runs float32 and float64 only";
  }
  return nullptr;
#else
    case Dtype::kHalf: f(Type<__half>()); break;
    case Dtype::kBFloat16: f(Type<__nv_bfloat16>()); break;
    default: return "unsupported dtype";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
#endif
}

#if !defined(A2S_HOST_SIM)
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
#endif

}  // namespace cuda
}  // namespace a2s
