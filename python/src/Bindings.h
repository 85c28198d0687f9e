// The pybind11 module flexjit._flexjit: thin bindings of the public C++ API (dsl/, runtime/) for the Python
// package. No logic lives here that the C++ tests cannot reach; tracing and torch integration are in Python.
//
// Only flexjit's public headers, pybind11 and Python are included (no fmt, MLIR or CUDA headers), so the
// module builds against a prebuilt libflexjit.so and the repository headers alone.
#pragma once

#include <pybind11/pybind11.h>

namespace flexjit::python {

/// Expr, the op table, captured tensors, ScoreMod / MaskMod, trace scopes.
void bindDsl(pybind11::module_& m);
/// TensorView, owned tensors, BlockMask, flex_attention forward and backward.
void bindRuntime(pybind11::module_& m);

}  // namespace flexjit::python
