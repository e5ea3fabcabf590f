#include "dispatch.cuh"
#include "kernels.cuh"

namespace a2s {
namespace cuda {

const char* interp_forward(Dtype dt, const void* x, void* y, const InterpArgs& a, void* stream) {
  const int64_t n = a.planes * a.Ho * a.Wo;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kern::interp_forward<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<T*>(y), a);
  });
}

const char* interp_backward(Dtype dt, const void* gy, void* gx, const InterpArgs& a, void* stream) {
  const int64_t n = a.planes * a.H * a.W;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kern::interp_backward<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(gy), static_cast<T*>(gx), a);
  });
}

}  // namespace cuda
}  // namespace a2s
