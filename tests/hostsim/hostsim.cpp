// Test-only host simulation of the CUDA kernels: compiles csrc/cuda's
// launchers and kernels unchanged as host code (A2S_HOST_SIM), running each
// launch over its grid sequentially. Exposed as a C ABI for ctypes; no torch.
#define A2S_HOST_SIM 1
#include <stdexcept>
#include <string>

#include "cuda/launchers.inl"

using a2s::cuda::Dtype;

// The merge launchers throw on an unknown mode code (dispatch_mode); an
// exception must not cross into ctypes (it would abort the test process),
// so it comes back as the error string.
template <typename F>
static const char* guarded(F&& launch) {
  static std::string error;
  try {
    return launch();
  } catch (const std::exception& e) {
    error = e.what();
    return error.c_str();
  }
}

extern "C" {

void a2s_sim_set_max_blocks(unsigned m) { a2s::sim::max_blocks() = m; }

const char* a2s_sim_interp_forward(int dt, const void* x, void* y, int64_t planes, int H, int W, int off, int He,
                                   int We, int Ho, int Wo) {
  return a2s::cuda::interp_forward(Dtype(dt), x, y, {planes, H, W, off, He, We, Ho, Wo}, nullptr);
}

const char* a2s_sim_interp_backward(int dt, const void* gy, void* gx, int64_t planes, int H, int W, int off, int He,
                                    int We, int Ho, int Wo) {
  return a2s::cuda::interp_backward(Dtype(dt), gy, gx, {planes, H, W, off, He, We, Ho, Wo}, nullptr);
}

static a2s::cuda::MergeArgs merge_args(int mode, int S, int64_t N, int64_t C, int H, int W, const int* h,
                                       const int* w, const void* const* P, const void* gate, double avg_weight) {
  a2s::cuda::MergeArgs a{};
  a.mode = mode;
  a.S = S;
  a.N = N;
  a.C = C;
  a.H = H;
  a.W = W;
  for (int s = 0; s < S; ++s) {
    a.h[s] = h[s];
    a.w[s] = w[s];
    a.P[s] = P[s];
  }
  a.gate = gate;
  a.avg_weight = avg_weight;
  return a;
}

const char* a2s_sim_scale_merge_forward(int dt, int mode, int S, int64_t N, int64_t C, int H, int W, const int* h,
                                        const int* w, const void* const* P, const void* gate, double avg_weight,
                                        const void* logits, void* out, void* aux) {
  return guarded([&] {
    return a2s::cuda::scale_merge_forward(Dtype(dt), merge_args(mode, S, N, C, H, W, h, w, P, gate, avg_weight),
                                          logits, out, aux, nullptr);
  });
}

const char* a2s_sim_scale_merge_backward(int dt, int mode, int S, int64_t N, int64_t C, int H, int W, const int* h,
                                         const int* w, const void* const* P, const void* gate, double avg_weight,
                                         const void* grad, const void* aux, void* const* g_scores, void* g_logits,
                                         void* g_gate) {
  return guarded([&] {
    return a2s::cuda::scale_merge_backward(Dtype(dt), merge_args(mode, S, N, C, H, W, h, w, P, gate, avg_weight),
                                           grad, aux, g_scores, g_logits, g_gate, nullptr);
  });
}

const char* a2s_sim_upsample_argmax(int dt, const void* x, int64_t N, int64_t C, int h, int w, int H, int W,
                                    int64_t* labels, void* score) {
  return a2s::cuda::upsample_argmax(Dtype(dt), x, N, C, h, w, H, W, labels, score, nullptr);
}
}
