// The op schemas, in one place. Device kernels register in cpu/ and cuda/,
// autograd in autograd.cpp; fake (meta) kernels are registered from Python
// (attn2scale/ops/_registration.py) through torch.library. No Python here:
// the same file builds the Python extension (with python_module.cpp) and the
// plain C++ library and benchmark (CMakeLists.txt).
#include <torch/library.h>

TORCH_LIBRARY(attn2scale, m) {
  m.def("interp(Tensor x, SymInt[2] size, int pad_beg=0, int pad_end=0) -> Tensor");
  m.def("interp_backward(Tensor grad, SymInt[4] input_shape, int pad_beg=0, int pad_end=0) -> Tensor");
  m.def(
      "scale_merge(Tensor[] scores, SymInt[2] size, str mode, Tensor? logits=None, "
      "Tensor? gate=None, float? avg_weight=None) -> (Tensor, Tensor)");
  m.def(
      "scale_merge_backward(Tensor grad, Tensor[] scores, str mode, Tensor aux, "
      "Tensor? gate=None, float? avg_weight=None) -> (Tensor[], Tensor, Tensor)");
  m.def("upsample_argmax(Tensor scores, SymInt[2] size, bool with_score=False) -> (Tensor, Tensor)");
}
