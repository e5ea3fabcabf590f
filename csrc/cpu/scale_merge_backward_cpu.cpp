// scale_merge backward on the CPU, in two passes, neither with atomics, so
// results are bitwise reproducible for any thread count:
//  1. the gradient of every score map at its own resolution, as a gather:
//     work items own disjoint blocks of coarse rows of one (n, c, scale);
//     an item forms the upstream share of the output rows its footprint
//     covers once, sums them per coarse row (rows, in output order) and then
//     per coarse column (columns, in output order) with precomputed
//     footprint tables;
//  2. attention logits and gate: blocks of output rows of one image, classes
//     outer (the sum over classes runs in class order), every scale's input
//     rows resized along x once per block.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "scale_merge_cpu.h"

namespace a2s {
namespace {

// Coarse rows per work item of pass 1.
constexpr int kCoarseRows = 16;

template <typename T>
struct ShareSource {
  const T* grad;
  const T* gate;     // may be null
  const T* wts;      // attention weights (N, S, H, W), attention only
  const uint8_t* arg;  // max's winning scale (N, C, H, W), max only
};

// Upstream share of scale s along output row y of plane nc: merge_grad_share
// of ghat = grad (* gate), per element exactly as scale_merge_math.h.
template <typename T, int MODE>
inline void share_row(const MergeGeometry& g, const ShareSource<T>& src, int64_t nc, int s, int y,
                      typename Num<T>::acc* __restrict dst) {
  using Acc = typename Num<T>::acc;
  const int W = g.W;
  const int64_t orow = (nc * g.H + y) * W;
  const T* __restrict grad = src.grad + orow;
  const T* __restrict gate = src.gate ? src.gate + orow : nullptr;
  const T* __restrict wrow = MODE == kMergeAttention ? src.wts + ((nc / g.C) * g.S + s) * g.H * W + int64_t(y) * W : nullptr;
  const uint8_t* __restrict arow = MODE == kMergeMax ? src.arg + orow : nullptr;
  const Acc avg_w = static_cast<Acc>(g.avg_weight);
  for (int x = 0; x < W; ++x) {
    Acc ghat = Num<T>::load(grad[x]);
    if (gate) ghat = ghat * Num<T>::load(gate[x]);
    const Acc ws = MODE == kMergeAttention ? Num<T>::load(wrow[x]) : Acc(0);
    const int a = MODE == kMergeMax ? int(arow[x]) : 0;
    dst[x] = merge_grad_share<Acc>(MODE, s, ghat, ws, a, avg_w);
  }
}

// Column footprints of one scale padded to a fixed count K (the widest
// footprint), slot-major, so the column gather vectorises across columns.
// A padded slot reads the zero sentinel col[W] with weight 0: adding 0 * 0
// to the running sum leaves it bitwise unchanged (the sum starts at +0 and
// never becomes -0), so every column still sums exactly its own footprint
// in output order, as the unpadded CSR loop did.
template <typename Acc>
struct PaddedColumns {
  int K = 0;
  std::vector<int> idx;  // K * w: source column of slot k of input column c
  std::vector<Acc> wt;   // K * w: its weight
  PaddedColumns(const Footprints<Acc>& f, int w, int W) {
    for (int c = 0; c < w; ++c) K = std::max(K, f.count(c));
    idx.assign(size_t(K) * w, W);
    wt.assign(size_t(K) * w, Acc(0));
    for (int c = 0; c < w; ++c) {
      for (int k = 0; k < f.count(c); ++k) {
        idx[size_t(k) * w + c] = f.lo[c] + k;
        wt[size_t(k) * w + c] = f.w[f.at[c] + k];
      }
    }
  }
};

// Per-scale footprint tables and the work split of pass 1: scale s owns
// items first[s] .. first[s + 1] - 1 of every plane.
template <typename Acc>
struct AdjointPlan {
  std::vector<Footprints<Acc>> fh;
  std::vector<PaddedColumns<Acc>> fw;
  std::vector<int> first;
  std::vector<char> identity;
  explicit AdjointPlan(const MergeGeometry& g) : first(1, 0) {
    for (int s = 0; s < g.S; ++s) {
      fh.push_back(make_footprints<Acc>(g.h[s], g.H));
      fw.emplace_back(make_footprints<Acc>(g.w[s], g.W), g.w[s], g.W);
      identity.push_back(interp_identity(g.h[s], g.w[s], g.H, g.W));
      first.push_back(first.back() + (g.h[s] + kCoarseRows - 1) / kCoarseRows);
    }
  }
};

// Coarse row of the gradient from its rows-summed column buffer (col[W] is
// the zero sentinel): each input column sums its footprint in output order.
template <typename T, typename Acc>
inline void gather_columns(const PaddedColumns<Acc>& fw, const Acc* __restrict col, int w, Acc* __restrict acc,
                           T* __restrict out) {
  for (int c = 0; c < w; ++c) acc[c] = Acc(0);
  for (int k = 0; k < fw.K; ++k) {
    const int* __restrict ik = fw.idx.data() + size_t(k) * w;
    const Acc* __restrict wk = fw.wt.data() + size_t(k) * w;
    for (int c = 0; c < w; ++c) acc[c] += wk[c] * col[ik[c]];
  }
  for (int c = 0; c < w; ++c) out[c] = Num<T>::store(acc[c]);
}

// Gradient rows [j0, j1) of scale s of plane nc. Scratch: sh (share rows),
// col (W + 1 rows-summed values with the zero sentinel, then w sums).
template <typename T, int MODE>
void adjoint_block(const MergeGeometry& g, const ShareSource<T>& src, const AdjointPlan<typename Num<T>::acc>& plan,
                   int s, int64_t nc, int j0, int j1, T* gp, std::vector<typename Num<T>::acc>& sh,
                   std::vector<typename Num<T>::acc>& col) {
  using Acc = typename Num<T>::acc;
  const int W = g.W, w = g.w[s];
  T* out = gp + (nc * g.h[s]) * w;
  if (plan.identity[s]) {  // the adjoint of a copy is a copy
    for (int j = j0; j < j1; ++j) {
      share_row<T, MODE>(g, src, nc, s, j, col.data());
      for (int x = 0; x < W; ++x) out[int64_t(j) * w + x] = Num<T>::store(col[x]);
    }
    return;
  }
  const Footprints<Acc>& fh = plan.fh[s];
  const int ya = fh.lo[j0], yb = fh.lo[j1 - 1] + fh.count(j1 - 1);
  sh.resize(size_t(std::max(0, yb - ya)) * W);
  for (int y = ya; y < yb; ++y) share_row<T, MODE>(g, src, nc, s, y, sh.data() + size_t(y - ya) * W);
  Acc* __restrict acc = col.data() + W + 1;
  for (int j = j0; j < j1; ++j) {
    Acc* __restrict cl = col.data();
    for (int x = 0; x <= W; ++x) cl[x] = Acc(0);
    for (int k = 0, cnt = fh.count(j); k < cnt; ++k) {
      const Acc wgt = fh.w[fh.at[j] + k];
      const Acc* __restrict row = sh.data() + size_t(fh.lo[j] + k - ya) * W;
      for (int x = 0; x < W; ++x) cl[x] += wgt * row[x];
    }
    gather_columns<T, Acc>(plan.fw[s], cl, w, acc, out + int64_t(j) * w);
  }
}

template <typename T, int MODE>
void scores_backward(const MergeGeometry& g, const ShareSource<T>& src, std::vector<T*>& gP) {
  using Acc = typename Num<T>::acc;
  const AdjointPlan<Acc> plan(g);
  const int per_plane = plan.first.back();
  // Items run plane by plane, each plane's items covering every scale, so a
  // contiguous share of items has the same mix of scales on every thread.
  at::parallel_for(0, g.N * g.C * per_plane, 1, [&](int64_t b, int64_t e) {
    std::vector<Acc> sh, col(size_t(g.W) + 1 + *std::max_element(g.w.begin(), g.w.end()));
    for (int64_t item = b; item < e; ++item) {
      const int64_t nc = item / per_plane;
      const int r = static_cast<int>(item % per_plane);
      const int s = static_cast<int>(std::upper_bound(plan.first.begin(), plan.first.end(), r) - plan.first.begin()) - 1;
      const int j0 = (r - plan.first[s]) * kCoarseRows;
      const int j1 = std::min(g.h[s], j0 + kCoarseRows);
      adjoint_block<T, MODE>(g, src, plan, s, nc, j0, j1, gP[s], sh, col);
    }
  });
}

// Softmax backward over the scales for output rows [y0, y1) of image n:
// g_s = w_s * (a_s - sum_t w_t a_t), the dot summed in scale order
// (softmax_dot), vectorised along the row.
template <typename T>
void softmax_backward_rows(const MergeGeometry& g, const T* wts, const typename Num<T>::acc* a, int64_t n, int y0,
                           int y1, typename Num<T>::acc* dot, T* g_logits) {
  using Acc = typename Num<T>::acc;
  const int W = g.W;
  const int64_t HW = int64_t(g.H) * W;
  for (int y = y0; y < y1; ++y) {
    Acc* __restrict d = dot;
    for (int x = 0; x < W; ++x) d[x] = Acc(0);
    for (int s = 0; s < g.S; ++s) {
      const T* __restrict ws = wts + (n * g.S + s) * HW + int64_t(y) * W;
      const Acc* __restrict as = a + (size_t(s) * kRowBlock + (y - y0)) * W;
      for (int x = 0; x < W; ++x) d[x] += Num<T>::load(ws[x]) * as[x];
    }
    for (int s = 0; s < g.S; ++s) {
      const T* __restrict ws = wts + (n * g.S + s) * HW + int64_t(y) * W;
      const Acc* __restrict as = a + (size_t(s) * kRowBlock + (y - y0)) * W;
      T* __restrict gl = g_logits + (n * g.S + s) * HW + int64_t(y) * W;
      for (int x = 0; x < W; ++x) gl[x] = Num<T>::store(Num<T>::load(ws[x]) * (as[x] - d[x]));
    }
  }
}

// Scratch of one pass-2 thread.
template <typename T>
struct LogitsScratch {
  using Acc = typename Num<T>::acc;
  std::vector<Acc> v, a, m, gh;
  std::vector<int32_t> am;
  std::vector<RowCache<T, Acc>> cache;
  LogitsScratch(int S, int W)
      : v(size_t(S) * W), a(size_t(S) * kRowBlock * W), m(W), gh(W), am(W), cache(S) {}
};

// One output row y of plane nc in pass 2: the gate's gradient (go times the
// merged value, recomputed) and, for attention, a_s += ghat * R_s(P_s).
template <typename T, int MODE>
void logits_gate_row(const MergeGeometry& g, const MergeTensors<T>& in, const MergeTaps<typename Num<T>::acc>& taps,
                     const T* grad, int64_t nc, int y, int y0, LogitsScratch<T>& sc, T* g_gate) {
  using Acc = typename Num<T>::acc;
  const int W = g.W;
  const int64_t n = nc / g.C, orow = (nc * g.H + y) * W, HW = int64_t(g.H) * W;
  for (int s = 0; s < g.S; ++s) sc.cache[s].row(taps.th[s], y, sc.v.data() + size_t(s) * W);
  Acc* __restrict gh = sc.gh.data();
  if (in.gate) {
    for (int s = 0; s < g.S; ++s) {
      const Acc* vs = sc.v.data() + size_t(s) * W;
      const T* wrow = MODE == kMergeAttention ? in.logits_w + (n * g.S + s) * HW + int64_t(y) * W : nullptr;
      fold_row<MODE, T, Acc>(s, [vs](int x) { return vs[x]; }, wrow, sc.m.data(), sc.am.data(), W);
    }
    const Acc avg_w = static_cast<Acc>(g.avg_weight);
    const Acc* __restrict m = sc.m.data();
    for (int x = 0; x < W; ++x) {
      const Acc go = Num<T>::load(grad[orow + x]);
      g_gate[orow + x] = Num<T>::store(go * merge_finish<Acc>(MODE, m[x], avg_w));
      gh[x] = go * Num<T>::load(in.gate[orow + x]);
    }
  } else {
    for (int x = 0; x < W; ++x) gh[x] = Num<T>::load(grad[orow + x]);
  }
  if (MODE != kMergeAttention) return;
  for (int s = 0; s < g.S; ++s) {
    Acc* __restrict as = sc.a.data() + (size_t(s) * kRowBlock + (y - y0)) * W;
    const Acc* __restrict vs = sc.v.data() + size_t(s) * W;
    for (int x = 0; x < W; ++x) as[x] += gh[x] * vs[x];
  }
}

template <typename T, int MODE>
void logits_gate_backward(const MergeGeometry& g, const MergeTensors<T>& in, const T* grad, T* g_logits,
                          T* g_gate) {
  using Acc = typename Num<T>::acc;
  const MergeTaps<Acc> taps(g);
  const int64_t blocks = (g.H + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t b, int64_t e) {
    LogitsScratch<T> sc(g.S, g.W);
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / blocks;
      const int y0 = static_cast<int>(item % blocks) * kRowBlock;
      const int y1 = std::min(g.H, y0 + kRowBlock);
      std::fill(sc.a.begin(), sc.a.end(), Acc(0));
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t nc = n * g.C + c;
        for (int s = 0; s < g.S; ++s) {
          sc.cache[s].fill(in.P[s] + nc * g.h[s] * g.w[s], g.w[s], taps.th[s], taps.tw[s], y0, y1,
                           taps.identity[s]);
        }
        for (int y = y0; y < y1; ++y) logits_gate_row<T, MODE>(g, in, taps, grad, nc, y, y0, sc, g_gate);
      }
      if (MODE == kMergeAttention) softmax_backward_rows<T>(g, in.logits_w, sc.a.data(), n, y0, y1, sc.m.data(), g_logits);
    }
  });
}

template <typename T, int MODE>
void merge_backward_kernel(const MergeGeometry& g, const MergeTensors<T>& in, const T* grad, const uint8_t* arg,
                           std::vector<T*>& gP, T* g_logits, T* g_gate) {
  scores_backward<T, MODE>(g, ShareSource<T>{grad, in.gate, in.logits_w, arg}, gP);
  if (MODE == kMergeAttention || in.gate) logits_gate_backward<T, MODE>(g, in, grad, g_logits, g_gate);
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> scale_merge_backward_cpu(
    const at::Tensor& grad_, at::TensorList scores_, c10::string_view mode_, const at::Tensor& aux_,
    const c10::optional<at::Tensor>& gate_, c10::optional<double> avg_weight) {
  const std::string mode(mode_);
  const MergeGeometry g = check_scale_merge_backward(grad_, scores_, mode, aux_, gate_, avg_weight);
  const MergeInputs c = contiguous_inputs(scores_, c10::nullopt, gate_);
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor aux = aux_.contiguous();
  MergeGrads out = alloc_merge_grads(g, c, grad);
  if (out.trivial) return {out.scores, out.logits, out.gate};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "scale_merge_backward_cpu", [&] {
    MergeTensors<scalar_t> in;
    for (const auto& t : c.scores) in.P.push_back(t.data_ptr<scalar_t>());
    if (g.mode == kMergeAttention) in.logits_w = aux.data_ptr<scalar_t>();
    if (c.gate.defined()) in.gate = c.gate.data_ptr<scalar_t>();
    std::vector<scalar_t*> gp;
    for (auto& t : out.scores) gp.push_back(t.data_ptr<scalar_t>());
    dispatch_mode(g.mode, [&](auto mode_c) {
      constexpr int MODE = decltype(mode_c)::value;
      merge_backward_kernel<scalar_t, MODE>(
          g, in, grad.data_ptr<scalar_t>(), MODE == kMergeMax ? aux.data_ptr<uint8_t>() : nullptr, gp,
          MODE == kMergeAttention ? out.logits.data_ptr<scalar_t>() : nullptr,
          c.gate.defined() ? out.gate.data_ptr<scalar_t>() : nullptr);
    });
  });
  return {out.scores, out.logits, out.gate};
}

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, CPU, m) { m.impl("scale_merge_backward", &scale_merge_backward_cpu); }

}  // namespace a2s
