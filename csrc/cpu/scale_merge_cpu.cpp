// scale_merge forward on the CPU: blocks of output rows that resize every
// scale on the fly (RowCache: x then y, Caffe's arithmetic) and merge it;
// the S resized maps are never stored. The backward is in
// scale_merge_backward_cpu.cpp.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "scale_merge_cpu.h"

namespace a2s {
namespace {

// softmax_scales (scale_merge_math.h) for kSoftmaxBlock pixels at once, in
// float: the same operations per pixel in the same order (running max over
// the scales, exp of the difference, sum in scale order, one division), so
// the weights are bitwise softmax_scales'; the exp is exp_portable's
// clamp / core / NaN steps as separate loops, which vectorise.
constexpr int kSoftmaxBlock = 256;

struct SoftmaxScratch {
  std::vector<float> m, sum, x, e;  // kSoftmaxBlock each; e holds S rows
  explicit SoftmaxScratch(int S)
      : m(kSoftmaxBlock), sum(kSoftmaxBlock), x(kSoftmaxBlock), e(size_t(S) * kSoftmaxBlock) {}
};

// logits, wts: pixel 0 of scale 0 of the block; scale s is stride further.
template <typename T>
void softmax_float_block(const T* logits, T* wts, int64_t stride, int S, int len, SoftmaxScratch& sc) {
  float* __restrict m = sc.m.data();
  float* __restrict sum = sc.sum.data();
  float* __restrict x = sc.x.data();
  for (int i = 0; i < len; ++i) m[i] = Num<T>::load(logits[i]);
  for (int s = 1; s < S; ++s) {
    const T* __restrict ls = logits + s * stride;
    for (int i = 0; i < len; ++i) {
      const float v = Num<T>::load(ls[i]);
      m[i] = v > m[i] ? v : m[i];
    }
  }
  for (int i = 0; i < len; ++i) sum[i] = 0.0f;
  for (int s = 0; s < S; ++s) {
    const T* __restrict ls = logits + s * stride;
    float* __restrict es = sc.e.data() + size_t(s) * kSoftmaxBlock;
    for (int i = 0; i < len; ++i) x[i] = Num<T>::load(ls[i]) - m[i];
    for (int i = 0; i < len; ++i) es[i] = exp_float_arg(x[i]);
    for (int i = 0; i < len; ++i) es[i] = exp_float_clamped(es[i]);
    for (int i = 0; i < len; ++i) es[i] = x[i] != x[i] ? x[i] : es[i];  // exp_portable's NaN
    for (int i = 0; i < len; ++i) sum[i] += es[i];
  }
  for (int s = 0; s < S; ++s) {
    const float* __restrict es = sc.e.data() + size_t(s) * kSoftmaxBlock;
    T* __restrict ws = wts + s * stride;
    for (int i = 0; i < len; ++i) ws[i] = Num<T>::store(es[i] / sum[i]);
  }
}

// Softmax over the scales of every pixel; the weights are stored (the
// backward reuses them) and read back by the merge. Double runs
// softmax_scales per pixel; float (and half/bf16, which accumulate in float)
// run softmax_float_block over a block of pixels, whose loops vectorise.
template <typename T>
void attention_weights(const MergeGeometry& g, const T* logits, T* wts) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(g.H) * g.W;
  if constexpr (std::is_same<Acc, float>::value) {
    const int64_t blocks = (HW + kSoftmaxBlock - 1) / kSoftmaxBlock;
    at::parallel_for(0, g.N * blocks, grain_for(int64_t(g.S) * kSoftmaxBlock * 8), [&](int64_t b, int64_t e) {
      SoftmaxScratch sc(g.S);
      for (int64_t item = b; item < e; ++item) {
        const int64_t n = item / blocks, p0 = (item % blocks) * kSoftmaxBlock;
        const int len = static_cast<int>(std::min<int64_t>(kSoftmaxBlock, HW - p0));
        softmax_float_block<T>(logits + n * g.S * HW + p0, wts + n * g.S * HW + p0, HW, g.S, len, sc);
      }
    });
    return;
  }
  at::parallel_for(0, g.N * HW, grain_for(g.S * 8), [&](int64_t b, int64_t e) {
    Acc w[kMaxScales];
    for (int64_t i = b; i < e; ++i) {
      const int64_t n = i / HW, px = i % HW;
      softmax_scales<T, Acc>(logits + n * g.S * HW + px, HW, g.S, w);
      for (int s = 0; s < g.S; ++s) wts[(n * g.S + s) * HW + px] = Num<T>::store(w[s]);
    }
  });
}

// Writes one merged output row: gate * merge_finish(acc), and the max's arg.
template <typename T, int MODE>
inline void store_merged_row(const typename Num<T>::acc* __restrict acc, const int32_t* __restrict am,
                             const T* __restrict gate, typename Num<T>::acc avg_w, T* __restrict out,
                             uint8_t* __restrict arg, int W) {
  using Acc = typename Num<T>::acc;
  if (gate) {
    for (int x = 0; x < W; ++x) out[x] = Num<T>::store(Num<T>::load(gate[x]) * merge_finish<Acc>(MODE, acc[x], avg_w));
  } else {
    for (int x = 0; x < W; ++x) out[x] = Num<T>::store(merge_finish<Acc>(MODE, acc[x], avg_w));
  }
  if (MODE == kMergeMax) {
    for (int x = 0; x < W; ++x) arg[x] = static_cast<uint8_t>(am[x]);
  }
}

template <typename T, int MODE>
void merge_forward_kernel(const MergeGeometry& g, const MergeTensors<T>& in, T* out, T* wts, uint8_t* arg) {
  using Acc = typename Num<T>::acc;
  const int64_t HW = int64_t(g.H) * g.W;
  const Acc avg_w = static_cast<Acc>(g.avg_weight);
  if (MODE == kMergeAttention) attention_weights<T>(g, in.logits_w, wts);
  const MergeTaps<Acc> taps(g);
  // Work items: blocks of kRowBlock output rows of one (n, c) plane; every
  // scale's input rows are resized along x once per block, and each output
  // row is blended along y and merged in one pass, never stored per scale.
  const int64_t blocks = (g.H + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, g.N * g.C * blocks, grain_for(int64_t(g.W) * g.S * kRowBlock), [&](int64_t b, int64_t e) {
    const int W = g.W;
    std::vector<Acc> acc(W);
    std::vector<int32_t> am(W, 0);
    std::vector<RowCache<T, Acc>> cache(g.S);
    for (int64_t item = b; item < e; ++item) {
      const int64_t nc = item / blocks, n = nc / g.C;
      const int y0 = static_cast<int>(item % blocks) * kRowBlock;
      const int y1 = std::min(g.H, y0 + kRowBlock);
      for (int s = 0; s < g.S; ++s) {
        cache[s].fill(in.P[s] + nc * g.h[s] * g.w[s], g.w[s], taps.th[s], taps.tw[s], y0, y1, taps.identity[s]);
      }
      for (int y = y0; y < y1; ++y) {
        for (int s = 0; s < g.S; ++s) {
          const T* wrow = MODE == kMergeAttention ? wts + (n * g.S + s) * HW + int64_t(y) * W : nullptr;
          fold_cached_row<MODE, T, Acc>(s, cache[s], taps.th[s], y, wrow, acc.data(), am.data());
        }
        const int64_t row = (nc * g.H + y) * W;
        store_merged_row<T, MODE>(acc.data(), am.data(), in.gate ? in.gate + row : nullptr, avg_w, out + row,
                                  MODE == kMergeMax ? arg + row : nullptr, W);
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

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, CPU, m) { m.impl("scale_merge", &scale_merge_cpu); }

}  // namespace a2s
