#include "dsl/Capture.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "dsl/Error.h"
#include "dsl/Semantics.h"

namespace flexjit {

namespace {

void checkName(const std::string& name, const char* what) {
  if (name.empty()) throw Error(fmt::format("a captured {} needs a non-empty name (it appears in error messages)", what));
}

void checkView(const TensorCapture& t, const TensorView& view) {
  if (view.dtype != t.dtype || view.rank() != t.rank)
    throw Error(fmt::format("captured tensor '{}' was declared {} of rank {} but is bound to {}; the dtype and "
                            "rank are part of the compiled kernel, so make a new CapturedTensor for another one",
                            t.name, dtypeName(t.dtype), t.rank, view.describe()));
  for (int64_t s : view.shape)
    if (s > INT32_MAX)
      throw Error(fmt::format("captured tensor '{}' ({}) has a dimension over 2^31-1; indices are int32",
                              t.name, view.describe()));
}

}  // namespace

void checkInt64Values(const std::string& where, const TensorCapture& t, const void* hostData) {
  const TensorView& v = *t.view;
  if (v.numel() == 0) return;
  const auto* values = static_cast<const int64_t*>(hostData);
  std::vector<int64_t> idx(v.shape.size(), 0);
  for (;;) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * v.strides[d];
    if (values[off] < INT32_MIN || values[off] > INT32_MAX)
      throw Error(fmt::format("{}: captured tensor '{}' ({}) holds {} at [{}]; a mod computes integers in int32, so "
                              "it would wrap: keep the values in [-2^31, 2^31) (e.g. renumber ids) or pass int32",
                              where, t.name, v.describe(), values[off], fmt::join(idx, ", ")));
    int d = static_cast<int>(idx.size()) - 1;
    while (d >= 0 && ++idx[d] == v.shape[d]) idx[d--] = 0;
    if (d < 0) return;
  }
}

TensorIndex::TensorIndex(std::shared_ptr<TensorCapture> t, std::vector<Expr> indices)
    : tensor_(std::move(t)), indices_(std::move(indices)) {
  if (static_cast<int>(indices_.size()) > tensor_->rank)
    traceError(fmt::format("captured tensor '{}' has rank {} but was indexed with {} indices", tensor_->name,
                           tensor_->rank, indices_.size()));
}

TensorIndex TensorIndex::operator[](const Expr& index) const {
  std::vector<Expr> next = indices_;
  next.push_back(index);
  return TensorIndex(tensor_, std::move(next));
}

TensorIndex::operator Expr() const { return makeLoad(tensor_, indices_); }

CapturedTensor::CapturedTensor(std::string name, DType dtype, int rank, bool requiresGrad)
    : impl_(std::make_shared<TensorCapture>()) {
  checkName(name, "tensor");
  if (rank < 1 || rank > fj::kMaxRank)
    throw Error(fmt::format("captured tensor '{}' has rank {}; ranks 1 to {} are supported", name, rank, fj::kMaxRank));
  impl_->name = std::move(name);
  impl_->dtype = dtype;
  impl_->rank = rank;
  setRequiresGrad(requiresGrad);
}

CapturedTensor::CapturedTensor(std::string name, const TensorView& view, bool requiresGrad)
    : CapturedTensor(std::move(name), view.dtype, view.rank(), requiresGrad) {
  bind(view);
}

void CapturedTensor::bind(const TensorView& view) {
  checkView(*impl_, view);
  impl_->view = view;
}

void CapturedTensor::setRequiresGrad(bool requiresGrad) {
  if (requiresGrad && !isFloat(impl_->dtype))
    throw Error(fmt::format("captured tensor '{}' is {}: only float tensors can require a gradient", impl_->name,
                            dtypeName(impl_->dtype)));
  impl_->requiresGrad = requiresGrad;
}

TensorIndex CapturedTensor::operator[](const Expr& index) const { return TensorIndex(impl_, {index}); }

Expr CapturedTensor::at(const std::vector<Expr>& indices) const { return makeLoad(impl_, indices); }

Expr makeLoad(const std::shared_ptr<TensorCapture>& tensor, const std::vector<Expr>& indices) {
  if (static_cast<int>(indices.size()) != tensor->rank)
    traceError(fmt::format("captured tensor '{}' has rank {} but was indexed with {} {}; give one index per dimension",
                           tensor->name, tensor->rank, indices.size(), indices.size() == 1 ? "index" : "indices"));
  auto n = std::make_shared<Node>();
  n->op = Op::Load;
  n->type = loadedType(tensor->dtype);
  n->tensor = tensor;
  for (size_t i = 0; i < indices.size(); ++i) {
    const Expr& idx = indices[i];
    if (!idx.defined())
      traceError(fmt::format("index {} of captured tensor '{}' is an uninitialized Expr", i, tensor->name));
    if (idx.type() == ScalarType::F32)
      traceError(fmt::format("captured tensor '{}' indexed with a float32 expression at position {}; indices must "
                             "be int32 (use toInt(), floor() or integer arithmetic)", tensor->name, i));
    if (idx.type() == ScalarType::Bool)
      traceError(fmt::format("captured tensor '{}' indexed with a bool expression at position {}; indices must be "
                             "int32 (use toInt() to index with 0/1)", tensor->name, i));
    n->args.push_back(idx.node());
  }
  return Expr(NodeRef(n));
}

CapturedScalar::CapturedScalar(std::string name, float value) : impl_(std::make_shared<ScalarCapture>()) {
  checkName(name, "scalar");
  impl_->name = std::move(name);
  impl_->type = ScalarType::F32;
  impl_->value = value;
}

CapturedScalar::CapturedScalar(std::string name, int value) : impl_(std::make_shared<ScalarCapture>()) {
  checkName(name, "scalar");
  impl_->name = std::move(name);
  impl_->type = ScalarType::I32;
  impl_->value = value;
}

void CapturedScalar::set(double value) {
  if (impl_->type == ScalarType::I32 && (value != static_cast<double>(static_cast<int32_t>(value))))
    throw Error(fmt::format("captured scalar '{}' is int32; {} is not an int32 value", impl_->name, value));
  impl_->value = impl_->type == ScalarType::F32 ? static_cast<double>(static_cast<float>(value)) : value;
}

CapturedScalar::operator Expr() const {
  auto n = std::make_shared<Node>();
  n->op = Op::Scalar;
  n->type = impl_->type;
  n->scalar = impl_;
  return Expr(NodeRef(n));
}

}  // namespace flexjit
