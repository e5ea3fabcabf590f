// Per-element math of Caffe's Interp layer (align-corners bilinear), shared
// by every device. Forward and the gather-form adjoint use the same
// coordinate function, so the adjoint is exact for the forward we compute.
#pragma once

#include "macros.h"

namespace a2s {

// Caffe: ratio = (in - 1) / (out - 1) computed in float for float data; we
// compute it in the accumulation type (float for float/half/bfloat16, double
// for double), which equals Caffe for float32 and PyTorch for both.
template <typename Acc>
A2S_INLINE Acc interp_ratio(int in, int out) {
  return out > 1 ? static_cast<Acc>(in - 1) / static_cast<Acc>(out - 1) : Acc(0);
}

// Source taps of output coordinate o: i0 = (int)(r*o), i1 = i0 + (i0 < in-1),
// lambda1 = r*o - i0 (the weight of i1; i0 gets 1 - lambda1).
template <typename Acc>
struct Tap {
  int i0;
  int i1;
  Acc l1;
};

template <typename Acc>
A2S_INLINE Tap<Acc> interp_tap(int o, Acc r, int in) {
  const Acc src = r * static_cast<Acc>(o);
  Tap<Acc> t;
  t.i0 = static_cast<int>(src);
  t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
  t.l1 = src - static_cast<Acc>(t.i0);
  return t;
}

// Tap table of one axis, structure of arrays (what the CPU kernels stream
// and vectorise over): for every output coordinate o, the two source
// coordinates and both weights, l0 = 1 - l1 exactly as bilinear_combine
// forms it. Tables built here are bitwise the per-element taps.
template <typename Acc>
A2S_INLINE void interp_tap_table(int in, int out, int* i0, int* i1, Acc* l0, Acc* l1) {
  const Acc r = interp_ratio<Acc>(in, out);
  for (int o = 0; o < out; ++o) {
    const Tap<Acc> t = interp_tap<Acc>(o, r, in);
    i0[o] = t.i0;
    i1[o] = t.i1;
    l1[o] = t.l1;
    l0[o] = Acc(1) - t.l1;
  }
}

// Caffe's evaluation order: lh0*(lw0*p00 + lw1*p01) + lh1*(lw0*p10 + lw1*p11).
// p00..p11 are already converted to Acc.
template <typename Acc>
A2S_INLINE Acc bilinear_combine(Acc p00, Acc p01, Acc p10, Acc p11, Acc lh1, Acc lw1) {
  const Acc lh0 = Acc(1) - lh1;
  const Acc lw0 = Acc(1) - lw1;
  return lh0 * (lw0 * p00 + lw1 * p01) + lh1 * (lw0 * p10 + lw1 * p11);
}

// One output value of a plane with row stride `ld`, sampled at (th, tw).
template <typename T, typename Acc>
A2S_INLINE Acc bilinear_at(const T* plane, int64_t ld, const Tap<Acc>& th, const Tap<Acc>& tw) {
  const T* r0 = plane + static_cast<int64_t>(th.i0) * ld;
  const T* r1 = plane + static_cast<int64_t>(th.i1) * ld;
  return bilinear_combine<Acc>(Num<T>::load(r0[tw.i0]), Num<T>::load(r0[tw.i1]),
                               Num<T>::load(r1[tw.i0]), Num<T>::load(r1[tw.i1]), th.l1, tw.l1);
}

// Caffe's Interp copies when input and output sizes agree on both axes. The
// 4-tap formula gives the same finite values (weights 1 and 0), but would turn
// an inf neighbour into NaN (0 * inf), so identity resizes take this path.
A2S_INLINE bool interp_identity(int in_h, int in_w, int out_h, int out_w) {
  return in_h == out_h && in_w == out_w;
}

// Value at output (y, x): a copy for identity resizes, else 4 taps.
template <typename T, typename Acc>
A2S_INLINE Acc sample_at(const T* plane, int64_t ld, bool identity, int y, int x, const Tap<Acc>& th,
                         const Tap<Acc>& tw) {
  return identity ? Num<T>::load(plane[int64_t(y) * ld + x]) : bilinear_at<T, Acc>(plane, ld, th, tw);
}

// Smallest o in [0, out] with (int)(r*o) >= target. (int)(r*o) is monotone
// in o, so a binary search over the very expression of interp_tap finds the
// footprint exactly, with no division and no special case for r == 0.
template <typename Acc>
A2S_INLINE int first_output_reaching(int target, Acc r, int out) {
  int lo = 0, hi = out;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (static_cast<int>(r * static_cast<Acc>(mid)) >= target) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// Output coordinates [lo, hi) whose taps touch input coordinate j: those with
// i0 == j - 1 (j is their i1) and those with i0 == j. Contiguous because i0
// is monotone.
template <typename Acc>
A2S_INLINE void adjoint_range(int j, Acc r, int out, int& lo, int& hi) {
  lo = first_output_reaching<Acc>(j - 1, r, out);
  hi = first_output_reaching<Acc>(j + 1, r, out);
}

// Weight with which output coordinate o reads input coordinate j: the sum of
// its two tap weights that land on j (both, at the last row where i1 == i0).
template <typename Acc>
A2S_INLINE Acc adjoint_weight(int j, int o, Acc r, int in) {
  const Tap<Acc> t = interp_tap<Acc>(o, r, in);
  Acc w = Acc(0);
  if (t.i0 == j) w += Acc(1) - t.l1;
  if (t.i1 == j) w += t.l1;
  return w;
}

}  // namespace a2s
