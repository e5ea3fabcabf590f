// Per-axis tables the CPU kernels precompute once per call from the shared
// per-element math (interp_math.h): forward taps per output coordinate and
// the gather footprint (CSR) of every input coordinate for the adjoint.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>  // at::internal::GRAIN_SIZE

#include <type_traits>
#include <vector>

#include "../interp_math.h"
#include "num_cpu.h"

namespace a2s {

// Forward taps of one axis as a structure of arrays (interp_tap_table), so
// the loops that blend rows or gather columns read contiguous weights.
template <typename Acc>
struct AxisTaps {
  std::vector<int> i0, i1;
  std::vector<Acc> l0, l1;
  int size() const { return static_cast<int>(i0.size()); }
};

template <typename Acc>
AxisTaps<Acc> make_taps(int in, int out) {
  AxisTaps<Acc> t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.l0.resize(out);
  t.l1.resize(out);
  interp_tap_table<Acc>(in, out, t.i0.data(), t.i1.data(), t.l0.data(), t.l1.data());
  return t;
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

// A2S_CLONE_AVX2 marks a float row loop to be cloned for AVX2 with a
// default (baseline) clone, the choice made by the dynamic loader (an ifunc)
// from the CPU it runs on: so only where ifuncs exist (x86-64 glibc, GCC or
// a clang that knows target_clones); elsewhere a plain function.
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define A2S_CLONE_AVX2 __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef A2S_CLONE_AVX2
#define A2S_CLONE_AVX2
#endif

// One float row resized along x, dst[x] = l0[x] * src[i0[x]] + l1[x] *
// src[i1[x]] (RowCache::fill's expression), in rows_cpu.cpp: cloned there
// for AVX2, whose gathers the baseline build lacks; bitwise the same result.
void resize_row_float(const float* src, float* dst, const int* i0, const int* i1, const float* l0,
                      const float* l1, int W);

// Rows of one input plane resized along x, for a block of output rows: the
// separable form of bilinear_combine (x first, then y), which performs the
// same products and sums in the same order as the 4-tap formula, so results
// are bit-identical; the x gathers are done once per input row instead of
// once per output row, and the y blend vectorises. For an identity resize
// of float/double data the rows are the input's own (no copy).
template <typename T, typename Acc>
struct RowCache {
  std::vector<Acc> buf;
  const Acc* direct = nullptr;  // identity and T == Acc: rows read in place
  int lo = 0, W = 0;
  int64_t ld = 0;
  bool identity = false;

  // Input rows needed by output rows [y0, y1) of a plane of width w.
  void fill(const T* plane, int w, const AxisTaps<Acc>& th, const AxisTaps<Acc>& tw, int y0, int y1,
            bool ident) {
    W = tw.size();
    identity = ident;
    lo = th.i0[y0];
    const int hi = th.i1[y1 - 1];
    if constexpr (std::is_same<T, Acc>::value) {
      if (identity) {
        direct = plane;
        ld = w;
        return;
      }
    }
    direct = nullptr;
    ld = W;
    buf.resize(size_t(hi - lo + 1) * W);
    const int* __restrict i0 = tw.i0.data();
    const int* __restrict i1 = tw.i1.data();
    const Acc* __restrict l0 = tw.l0.data();
    const Acc* __restrict l1 = tw.l1.data();
    for (int r = lo; r <= hi; ++r) {
      const T* __restrict src = plane + int64_t(r) * w;
      Acc* __restrict dst = buf.data() + size_t(r - lo) * W;
      if (identity) {
        for (int x = 0; x < W; ++x) dst[x] = Num<T>::load(src[x]);
      } else if constexpr (std::is_same<T, float>::value && std::is_same<Acc, float>::value) {
        resize_row_float(src, dst, i0, i1, l0, l1, W);
      } else {
        for (int x = 0; x < W; ++x) dst[x] = l0[x] * Num<T>::load(src[i0[x]]) + l1[x] * Num<T>::load(src[i1[x]]);
      }
    }
  }

  // Input row i (within the filled range), resized along x.
  const Acc* input_row(int i) const {
    return direct ? direct + int64_t(i) * ld : buf.data() + size_t(i - lo) * W;
  }

  // Output row y of the taps th into dst[0, W).
  void row(const AxisTaps<Acc>& th, int y, Acc* dst) const {
    const Acc* a = input_row(th.i0[y]);
    const Acc* b = input_row(th.i1[y]);
    const Acc l1 = th.l1[y], l0 = th.l0[y];
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
