// Captured tensors and scalars: values a mod reads that are not among its parameters.
//
// A capture is a shared slot. The compiled kernel depends only on a tensor's dtype and rank and a
// scalar's type; the data pointer, shape and scalar value are kernel arguments read at launch, so
// rebinding a tensor (`bind`) or changing a scalar (`set`) never recompiles.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsl/Expr.h"
#include "dsl/TensorView.h"

namespace flexjit {

/// The shared state behind a CapturedTensor.
struct TensorCapture {
  std::string name;
  DType dtype;
  int rank;
  bool requiresGrad = false;
  std::optional<TensorView> view;  ///< the bound data, if any
};

/// The shared state behind a CapturedScalar.
struct ScalarCapture {
  std::string name;
  ScalarType type;  ///< F32 or I32
  double value = 0.0;
};

class CapturedTensor;

/// A partly indexed tensor, `bias[h]`; becomes an Expr once every dimension is indexed.
class TensorIndex {
 public:
  TensorIndex(std::shared_ptr<TensorCapture> t, std::vector<Expr> indices);
  TensorIndex operator[](const Expr& index) const;
  operator Expr() const;  // NOLINT: implicit so `bias[h][q] + score` reads naturally

 private:
  std::shared_ptr<TensorCapture> tensor_;
  std::vector<Expr> indices_;
};

/// A tensor a mod reads, e.g. a per-head bias or per-token document ids. Float tensors may require a
/// gradient, which the backward pass accumulates in float32.
class CapturedTensor {
 public:
  /// A placeholder bound to data later with bind().
  CapturedTensor(std::string name, DType dtype, int rank, bool requiresGrad = false);
  /// A capture bound to `view` now.
  CapturedTensor(std::string name, const TensorView& view, bool requiresGrad = false);

  /// Rebinds the data; the dtype and rank must stay the same (they are part of the compiled kernel).
  void bind(const TensorView& view);
  void setRequiresGrad(bool requiresGrad);

  const std::string& name() const { return impl_->name; }
  DType dtype() const { return impl_->dtype; }
  int rank() const { return impl_->rank; }
  bool requiresGrad() const { return impl_->requiresGrad; }
  const std::optional<TensorView>& view() const { return impl_->view; }
  const std::shared_ptr<TensorCapture>& impl() const { return impl_; }

  /// `bias[h][q_idx - kv_idx]`
  TensorIndex operator[](const Expr& index) const;
  /// `bias(h, q_idx - kv_idx)`
  template <class... I>
  Expr operator()(const I&... indices) const {
    return at({Expr(indices)...});
  }
  Expr at(const std::vector<Expr>& indices) const;

 private:
  std::shared_ptr<TensorCapture> impl_;
};

/// A float or int scalar a mod reads, changeable between calls without recompiling.
class CapturedScalar {
 public:
  CapturedScalar(std::string name, float value);
  CapturedScalar(std::string name, int value);

  void set(double value);
  double value() const { return impl_->value; }
  const std::string& name() const { return impl_->name; }
  const std::shared_ptr<ScalarCapture>& impl() const { return impl_; }

  operator Expr() const;  // NOLINT: implicit so `score * alpha` reads naturally
  Expr expr() const { return Expr(*this); }

 private:
  std::shared_ptr<ScalarCapture> impl_;
};

/// Raises flexjit::Error (prefixed with `where`) when the int64 tensor `t` is bound to holds a value outside
/// int32: a mod computes integers in int32, so the value would wrap. `hostData` holds the bound view's
/// elements at its strides: the view's own data on the CPU, a host copy of its extent otherwise.
void checkInt64Values(const std::string& where, const TensorCapture& t, const void* hostData);

/// Builds a tensor read directly (used by CapturedTensor and the Python tracer).
Expr makeLoad(const std::shared_ptr<TensorCapture>& tensor, const std::vector<Expr>& indices);

}  // namespace flexjit
