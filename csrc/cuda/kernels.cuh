// The CUDA kernels, as templates over the element type. Every kernel is a
// grid-stride loop over its outputs built from the shared per-element math
// (interp_math.h, scale_merge_math.h), in the same arithmetic order as the
// CPU kernels, so the two devices agree bit for bit (nvcc --fmad=false).
// The host simulation in tests/hostsim compiles this file unchanged.
#pragma once

#include "../interp_math.h"
#include "../scale_merge_math.h"
#include "grid.h"
#include "launch.h"

namespace a2s {
namespace kern {

using cuda::InterpArgs;
using cuda::MergeArgs;

template <typename T>
A2S_KERNEL void interp_forward(const T* A2S_RESTRICT x, T* A2S_RESTRICT y, InterpArgs a) {
  using Acc = typename Num<T>::acc;
  const Acc rh = interp_ratio<Acc>(a.He, a.Ho), rw = interp_ratio<Acc>(a.We, a.Wo);
  const int64_t total = a.planes * a.Ho * a.Wo;
  const bool identity = interp_identity(a.He, a.We, a.Ho, a.Wo);
  A2S_GRID_STRIDE_LOOP(i, total) {
    const int ox = static_cast<int>(i % a.Wo);
    const int64_t t = i / a.Wo;
    const int oy = static_cast<int>(t % a.Ho);
    const int64_t p = t / a.Ho;
    const T* plane = x + p * a.H * a.W + int64_t(a.off) * a.W + a.off;
    y[i] = Num<T>::store(sample_at<T, Acc>(plane, a.W, identity, oy, ox, interp_tap<Acc>(oy, rh, a.He),
                                           interp_tap<Acc>(ox, rw, a.We)));
  }
}

// Gather adjoint: each input element sums over its footprint, output rows
// inner, output columns outer (the CPU kernel's order).
template <typename T>
A2S_KERNEL void interp_backward(const T* A2S_RESTRICT gy, T* A2S_RESTRICT gx, InterpArgs a) {
  using Acc = typename Num<T>::acc;
  const Acc rh = interp_ratio<Acc>(a.He, a.Ho), rw = interp_ratio<Acc>(a.We, a.Wo);
  const int64_t total = a.planes * a.H * a.W;
  const bool identity = interp_identity(a.He, a.We, a.Ho, a.Wo);
  A2S_GRID_STRIDE_LOOP(i, total) {
    const int jc = static_cast<int>(i % a.W) - a.off;
    const int64_t t = i / a.W;
    const int j = static_cast<int>(t % a.H) - a.off;
    const int64_t p = t / a.H;
    Acc acc = Acc(0);
    if (identity && j >= 0 && j < a.He && jc >= 0 && jc < a.We) {
      acc = Num<T>::load(gy[p * a.Ho * a.Wo + int64_t(j) * a.Wo + jc]);
    } else if (j >= 0 && j < a.He && jc >= 0 && jc < a.We) {
      int ylo, yhi, xlo, xhi;
      adjoint_range<Acc>(j, rh, a.Ho, ylo, yhi);
      adjoint_range<Acc>(jc, rw, a.Wo, xlo, xhi);
      const T* g = gy + p * a.Ho * a.Wo;
      for (int x = xlo; x < xhi; ++x) {
        Acc col = Acc(0);
        for (int y = ylo; y < yhi; ++y) col += adjoint_weight<Acc>(j, y, rh, a.He) * Num<T>::load(g[int64_t(y) * a.Wo + x]);
        acc += adjoint_weight<Acc>(jc, x, rw, a.We) * col;
      }
    }
    gx[i] = Num<T>::store(acc);
  }
}

template <typename T>
A2S_KERNEL void softmax_scales_kernel(const T* A2S_RESTRICT logits, T* A2S_RESTRICT w, int64_t N, int S, int64_t HW) {
  using Acc = typename Num<T>::acc;
  A2S_GRID_STRIDE_LOOP(i, N * HW) {
    const int64_t n = i / HW, px = i % HW;
    Acc ws[kMaxScales];
    softmax_scales<T, Acc>(logits + n * S * HW + px, HW, S, ws);
    for (int s = 0; s < S; ++s) w[(n * S + s) * HW + px] = Num<T>::store(ws[s]);
  }
}

template <typename T, int MODE>
A2S_KERNEL void merge_forward(MergeArgs a, const T* A2S_RESTRICT wts, T* A2S_RESTRICT out, uint8_t* A2S_RESTRICT arg) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(a.H) * a.W;
  const Acc avg_w = static_cast<Acc>(a.avg_weight);
  const T* gate = static_cast<const T*>(a.gate);
  A2S_GRID_STRIDE_LOOP(i, a.N * a.C * HW) {
    const int x = static_cast<int>(i % a.W);
    const int64_t t = i / a.W;
    const int y = static_cast<int>(t % a.H);
    const int64_t nc = t / a.H, n = nc / a.C;
    Acc acc = Acc(0);
    int am = 0;
    for (int s = 0; s < a.S; ++s) {
      const T* plane = static_cast<const T*>(a.P[s]) + nc * a.h[s] * a.w[s];
      const Acc v = sample_at<T, Acc>(plane, a.w[s], interp_identity(a.h[s], a.w[s], a.H, a.W), y, x,
                                      interp_tap<Acc>(y, interp_ratio<Acc>(a.h[s], a.H), a.h[s]),
                                      interp_tap<Acc>(x, interp_ratio<Acc>(a.w[s], a.W), a.w[s]));
      const Acc ws = MODE == kMergeAttention ? Num<T>::load(wts[(n * a.S + s) * HW + int64_t(y) * a.W + x]) : Acc(0);
      merge_step<Acc>(MODE, s, v, ws, acc, am);
    }
    Acc r = merge_finish<Acc>(MODE, acc, avg_w);
    if (gate) r = Num<T>::load(gate[i]) * r;
    out[i] = Num<T>::store(r);
    if (MODE == kMergeMax) arg[i] = static_cast<uint8_t>(am);
  }
}

// Gradient of scale s's score map at its own resolution (gather).
template <typename T, int MODE>
A2S_KERNEL void merge_backward_scores(MergeArgs a, int s, const T* A2S_RESTRICT grad, const T* A2S_RESTRICT wts,
                                      const uint8_t* A2S_RESTRICT arg, T* A2S_RESTRICT gP) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(a.H) * a.W;
  const Acc avg_w = static_cast<Acc>(a.avg_weight);
  const T* gate = static_cast<const T*>(a.gate);
  const int hs = a.h[s], ws_ = a.w[s];
  const Acc rh = interp_ratio<Acc>(hs, a.H), rw = interp_ratio<Acc>(ws_, a.W);
  const bool identity = interp_identity(hs, ws_, a.H, a.W);
  A2S_GRID_STRIDE_LOOP(i, a.N * a.C * hs * ws_) {
    const int c = static_cast<int>(i % ws_);
    const int64_t t = i / ws_;
    const int j = static_cast<int>(t % hs);
    const int64_t nc = t / hs, n = nc / a.C;
    // Share of the upstream gradient that reaches scale s at output (y, x).
    auto share = [&](int y, int x) {
      const int64_t o = (nc * a.H + y) * a.W + x;
      Acc ghat = Num<T>::load(grad[o]);
      if (gate) ghat = ghat * Num<T>::load(gate[o]);
      const Acc wv = MODE == kMergeAttention ? Num<T>::load(wts[(n * a.S + s) * HW + int64_t(y) * a.W + x]) : Acc(0);
      const int am = MODE == kMergeMax ? int(arg[o]) : 0;
      return merge_grad_share<Acc>(MODE, s, ghat, wv, am, avg_w);
    };
    Acc acc = Acc(0);
    if (identity) {
      acc = share(j, c);
    } else {
      int ylo, yhi, xlo, xhi;
      adjoint_range<Acc>(j, rh, a.H, ylo, yhi);
      adjoint_range<Acc>(c, rw, a.W, xlo, xhi);
      for (int x = xlo; x < xhi; ++x) {
        Acc col = Acc(0);
        for (int y = ylo; y < yhi; ++y) col += adjoint_weight<Acc>(j, y, rh, hs) * share(y, x);
        acc += adjoint_weight<Acc>(c, x, rw, ws_) * col;
      }
    }
    gP[i] = Num<T>::store(acc);
  }
}

// Per output pixel: gradient of the gate (all modes) and of the attention
// logits (softmax backward over the scales), classes in order.
template <typename T, int MODE>
A2S_KERNEL void merge_backward_pixels(MergeArgs a, const T* A2S_RESTRICT grad, const T* A2S_RESTRICT wts,
                                      T* A2S_RESTRICT g_logits, T* A2S_RESTRICT g_gate) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(a.H) * a.W;
  const Acc avg_w = static_cast<Acc>(a.avg_weight);
  const T* gate = static_cast<const T*>(a.gate);
  A2S_GRID_STRIDE_LOOP(i, a.N * HW) {
    const int x = static_cast<int>(i % a.W);
    const int64_t t = i / a.W;
    const int y = static_cast<int>(t % a.H);
    const int64_t n = t / a.H;
    Acc wv[kMaxScales], as[kMaxScales];
    Tap<Acc> th[kMaxScales], tw[kMaxScales];
    bool ident[kMaxScales];
    for (int s = 0; s < a.S; ++s) {
      wv[s] = MODE == kMergeAttention ? Num<T>::load(wts[(n * a.S + s) * HW + int64_t(y) * a.W + x]) : Acc(0);
      as[s] = Acc(0);
      th[s] = interp_tap<Acc>(y, interp_ratio<Acc>(a.h[s], a.H), a.h[s]);
      tw[s] = interp_tap<Acc>(x, interp_ratio<Acc>(a.w[s], a.W), a.w[s]);
      ident[s] = interp_identity(a.h[s], a.w[s], a.H, a.W);
    }
    for (int64_t c = 0; c < a.C; ++c) {
      const int64_t nc = n * a.C + c;
      const int64_t o = (nc * a.H + y) * a.W + x;
      Acc v[kMaxScales];
      Acc m = Acc(0);
      int am = 0;
      for (int s = 0; s < a.S; ++s) {
        v[s] = sample_at<T, Acc>(static_cast<const T*>(a.P[s]) + nc * a.h[s] * a.w[s], a.w[s], ident[s], y, x, th[s],
                                 tw[s]);
        merge_step<Acc>(MODE, s, v[s], wv[s], m, am);
      }
      const Acc go = Num<T>::load(grad[o]);
      Acc ghat = go;
      if (gate) {
        g_gate[o] = Num<T>::store(go * merge_finish<Acc>(MODE, m, avg_w));
        ghat = go * Num<T>::load(gate[o]);
      }
      if (MODE == kMergeAttention) {
        for (int s = 0; s < a.S; ++s) as[s] += ghat * v[s];
      }
    }
    if (MODE == kMergeAttention) {
      const Acc dot = softmax_dot<Acc>(wv, as, a.S);
      for (int s = 0; s < a.S; ++s) g_logits[(n * a.S + s) * HW + int64_t(y) * a.W + x] = Num<T>::store(wv[s] * (as[s] - dot));
    }
  }
}

template <typename T>
A2S_KERNEL void upsample_argmax_kernel(const T* A2S_RESTRICT x, int64_t N, int64_t C, int h, int w, int H, int W,
                                       int64_t* A2S_RESTRICT labels, T* A2S_RESTRICT score) {
  using Acc = typename Num<T>::acc;
  const Acc rh = interp_ratio<Acc>(h, H), rw = interp_ratio<Acc>(w, W);
  const bool identity = interp_identity(h, w, H, W);
  A2S_GRID_STRIDE_LOOP(i, N * H * W) {
    const int ox = static_cast<int>(i % W);
    const int64_t t = i / W;
    const int oy = static_cast<int>(t % H);
    const int64_t n = t / H;
    const Tap<Acc> th = interp_tap<Acc>(oy, rh, h), tw = interp_tap<Acc>(ox, rw, w);
    Acc best = Acc(0);
    int64_t arg = 0;
    for (int64_t c = 0; c < C; ++c) {
      const Acc v = sample_at<T, Acc>(x + (n * C + c) * h * w, w, identity, oy, ox, th, tw);
      if (c == 0 || argmax_better<Acc>(v, best)) {
        best = v;
        arg = c;
      }
    }
    labels[i] = arg;
    if (score) score[i] = Num<T>::store(best);
  }
}

}  // namespace kern
}  // namespace a2s
