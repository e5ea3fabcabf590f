// Launcher bodies, shared by the CUDA build (kernels.cu) and the test-only
// host simulation (tests/hostsim): the same grid sizes, the same kernels.
// A2S_LAUNCH(blocks, stream, kernel)(args...) is kernel<<<blocks, kThreads,
// 0, stream>>>(args...) under nvcc and a sequential loop over the grid in
// the simulation.
#pragma once

#include "dispatch.cuh"
#include "kernels.cuh"

namespace a2s {
namespace cuda {

const char* interp_forward(Dtype dt, const void* x, void* y, const InterpArgs& a, void* stream) {
  const int64_t n = a.planes * a.Ho * a.Wo;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    A2S_LAUNCH(blocks_for(n), stream, kern::interp_forward<T>)(
        static_cast<const T*>(x), static_cast<T*>(y), a);
  });
}

const char* interp_backward(Dtype dt, const void* gy, void* gx, const InterpArgs& a, void* stream) {
  const int64_t n = a.planes * a.H * a.W;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    A2S_LAUNCH(blocks_for(n), stream, kern::interp_backward<T>)(
        static_cast<const T*>(gy), static_cast<T*>(gx), a);
  });
}

const char* scale_merge_forward(Dtype dt, const MergeArgs& a, const void* logits, void* out, void* aux,
                                void* stream) {
  const int64_t HW = int64_t(a.H) * a.W;
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (a.mode == kMergeAttention) {
      A2S_LAUNCH(blocks_for(a.N * HW), stream, kern::softmax_scales_kernel<T>)(
          static_cast<const T*>(logits), static_cast<T*>(aux), a.N, a.S, HW);
    }
    dispatch_mode(a.mode, [&](auto mode_c) {
      constexpr int MODE = decltype(mode_c)::value;
      A2S_LAUNCH(blocks_for(a.N * a.C * HW), stream, kern::merge_forward<T, MODE>)(
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
        A2S_LAUNCH(blocks_for(a.N * a.C * a.h[s] * a.w[s]), stream, kern::merge_backward_scores<T, MODE>)(
                a, s, static_cast<const T*>(grad), wts, arg, static_cast<T*>(g_scores[s]));
      }
      if (MODE == kMergeAttention || a.gate != nullptr) {
        A2S_LAUNCH(blocks_for(a.N * HW), stream, kern::merge_backward_pixels<T, MODE>)(
            a, static_cast<const T*>(grad), wts, static_cast<T*>(g_logits), static_cast<T*>(g_gate));
      }
    });
  });
}

const char* upsample_argmax(Dtype dt, const void* x, int64_t N, int64_t C, int h, int w, int H, int W,
                            int64_t* labels, void* score, void* stream) {
  return dispatch(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    A2S_LAUNCH(blocks_for(N * H * W), stream, kern::upsample_argmax_kernel<T>)(
        static_cast<const T*>(x), N, C, h, w, H, W, labels, static_cast<T*>(score));
  });
}

}  // namespace cuda
}  // namespace a2s
