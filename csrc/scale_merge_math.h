// Per-element math of scale_merge (the fused Interp + Softmax + Slice +
// SpatialProduct + Eltwise chain of the attention-to-scale nets), shared by
// every device. Operation order follows Caffe's layers so float32 results
// track Caffe's: Eltwise SUM adds scales in order, Power scales the sum,
// Softmax divides exp(l - max) by the sum, Eltwise MAX keeps the first max.
#pragma once

#if !defined(__CUDACC_RTC__)  // host-only parts (names, dispatch) are left out of a runtime (NVRTC) build
#include <stdexcept>
#include <string>
#include <type_traits>
#endif

#include "exp_math.h"
#include "macros.h"

namespace a2s {

// The merge modes: the one C++ table. A mode's code is its index in
// kMergeModeNames; parse_merge_mode (op_common.cpp) and every error message
// read the names from here, and attn2scale._C.merge_mode_names() exposes them
// so a test can hold them against the Python table
// (attn2scale.ops.reference.MERGE_MODES). Adding a mode touches this header
// (code, name, a case in dispatch_mode, its arithmetic in merge_step,
// merge_finish and merge_grad_share), the Python reference and the test that
// pins the table; a mode with a new kind of aux tensor also needs its
// allocation (op_common.cpp) and the fake kernel's shape (_registration.py).
enum MergeMode : int { kMergeAvg = 0, kMergeMax = 1, kMergeAttention = 2 };

#if !defined(__CUDACC_RTC__)
inline constexpr const char* kMergeModeNames[] = {"avg", "max", "attention"};
inline constexpr int kNumMergeModes = int(sizeof(kMergeModeNames) / sizeof(kMergeModeNames[0]));

constexpr bool same_name(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || same_name(a + 1, b + 1));
}
// An enum value and its name cannot drift apart unnoticed.
static_assert(same_name(kMergeModeNames[kMergeAvg], "avg"), "kMergeAvg is not named 'avg'");
static_assert(same_name(kMergeModeNames[kMergeMax], "max"), "kMergeMax is not named 'max'");
static_assert(same_name(kMergeModeNames[kMergeAttention], "attention"),
              "kMergeAttention is not named 'attention'");

// "'avg', 'max' or 'attention'": the modes as error messages list them.
inline std::string merge_mode_list() {
  std::string out;
  for (int m = 0; m < kNumMergeModes; ++m) {
    if (m > 0) out += m + 1 == kNumMergeModes ? " or " : ", ";
    out += std::string("'") + kMergeModeNames[m] + "'";
  }
  return out;
}

// Calls f with the mode as a compile-time constant. Host code only (it
// throws): an unknown code is a caller's bug (parse_merge_mode lets no
// unknown name through), and running some other mode's kernel on it would
// return a plausible wrong merge, so it stops here.
template <typename F>
void dispatch_mode(int mode, F&& f) {
  switch (mode) {
    case kMergeAvg: f(std::integral_constant<int, kMergeAvg>()); return;
    case kMergeMax: f(std::integral_constant<int, kMergeMax>()); return;
    case kMergeAttention: f(std::integral_constant<int, kMergeAttention>()); return;
  }
  throw std::invalid_argument("scale_merge: unknown merge mode code " + std::to_string(mode) +
                              "; the codes are 0.." + std::to_string(kNumMergeModes - 1) + " for " +
                              merge_mode_list());
}
#endif  // !__CUDACC_RTC__

// The softmax's exp: exp_math.h's, not expf/exp, whose last bit differs
// between glibc and CUDA; this one rounds the same on every device.
A2S_INLINE float exp_acc(float v) { return exp_portable(v); }
A2S_INLINE double exp_acc(double v) { return exp_portable(v); }

// Per-pixel softmax over the S scale logits found at logits[s * stride].
template <typename T, typename Acc>
A2S_INLINE void softmax_scales(const T* logits, int64_t stride, int S, Acc* w) {
  Acc m = Num<T>::load(logits[0]);
  for (int s = 1; s < S; ++s) {
    const Acc v = Num<T>::load(logits[s * stride]);
    m = v > m ? v : m;
  }
  Acc sum = Acc(0);
  for (int s = 0; s < S; ++s) {
    w[s] = exp_acc(Num<T>::load(logits[s * stride]) - m);
    sum += w[s];
  }
  for (int s = 0; s < S; ++s) w[s] = w[s] / sum;
}

// Fold scale s (resized value v, attention weight ws) into the running merge.
// For max, ties keep the lowest scale index (the first maximal input).
template <typename Acc>
A2S_INLINE void merge_step(int mode, int s, Acc v, Acc ws, Acc& acc, int& arg) {
  if (mode == kMergeMax) {
    if (s == 0 || v > acc) {
      acc = v;
      arg = s;
    }
  } else if (mode == kMergeAttention) {
    acc = (s == 0) ? ws * v : acc + ws * v;
  } else {
    acc = (s == 0) ? v : acc + v;
  }
}

template <typename Acc>
A2S_INLINE Acc merge_finish(int mode, Acc acc, Acc avg_weight) {
  return mode == kMergeAvg ? acc * avg_weight : acc;
}

// Share of the upstream gradient ghat (= grad_out * gate) that flows back to
// scale s at one output element.
template <typename Acc>
A2S_INLINE Acc merge_grad_share(int mode, int s, Acc ghat, Acc ws, int arg, Acc avg_weight) {
  if (mode == kMergeAttention) return ghat * ws;
  if (mode == kMergeMax) return arg == s ? ghat : Acc(0);
  return ghat * avg_weight;
}

// Softmax backward at one pixel: g_s = w_s * (a_s - sum_t w_t a_t), where a_s
// is the gradient reaching weight s (sum over classes of ghat * R_s(P_s)).
template <typename Acc>
A2S_INLINE Acc softmax_dot(const Acc* w, const Acc* a, int S) {
  Acc dot = Acc(0);
  for (int s = 0; s < S; ++s) dot += w[s] * a[s];
  return dot;
}

// Argmax rule of torch.argmax: larger wins, ties keep the earlier class,
// NaN counts as the largest value (the first NaN is kept). Written as
// !(v <= best) && best == best, which has the truth table of
// v > best || (v != v && best == best) in two compares and no branch, so
// the CPU's row loops vectorise it.
template <typename Acc>
A2S_INLINE bool argmax_better(Acc v, Acc best) {
  return !(v <= best) && best == best;
}

}  // namespace a2s
