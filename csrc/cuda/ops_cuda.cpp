// CUDA implementations of the ops: argument checks (shared with the CPU),
// allocation, device guard and stream, then the launchers in *.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../op_common.h"
#include "launch.h"

namespace a2s {
namespace {

cuda::Dtype kind_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::Dtype::kFloat;
    case at::kDouble: return cuda::Dtype::kDouble;
    case at::kHalf: return cuda::Dtype::kHalf;
    case at::kBFloat16: return cuda::Dtype::kBFloat16;
    default: TORCH_CHECK(false, "attn2scale: unsupported dtype ", t.scalar_type());
  }
}

void check_launch(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, op, ": CUDA kernel launch failed: ", err);
}

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_cuda(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor here, got ", shape_str(t));
}

cuda::InterpArgs interp_args(const InterpGeometry& g) {
  return {g.planes, g.H, g.W, g.off, g.He, g.We, g.Ho, g.Wo};
}

at::Tensor interp_cuda(const at::Tensor& x_, at::IntArrayRef size, int64_t pad_beg, int64_t pad_end) {
  const InterpGeometry g = check_interp(x_, size, pad_beg, pad_end);
  check_cuda(x_, "interp", "x");
  c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), g.Ho, g.Wo}, x.options());
  if (y.numel() == 0) return y;
  check_launch(cuda::interp_forward(kind_of(x), x.data_ptr(), y.data_ptr(), interp_args(g), stream()), "interp");
  return y;
}

at::Tensor interp_backward_cuda(const at::Tensor& grad_, at::IntArrayRef input_shape, int64_t pad_beg,
                                int64_t pad_end) {
  const InterpGeometry g = check_interp_backward(grad_, input_shape, pad_beg, pad_end);
  check_cuda(grad_, "interp_backward", "grad");
  c10::cuda::CUDAGuard guard(grad_.device());
  const at::Tensor grad = grad_.contiguous();
  at::Tensor gx = at::empty(input_shape, grad.options());
  if (gx.numel() == 0) return gx;
  check_launch(cuda::interp_backward(kind_of(grad), grad.data_ptr(), gx.data_ptr(), interp_args(g), stream()),
               "interp_backward");
  return gx;
}

cuda::MergeArgs merge_args(const MergeGeometry& g, const std::vector<at::Tensor>& scores, const at::Tensor& gate) {
  cuda::MergeArgs a{};
  a.mode = g.mode;
  a.S = g.S;
  a.N = g.N;
  a.C = g.C;
  a.H = g.H;
  a.W = g.W;
  for (int s = 0; s < g.S; ++s) {
    a.h[s] = g.h[s];
    a.w[s] = g.w[s];
    a.P[s] = scores[s].data_ptr();
  }
  a.gate = gate.defined() ? gate.data_ptr() : nullptr;
  a.avg_weight = g.avg_weight;
  return a;
}

std::tuple<at::Tensor, at::Tensor> scale_merge_cuda(at::TensorList scores_, at::IntArrayRef size,
                                                    c10::string_view mode_, const c10::optional<at::Tensor>& logits_,
                                                    const c10::optional<at::Tensor>& gate_,
                                                    c10::optional<double> avg_weight) {
  const std::string mode(mode_);
  const MergeGeometry g = check_scale_merge(scores_, size, mode, logits_, gate_, avg_weight);
  check_cuda(scores_[0], "scale_merge", "scores[0]");
  c10::cuda::CUDAGuard guard(scores_[0].device());
  const MergeInputs c = contiguous_inputs(scores_, logits_, gate_);
  auto outs = alloc_merge_outputs(g, c.scores[0]);
  // With C == 0 the attention weights (aux) are still defined.
  if (outs.first.numel() == 0 && outs.second.numel() == 0) return {outs.first, outs.second};
  check_launch(cuda::scale_merge_forward(kind_of(c.scores[0]), merge_args(g, c.scores, c.gate),
                                         c.logits.defined() ? c.logits.data_ptr() : nullptr, outs.first.data_ptr(),
                                         outs.second.numel() ? outs.second.data_ptr() : nullptr, stream()),
               "scale_merge");
  return {outs.first, outs.second};
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> scale_merge_backward_cuda(
    const at::Tensor& grad_, at::TensorList scores_, c10::string_view mode_, const at::Tensor& aux_,
    const c10::optional<at::Tensor>& gate_, c10::optional<double> avg_weight) {
  const std::string mode(mode_);
  const MergeGeometry g = check_scale_merge_backward(grad_, scores_, mode, aux_, gate_, avg_weight);
  check_cuda(grad_, "scale_merge_backward", "grad");
  c10::cuda::CUDAGuard guard(grad_.device());
  const MergeInputs c = contiguous_inputs(scores_, c10::nullopt, gate_);
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor aux = aux_.contiguous();
  MergeGrads out = alloc_merge_grads(g, c, grad);
  if (out.trivial) return {out.scores, out.logits, out.gate};
  std::vector<void*> gp;
  for (auto& t : out.scores) gp.push_back(t.data_ptr());
  check_launch(cuda::scale_merge_backward(kind_of(grad), merge_args(g, c.scores, c.gate), grad.data_ptr(),
                                          aux.numel() ? aux.data_ptr() : nullptr, gp.data(),
                                          out.logits.numel() ? out.logits.data_ptr() : nullptr,
                                          c.gate.defined() ? out.gate.data_ptr() : nullptr, stream()),
               "scale_merge_backward");
  return {out.scores, out.logits, out.gate};
}

std::tuple<at::Tensor, at::Tensor> upsample_argmax_cuda(const at::Tensor& scores_, at::IntArrayRef size,
                                                        bool with_score) {
  check_upsample_argmax(scores_, size);
  check_cuda(scores_, "upsample_argmax", "scores");
  c10::cuda::CUDAGuard guard(scores_.device());
  const at::Tensor x = scores_.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor labels = at::empty({N, size[0], size[1]}, x.options().dtype(at::kLong));
  at::Tensor score = with_score ? at::empty({N, size[0], size[1]}, x.options()) : at::empty({0}, x.options());
  if (N == 0) return {labels, score};
  check_launch(cuda::upsample_argmax(kind_of(x), x.data_ptr(), N, C, int(x.size(2)), int(x.size(3)), int(size[0]),
                                     int(size[1]), labels.data_ptr<int64_t>(), with_score ? score.data_ptr() : nullptr,
                                     stream()),
               "upsample_argmax");
  return {labels, score};
}

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, CUDA, m) {
  m.impl("interp", &interp_cuda);
  m.impl("interp_backward", &interp_backward_cuda);
  m.impl("scale_merge", &scale_merge_cuda);
  m.impl("scale_merge_backward", &scale_merge_backward_cuda);
  m.impl("upsample_argmax", &upsample_argmax_cuda);
}

}  // namespace a2s
