// Entry point of flexjit._flexjit: registers flexjit::Error as the Python exception FlexjitError (a
// RuntimeError carrying the C++ message unchanged) and the DSL and runtime bindings.
#include "Bindings.h"

#include "dsl/Error.h"

namespace py = pybind11;

PYBIND11_MODULE(_flexjit, m) {
  m.doc() = "flexjit C++ core: traced attention mods, block masks, flex_attention (use the flexjit package)";
  py::register_exception<flexjit::Error>(m, "FlexjitError", PyExc_RuntimeError);
  flexjit::python::bindDsl(m);
  flexjit::python::bindRuntime(m);
}
