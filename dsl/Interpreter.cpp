#include "dsl/Interpreter.h"

#include <fmt/format.h>

#include <cmath>
#include <unordered_map>

#include "dsl/Error.h"

namespace flexjit {

const char* blockClassName(BlockClass c) {
  switch (c) {
    case BlockClass::Empty: return "empty";
    case BlockClass::Partial: return "partial";
    case BlockClass::Full: return "full";
  }
  return "?";
}

namespace {

/// Flattens the DAG in dependency order, one instruction per distinct node.
void flatten(const Mod& mod, std::vector<Instr>& out) {
  std::unordered_map<const Node*, int> ids;
  std::vector<std::pair<const Node*, size_t>> stack{{mod.body().node().get(), 0}};
  auto indexOf = [](const auto& list, const auto& item) {
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i] == item) return static_cast<int>(i);
    return -1;
  };
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (ids.count(node)) {
      stack.pop_back();
      continue;
    }
    if (next < node->args.size()) {
      const Node* child = node->args[next++].get();
      if (!ids.count(child)) stack.push_back({child, 0});
      continue;
    }
    Instr in;
    in.op = node->op;
    in.type = node->type;
    in.param = node->param;
    in.fconst = node->fconst;
    in.iconst = node->iconst;
    for (const NodeRef& a : node->args) in.args.push_back(ids.at(a.get()));
    if (node->op == Op::Load) in.capture = indexOf(mod.tensors(), node->tensor);
    if (node->op == Op::Scalar) in.capture = indexOf(mod.scalars(), node->scalar);
    ids[node] = static_cast<int>(out.size());
    out.push_back(std::move(in));
    stack.pop_back();
  }
}

template <class R>
R floatOp(Op op, R a, R b) {
  switch (op) {
    case Op::Add: return a + b;
    case Op::Sub: return a - b;
    case Op::Mul: return a * b;
    case Op::Div: return a / b;
    case Op::FloorDiv: return fj::floorDivF(a, b);
    case Op::Mod: return fj::modF(a, b);
    case Op::Min: return fj::minimumF(a, b);
    case Op::Max: return fj::maximumF(a, b);
    case Op::Neg: return -a;
    case Op::Abs: return std::fabs(a);
    case Op::Exp: return std::exp(a);
    case Op::Exp2: return std::exp2(a);
    case Op::Log: return std::log(a);
    case Op::Log2: return std::log2(a);
    case Op::Sqrt: return std::sqrt(a);
    case Op::Rsqrt: return R(1) / std::sqrt(a);
    case Op::Tanh: return std::tanh(a);
    case Op::Sigmoid: return R(1) / (R(1) + std::exp(-a));
    case Op::Floor: return std::floor(a);
    case Op::Ceil: return std::ceil(a);
    case Op::Round: return fj::roundR(a);
    case Op::Trunc: return fj::truncR(a);
    case Op::Sin: return fj::sinR(a);
    case Op::Cos: return fj::cosR(a);
    case Op::Tan: return fj::tanR(a);
    case Op::Atan: return fj::atanR(a);
    case Op::Erf: return fj::erfR(a);
    case Op::Log1p: return fj::log1pR(a);
    case Op::Expm1: return fj::expm1R(a);
    case Op::Pow: return fj::powR(a, b);
    case Op::FMod: return fj::fmodR(a, b);
    default: return R(0);
  }
}

int32_t intOp(Op op, int32_t a, int32_t b) {
  switch (op) {
    case Op::Add: return fj::addI(a, b);
    case Op::Sub: return fj::subI(a, b);
    case Op::Mul: return fj::mulI(a, b);
    case Op::FloorDiv: return fj::floorDivI(a, b);
    case Op::Mod: return fj::modI(a, b);
    case Op::Min: return fj::minI(a, b);
    case Op::Max: return fj::maxI(a, b);
    case Op::Neg: return fj::negI(a);
    case Op::Abs: return fj::absI(a);
    case Op::Not: return ~a;
    case Op::And: return a & b;
    case Op::Or: return a | b;
    case Op::Xor: return a ^ b;
    case Op::FMod: return fj::fmodI(a, b);
    case Op::Shl: return fj::shlI(a, b);
    case Op::Shr: return fj::shrI(a, b);
    default: return 0;
  }
}

template <class T>
bool compareOp(Op op, T a, T b) {
  switch (op) {
    case Op::Eq: return a == b;
    case Op::Ne: return a != b;
    case Op::Lt: return a < b;
    case Op::Le: return a <= b;
    case Op::Gt: return a > b;
    case Op::Ge: return a >= b;
    default: return false;
  }
}

bool isCompare(Op op) {
  return op == Op::Eq || op == Op::Ne || op == Op::Lt || op == Op::Le || op == Op::Gt || op == Op::Ge;
}

/// The data pointer of a bound empty tensor: never read (every offset into it is -1).
const int kNoElements = 0;

}  // namespace

Program::Program(const Mod& mod) : mod_(mod) {
  flatten(mod_, instrs_);
  bindCaptures(false);
}

void Program::bindCaptures(bool requireData) {
  tensors_.clear();
  elemTypes_.clear();
  scalars_.clear();
  for (const auto& t : mod_.tensors()) {
    fj::TensorArg arg{};
    if (t->view) {
      if (t->view->device.kind != DeviceKind::CPU) {
        if (requireData)
          throw Error(fmt::format("{}: the CPU interpreter reads captured tensor '{}' but it is {}; pass a CPU copy",
                                  mod_.describe(), t->name, t->view->describe()));
      } else {
        // An empty tensor (torch gives it no data pointer) is bound: every read is outside it and gives 0.
        arg.data = t->view->numel() == 0 ? &kNoElements : t->view->data;
        if (t->dtype == DType::I64 && t->view->data) checkInt64Values(mod_.describe(), *t, t->view->data);
        for (int d = 0; d < t->rank; ++d) {
          arg.stride[d] = t->view->strides[d];
          arg.size[d] = static_cast<int>(t->view->shape[d]);
        }
      }
    } else if (requireData) {
      throw Error(fmt::format("{}: captured tensor '{}' is not bound to data; call bind() before running",
                              mod_.describe(), t->name));
    }
    if (!arg.data)  // unknown data: any index is in bounds, any value possible
      for (int d = 0; d < t->rank; ++d) arg.size[d] = INT32_MAX;
    tensors_.push_back(arg);
    elemTypes_.push_back(static_cast<int>(t->dtype));
  }
  for (const auto& s : mod_.scalars()) scalars_.push_back(s->value);
}

Program::Slot Program::evalInstr(const Instr& in, const std::vector<Slot>& s, double score, const Position& p,
                                 bool f32) const {
  Slot r;
  auto argF = [&](int k) { return s[in.args[k]].f; };
  auto argI = [&](int k) { return s[in.args[k]].i; };
  switch (in.op) {
    case Op::Param:
      switch (in.param) {
        case Param::Score: r.f = score; break;
        case Param::B: r.i = p.b; break;
        case Param::H: r.i = p.h; break;
        case Param::Q: r.i = p.q; break;
        case Param::KV: r.i = p.kv; break;
        case Param::Visible: r.i = p.visible; break;
      }
      return r;
    case Op::Const: r.f = in.fconst; r.i = static_cast<int32_t>(in.iconst); return r;
    case Op::Scalar: r.f = scalars_[in.capture]; r.i = static_cast<int32_t>(scalars_[in.capture]); return r;
    case Op::Load: {
      const fj::TensorArg& t = tensors_[in.capture];
      if (!t.data) throw Error(fmt::format("{}: captured tensor '{}' has no CPU data bound", mod_.describe(),
                                           mod_.tensors()[in.capture]->name));
      int idx[fj::kMaxRank];
      for (size_t k = 0; k < in.args.size(); ++k) idx[k] = argI(static_cast<int>(k));
      long long off = fj::elementOffset(t, static_cast<int>(in.args.size()), idx);
      if (in.type == ScalarType::F32) r.f = fj::loadFloat(t, elemTypes_[in.capture], off);
      else r.i = fj::loadInt(t, elemTypes_[in.capture], off);
      return r;
    }
    case Op::Where: r = s[in.args[0]].i ? s[in.args[1]] : s[in.args[2]]; return r;
    case Op::ToF32: r.f = f32 ? static_cast<float>(argI(0)) : static_cast<double>(argI(0)); return r;
    case Op::ToI32:
      r.i = instrs_[in.args[0]].type == ScalarType::F32 ? fj::toI32(argF(0)) : argI(0);
      return r;
    case Op::ToBool:
      r.i = instrs_[in.args[0]].type == ScalarType::F32 ? (argF(0) != 0.0) : (argI(0) != 0);
      return r;
    default: break;
  }
  ScalarType operandType = instrs_[in.args[0]].type;
  if (isCompare(in.op)) {
    r.i = operandType == ScalarType::F32 ? compareOp(in.op, argF(0), argF(1)) : compareOp(in.op, argI(0), argI(1));
    return r;
  }
  double b = in.args.size() > 1 ? argF(1) : 0.0;
  if (in.type == ScalarType::F32) {
    r.f = f32 ? static_cast<double>(floatOp<float>(in.op, static_cast<float>(argF(0)), static_cast<float>(b)))
              : floatOp<double>(in.op, argF(0), b);
  } else if (in.type == ScalarType::Bool) {
    int32_t a = argI(0), c = in.args.size() > 1 ? argI(1) : 0;
    r.i = in.op == Op::Not ? !a : (intOp(in.op, a, c) & 1);
  } else {
    r.i = intOp(in.op, argI(0), in.args.size() > 1 ? argI(1) : 0);
  }
  return r;
}

template <class Real>
Real Program::runScalar(Real score, const Position& p, std::vector<Slot>& slots) const {
  slots.resize(instrs_.size());
  constexpr bool f32 = std::is_same_v<Real, float>;
  for (size_t k = 0; k < instrs_.size(); ++k) slots[k] = evalInstr(instrs_[k], slots, score, p, f32);
  return static_cast<Real>(slots.back().f);
}

float Program::scoreF32(float score, const Position& p) const {
  thread_local std::vector<Slot> slots;
  return runScalar<float>(score, p, slots);
}

double Program::scoreF64(double score, const Position& p) const {
  thread_local std::vector<Slot> slots;
  return runScalar<double>(score, p, slots);
}

bool Program::mask(const Position& p) const {
  thread_local std::vector<Slot> slots;
  runScalar<float>(0.0f, p, slots);
  return slots.back().i != 0;
}

Program::IvSlot Program::runInterval(const Box& box, fj::IvFloat score) const {
  std::vector<IvSlot> s(instrs_.size());
  for (size_t k = 0; k < instrs_.size(); ++k) {
    const Instr& in = instrs_[k];
    IvSlot& r = s[k];
    auto a = [&](int j) -> const IvSlot& { return s[in.args[j]]; };
    ScalarType t = in.args.empty() ? in.type : instrs_[in.args[0]].type;  // operand type
    switch (in.op) {
      case Op::Param:
        switch (in.param) {
          case Param::Score: r.f = score; break;
          case Param::B: r.i = box.b; break;
          case Param::H: r.i = box.h; break;
          case Param::Q: r.i = box.q; break;
          case Param::KV: r.i = box.kv; break;
          case Param::Visible: r.i = box.visible; break;
        }
        continue;
      case Op::Const:
        r.f = fj::ivFloatPoint(static_cast<float>(in.fconst));
        r.i = fj::ivInt(in.iconst, in.iconst);
        r.b = fj::ivBool(in.iconst != 0);
        continue;
      case Op::Scalar: {
        double v = scalars_[in.capture];
        r.f = fj::ivFloatPoint(static_cast<float>(v));
        r.i = fj::ivInt(static_cast<int64_t>(v), static_cast<int64_t>(v));
        continue;
      }
      case Op::Load: {
        fj::IvInt idx[fj::kMaxRank];
        for (size_t j = 0; j < in.args.size(); ++j) idx[j] = a(static_cast<int>(j)).i;
        const fj::TensorArg& tensor = tensors_[in.capture];
        int rank = static_cast<int>(in.args.size());
        if (in.type == ScalarType::F32) r.f = fj::ivLoadFloat(tensor, elemTypes_[in.capture], rank, idx);
        else if (in.type == ScalarType::Bool) r.b = fj::ivLoadBool(tensor, rank, idx);
        else r.i = fj::ivLoadInt(tensor, elemTypes_[in.capture], rank, idx);
        continue;
      }
      case Op::Where:
        if (in.type == ScalarType::F32) r.f = fj::ivWhere(a(0).b, a(1).f, a(2).f);
        else if (in.type == ScalarType::I32) r.i = fj::ivWhere(a(0).b, a(1).i, a(2).i);
        else r.b = fj::ivWhere(a(0).b, a(1).b, a(2).b);
        continue;
      case Op::ToF32: r.f = t == ScalarType::I32 ? fj::ivIntToFloat(a(0).i) : fj::ivBoolToFloat(a(0).b); continue;
      case Op::ToI32: r.i = t == ScalarType::F32 ? fj::ivFloatToInt(a(0).f) : fj::ivBoolToInt(a(0).b); continue;
      case Op::ToBool: r.b = t == ScalarType::F32 ? fj::ivFloatToBool(a(0).f) : fj::ivIntToBool(a(0).i); continue;
      default: break;
    }
    if (t == ScalarType::F32) {
      const fj::IvFloat& x = a(0).f;
      fj::IvFloat y = in.args.size() > 1 ? a(1).f : x;
      switch (in.op) {
        case Op::Add: r.f = fj::ivAdd(x, y); break;
        case Op::Sub: r.f = fj::ivSub(x, y); break;
        case Op::Mul: r.f = fj::ivMul(x, y); break;
        case Op::Div: r.f = fj::ivDiv(x, y); break;
        case Op::FloorDiv: r.f = fj::ivFloorDivF(x, y); break;
        case Op::Mod: r.f = fj::ivModF(x, y); break;
        case Op::Min: r.f = fj::ivMin(x, y); break;
        case Op::Max: r.f = fj::ivMax(x, y); break;
        case Op::Neg: r.f = fj::ivNeg(x); break;
        case Op::Abs: r.f = fj::ivAbs(x); break;
        case Op::Exp: r.f = fj::ivExp(x); break;
        case Op::Exp2: r.f = fj::ivExp2(x); break;
        case Op::Log: r.f = fj::ivLog(x); break;
        case Op::Log2: r.f = fj::ivLog2(x); break;
        case Op::Sqrt: r.f = fj::ivSqrt(x); break;
        case Op::Rsqrt: r.f = fj::ivRsqrt(x); break;
        case Op::Tanh: r.f = fj::ivTanh(x); break;
        case Op::Sigmoid: r.f = fj::ivSigmoid(x); break;
        case Op::Floor: r.f = fj::ivFloor(x); break;
        case Op::Ceil: r.f = fj::ivCeil(x); break;
        case Op::Round: r.f = fj::ivRound(x); break;
        case Op::Trunc: r.f = fj::ivTrunc(x); break;
        case Op::Sin: r.f = fj::ivSin(x); break;
        case Op::Cos: r.f = fj::ivCos(x); break;
        case Op::Tan: r.f = fj::ivTan(x); break;
        case Op::Atan: r.f = fj::ivAtan(x); break;
        case Op::Erf: r.f = fj::ivErf(x); break;
        case Op::Log1p: r.f = fj::ivLog1p(x); break;
        case Op::Expm1: r.f = fj::ivExpm1(x); break;
        case Op::Pow: r.f = fj::ivPow(x, y); break;
        case Op::FMod: r.f = fj::ivFModF(x, y); break;
        case Op::Eq: r.b = fj::ivEq(x, y); break;
        case Op::Ne: r.b = fj::ivNe(x, y); break;
        case Op::Lt: r.b = fj::ivLt(x, y); break;
        case Op::Le: r.b = fj::ivLe(x, y); break;
        case Op::Gt: r.b = fj::ivGt(x, y); break;
        case Op::Ge: r.b = fj::ivGe(x, y); break;
        default: r.f = fj::ivFloatFull(); break;
      }
    } else if (t == ScalarType::I32) {
      const fj::IvInt& x = a(0).i;
      fj::IvInt y = in.args.size() > 1 ? a(1).i : x;
      switch (in.op) {
        case Op::Add: r.i = fj::ivAdd(x, y); break;
        case Op::Sub: r.i = fj::ivSub(x, y); break;
        case Op::Mul: r.i = fj::ivMul(x, y); break;
        case Op::FloorDiv: r.i = fj::ivFloorDiv(x, y); break;
        case Op::Mod: r.i = fj::ivMod(x, y); break;
        case Op::Min: r.i = fj::ivMin(x, y); break;
        case Op::Max: r.i = fj::ivMax(x, y); break;
        case Op::Neg: r.i = fj::ivNeg(x); break;
        case Op::Abs: r.i = fj::ivAbs(x); break;
        case Op::Not: r.i = fj::ivBitNot(x); break;
        case Op::And: r.i = fj::ivBitAnd(x, y); break;
        case Op::Or: r.i = fj::ivBitOr(x, y); break;
        case Op::Xor: r.i = fj::ivBitXor(x, y); break;
        case Op::FMod: r.i = fj::ivFMod(x, y); break;
        case Op::Shl: r.i = fj::ivShl(x, y); break;
        case Op::Shr: r.i = fj::ivShr(x, y); break;
        case Op::Eq: r.b = fj::ivEq(x, y); break;
        case Op::Ne: r.b = fj::ivNe(x, y); break;
        case Op::Lt: r.b = fj::ivLt(x, y); break;
        case Op::Le: r.b = fj::ivLe(x, y); break;
        case Op::Gt: r.b = fj::ivGt(x, y); break;
        case Op::Ge: r.b = fj::ivGe(x, y); break;
        default: r.i = fj::ivIntFull(); break;
      }
    } else {
      const fj::IvBool& x = a(0).b;
      fj::IvBool y = in.args.size() > 1 ? a(1).b : x;
      switch (in.op) {
        case Op::Not: r.b = fj::ivNot(x); break;
        case Op::And: r.b = fj::ivAnd(x, y); break;
        case Op::Or: r.b = fj::ivOr(x, y); break;
        case Op::Xor: r.b = fj::ivXor(x, y); break;
        case Op::Eq: r.b = fj::ivEq(x, y); break;
        case Op::Ne: r.b = fj::ivNot(fj::ivEq(x, y)); break;
        default: r.b = fj::ivBoolUnknown(); break;
      }
    }
  }
  return s.back();
}

fj::IvBool Program::maskInterval(const Box& box) const { return runInterval(box, fj::ivFloatFinite()).b; }

fj::IvFloat Program::scoreInterval(const Box& box, fj::IvFloat score) const { return runInterval(box, score).f; }

BlockClass Program::classify(const Box& box) const {
  if (mod_.kind() == ModKind::Mask) {
    fj::IvBool m = maskInterval(box);
    if (!m.canTrue) return BlockClass::Empty;
    return m.canFalse ? BlockClass::Partial : BlockClass::Full;
  }
  fj::IvFloat r = scoreInterval(box);
  bool canBeNegInf = fj::hasNegInf(r);
  bool canBeOther = r.nan || (!fj::ivEmpty(r) && r.hi > -fj::infinity());
  if (!canBeOther) return BlockClass::Empty;
  return canBeNegInf ? BlockClass::Partial : BlockClass::Full;
}

namespace {

/// The adjoints of one reverse pass, accumulated as fj-autodiff accumulates them: a value's first
/// contribution is its adjoint and later ones are added to it, in the same order, so that the float32 pass
/// computes what score_mod_grad computes. Slot `score` (one past the instructions) is the score parameter's,
/// which every use of the score adds to (it is one function argument in the compiler).
template <class Real>
struct Adjoints {
  explicit Adjoints(size_t instructions) : value(instructions + 1, Real(0)), reached(instructions + 1, false) {}
  void add(size_t slot, Real d) {
    value[slot] = reached[slot] ? value[slot] + d : d;
    reached[slot] = true;
  }
  std::vector<Real> value;
  std::vector<bool> reached;
};

}  // namespace

template <class Real, class Acc>
void Program::pushAdjoint(const Instr& in, const std::vector<Slot>& s, Real res, Real g, Acc&& acc,
                          ScoreGrad& out) const {
  auto val = [&](int j) { return static_cast<Real>(s[in.args[j]].f); };
  const Real zero(0), half(0.5), one(1), ln2 = static_cast<Real>(M_LN2);
  // The formulas (and their association) are fj-autodiff's (compiler/Autodiff.cpp).
  switch (in.op) {
    case Op::Add: acc(0, g); acc(1, g); break;
    case Op::Sub: acc(0, g); acc(1, -g); break;
    case Op::Mul: acc(0, g * val(1)); acc(1, g * val(0)); break;
    case Op::Div: acc(0, g / val(1)); acc(1, -(g * res / val(1))); break;
    case Op::Neg: acc(0, -g); break;
    case Op::Abs: acc(0, val(0) > zero ? g : (val(0) < zero ? -g : zero)); break;
    case Op::Exp: acc(0, g * res); break;
    case Op::Exp2: acc(0, g * res * ln2); break;
    case Op::Log: acc(0, g / val(0)); break;
    case Op::Log2: acc(0, g / (val(0) * ln2)); break;
    case Op::Sqrt: acc(0, g * half / res); break;
    case Op::Rsqrt: acc(0, (g * -half) * (res / val(0))); break;
    case Op::Tanh: acc(0, g * (one - res * res)); break;
    case Op::Sigmoid: acc(0, g * (res * (one - res))); break;
    case Op::Mod: acc(0, g); acc(1, -(g * fj::floorDivF(val(0), val(1)))); break;
    // torch.fmod: d/dy = -div(x, y, rounding_mode="trunc").
    case Op::FMod: acc(0, g); acc(1, -(g * std::trunc(val(0) / val(1)))); break;
    case Op::Sin: acc(0, g * std::cos(val(0))); break;
    case Op::Cos: acc(0, -(g * std::sin(val(0)))); break;
    case Op::Tan: acc(0, g * (one + res * res)); break;
    case Op::Atan: acc(0, g / (one + val(0) * val(0))); break;
    case Op::Erf: acc(0, (g * static_cast<Real>(M_2_SQRTPI)) * std::exp(-(val(0) * val(0)))); break;
    case Op::Log1p: acc(0, g / (one + val(0))); break;
    case Op::Expm1: acc(0, g * (one + res)); break;
    case Op::Pow: {
      // torch's rules: no gradient to the base where the exponent is 0, none to the exponent where the base
      // is 0 and the exponent >= 0 (0 * log 0 would be NaN).
      const Real x = val(0), y = val(1);
      acc(0, y == zero ? zero : (g * y) * std::pow(x, y - one));
      acc(1, x == zero && y >= zero ? zero : (g * res) * std::log(x));
      break;
    }
    case Op::Min:
    case Op::Max: {
      // torch: the gradient goes to the selected operand and ties split it evenly; both operands get an
      // adjoint (the other one zero), as in fj-autodiff's selects.
      const Real x = val(0), y = val(1);
      const bool first = in.op == Op::Min ? x < y : x > y, tie = x == y;
      acc(0, tie ? g * half : first ? g : zero);
      acc(1, tie ? g * half : first ? zero : g);
      break;
    }
    case Op::Where: {
      const bool c = s[in.args[0]].i != 0;
      acc(1, c ? g : zero);
      acc(2, c ? zero : g);
      break;
    }
    case Op::Load: {
      const fj::TensorArg& t = tensors_[in.capture];
      // Gradients are reported by row-major linear index (the gradient buffer is contiguous whatever the
      // captured view's strides); out-of-bounds reads get no gradient.
      long long linear = 0;
      bool inside = true;
      for (size_t j = 0; j < in.args.size(); ++j) {
        const int idx = s[in.args[j]].i;
        inside &= static_cast<unsigned>(idx) < static_cast<unsigned>(t.size[j]);
        linear = linear * t.size[j] + idx;
      }
      if (inside) out.tensorGrads[in.capture].emplace_back(linear, static_cast<double>(g));
      break;
    }
    default: break;  // Const, Scalar, Floor, Ceil, Round, Trunc, FloorDiv, ToF32: no gradient
  }
}

template <class Real>
ScoreGrad Program::reverseMode(Real score, const Position& p, Real gradOut) const {
  std::vector<Slot> s;
  runScalar<Real>(score, p, s);
  // The chain rule op by op, as fj-autodiff and torch's autograd apply it: an op is visited when some use
  // pushed an adjoint to it, even a zero one, so 0 * an infinite local derivative is NaN (torch.where's
  // known NaN gradient) exactly as in the generated score_mod_grad. Skipping zero adjoints instead made the
  // CPU reference report 0 where the kernels report NaN.
  const size_t scoreSlot = instrs_.size();
  auto slotOf = [&](size_t k) {
    return instrs_[k].op == Op::Param && instrs_[k].param == Param::Score ? scoreSlot : k;
  };
  Adjoints<Real> adj(instrs_.size());
  adj.add(slotOf(instrs_.size() - 1), gradOut);
  ScoreGrad out;
  out.tensorGrads.resize(tensors_.size());
  for (size_t k = instrs_.size(); k-- > 0;) {
    const Instr& in = instrs_[k];
    if (in.type != ScalarType::F32 || in.op == Op::Param || !adj.reached[k]) continue;
    auto acc = [&](int j, Real d) { adj.add(slotOf(static_cast<size_t>(in.args[j])), d); };
    pushAdjoint<Real>(in, s, static_cast<Real>(s[k].f), adj.value[k], acc, out);
  }
  if (adj.reached[scoreSlot]) out.dscore = adj.value[scoreSlot];
  return out;
}

ScoreGrad Program::scoreGrad(double score, const Position& p, double gradOut) const {
  return reverseMode<double>(score, p, gradOut);
}

ScoreGrad Program::scoreGradF32(float score, const Position& p, float gradOut) const {
  return reverseMode<float>(score, p, gradOut);
}

}  // namespace flexjit
