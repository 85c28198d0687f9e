// The differential fuzzer's generator (FuzzGen.h), and checks that it is deterministic and reaches every
// op of dsl/Ops.def in every type it has.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <set>

#include "FuzzGen.h"
#include "dsl/Semantics.h"

namespace flexjit::testing {

namespace {

/// One case in this many also has a sink_mod, and independently one in this many a prob_mod.
constexpr int kExtraHookOdds = 4;

/// Integer corner cases: wrap-around, INT_MIN // -1, divisors 0 and -1, powers of two, sqrt(2^31).
constexpr int32_t kIntCorners[] = {
    0, 1, -1, 2, -2, 3, -3, 7, 31, 32, 64, 255, 1000, 46341, 65536, INT32_MAX, INT32_MIN, INT32_MIN + 1, INT32_MAX - 1};

float floatCorner(FuzzRng& rng) {
  const float corners[] = {0.0f,      -0.0f,   1.0f,          -1.0f,          0.5f,        -0.5f,     2.0f,
                           3.0f,      0.1f,    1e-3f,         40.0f,          88.75f,      -103.5f,   1e30f,
                           -1e30f,    FLT_MAX, -FLT_MAX,      FLT_MIN,        1e-40f,      -1.4e-45f, INFINITY,
                           -INFINITY, NAN,     2147483648.0f, -2147483904.0f, 16777217.0f, 0.75f,     -7.25f};
  return corners[rng.pick(sizeof corners / sizeof corners[0])];
}

int32_t intCorner(FuzzRng& rng) { return kIntCorners[rng.pick(sizeof kIntCorners / sizeof kIntCorners[0])]; }

float smallFloat(FuzzRng& rng) { return static_cast<float>(rng.uniform(-2.0, 2.0)); }

constexpr Op kFloatBinary[] = {Op::Add, Op::Sub, Op::Mul, Op::Div, Op::FloorDiv, Op::Mod, Op::Min, Op::Max};
constexpr Op kFloatUnary[] = {Op::Neg, Op::Abs,  Op::Floor, Op::Ceil,  Op::Exp,  Op::Exp2,
                              Op::Log, Op::Log2, Op::Sqrt,  Op::Rsqrt, Op::Tanh, Op::Sigmoid};
/// The torch functions of issue 14 (Ops.def's later entries).
constexpr Op kFloatUnaryMore[] = {Op::Round, Op::Trunc, Op::Sin, Op::Cos, Op::Tan, Op::Atan, Op::Erf, Op::Log1p, Op::Expm1};
constexpr Op kFloatBinaryMore[] = {Op::Pow, Op::FMod};
constexpr Op kIntBinary[] = {Op::Add, Op::Sub, Op::Mul, Op::FloorDiv, Op::Mod, Op::Min, Op::Max};
constexpr Op kIntBinaryMore[] = {Op::FMod, Op::Shl, Op::Shr};
constexpr Op kBitwise[] = {Op::And, Op::Or, Op::Xor};
constexpr Op kCompare[] = {Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge};

template <class T, size_t N>
T pickOf(FuzzRng& rng, const T (&items)[N]) {
  return items[rng.pick(static_cast<int>(N))];
}


// ---- tensors ------------------------------------------------------------------------------------

/// Row-major strides for `shape` in the dimension order `order` (innermost last), each dimension padded by
/// `pad` elements: contiguous, padded and permuted (column-major) layouts.
std::vector<int64_t> layoutStrides(const std::vector<int64_t>& shape, const std::vector<int>& order, int pad) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t k = order.size(); k-- > 0;) {
    strides[order[k]] = s;
    s *= std::max<int64_t>(shape[order[k]], 1) + pad;
  }
  return strides;
}

std::vector<int64_t> randomStrides(FuzzRng& rng, const std::vector<int64_t>& shape) {
  std::vector<int> order(shape.size());
  for (size_t d = 0; d < order.size(); ++d) order[d] = static_cast<int>(d);
  const int layout = rng.pick(6);
  if (layout == 1)  // column-major
    std::reverse(order.begin(), order.end());
  if (layout == 2 && order.size() > 1) std::swap(order[0], order[rng.pick(static_cast<int>(order.size()))]);
  std::vector<int64_t> strides = layoutStrides(shape, order, layout >= 3 ? 1 + rng.pick(3) : 0);
  if (layout == 5) strides[rng.pick(static_cast<int>(shape.size()))] = 0;  // an expanded (broadcast) dimension
  return strides;
}

/// `tame`: float32 data without the huge corners (for finite differences, see FuzzCase::smoothScore).
void writeElement(FuzzRng& rng, FuzzTensor& t, int64_t k, bool tame) {
  unsigned char* p = t.bytes.data() + k * dtypeSize(t.dtype);
  auto put = [&](auto v) { std::memcpy(p, &v, sizeof v); };
  auto floatBits = [&](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  switch (t.dtype) {
    case DType::F32:
      put(!tame && rng.chance(1, 10) ? floatCorner(rng) : rng.chance(1, 9) ? float(rng.pick(9) - 4) : smallFloat(rng));
      break;
    case DType::BF16:
      put(static_cast<uint16_t>(rng.chance(1, 8) ? rng.next() : floatBits(smallFloat(rng) * 2.0f) >> 16));
      break;
    case DType::F16: {
      // Half bits: mostly normal numbers of magnitude 2^-5..2^3; 1 in 8 any pattern (subnormals, inf, NaN).
      uint16_t sign = static_cast<uint16_t>(rng.pick(2) << 15), exp = static_cast<uint16_t>(10 + rng.pick(8));
      put(static_cast<uint16_t>(rng.chance(1, 8) ? rng.next() : sign | (exp << 10) | rng.pick(1024)));
      break;
    }
    case DType::I32: put(rng.chance(1, 5) ? intCorner(rng) : static_cast<int32_t>(rng.pick(24) - 4)); break;
    case DType::I64:
      // int64 tensors must hold int32 values (a wider one is a flexjit::Error when the mod binds it, docs/dsl.md,
      // tested elsewhere): the int32 corners, INT_MIN and INT_MAX included, stored in 64 bits.
      put(static_cast<int64_t>(rng.chance(1, 4) ? intCorner(rng) : rng.pick(24) - 4));
      break;
    case DType::Bool: put(static_cast<uint8_t>(rng.chance(1, 20) ? 2 : rng.pick(2))); break;
  }
}

/// `tame` (smooth cases, see writeElement) and the first tensor of a smooth case is a float32 one that
/// requires a gradient, so finite differences check captured-tensor gradients often.
std::unique_ptr<FuzzTensor> makeTensor(FuzzRng& rng, int index, bool tame) {
  const DType dtypes[] = {DType::F32, DType::F32,  DType::F32, DType::I32, DType::I32,
                          DType::I64, DType::Bool, DType::F16, DType::BF16};
  const int64_t dims[] = {1, 2, 3, 4, 5, 8, 17, 33};
  auto t = std::make_unique<FuzzTensor>();
  t->dtype = tame && index == 0 ? DType::F32 : dtypes[rng.pick(sizeof dtypes / sizeof dtypes[0])];
  const int rank = 1 + rng.pick(3);
  for (int d = 0; d < rank; ++d) t->shape.push_back(rng.chance(1, 60) ? 0 : dims[rng.pick(8)]);
  t->strides = randomStrides(rng, t->shape);
  int64_t elements = 1;
  for (int d = 0; d < rank; ++d) elements += std::max<int64_t>(t->shape[d] - 1, 0) * t->strides[d];
  t->bytes.resize(static_cast<size_t>(elements * dtypeSize(t->dtype)));
  for (int64_t k = 0; k < elements; ++k) writeElement(rng, *t, k, tame);
  const bool grad = t->dtype == DType::F32 && ((tame && index == 0) || rng.chance(1, 2));
  t->capture = std::make_unique<CapturedTensor>(fmt::format("t{}", index), t->dtype, rank, grad);
  t->capture->bind(TensorView(t->bytes.data(), t->dtype, Device::cpu(), t->shape, t->strides));
  return t;
}

CapturedScalar makeScalar(FuzzRng& rng, int index, bool tame) {
  std::string name = fmt::format("s{}", index);
  if (rng.chance(1, 2))
    return CapturedScalar(name, !tame && rng.chance(3, 10) ? floatCorner(rng) : static_cast<float>(rng.uniform(-3, 3)));
  return CapturedScalar(name, rng.chance(2, 5) ? intCorner(rng) : static_cast<int>(rng.pick(26) - 5));
}

// ---- expressions --------------------------------------------------------------------------------

/// Which hook an expression is for, hence which parameters it may read: a score_mod's and a prob_mod's
/// float input (the score, the probability p), kv_idx everywhere but in a sink_mod (b, h, q_idx only), and
/// num_visible in a prob_mod.
enum class ModMode { Score, SmoothScore, Mask, Sink, Prob };

/// Random typed expressions for one mod. Every op is built through the public DSL (operators, makeOp and
/// tensor indexing), so the fuzzer also exercises type promotion and conversion insertion.
class ExprGen {
 public:
  ExprGen(FuzzRng& rng, FuzzEnv& env, ModMode mode, int maxDepth)
      : rng_(rng), env_(env), mode_(mode), maxDepth_(maxDepth) {}

  Expr floatExpr(int d);
  Expr intExpr(int d);
  Expr boolExpr(int d);

 private:
  bool leaf(int d) { return d >= maxDepth_ || (d > 0 && rng_.chance(1, 3)); }
  /// Past this depth leaves are plain (no tensor reads), so nested indexing always ends.
  bool deep(int d) const { return d > maxDepth_ + 2; }
  Expr param(Param p) { return Expr::param(p); }
  /// kv_idx, or h in a sink_mod (which has no kv_idx).
  Expr column() { return param(mode_ == ModMode::Sink ? Param::H : Param::KV); }
  Expr floatLeaf(int d);
  Expr intLeaf(int d);
  Expr boolLeaf(int d);
  Expr floatOp(int d);
  Expr smoothOp(int d);
  Expr intOp(int d);
  Expr boolOp(int d);
  /// A random int, float or bool operand (mixed-type operands exercise promotion).
  Expr numeric(int d);
  Expr load(int d, ScalarType type);
  Expr index(const FuzzTensor& t, int dim, int d);

  FuzzRng& rng_;
  FuzzEnv& env_;
  ModMode mode_;
  int maxDepth_;
};

Expr ExprGen::numeric(int d) {
  const int k = rng_.pick(10);
  return k < 6 ? floatExpr(d) : k < 9 ? intExpr(d) : boolExpr(d);
}

Expr ExprGen::floatLeaf(int d) {
  const bool input = mode_ != ModMode::Mask && mode_ != ModMode::Sink;
  switch (rng_.pick(input ? 9 : 6)) {
    case 0: return Expr(mode_ == ModMode::SmoothScore ? smallFloat(rng_) : floatCorner(rng_));
    case 1: return Expr(smallFloat(rng_));
    case 2: {
      for (const CapturedScalar& s : env_.scalars)
        if (s.impl()->type == ScalarType::F32 && rng_.chance(2, 3)) return Expr(s);
      return Expr(smallFloat(rng_));
    }
    case 3: return deep(d) ? Expr(0.25f) : load(d, ScalarType::F32);
    case 4: return toFloat(intLeaf(d + 1));
    case 5: return deep(d) ? Expr(1.0f) : load(d, ScalarType::F32);
    default: return param(Param::Score);
  }
}

Expr ExprGen::intLeaf(int d) {
  if (mode_ == ModMode::Prob && rng_.chance(1, 6)) return param(Param::Visible);
  switch (rng_.pick(11)) {
    case 0: return param(Param::B);
    case 1: return param(Param::H);
    case 2:
    case 3: return param(Param::Q);
    case 4:
    case 5: return column();
    case 6: return Expr(intCorner(rng_));
    case 7: return Expr(rng_.pick(41) - 20);
    case 8: {
      for (const CapturedScalar& s : env_.scalars)
        if (s.impl()->type == ScalarType::I32 && rng_.chance(2, 3)) return Expr(s);
      return Expr(rng_.pick(9) - 4);
    }
    default: return deep(d) ? param(Param::Q) : load(d, ScalarType::I32);
  }
}

Expr ExprGen::boolLeaf(int d) {
  switch (rng_.pick(5)) {
    case 0: return Expr(rng_.chance(1, 2));
    case 1: return deep(d) ? Expr(true) : load(d, ScalarType::Bool);
    case 2: return param(Param::Q) >= column();
    default: return makeOp(pickOf(rng_, kCompare), {intLeaf(d + 1), intLeaf(d + 1)});
  }
}

Expr ExprGen::load(int d, ScalarType type) {
  std::vector<const FuzzTensor*> candidates;
  for (const auto& t : env_.tensors)
    if (loadedType(t->dtype) == type && !(mode_ == ModMode::Mask && t->capture->requiresGrad()))
      candidates.push_back(t.get());
  if (candidates.empty())
    return type == ScalarType::F32 ? Expr(smallFloat(rng_)) : type == ScalarType::I32 ? param(Param::Q) : Expr(false);
  const FuzzTensor& t = *candidates[rng_.pick(static_cast<int>(candidates.size()))];
  std::vector<Expr> indices;
  for (int dim = 0; dim < t.rank(); ++dim) indices.push_back(index(t, dim, d + 1));
  return t.capture->at(indices);
}

Expr ExprGen::index(const FuzzTensor& t, int dim, int d) {
  const int size = static_cast<int>(t.shape[dim]);
  switch (rng_.pick(11)) {
    case 0:
    case 1:
    case 2: return intExpr(d) % std::max(size, 1);  // Python %: always in [0, size) for size > 0
    case 3: return clamp(intExpr(d), 0, size - 1);
    case 4: return intExpr(d);  // may fall outside: reads 0
    case 5: return deep(d) ? column() : load(d, ScalarType::I32) % std::max(size, 1);  // t[u[q]]
    case 6: return deep(d) ? param(Param::Q) : load(d, ScalarType::I32);
    case 7: return param(Param::H);
    case 8: return param(Param::Q) - column() + rng_.pick(5);
    default: return rng_.chance(1, 2) ? param(Param::Q) : column();
  }
}

Expr ExprGen::floatExpr(int d) {
  if (leaf(d)) return floatLeaf(d);
  return mode_ == ModMode::SmoothScore ? smoothOp(d) : floatOp(d);
}

Expr ExprGen::intExpr(int d) { return leaf(d) ? intLeaf(d) : intOp(d); }

Expr ExprGen::boolExpr(int d) { return leaf(d) ? boolLeaf(d) : boolOp(d); }

Expr ExprGen::floatOp(int d) {
  switch (rng_.pick(11)) {
    case 0:
    case 1:
    case 2: {  // one float operand, the other of any type (promoted)
      Expr a = floatExpr(d + 1), b = numeric(d + 1);
      const Op op = rng_.chance(1, 5) ? pickOf(rng_, kFloatBinaryMore) : pickOf(rng_, kFloatBinary);
      return rng_.chance(1, 2) ? makeOp(op, {a, b}) : makeOp(op, {b, a});
    }
    case 3: return makeOp(pickOf(rng_, kFloatUnary), {floatExpr(d + 1)});
    case 4: return makeOp(pickOf(rng_, kFloatUnaryMore), {floatExpr(d + 1)});
    case 5: return makeOp(kFloatUnary[4 + rng_.pick(8)], {intExpr(d + 1)});  // an int converted first
    case 6:
      return rng_.chance(1, 2) ? where(boolExpr(d + 1), floatExpr(d + 1), numeric(d + 1))
                               : where(boolExpr(d + 1), numeric(d + 1), floatExpr(d + 1));
    case 7:
      return clamp(floatExpr(d + 1), rng_.chance(1, 3) ? Expr(floatCorner(rng_)) : Expr(-1.0f), Expr(smallFloat(rng_)));
    case 8: return intExpr(d + 1) / intExpr(d + 1);  // true division of ints is float
    case 9: return toFloat(toInt(floatExpr(d + 1) * Expr(rng_.chance(1, 2) ? floatCorner(rng_) : 3.0f)));
    default: return toFloat(rng_.chance(3, 4) ? intExpr(d + 1) : boolExpr(d + 1));
  }
}

Expr ExprGen::smoothOp(int d) {
  Expr a = floatExpr(d + 1);
  switch (rng_.pick(21)) {
    case 0: return a + floatExpr(d + 1);
    case 1: return a - floatExpr(d + 1);
    case 2: return a * floatExpr(d + 1);
    case 3: return a / (1.5f + a * a);  // denominators stay away from 0
    case 4: return exp(clamp(a, -4.0f, 4.0f));
    case 5: return tanh(a);
    case 6: return sigmoid(a);
    case 7: return sqrt(a * a + 1.0f);
    case 8: return log(a * a + 0.5f);
    case 9: return where(boolExpr(d + 1), a, floatExpr(d + 1));
    case 10: return exp2(clamp(a, -3.0f, 3.0f)) - a;
    case 11: return rsqrt(a * a + 2.0f) + abs(a) * 0.25f;
    case 12: return rng_.chance(1, 2) ? minimum(a, floatExpr(d + 1)) : maximum(a, floatExpr(d + 1));
    case 13: return a % 2.5f + floordiv(a, -1.75f) * 0.5f;
    case 14: return floor(a) * 0.5f + ceil(a) * 0.25f + a;
    case 15: return toFloat(intExpr(d + 1)) * 0.125f + a;
    case 16: return sin(a) + cos(a * 0.5f);
    case 17: return atan(a) + erf(a * 0.5f);
    case 18: return log1p(a * a) + expm1(clamp(a, -3.0f, 3.0f));
    case 19: return tan(clamp(a, -1.0f, 1.0f));
    default: return pow(a * a + 0.75f, clamp(floatExpr(d + 1), -2.0f, 2.0f));  // a positive base
  }
}

Expr ExprGen::intOp(int d) {
  switch (rng_.pick(13)) {
    case 0:
    case 1:
    case 2: {
      Expr b = rng_.chance(1, 8) ? boolExpr(d + 1) : intExpr(d + 1);
      return makeOp(rng_.chance(1, 5) ? pickOf(rng_, kIntBinaryMore) : pickOf(rng_, kIntBinary), {intExpr(d + 1), b});
    }
    case 3: return makeOp(rng_.chance(1, 2) ? Op::FloorDiv : Op::Mod, {intExpr(d + 1), Expr(intCorner(rng_))});
    case 4: return intExpr(d + 1) * Expr(intCorner(rng_)) + Expr(intCorner(rng_));  // wraps
    case 5: return makeOp(rng_.chance(1, 3) ? Op::Not : rng_.chance(1, 2) ? Op::Neg : Op::Abs, {intExpr(d + 1)});
    case 6:
      return makeOp(pickOf(rng_, kBitwise), {intExpr(d + 1), rng_.chance(1, 6) ? boolExpr(d + 1) : intExpr(d + 1)});
    case 7: return where(boolExpr(d + 1), intExpr(d + 1), rng_.chance(1, 6) ? boolExpr(d + 1) : intExpr(d + 1));
    case 8:
      return clamp(intExpr(d + 1), rng_.chance(1, 3) ? intExpr(d + 1) : Expr(rng_.pick(21) - 10),
                   rng_.chance(1, 4) ? Expr(intCorner(rng_)) : Expr(rng_.pick(40)));
    case 9: return toInt(floatExpr(d + 1));  // truncates, saturates, NaN -> 0
    case 10: return makeOp(rng_.chance(1, 2) ? Op::ToI32 : Op::Abs, {boolExpr(d + 1)});
    case 11: return makeOp(rng_.chance(1, 2) ? Op::Floor : Op::Ceil, {intExpr(d + 1)});  // identity on ints
    default: return floordiv(intExpr(d + 1), intExpr(d + 1)) + intExpr(d + 1) % intExpr(d + 1);
  }
}

Expr ExprGen::boolOp(int d) {
  switch (rng_.pick(11)) {
    case 0:
    case 1:
    case 2: return makeOp(pickOf(rng_, kCompare), {intExpr(d + 1), intExpr(d + 1)});
    case 3: return makeOp(pickOf(rng_, kCompare), {floatExpr(d + 1), numeric(d + 1)});
    case 4: return makeOp(rng_.chance(1, 2) ? Op::Eq : pickOf(rng_, kCompare), {boolExpr(d + 1), numeric(d + 1)});
    case 5: return makeOp(pickOf(rng_, kBitwise), {boolExpr(d + 1), boolExpr(d + 1)});
    case 6: return rng_.chance(1, 2) ? !boolExpr(d + 1) : ~boolExpr(d + 1);
    case 7: return where(boolExpr(d + 1), boolExpr(d + 1), boolExpr(d + 1));
    case 8: return toBool(rng_.chance(1, 2) ? intExpr(d + 1) : floatExpr(d + 1));
    case 9: return rng_.chance(1, 2) ? (boolExpr(d + 1) && boolExpr(d + 1)) : (boolExpr(d + 1) || boolExpr(d + 1));
    default: return makeOp(pickOf(rng_, kCompare), {intExpr(d + 1), floatExpr(d + 1)});
  }
}

}  // namespace

// ---- cases --------------------------------------------------------------------------------------

int64_t FuzzTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string FuzzTensor::describe() const {
  std::string s =
      fmt::format("{} '{}' shape [{}] strides [{}]{}:", dtypeName(dtype), capture->name(), fmt::join(shape, ", "),
                  fmt::join(strides, ", "), capture->requiresGrad() ? " (grad)" : "");
  const int64_t shown = std::min<int64_t>(storageElements(), 24);
  for (int64_t k = 0; k < shown; ++k) {
    const unsigned char* p = bytes.data() + k * dtypeSize(dtype);
    float f;
    int32_t i;
    int64_t l;
    uint16_t h;
    switch (dtype) {
      case DType::F32:
        std::memcpy(&f, p, 4);
        s += fmt::format(" {}", f);
        break;
      case DType::I32:
        std::memcpy(&i, p, 4);
        s += fmt::format(" {}", i);
        break;
      case DType::I64:
        std::memcpy(&l, p, 8);
        s += fmt::format(" {}", l);
        break;
      case DType::Bool: s += fmt::format(" {}", int(*p)); break;
      default:
        std::memcpy(&h, p, 2);
        s += fmt::format(" 0x{:04x}", h);
        break;
    }
  }
  return s + (shown < storageElements() ? " ..." : "");
}

std::string FuzzEnv::describe() const {
  std::string s;
  for (const auto& t : tensors) s += "  tensor " + t->describe() + "\n";
  for (const CapturedScalar& c : scalars)
    s += fmt::format("  scalar {} '{}' = {}\n", scalarTypeName(c.impl()->type), c.name(), c.value());
  return s;
}

std::string FuzzCase::describe() const {
  return fmt::format("case seed {} (replay: FLEXJIT_FUZZ_SEED={} FLEXJIT_FUZZ_CASES=1){}\n{}{}{}{}{}", seed, seed,
                     smoothScore ? ", smooth score_mod" : "", env->describe(), score->canonicalForm(),
                     mask->canonicalForm(), sink ? sink->canonicalForm() : "", prob ? prob->canonicalForm() : "");
}

FuzzCase makeFuzzCase(uint64_t seed, const FuzzOptions& options) {
  FuzzRng rng(seed);
  FuzzCase c;
  c.seed = seed;
  c.env = std::make_shared<FuzzEnv>();
  c.smoothScore = rng.chance(3, 10);
  const int tensors = std::max<int>(c.smoothScore, rng.pick(options.maxTensors + 1));
  const int scalars = rng.pick(options.maxScalars + 1);
  for (int k = 0; k < tensors; ++k) c.env->tensors.push_back(makeTensor(rng, k, c.smoothScore));
  for (int k = 0; k < scalars; ++k) c.env->scalars.push_back(makeScalar(rng, k, c.smoothScore));
  ExprGen scoreGen(rng, *c.env, c.smoothScore ? ModMode::SmoothScore : ModMode::Score, options.maxDepth);
  c.score.emplace(ScoreMod::fromBody(fmt::format("fuzz{}", seed), scoreGen.floatExpr(0)));
  ExprGen maskGen(rng, *c.env, ModMode::Mask, options.maxDepth);
  c.mask.emplace(MaskMod::fromBody(fmt::format("fuzz{}", seed), maskGen.boolExpr(0)));
  // The extra hooks come last, so a seed's score_mod and mask_mod do not depend on them.
  // A variant captures at most fj::kMaxCapturedTensors tensors and fj::kMaxCapturedScalars scalars over all
  // its hooks (each hook's reads counted): an extra hook that would pass them is left out.
  auto fits = [&] {
    size_t tensorsUsed = c.score->tensors().size() + c.mask->tensors().size();
    size_t scalarsUsed = c.score->scalars().size() + c.mask->scalars().size();
    for (const Mod* m : {c.sink ? static_cast<const Mod*>(&*c.sink) : nullptr, c.prob ? static_cast<const Mod*>(&*c.prob) : nullptr})
      if (m) tensorsUsed += m->tensors().size(), scalarsUsed += m->scalars().size();
    return tensorsUsed <= static_cast<size_t>(fj::kMaxCapturedTensors) &&
           scalarsUsed <= static_cast<size_t>(fj::kMaxCapturedScalars);
  };
  if (rng.chance(1, kExtraHookOdds)) {
    ExprGen sinkGen(rng, *c.env, ModMode::Sink, options.maxDepth);
    c.sink.emplace(SinkMod::fromBody(fmt::format("fuzz{}", seed), sinkGen.floatExpr(0)));
    if (!fits()) c.sink.reset();
  }
  if (rng.chance(1, kExtraHookOdds)) {
    ExprGen probGen(rng, *c.env, ModMode::Prob, options.maxDepth);
    c.prob.emplace(ProbMod::fromBody(fmt::format("fuzz{}", seed), probGen.floatExpr(0)));
    if (!fits()) c.prob.reset();
  }
  return c;
}

}  // namespace flexjit::testing

using namespace flexjit;
using namespace flexjit::testing;

TEST(FuzzGen, IsDeterministicFromTheSeed) {
  for (uint64_t seed : {1ull, 77ull, 123456789ull}) {
    FuzzCase a = makeFuzzCase(seed), b = makeFuzzCase(seed);
    EXPECT_EQ(a.describe(), b.describe());
  }
  EXPECT_NE(makeFuzzCase(5).describe(), makeFuzzCase(6).describe());
}

TEST(FuzzGen, ReachesEveryOpInEveryType) {
  // Each line of a canonical form is "%N = <op> <type> ...": collect (op, type) pairs over a few hundred cases.
  std::set<std::string> seen;
  std::set<std::string> dtypes;
  for (uint64_t seed = 0; seed < 600; ++seed) {
    FuzzCase c = makeFuzzCase(seed);
    for (const std::string* text : {&c.score->canonicalForm(), &c.mask->canonicalForm()}) {
      size_t pos = 0;
      while ((pos = text->find(" = ", pos)) != std::string::npos) {
        pos += 3;
        size_t opEnd = text->find(' ', pos), typeEnd = text->find_first_of(" \n", opEnd + 1);
        seen.insert(text->substr(pos, typeEnd - pos));
      }
    }
    for (const auto& t : c.env->tensors) dtypes.insert(dtypeName(t->dtype));
  }
  const char* expected[] = {
      "param float32", "param int32",  "const float32",    "const int32",   "const bool",   "scalar float32",
      "scalar int32",  "load float32", "load int32",       "load bool",     "neg float32",  "neg int32",
      "abs float32",   "abs int32",    "not bool",         "not int32",     "exp float32",  "exp2 float32",
      "log float32",   "log2 float32", "sqrt float32",     "rsqrt float32", "tanh float32", "sigmoid float32",
      "floor float32", "ceil float32", "to_float float32", "to_int int32",  "to_bool bool", "+ float32",
      "+ int32",       "- float32",    "- int32",          "* float32",     "* int32",      "/ float32",
      "// float32",    "// int32",     "% float32",        "% int32",       "min float32",  "min int32",
      "max float32",   "max int32",    "== bool",          "!= bool",       "< bool",       "<= bool",
      "> bool",        ">= bool",      "& bool",           "& int32",       "| bool",       "| int32",
      "^ bool",        "^ int32",      "where float32",    "where int32",   "where bool",
      "round float32", "trunc float32", "sin float32",     "cos float32",   "tan float32",  "atan float32",
      "erf float32",   "log1p float32", "expm1 float32",   "pow float32",   "fmod float32", "fmod int32",
      "<< int32",      ">> int32"};
  for (const char* e : expected) EXPECT_TRUE(seen.count(e)) << "never generated: " << e;
  EXPECT_EQ(dtypes.size(), 6u) << "every captured-tensor dtype";
}

TEST(FuzzGen, AddsSinkModsAndProbModsToSomeCases) {
  int sinks = 0, probs = 0, readsVisible = 0, sinkReadsTensors = 0, probReadsGradTensors = 0;
  for (uint64_t seed = 0; seed < 600; ++seed) {
    FuzzCase c = makeFuzzCase(seed);
    if (c.sink) {
      ++sinks;
      sinkReadsTensors += !c.sink->tensors().empty();
    }
    if (c.prob) {
      ++probs;
      readsVisible += c.prob->canonicalForm().find("param int32 num_visible") != std::string::npos;
      for (const auto& t : c.prob->tensors()) probReadsGradTensors += t->requiresGrad;
    }
  }
  EXPECT_GT(sinks, 100);
  EXPECT_GT(probs, 100);
  EXPECT_GT(readsVisible, 20) << "prob_mods should read num_visible";
  EXPECT_GT(sinkReadsTensors, 20);
  EXPECT_GT(probReadsGradTensors, 10) << "prob_mod_grad should write captured-tensor gradients";
}
