// A Python module so `import attn2scale._C` loads the library and runs the
// op registrations (ops.cpp, cpu/, cuda/). Besides that it exposes only
// merge_mode_names(), the C++ table of merge modes, so a test can hold it
// against the Python one. Only the Python extension (setup.py) compiles this
// file.
#include <Python.h>

#include "scale_merge_math.h"

// merge_mode_names() -> tuple of str: the mode names in code order (the
// name at index i is the mode whose MergeMode code is i).
static PyObject* merge_mode_names(PyObject*, PyObject*) {
  PyObject* names = PyTuple_New(a2s::kNumMergeModes);
  if (names == nullptr) return nullptr;
  for (int m = 0; m < a2s::kNumMergeModes; ++m) {
    PyObject* name = PyUnicode_FromString(a2s::kMergeModeNames[m]);
    if (name == nullptr) {
      Py_DECREF(names);
      return nullptr;
    }
    PyTuple_SET_ITEM(names, m, name);  // steals the reference
  }
  return names;
}

static PyMethodDef methods[] = {
    {"merge_mode_names", merge_mode_names, METH_NOARGS,
     "The C++ merge mode names, in code order (index = MergeMode code)."},
    {nullptr, nullptr, 0, nullptr}};

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods,
                                   nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&def);
}
