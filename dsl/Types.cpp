#include "dsl/Types.h"

#include "dsl/Semantics.h"

namespace flexjit {

// DType's order is the ABI generated kernels see (fj::ElemType); keep them in step.
static_assert(static_cast<int>(DType::Bool) == fj::kElemBool && static_cast<int>(DType::I32) == fj::kElemI32 &&
                  static_cast<int>(DType::I64) == fj::kElemI64 && static_cast<int>(DType::F32) == fj::kElemF32 &&
                  static_cast<int>(DType::F16) == fj::kElemF16 && static_cast<int>(DType::BF16) == fj::kElemBF16,
              "DType and fj::ElemType must agree");

const char* scalarTypeName(ScalarType t) {
  switch (t) {
    case ScalarType::Bool: return "bool";
    case ScalarType::I32: return "int32";
    case ScalarType::F32: return "float32";
  }
  return "?";
}

const char* dtypeName(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
  }
  return "?";
}

int dtypeSize(DType t) {
  switch (t) {
    case DType::Bool: return 1;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I32:
    case DType::F32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

bool isFloat(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

ScalarType loadedType(DType t) {
  if (isFloat(t)) return ScalarType::F32;
  return t == DType::Bool ? ScalarType::Bool : ScalarType::I32;
}

ScalarType promote(ScalarType a, ScalarType b) {
  if (a == ScalarType::F32 || b == ScalarType::F32) return ScalarType::F32;
  if (a == ScalarType::I32 || b == ScalarType::I32) return ScalarType::I32;
  return ScalarType::Bool;
}

}  // namespace flexjit
