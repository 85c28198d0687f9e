#include "dsl/TensorView.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "dsl/Error.h"

namespace flexjit {

std::string Device::str() const { return kind == DeviceKind::CPU ? "cpu" : fmt::format("cuda:{}", index); }

TensorView::TensorView(void* data, DType dtype, Device device, std::vector<int64_t> shape,
                       std::vector<int64_t> strides)
    : data(data), dtype(dtype), device(device), shape(std::move(shape)), strides(std::move(strides)) {
  if (this->strides.empty()) this->strides = contiguousStrides(this->shape);
  if (this->strides.size() != this->shape.size())
    throw Error(fmt::format("TensorView: {} strides given for a tensor of rank {}; give one stride per dimension",
                            this->strides.size(), this->shape.size()));
  for (int64_t s : this->shape)
    if (s < 0) throw Error(fmt::format("TensorView: negative size in shape [{}]", fmt::join(this->shape, ", ")));
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool TensorView::isContiguous() const { return strides == contiguousStrides(shape); }

std::string TensorView::describe() const {
  return fmt::format("{}[{}] on {}", dtypeName(dtype), fmt::join(shape, ", "), device.str());
}

std::vector<int64_t> TensorView::contiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

}  // namespace flexjit
