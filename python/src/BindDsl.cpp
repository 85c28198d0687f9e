// Bindings of dsl/: Expr and its op table, captured tensors, ScoreMod / MaskMod and trace scopes. The Python
// tracer (flexjit/_trace.py) builds graphs with make_op / make_load; every type rule and error message is the
// C++ DSL's own.
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "Bindings.h"
#include "dsl/Mods.h"

namespace py = pybind11;

namespace flexjit::python {

namespace {

/// A stable identity for a capture slot, shared by every handle to it (Python matches captures by it).
uintptr_t captureId(const std::shared_ptr<TensorCapture>& t) { return reinterpret_cast<uintptr_t>(t.get()); }

std::vector<uintptr_t> tensorIds(const Mod& mod) {
  std::vector<uintptr_t> ids;
  for (const auto& t : mod.tensors()) ids.push_back(captureId(t));
  return ids;
}

/// A Python context manager around TraceScope, so errors raised while a Python mod is traced name it.
class PyTraceScope {
 public:
  PyTraceScope(std::string kind, std::string name) : kind_(std::move(kind)), name_(std::move(name)) {}
  void enter() { scope_ = std::make_unique<TraceScope>(kind_.c_str(), name_); }
  void exit() { scope_.reset(); }

 private:
  std::string kind_, name_;
  std::unique_ptr<TraceScope> scope_;
};

void bindEnums(py::module_& m) {
  py::enum_<ScalarType>(m, "ScalarType")
      .value("Bool", ScalarType::Bool)
      .value("I32", ScalarType::I32)
      .value("F32", ScalarType::F32);
  py::enum_<DType>(m, "DType")
      .value("Bool", DType::Bool)
      .value("I32", DType::I32)
      .value("I64", DType::I64)
      .value("F32", DType::F32)
      .value("F16", DType::F16)
      .value("BF16", DType::BF16);
  py::enum_<Param>(m, "Param")
      .value("Score", Param::Score)
      .value("B", Param::B)
      .value("H", Param::H)
      .value("Q", Param::Q)
      .value("KV", Param::KV)
      .value("Visible", Param::Visible);
  py::enum_<Op> op(m, "Op");
#define FJ_OP(name, spelling, arity) op.value(#name, Op::name);
#include "dsl/Ops.def"
  m.def("op_name", &opName, "Spelling of an op in messages ('+', 'exp', 'where')");
}

void bindExpr(py::module_& m) {
  py::class_<Expr>(m, "Expr", "A symbolic value of a traced mod")
      .def_static("param", &Expr::param)
      .def_static("constant", &Expr::constant, py::arg("type"), py::arg("value"))
      .def_property_readonly("type", &Expr::type);
  m.def("make_op", &makeOp, py::arg("op"), py::arg("args"), "Builds a node, checking operand types");
  m.def("make_load", [](const class CapturedTensor& t, const std::vector<Expr>& indices) {
    return makeLoad(t.impl(), indices);
  }, py::arg("tensor"), py::arg("indices"), "A read of a captured tensor, one int32 index per dimension");
}

void bindCaptures(py::module_& m) {
  py::class_<CapturedTensor>(m, "CapturedTensor", "A tensor a mod reads; bound to data before every use")
      .def(py::init<std::string, DType, int, bool>(), py::arg("name"), py::arg("dtype"), py::arg("rank"),
           py::arg("requires_grad") = false)
      .def("bind", &CapturedTensor::bind, py::arg("view"))
      .def_property_readonly("name", &CapturedTensor::name)
      .def_property_readonly("dtype", &CapturedTensor::dtype)
      .def_property_readonly("rank", &CapturedTensor::rank)
      .def_property("requires_grad", &CapturedTensor::requiresGrad, &CapturedTensor::setRequiresGrad)
      .def_property_readonly("id", [](const CapturedTensor& t) { return captureId(t.impl()); });
  py::class_<PyTraceScope>(m, "TraceScope", "Names the mod being traced in errors: with TraceScope('mask_mod', 'causal')")
      .def(py::init<std::string, std::string>(), py::arg("kind"), py::arg("name"))
      .def("__enter__", [](PyTraceScope& s) { s.enter(); })
      .def("__exit__", [](PyTraceScope& s, py::args) { s.exit(); });
  m.def("current_trace", &TraceScope::current, "\"mask_mod 'causal'\" while that mod is traced, else \"\"");
}

template <class M>
void bindModCommon(py::class_<M>& c) {
  c.def_property_readonly("name", [](const M& mod) { return mod.name(); })
      .def_property_readonly("key", [](const M& mod) { return mod.key(); })
      .def_property_readonly("canonical_form", [](const M& mod) { return mod.canonicalForm(); })
      .def_property_readonly("tensor_ids", [](const M& mod) { return tensorIds(mod); })
      .def("describe", [](const M& mod) { return mod.describe(); })
      .def("__repr__", [](const M& mod) { return "<" + mod.describe() + " key=" + mod.key() + ">"; });
}

void bindMods(py::module_& m) {
  py::class_<ScoreMod> score(m, "ScoreMod", "A traced score_mod(score, b, h, q_idx, kv_idx) -> float");
  score.def_static("from_body", &ScoreMod::fromBody, py::arg("name"), py::arg("body"))
      .def_static("noop", &ScoreMod::noop)
      .def_property_readonly("is_noop", &ScoreMod::isNoop);
  bindModCommon(score);
  py::class_<MaskMod> mask(m, "MaskMod", "A traced mask_mod(b, h, q_idx, kv_idx) -> bool");
  mask.def_static("from_body", &MaskMod::fromBody, py::arg("name"), py::arg("body"))
      .def_static("noop", &MaskMod::noop)
      .def_property_readonly("is_noop", &MaskMod::isNoop);
  bindModCommon(mask);
  py::class_<SinkMod> sink(m, "SinkMod", "A traced sink_mod(b, h, q_idx) -> float: a logit in each row's denominator");
  sink.def_static("from_body", &SinkMod::fromBody, py::arg("name"), py::arg("body"));
  bindModCommon(sink);
  py::class_<ProbMod> prob(m, "ProbMod",
                           "A traced prob_mod(p, b, h, q_idx, kv_idx, num_visible) -> float, applied after the softmax");
  prob.def_static("from_body", &ProbMod::fromBody, py::arg("name"), py::arg("body"));
  bindModCommon(prob);
}

}  // namespace

void bindDsl(py::module_& m) {
  bindEnums(m);
  bindExpr(m);
  bindCaptures(m);
  bindMods(m);
}

}  // namespace flexjit::python
