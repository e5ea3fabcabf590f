#include "dispatch.cuh"
#include "kernels.cuh"

namespace a2s {
namespace cuda {

const char* upsample_argmax(Dtype dt, const void* x, int64_t N, int64_t C, int h, int w, int H, int W,
                            int64_t* labels, void* score, void* stream) {
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kern::upsample_argmax_kernel<T><<<blocks_for(N * H * W), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), N, C, h, w, H, W, labels, static_cast<T*>(score));
  });
}

}  // namespace cuda
}  // namespace a2s
