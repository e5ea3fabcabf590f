// scale_merge on the CPU. Forward: blocks of output rows that resize every
// scale on the fly (RowCache: x then y, Caffe's arithmetic) and merge it;
// the S resized maps are never stored. Backward: a gather per scale (each
// input element sums its footprint, rows then columns) and one pass over
// blocks of output rows for the attention logits and the gate. No atomics:
// bitwise reproducible, and the same order as the CUDA kernels.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../op_common.h"
#include "../scale_merge_math.h"
#include "cpu_common.h"

namespace a2s {
namespace {

template <typename T>
struct MergeTensors {
  std::vector<const T*> P;  // per-scale score maps, contiguous
  const T* logits_w = nullptr;  // forward: logits; backward: softmax weights
  const T* gate = nullptr;
};

template <typename T, int MODE>
void merge_forward_kernel(const MergeGeometry& g, const MergeTensors<T>& in, T* out, T* wts,
                          uint8_t* arg) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(g.H) * g.W;
  const Acc avg_w = static_cast<Acc>(g.avg_weight);
  if (MODE == kMergeAttention) {
    at::parallel_for(0, g.N * HW, grain_for(g.S * 8), [&](int64_t b, int64_t e) {
      Acc w[kMaxScales];
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = i / HW, px = i % HW;
        softmax_scales<T, Acc>(in.logits_w + n * g.S * HW + px, HW, g.S, w);
        for (int s = 0; s < g.S; ++s) wts[(n * g.S + s) * HW + px] = Num<T>::store(w[s]);
      }
    });
  }
  std::vector<std::vector<Tap<Acc>>> th(g.S), tw(g.S);
  for (int s = 0; s < g.S; ++s) {
    th[s] = make_taps<Acc>(g.h[s], g.H);
    tw[s] = make_taps<Acc>(g.w[s], g.W);
  }
  // Work items: blocks of kRowBlock output rows of one (n, c) plane.
  const int64_t blocks = (g.H + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, g.N * g.C * blocks, grain_for(int64_t(g.W) * g.S * kRowBlock), [&](int64_t b, int64_t e) {
    const int W = g.W;  // a local bound: the int stores to am could alias g.W
    std::vector<Acc> acc(W), v(W);
    std::vector<int> am(W, 0);
    std::vector<RowCache<T, Acc>> cache(g.S);
    for (int64_t item = b; item < e; ++item) {
      const int64_t nc = item / blocks, n = nc / g.C;
      const int y0 = static_cast<int>(item % blocks) * kRowBlock;
      const int y1 = std::min(g.H, y0 + kRowBlock);
      for (int s = 0; s < g.S; ++s) {
        cache[s].fill(in.P[s] + nc * g.h[s] * g.w[s], g.w[s], th[s], tw[s], y0, y1,
                      interp_identity(g.h[s], g.w[s], g.H, g.W));
      }
      for (int y = y0; y < y1; ++y) {
        for (int s = 0; s < g.S; ++s) {
          cache[s].row(th[s][y], v.data());
          const T* wrow = MODE == kMergeAttention ? wts + (n * g.S + s) * HW + int64_t(y) * W : nullptr;
          for (int x = 0; x < W; ++x) {
            const Acc ws = MODE == kMergeAttention ? Num<T>::load(wrow[x]) : Acc(0);
            merge_step<Acc>(MODE, s, v[x], ws, acc[x], am[x]);
          }
        }
        const int64_t row = (nc * g.H + y) * W;
        for (int x = 0; x < W; ++x) {
          Acc r = merge_finish<Acc>(MODE, acc[x], avg_w);
          if (in.gate) r = Num<T>::load(in.gate[row + x]) * r;
          out[row + x] = Num<T>::store(r);
        }
        if (MODE == kMergeMax) {
          for (int x = 0; x < W; ++x) arg[row + x] = static_cast<uint8_t>(am[x]);
        }
      }
    }
  });
}

template <typename T, int MODE>
void merge_backward_kernel(const MergeGeometry& g, const MergeTensors<T>& in, const T* grad,
                           const uint8_t* arg, std::vector<T*>& gP, T* g_logits, T* g_gate) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(g.H) * g.W;
  const Acc avg_w = static_cast<Acc>(g.avg_weight);
  const T* wts = in.logits_w;
  // Gradient of every score map at its own resolution.
  for (int s = 0; s < g.S; ++s) {
    const auto fh = make_footprints<Acc>(g.h[s], g.H);
    const auto fw = make_footprints<Acc>(g.w[s], g.W);
    const bool identity = interp_identity(g.h[s], g.w[s], g.H, g.W);
    at::parallel_for(0, g.N * g.C * g.h[s], grain_for(int64_t(g.W) * 4), [&](int64_t b, int64_t e) {
      std::vector<Acc> col(g.W);
      for (int64_t i = b; i < e; ++i) {
        const int64_t nc = i / g.h[s], n = nc / g.C;
        const int j = static_cast<int>(i % g.h[s]);
        // Share of the upstream gradient reaching scale s along output row y.
        auto shares = [&](int y, auto&& use) {
          const int64_t orow = (nc * g.H + y) * g.W;
          const T* wrow = MODE == kMergeAttention ? wts + (n * g.S + s) * HW + int64_t(y) * g.W : nullptr;
          for (int x = 0; x < g.W; ++x) {
            Acc ghat = Num<T>::load(grad[orow + x]);
            if (in.gate) ghat = ghat * Num<T>::load(in.gate[orow + x]);
            const Acc ws = MODE == kMergeAttention ? Num<T>::load(wrow[x]) : Acc(0);
            const int a = MODE == kMergeMax ? int(arg[orow + x]) : 0;
            use(x, merge_grad_share<Acc>(MODE, s, ghat, ws, a, avg_w));
          }
        };
        T* out = gP[s] + i * g.w[s];
        if (identity) {  // the adjoint of a copy is a copy
          shares(j, [&](int x, Acc v) { out[x] = Num<T>::store(v); });
          continue;
        }
        std::fill(col.begin(), col.end(), Acc(0));
        for (int k = 0, cnt = fh.count(j); k < cnt; ++k) {
          const Acc wgt = fh.w[fh.at[j] + k];
          shares(fh.lo[j] + k, [&](int x, Acc v) { col[x] += wgt * v; });
        }
        for (int c = 0; c < g.w[s]; ++c) {
          Acc acc = Acc(0);
          for (int k = 0, cnt = fw.count(c); k < cnt; ++k) acc += fw.w[fw.at[c] + k] * col[fw.lo[c] + k];
          out[c] = Num<T>::store(acc);
        }
      }
    });
  }
  if (MODE != kMergeAttention && !in.gate) return;
  // Attention logits and gate: blocks of output rows of one image, classes
  // outer, with each (n, c) plane's input rows resized along x once per block.
  std::vector<std::vector<Tap<Acc>>> th(g.S), tw(g.S);
  for (int s = 0; s < g.S; ++s) {
    th[s] = make_taps<Acc>(g.h[s], g.H);
    tw[s] = make_taps<Acc>(g.w[s], g.W);
  }
  const int64_t blocks = (g.H + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t b, int64_t e) {
    const int W = g.W;
    std::vector<Acc> v(size_t(g.S) * W), a(size_t(g.S) * kRowBlock * W), m(W), gh(W);
    std::vector<int> am(W, 0);
    std::vector<RowCache<T, Acc>> cache(g.S);
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / blocks;
      const int y0 = static_cast<int>(item % blocks) * kRowBlock;
      const int y1 = std::min(g.H, y0 + kRowBlock);
      std::fill(a.begin(), a.end(), Acc(0));
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t nc = n * g.C + c;
        for (int s = 0; s < g.S; ++s) {
          cache[s].fill(in.P[s] + nc * g.h[s] * g.w[s], g.w[s], th[s], tw[s], y0, y1,
                        interp_identity(g.h[s], g.w[s], g.H, g.W));
        }
        for (int y = y0; y < y1; ++y) {
          const int64_t orow = (nc * g.H + y) * W;
          for (int s = 0; s < g.S; ++s) {
            Acc* vs = v.data() + size_t(s) * W;
            cache[s].row(th[s][y], vs);
            const T* wrow = MODE == kMergeAttention ? wts + (n * g.S + s) * HW + int64_t(y) * W : nullptr;
            for (int x = 0; x < W; ++x) {
              const Acc ws = MODE == kMergeAttention ? Num<T>::load(wrow[x]) : Acc(0);
              merge_step<Acc>(MODE, s, vs[x], ws, m[x], am[x]);
            }
          }
          for (int x = 0; x < W; ++x) {
            const Acc go = Num<T>::load(grad[orow + x]);
            Acc ghat = go;
            if (in.gate) {
              g_gate[orow + x] = Num<T>::store(go * merge_finish<Acc>(MODE, m[x], avg_w));
              ghat = go * Num<T>::load(in.gate[orow + x]);
            }
            gh[x] = ghat;
          }
          if (MODE == kMergeAttention) {
            for (int s = 0; s < g.S; ++s) {
              Acc* as = a.data() + (size_t(s) * kRowBlock + (y - y0)) * W;
              const Acc* vs = v.data() + size_t(s) * W;
              for (int x = 0; x < W; ++x) as[x] += gh[x] * vs[x];
            }
          }
        }
      }
      if (MODE == kMergeAttention) {
        for (int y = y0; y < y1; ++y) {
          for (int x = 0; x < W; ++x) {
            Acc ws[kMaxScales], as[kMaxScales];
            for (int s = 0; s < g.S; ++s) {
              ws[s] = Num<T>::load(wts[(n * g.S + s) * HW + int64_t(y) * W + x]);
              as[s] = a[(size_t(s) * kRowBlock + (y - y0)) * W + x];
            }
            const Acc dot = softmax_dot<Acc>(ws, as, g.S);
            for (int s = 0; s < g.S; ++s) {
              g_logits[(n * g.S + s) * HW + int64_t(y) * W + x] = Num<T>::store(ws[s] * (as[s] - dot));
            }
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> scale_merge_cpu(at::TensorList scores_, at::IntArrayRef size,
                                                   c10::string_view mode_, const c10::optional<at::Tensor>& logits_,
                                                   const c10::optional<at::Tensor>& gate_,
                                                   c10::optional<double> avg_weight) {
  const std::string mode(mode_);
  const MergeGeometry g = check_scale_merge(scores_, size, mode, logits_, gate_, avg_weight);
  const MergeInputs c = contiguous_inputs(scores_, logits_, gate_);
  auto outs = alloc_merge_outputs(g, c.scores[0]);
  // With C == 0 the attention weights (aux) are still defined.
  if (outs.first.numel() == 0 && outs.second.numel() == 0) return {outs.first, outs.second};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scores[0].scalar_type(), "scale_merge_cpu", [&] {
    MergeTensors<scalar_t> in;
    for (const auto& t : c.scores) in.P.push_back(t.data_ptr<scalar_t>());
    if (c.logits.defined()) in.logits_w = c.logits.data_ptr<scalar_t>();
    if (c.gate.defined()) in.gate = c.gate.data_ptr<scalar_t>();
    dispatch_mode(g.mode, [&](auto mode_c) {
      constexpr int MODE = decltype(mode_c)::value;
      merge_forward_kernel<scalar_t, MODE>(
          g, in, outs.first.data_ptr<scalar_t>(),
          MODE == kMergeAttention ? outs.second.data_ptr<scalar_t>() : nullptr,
          MODE == kMergeMax ? outs.second.data_ptr<uint8_t>() : nullptr);
    });
  });
  return {outs.first, outs.second};
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

TORCH_LIBRARY_IMPL(attn2scale, CPU, m) {
  m.impl("scale_merge", &scale_merge_cpu);
  m.impl("scale_merge_backward", &scale_merge_backward_cpu);
}

}  // namespace a2s
