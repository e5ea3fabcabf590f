// Caffe Interp on the CPU: forward by rows with precomputed taps, backward
// as a gather (each input element sums its footprint, rows then columns),
// so results are bitwise reproducible and equal to the CUDA kernels' order.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../op_common.h"
#include "cpu_common.h"

namespace a2s {
namespace {

template <typename T>
void interp_forward_kernel(const T* x, T* y, const InterpGeometry& g) {
  using Acc = typename Num<T>::acc;
  const auto th = make_taps<Acc>(g.He, g.Ho);
  const auto tw = make_taps<Acc>(g.We, g.Wo);
  const int64_t in_plane = int64_t(g.H) * g.W, out_plane = int64_t(g.Ho) * g.Wo;
  const bool identity = interp_identity(g.He, g.We, g.Ho, g.Wo);
  // Work items: blocks of output rows of one plane; input rows are resized
  // along x once per block (RowCache), then blended along y.
  const int64_t blocks = (g.Ho + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, g.planes * blocks, grain_for(int64_t(g.Wo) * kRowBlock), [&](int64_t b, int64_t e) {
    RowCache<T, Acc> cache;
    std::vector<Acc> row(g.Wo);
    for (int64_t item = b; item < e; ++item) {
      const int64_t p = item / blocks;
      const int y0 = static_cast<int>(item % blocks) * kRowBlock;
      const int y1 = std::min(g.Ho, y0 + kRowBlock);
      cache.fill(x + p * in_plane + int64_t(g.off) * g.W + g.off, g.W, th, tw, y0, y1, identity);
      for (int oy = y0; oy < y1; ++oy) {
        cache.row(th, oy, row.data());
        T* out = y + p * out_plane + int64_t(oy) * g.Wo;
        for (int ox = 0; ox < g.Wo; ++ox) out[ox] = Num<T>::store(row[ox]);
      }
    }
  });
}

template <typename T>
void interp_backward_kernel(const T* gy, T* gx, const InterpGeometry& g) {
  using Acc = typename Num<T>::acc;
  const auto fh = make_footprints<Acc>(g.He, g.Ho);
  const auto fw = make_footprints<Acc>(g.We, g.Wo);
  const int64_t in_plane = int64_t(g.H) * g.W, out_plane = int64_t(g.Ho) * g.Wo;
  const bool identity = interp_identity(g.He, g.We, g.Ho, g.Wo);
  at::parallel_for(0, g.planes * g.H, grain_for(g.Wo * 2), [&](int64_t b, int64_t e) {
    std::vector<Acc> col(g.Wo);
    for (int64_t i = b; i < e; ++i) {
      const int64_t p = i / g.H;
      const int j = static_cast<int>(i % g.H) - g.off;
      T* out = gx + p * in_plane + int64_t(j + g.off) * g.W;
      if (j < 0 || j >= g.He) {
        for (int c = 0; c < g.W; ++c) out[c] = Num<T>::store(Acc(0));
        continue;
      }
      const T* gplane = gy + p * out_plane;
      if (identity) {  // the adjoint of a copy is a copy
        for (int c = 0; c < g.W; ++c) {
          const int jc = c - g.off;
          out[c] = (jc >= 0 && jc < g.We) ? gplane[int64_t(j) * g.Wo + jc] : Num<T>::store(Acc(0));
        }
        continue;
      }
      // Rows first: col[ox] = sum over the output rows reading input row j.
      std::fill(col.begin(), col.end(), Acc(0));
      for (int k = 0, n = fh.count(j); k < n; ++k) {
        const Acc wgt = fh.w[fh.at[j] + k];
        const T* grow = gplane + int64_t(fh.lo[j] + k) * g.Wo;
        for (int ox = 0; ox < g.Wo; ++ox) col[ox] += wgt * Num<T>::load(grow[ox]);
      }
      // Then columns.
      for (int c = 0; c < g.W; ++c) {
        const int jc = c - g.off;
        Acc acc = Acc(0);
        if (jc >= 0 && jc < g.We) {
          for (int k = 0, n = fw.count(jc); k < n; ++k) acc += fw.w[fw.at[jc] + k] * col[fw.lo[jc] + k];
        }
        out[c] = Num<T>::store(acc);
      }
    }
  });
}

at::Tensor interp_cpu(const at::Tensor& x_, at::IntArrayRef size, int64_t pad_beg, int64_t pad_end) {
  const InterpGeometry g = check_interp(x_, size, pad_beg, pad_end);
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), g.Ho, g.Wo}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "interp_cpu", [&] {
    interp_forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g);
  });
  return y;
}

at::Tensor interp_backward_cpu(const at::Tensor& grad_, at::IntArrayRef input_shape, int64_t pad_beg,
                               int64_t pad_end) {
  const InterpGeometry g = check_interp_backward(grad_, input_shape, pad_beg, pad_end);
  const at::Tensor grad = grad_.contiguous();
  at::Tensor gx = at::empty(input_shape, grad.options());
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "interp_backward_cpu", [&] {
    interp_backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), g);
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, CPU, m) {
  m.impl("interp", &interp_cpu);
  m.impl("interp_backward", &interp_backward_cpu);
}

}  // namespace a2s
