// Launchers of the CUDA kernels, callable from plain C++: no torch and no
// CUDA types cross this boundary, so the .cu files compile without torch's
// heavy headers and ops_cuda.cpp (compiled by the host compiler) holds all
// the torch code. Each launcher returns nullptr or a CUDA error string; the
// merge launchers throw std::invalid_argument on an unknown MergeArgs::mode
// (dispatch_mode).
#pragma once

#include <cstdint>

#include "../macros.h"

namespace a2s {
namespace cuda {

enum class Dtype : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };

struct InterpArgs {
  int64_t planes;  // N * C
  int H, W;        // input size
  int off;         // crop offset (-pad_beg)
  int He, We;      // effective input size
  int Ho, Wo;      // output size
};

struct MergeArgs {
  int mode;  // MergeMode code (scale_merge_math.h)
  int S;
  int64_t N, C;
  int H, W;                 // output size
  int h[kMaxScales];        // per-scale input sizes
  int w[kMaxScales];
  const void* P[kMaxScales];  // per-scale score maps, contiguous
  const void* gate;           // optional, N x C x H x W
  double avg_weight;
};

const char* interp_forward(Dtype dt, const void* x, void* y, const InterpArgs& a, void* stream);
const char* interp_backward(Dtype dt, const void* gy, void* gx, const InterpArgs& a, void* stream);
// logits: N x S x H x W (attention) or null; aux: weights (attention) or
// uint8 winning scale (max) or null (avg).
const char* scale_merge_forward(Dtype dt, const MergeArgs& a, const void* logits, void* out, void* aux,
                                void* stream);
const char* scale_merge_backward(Dtype dt, const MergeArgs& a, const void* grad, const void* aux,
                                 void* const* g_scores, void* g_logits, void* g_gate, void* stream);
const char* upsample_argmax(Dtype dt, const void* x, int64_t N, int64_t C, int h, int w, int H, int W,
                            int64_t* labels, void* score, void* stream);

}  // namespace cuda
}  // namespace a2s
