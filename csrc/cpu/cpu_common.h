// Per-axis tables the CPU kernels precompute once per call from the shared
// per-element math (interp_math.h): forward taps per output coordinate and
// the gather footprint (CSR) of every input coordinate for the adjoint.
#pragma once

#include <ATen/Parallel.h>

#include <vector>

#include "../interp_math.h"
#include "num_cpu.h"

namespace a2s {

template <typename Acc>
std::vector<Tap<Acc>> make_taps(int in, int out) {
  const Acc r = interp_ratio<Acc>(in, out);
  std::vector<Tap<Acc>> taps(out);
  for (int o = 0; o < out; ++o) taps[o] = interp_tap<Acc>(o, r, in);
  return taps;
}

template <typename Acc>
struct Footprints {
  std::vector<int> lo;      // first output coordinate touching input j
  std::vector<int64_t> at;  // offset of j's weights in w (size in + 1)
  std::vector<Acc> w;       // weights of outputs lo[j] .. lo[j] + count - 1
  int count(int j) const { return static_cast<int>(at[j + 1] - at[j]); }
};

template <typename Acc>
Footprints<Acc> make_footprints(int in, int out) {
  const Acc r = interp_ratio<Acc>(in, out);
  Footprints<Acc> f;
  f.lo.resize(in);
  f.at.resize(in + 1);
  f.at[0] = 0;
  for (int j = 0; j < in; ++j) {
    int lo, hi;
    adjoint_range<Acc>(j, r, out, lo, hi);
    f.lo[j] = lo;
    for (int o = lo; o < hi; ++o) f.w.push_back(adjoint_weight<Acc>(j, o, r, in));
    f.at[j + 1] = static_cast<int64_t>(f.w.size());
  }
  return f;
}

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work_per_item));
}

}  // namespace a2s
