// upsample_argmax on the CPU: labels of the bilinearly resized score map
// without materialising it. Each image's input rows are first resized along
// x (C x h x W values), then every output row blends two of them per class
// and keeps a running max; the arithmetic is exactly interp's.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../op_common.h"
#include "../scale_merge_math.h"
#include "cpu_common.h"

namespace a2s {
namespace {

template <typename T>
void upsample_argmax_kernel(const T* x, int64_t N, int64_t C, int h, int w, int H, int W, int64_t* labels,
                            T* score) {
  using Acc = typename Num<T>::acc;
  const auto th = make_taps<Acc>(h, H);
  const auto tw = make_taps<Acc>(w, W);
  const bool identity = interp_identity(h, w, H, W);
  std::vector<Acc> rows(size_t(C) * h * W);  // per image: rows resized along x
  for (int64_t n = 0; n < N; ++n) {
    const T* img = x + n * C * h * w;
    at::parallel_for(0, C * h, grain_for(W), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* src = img + i * w;
        Acc* dst = rows.data() + i * W;
        for (int ox = 0; ox < W; ++ox) {
          const Tap<Acc>& u = tw[ox];
          const Acc lw1 = u.l1, lw0 = Acc(1) - lw1;
          dst[ox] = identity ? Num<T>::load(src[ox]) : lw0 * Num<T>::load(src[u.i0]) + lw1 * Num<T>::load(src[u.i1]);
        }
      }
    });
    at::parallel_for(0, H, grain_for(int64_t(W) * C), [&](int64_t b, int64_t e) {
      const int Wn = W;  // a local bound: the int32 stores below could alias a captured W
      std::vector<Acc> best(Wn);
      std::vector<int32_t> arg(Wn);  // int32 and branch-free updates let the loop vectorise
      for (int64_t oy = b; oy < e; ++oy) {
        const Tap<Acc>& t = th[oy];
        const Acc lh1 = t.l1, lh0 = Acc(1) - lh1;
        for (int64_t c = 0; c < C; ++c) {
          const Acc* r0 = rows.data() + (c * h + t.i0) * W;
          const Acc* r1 = rows.data() + (c * h + t.i1) * W;
          Acc* bp = best.data();
          int32_t* ap = arg.data();
          const int32_t ci = static_cast<int32_t>(c);
          if (c == 0) {
            for (int ox = 0; ox < Wn; ++ox) {
              bp[ox] = identity ? r0[ox] : lh0 * r0[ox] + lh1 * r1[ox];
              ap[ox] = 0;
            }
            continue;
          }
          for (int ox = 0; ox < Wn; ++ox) {
            const Acc v = identity ? r0[ox] : lh0 * r0[ox] + lh1 * r1[ox];
            const bool take = argmax_better<Acc>(v, bp[ox]);
            bp[ox] = take ? v : bp[ox];
            ap[ox] = take ? ci : ap[ox];
          }
        }
        const int64_t at = (n * H + oy) * W;
        for (int ox = 0; ox < W; ++ox) labels[at + ox] = arg[ox];
        if (score) {
          for (int ox = 0; ox < W; ++ox) score[at + ox] = Num<T>::store(best[ox]);
        }
      }
    });
  }
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
