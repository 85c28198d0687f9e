// Types of the DSL: the scalar types expressions compute in, and the storage types of captured tensors.
#pragma once

#include <cstdint>
#include <string>

namespace flexjit {

/// The type of a DSL value. Scores are float32, indices int32, masks bool (torch's flex_attention types).
enum class ScalarType : uint8_t { Bool, I32, F32 };

/// The element type of a tensor in memory (captured tensors, Q/K/V).
enum class DType : uint8_t { Bool, I32, I64, F32, F16, BF16 };

const char* scalarTypeName(ScalarType t);
const char* dtypeName(DType t);
/// Size of one element in bytes.
int dtypeSize(DType t);
/// The DSL type a tensor element is read as: floats as F32, integers as I32, bool as Bool.
ScalarType loadedType(DType t);
bool isFloat(DType t);

/// torch-style promotion for binary ops: Bool < I32 < F32.
ScalarType promote(ScalarType a, ScalarType b);

}  // namespace flexjit
