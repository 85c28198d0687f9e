// The seed attention variants, written in flexjit's C++ DSL. They are the examples users start from,
// and the cases every layer is tested and benchmarked on (tests, `flexjit demo`, bench/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsl/Mods.h"
#include "runtime/Tensor.h"

namespace flexjit::examples {

/// Problem sizes a variant's captured data is made for.
struct Shape {
  int64_t B = 1, H = 1, Lq = 256, Lkv = 256;
};

/// Host memory for a captured tensor's data (the variant binds its captures to these).
struct HostTensor {
  std::vector<uint8_t> bytes;
  TensorView view;  ///< over `bytes`, on the CPU
};

/// One seed variant, its captures bound to host data made for `shape`.
struct SeedVariant {
  std::string name;
  std::string description;
  ScoreMod score = ScoreMod::noop();
  MaskMod mask = MaskMod::noop();
  Shape shape;
  std::vector<std::shared_ptr<HostTensor>> data;  ///< keeps the bound host tensors alive
  /// Non-empty when the variant needs a particular shape relation (e.g. "Lq != Lkv").
  std::string shapeNote;
  std::vector<Tensor> deviceData;  ///< copies made by placeCaptures

  /// Copies every captured tensor to `device` and rebinds the mods' captures to the copies.
  void placeCaptures(Device device);
};

/// Names of all seed variants, in a stable order.
const std::vector<std::string>& seedVariantNames();

/// Builds a seed variant with captured data for `shape`. Raises flexjit::Error for an unknown name,
/// listing the known ones. Data is deterministic for a given (name, shape).
SeedVariant makeSeedVariant(const std::string& name, const Shape& shape = {});

}  // namespace flexjit::examples
