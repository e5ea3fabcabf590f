// A Python module so `import attn2scale._C` loads the library and runs the
// op registrations (ops.cpp, cpu/, cuda/); it exposes nothing else. Only the
// Python extension (setup.py) compiles this file.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
                                   nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&def);
}
