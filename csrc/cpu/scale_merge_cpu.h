// Pieces shared by the scale_merge forward and backward CPU kernels: the
// input pointers and the row-wise form of merge_step. Row loops take the
// scale index out of the element loop (s == 0 starts the merge, later scales
// fold into it), which is what lets them vectorise; per element they compute
// exactly merge_step's expression, so results are bitwise those of
// scale_merge_math.h.
#pragma once

#include <vector>

#include "../op_common.h"
#include "../scale_merge_math.h"
#include "cpu_common.h"

namespace a2s {

template <typename T>
struct MergeTensors {
  std::vector<const T*> P;  // per-scale score maps, contiguous
  const T* logits_w = nullptr;  // forward: logits; backward: softmax weights
  const T* gate = nullptr;
};

// Folds the resized row of scale s, v(x) for x in [0, W), into the running
// merge acc/am of one output row. wrow: the scale's attention weights
// (attention only). am is int32 so the max update is branch-free.
template <int MODE, typename T, typename Acc, typename V>
inline void fold_row(int s, V v, const T* __restrict wrow, Acc* __restrict acc, int32_t* __restrict am, int W) {
  if (s == 0) {
    for (int x = 0; x < W; ++x) acc[x] = MODE == kMergeAttention ? Num<T>::load(wrow[x]) * v(x) : v(x);
    if (MODE == kMergeMax) {
      for (int x = 0; x < W; ++x) am[x] = 0;
    }
  } else if (MODE == kMergeMax) {
    for (int x = 0; x < W; ++x) {
      // merge_step: a strictly larger value takes over, ties keep the
      // lower scale. The arg update is a mask select: GCC 12 leaves the
      // plain ternary as a branch and the loop unvectorised.
      const Acc val = v(x), cur = acc[x];
      const int32_t take = -int32_t(val > cur);
      acc[x] = val > cur ? val : cur;
      am[x] = (s & take) | (am[x] & ~take);
    }
  } else if (MODE == kMergeAttention) {
    for (int x = 0; x < W; ++x) acc[x] = acc[x] + Num<T>::load(wrow[x]) * v(x);
  } else {
    for (int x = 0; x < W; ++x) acc[x] = acc[x] + v(x);
  }
}

// fold_row for output row y of a filled RowCache: the y blend (l0 * a + l1 *
// b, RowCache::row's expression) is done inside the fold, not stored.
template <int MODE, typename T, typename Acc>
inline void fold_cached_row(int s, const RowCache<T, Acc>& cache, const AxisTaps<Acc>& th, int y,
                            const T* wrow, Acc* acc, int32_t* am) {
  const Acc* __restrict a = cache.input_row(th.i0[y]);
  const Acc* __restrict b = cache.input_row(th.i1[y]);
  const Acc l0 = th.l0[y], l1 = th.l1[y];
  if (cache.identity) {
    fold_row<MODE, T, Acc>(s, [a](int x) { return a[x]; }, wrow, acc, am, cache.W);
  } else {
    fold_row<MODE, T, Acc>(s, [a, b, l0, l1](int x) { return l0 * a[x] + l1 * b[x]; }, wrow, acc, am, cache.W);
  }
}

// Per-scale tap tables of the output grid.
template <typename Acc>
struct MergeTaps {
  std::vector<AxisTaps<Acc>> th, tw;
  std::vector<char> identity;
  explicit MergeTaps(const MergeGeometry& g) : th(g.S), tw(g.S), identity(g.S) {
    for (int s = 0; s < g.S; ++s) {
      th[s] = make_taps<Acc>(g.h[s], g.H);
      tw[s] = make_taps<Acc>(g.w[s], g.W);
      identity[s] = interp_identity(g.h[s], g.w[s], g.H, g.W);
    }
  }
};

}  // namespace a2s
