// upsample_argmax on the CPU: labels of the bilinearly resized score map
// without materialising it. For each block of output rows, classes stream
// through: the input rows the block needs are resized along x (RowCache),
// every output row blends two of them and keeps a running max per pixel. The
// arithmetic is exactly interp's.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "../op_common.h"
#include "../scale_merge_math.h"
#include "cpu_common.h"

namespace a2s {
namespace {

// Folds class ci's output row v(x) into the running max/argmax of the row,
// branch-free (argmax_better) so the loop vectorises.
template <typename Acc, typename V>
inline void fold_class_row(int32_t ci, V v, Acc* __restrict best, int32_t* __restrict arg, int W) {
  if (ci == 0) {
    for (int x = 0; x < W; ++x) {
      best[x] = v(x);
      arg[x] = 0;
    }
    return;
  }
  for (int x = 0; x < W; ++x) {
    const Acc val = v(x), cur = best[x];
    const bool take = argmax_better<Acc>(val, cur);
    best[x] = take ? val : cur;
    arg[x] = take ? ci : arg[x];
  }
}

// The float blend-and-fold of one class row, the loop upsample_argmax spends
// its time in, cloned for AVX2 (A2S_CLONE_AVX2, cpu_common.h; bitwise the
// same whichever clone runs, see rows_cpu.cpp).
A2S_CLONE_AVX2 void fold_blend_row_float(
    int32_t ci, const float* __restrict r0, const float* __restrict r1, float l0, float l1, float* __restrict best,
    int32_t* __restrict arg, int W) {
  fold_class_row<float>(ci, [r0, r1, l0, l1](int i) { return l0 * r0[i] + l1 * r1[i]; }, best, arg, W);
}

template <typename T>
void upsample_argmax_kernel(const T* x, int64_t N, int64_t C, int h, int w, int H, int W, int64_t* labels,
                            T* score) {
  using Acc = typename Num<T>::acc;
  const auto th = make_taps<Acc>(h, H);
  const auto tw = make_taps<Acc>(w, W);
  const bool identity = interp_identity(h, w, H, W);
  // Work items: blocks of output rows of one image; classes stream through
  // them, so the workspace (one class's input rows resized along x, and the
  // running max of the block) does not grow with C. Per class, the input
  // rows are resized along x first (RowCache) and each output row is the
  // y blend of two of them, folded straight into the running max: the same
  // arithmetic, in the same order, as bilinear_combine.
  constexpr int kBlock = 4 * kRowBlock;
  const int64_t blocks = (H + kBlock - 1) / kBlock;
  at::parallel_for(0, N * blocks, 1, [&](int64_t b, int64_t e) {
    const int Wn = W;  // a local bound: the int32 stores below could alias a captured W
    RowCache<T, Acc> cache;
    std::vector<Acc> best;
    std::vector<int32_t> arg;
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / blocks;
      const int y0 = static_cast<int>(item % blocks) * kBlock;
      const int y1 = std::min(H, y0 + kBlock);
      best.resize(size_t(y1 - y0) * Wn);
      arg.resize(size_t(y1 - y0) * Wn);
      for (int64_t c = 0; c < C; ++c) {
        cache.fill(x + (n * C + c) * h * w, w, th, tw, y0, y1, identity);
        const int32_t ci = static_cast<int32_t>(c);
        for (int oy = y0; oy < y1; ++oy) {
          const Acc* __restrict r0 = cache.input_row(th.i0[oy]);
          const Acc* __restrict r1 = cache.input_row(th.i1[oy]);
          const Acc l0 = th.l0[oy], l1 = th.l1[oy];
          Acc* bp = best.data() + size_t(oy - y0) * Wn;
          int32_t* ap = arg.data() + size_t(oy - y0) * Wn;
          if (identity) {
            fold_class_row<Acc>(ci, [r0](int i) { return r0[i]; }, bp, ap, Wn);
          } else if constexpr (std::is_same<Acc, float>::value) {
            fold_blend_row_float(ci, r0, r1, l0, l1, bp, ap, Wn);
          } else {
            fold_class_row<Acc>(ci, [r0, r1, l0, l1](int i) { return l0 * r0[i] + l1 * r1[i]; }, bp, ap, Wn);
          }
        }
      }
      const int64_t at = (n * H + y0) * Wn;
      const size_t count = size_t(y1 - y0) * Wn;
      for (size_t k = 0; k < count; ++k) labels[at + k] = arg[k];
      if (score) {
        for (size_t k = 0; k < count; ++k) score[at + k] = Num<T>::store(best[k]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> upsample_argmax_cpu(const at::Tensor& scores_, at::IntArrayRef size,
                                                       bool with_score) {
  check_upsample_argmax(scores_, size);
  const at::Tensor x = scores_.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor labels = at::empty({N, size[0], size[1]}, x.options().dtype(at::kLong));
  at::Tensor score = with_score ? at::empty({N, size[0], size[1]}, x.options()) : at::empty({0}, x.options());
  if (N == 0) return {labels, score};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upsample_argmax_cpu", [&] {
    upsample_argmax_kernel<scalar_t>(x.data_ptr<scalar_t>(), N, C, int(x.size(2)), int(x.size(3)), int(size[0]),
                                     int(size[1]), labels.data_ptr<int64_t>(),
                                     with_score ? score.data_ptr<scalar_t>() : nullptr);
  });
  return {labels, score};
}

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, CPU, m) { m.impl("upsample_argmax", &upsample_argmax_cpu); }

}  // namespace a2s
