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

// Rows of one input plane resized along x, for a block of output rows: the
// separable form of bilinear_combine (x first, then y), which performs the
// same products and sums in the same order as the 4-tap formula, so results
// are bit-identical; the x gathers are done once per input row instead of
// once per output row, and the y blend vectorises.
template <typename T, typename Acc>
struct RowCache {
  std::vector<Acc> buf;
  int lo = 0, W = 0;
  bool identity = false;

  // Input rows needed by output rows [y0, y1) of a plane of width w.
  void fill(const T* plane, int w, const std::vector<Tap<Acc>>& th, const std::vector<Tap<Acc>>& tw, int y0,
            int y1, bool ident) {
    W = static_cast<int>(tw.size());
    identity = ident;
    lo = th[y0].i0;
    const int hi = th[y1 - 1].i1;
    buf.resize(size_t(hi - lo + 1) * W);
    for (int r = lo; r <= hi; ++r) {
      const T* src = plane + int64_t(r) * w;
      Acc* dst = buf.data() + size_t(r - lo) * W;
      for (int x = 0; x < W; ++x) {
        const Tap<Acc>& u = tw[x];
        dst[x] = identity ? Num<T>::load(src[x])
                          : (Acc(1) - u.l1) * Num<T>::load(src[u.i0]) + u.l1 * Num<T>::load(src[u.i1]);
      }
    }
  }

  // Input row i (within the filled range), resized along x.
  const Acc* input_row(int i) const { return buf.data() + size_t(i - lo) * W; }

  // Output row with taps t into dst[0, W).
  void row(const Tap<Acc>& t, Acc* dst) const {
    const Acc* a = input_row(t.i0);
    const Acc* b = input_row(t.i1);
    const Acc l1 = t.l1, l0 = Acc(1) - l1;
    const int n = W;
    if (identity) {
      for (int x = 0; x < n; ++x) dst[x] = a[x];
    } else {
      for (int x = 0; x < n; ++x) dst[x] = l0 * a[x] + l1 * b[x];
    }
  }
};

// Output rows per work item when a kernel caches input rows per block.
constexpr int kRowBlock = 8;

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work_per_item));
}

}  // namespace a2s
