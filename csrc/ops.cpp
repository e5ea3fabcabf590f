// The op schemas, in one place. Device kernels register in cpu/ and cuda/;
// fake (meta) kernels and autograd are registered from Python
// (attn2scale/ops/_registration.py) through torch.library.
#include <Python.h>
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

// A Python module so `import attn2scale._C` loads the library and runs the
// registrations above; it exposes nothing else.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
                                   nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&def);
}
