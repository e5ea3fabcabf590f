#include "dispatch.cuh"
#include "kernels.cuh"

namespace a2s {
namespace cuda {

const char* scale_merge_forward(Dtype dt, const MergeArgs& a, const void* logits, void* out, void* aux,
                                void* stream) {
  const int64_t HW = int64_t(a.H) * a.W;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (a.mode == kMergeAttention) {
      kern::softmax_scales_kernel<T><<<blocks_for(a.N * HW), kThreads, 0, as_stream(stream)>>>(
          static_cast<const T*>(logits), static_cast<T*>(aux), a.N, a.S, HW);
    }
    dispatch_mode(a.mode, [&](auto mode_c) {
      constexpr int MODE = decltype(mode_c)::value;
      kern::merge_forward<T, MODE><<<blocks_for(a.N * a.C * HW), kThreads, 0, as_stream(stream)>>>(
          a, MODE == kMergeAttention ? static_cast<const T*>(aux) : nullptr, static_cast<T*>(out),
          MODE == kMergeMax ? static_cast<uint8_t*>(aux) : nullptr);
    });
  });
}

const char* scale_merge_backward(Dtype dt, const MergeArgs& a, const void* grad, const void* aux,
                                 void* const* g_scores, void* g_logits, void* g_gate, void* stream) {
  const int64_t HW = int64_t(a.H) * a.W;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_mode(a.mode, [&](auto mode_c) {
      constexpr int MODE = decltype(mode_c)::value;
      const T* wts = MODE == kMergeAttention ? static_cast<const T*>(aux) : nullptr;
      const uint8_t* arg = MODE == kMergeMax ? static_cast<const uint8_t*>(aux) : nullptr;
      for (int s = 0; s < a.S; ++s) {
        kern::merge_backward_scores<T, MODE>
            <<<blocks_for(a.N * a.C * a.h[s] * a.w[s]), kThreads, 0, as_stream(stream)>>>(
                a, s, static_cast<const T*>(grad), wts, arg, static_cast<T*>(g_scores[s]));
      }
      if (MODE == kMergeAttention || a.gate != nullptr) {
        kern::merge_backward_pixels<T, MODE><<<blocks_for(a.N * HW), kThreads, 0, as_stream(stream)>>>(
            a, static_cast<const T*>(grad), wts, static_cast<T*>(g_logits), static_cast<T*>(g_gate));
      }
    });
  });
}

}  // namespace cuda
}  // namespace a2s
