// Building expression nodes: type checking and torch-style promotion happen here, once, so every later
// layer sees operands of equal type and explicit conversions.
#include "dsl/Expr.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "dsl/Error.h"

namespace flexjit {

namespace {

thread_local std::string gTraceContext;

bool isFloatT(const Expr& e) { return e.type() == ScalarType::F32; }

NodeRef makeNode(Op op, ScalarType type, std::vector<NodeRef> args) {
  auto n = std::make_shared<Node>();
  n->op = op;
  n->type = type;
  n->args = std::move(args);
  return n;
}

Expr build(Op op, ScalarType type, std::initializer_list<Expr> args) {
  std::vector<NodeRef> refs;
  for (const Expr& a : args) refs.push_back(a.node());
  return Expr(makeNode(op, type, std::move(refs)));
}

/// Converts `e` to `to`, inserting an explicit cast node when the type changes.
Expr convert(const Expr& e, ScalarType to) {
  if (e.type() == to) return e;
  switch (to) {
    case ScalarType::F32: return build(Op::ToF32, to, {e});
    case ScalarType::I32: return build(Op::ToI32, to, {e});
    case ScalarType::Bool: return build(Op::ToBool, to, {e});
  }
  return e;
}

/// Promotes two operands to a common type, at least `floor`.
ScalarType commonType(const Expr& a, const Expr& b, ScalarType floor) { return promote(promote(a.type(), b.type()), floor); }

void requireDefined(Op op, std::initializer_list<const Expr*> args) {
  for (const Expr* a : args)
    if (!a->defined())
      traceError(fmt::format("operator '{}' got an uninitialized Expr; assign it an expression before use", opName(op)));
}

Expr arith(Op op, const Expr& a, const Expr& b) {
  requireDefined(op, {&a, &b});
  ScalarType t = commonType(a, b, ScalarType::I32);  // bool arithmetic counts in ints, like Python
  return build(op, t, {convert(a, t), convert(b, t)});
}

Expr compare(Op op, const Expr& a, const Expr& b) {
  requireDefined(op, {&a, &b});
  bool equality = op == Op::Eq || op == Op::Ne;
  ScalarType t = commonType(a, b, equality ? ScalarType::Bool : ScalarType::I32);
  return build(op, ScalarType::Bool, {convert(a, t), convert(b, t)});
}

Expr logical(Op op, const Expr& a, const Expr& b) {
  requireDefined(op, {&a, &b});
  if (isFloatT(a) || isFloatT(b))
    traceError(fmt::format("operator '{}' needs bool (logical) or int (bitwise) operands, got {} and {}; "
                           "compare floats first, e.g. (x > 0) {} (y > 0)",
                           opName(op), scalarTypeName(a.type()), scalarTypeName(b.type()), opName(op)));
  ScalarType t = promote(a.type(), b.type());
  return build(op, t, {convert(a, t), convert(b, t)});
}

Expr unaryFloat(Op op, const Expr& a) {
  requireDefined(op, {&a});
  return build(op, ScalarType::F32, {convert(a, ScalarType::F32)});
}

}  // namespace

const char* opName(Op op) {
  switch (op) {
#define FJ_OP(name, spelling, arity) \
  case Op::name: return spelling;
#include "dsl/Ops.def"
  }
  return "?";
}

int opArity(Op op) {
  switch (op) {
#define FJ_OP(name, spelling, arity) \
  case Op::name: return arity;
#include "dsl/Ops.def"
  }
  return 0;
}

Node::~Node() {
  // Operands only this node holds are taken apart here, one level at a time, instead of each destroying
  // its own operands recursively. use_count() == 1 is exact: nothing else holds the node to copy it.
  std::vector<NodeRef> pending = std::move(args);
  while (!pending.empty()) {
    NodeRef n = std::move(pending.back());
    pending.pop_back();
    if (n.use_count() != 1) continue;
    std::vector<NodeRef>& operands = const_cast<Node&>(*n).args;  // made non-const by make_shared<Node>
    for (NodeRef& a : operands) pending.push_back(std::move(a));
    operands.clear();
  }
}

const char* paramName(Param p) {
  switch (p) {
    case Param::Score: return "score";
    case Param::B: return "b";
    case Param::H: return "h";
    case Param::Q: return "q_idx";
    case Param::KV: return "kv_idx";
    case Param::Visible: return "num_visible";
  }
  return "?";
}

ScalarType Expr::type() const { return node().get()->type; }

const NodeRef& Expr::node() const {
  if (!node_) traceError("an uninitialized Expr was used; assign it an expression first");
  return node_;
}

Expr Expr::param(Param p) {
  auto n = std::make_shared<Node>();
  n->op = Op::Param;
  n->type = p == Param::Score ? ScalarType::F32 : ScalarType::I32;
  n->param = p;
  return Expr(NodeRef(n));
}

Expr Expr::constant(ScalarType type, double value) {
  auto n = std::make_shared<Node>();
  n->op = Op::Const;
  n->type = type;
  if (type == ScalarType::F32) {
    n->fconst = static_cast<double>(static_cast<float>(value));  // float32 semantics from the start
  } else if (type == ScalarType::Bool) {
    n->iconst = value != 0.0;
  } else {
    if (!(value >= -2147483648.0 && value <= 2147483647.0) || value != std::floor(value))
      traceError(fmt::format("integer constant {} does not fit int32", value));
    n->iconst = static_cast<int64_t>(value);
  }
  return Expr(NodeRef(n));
}

NodeRef Expr::makeIntConstant(long long value, bool isSigned) {
  if ((isSigned && (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max())) ||
      (!isSigned && static_cast<unsigned long long>(value) > static_cast<unsigned long long>(INT32_MAX)))
    traceError(fmt::format("integer constant {} does not fit int32; indices are int32 like torch's q_idx", value));
  return constant(ScalarType::I32, static_cast<double>(value)).node_;
}

Expr makeOp(Op op, const std::vector<Expr>& args) {
  int arity = opArity(op);
  if (arity < 0 || static_cast<int>(args.size()) != arity)
    traceError(fmt::format("operator '{}' takes {} operands, got {}", opName(op), arity, args.size()));
  switch (op) {
    case Op::Add:
    case Op::Sub:
    case Op::Mul:
    case Op::FloorDiv:
    case Op::Mod:
    case Op::Min:
    case Op::Max:
    case Op::FMod: return arith(op, args[0], args[1]);
    case Op::Shl:
    case Op::Shr: {
      requireDefined(op, {&args[0], &args[1]});
      if (isFloatT(args[0]) || isFloatT(args[1]))
        traceError(fmt::format("operator '{}' needs int operands, got {} and {}; shift ints (convert with toInt())",
                               opName(op), scalarTypeName(args[0].type()), scalarTypeName(args[1].type())));
      return build(op, ScalarType::I32, {convert(args[0], ScalarType::I32), convert(args[1], ScalarType::I32)});
    }
    case Op::Pow:
    case Op::Div: {
      requireDefined(op, {&args[0], &args[1]});
      return build(op, ScalarType::F32, {convert(args[0], ScalarType::F32), convert(args[1], ScalarType::F32)});
    }
    case Op::Eq:
    case Op::Ne:
    case Op::Lt:
    case Op::Le:
    case Op::Gt:
    case Op::Ge: return compare(op, args[0], args[1]);
    case Op::And:
    case Op::Or:
    case Op::Xor: return logical(op, args[0], args[1]);
    case Op::Neg: {
      requireDefined(op, {&args[0]});
      if (args[0].type() == ScalarType::Bool)
        traceError("negation of a bool; use logical not (! or ~) or convert with toInt() first");
      return build(op, args[0].type(), {args[0]});
    }
    case Op::Abs: {
      requireDefined(op, {&args[0]});
      ScalarType t = promote(args[0].type(), ScalarType::I32);
      return build(op, t, {convert(args[0], t)});
    }
    case Op::Not: {
      requireDefined(op, {&args[0]});
      if (isFloatT(args[0]))
        traceError("operator '~' needs a bool (logical not) or an int (bitwise not), got float32; compare first, e.g. ~(x > 0)");
      return build(op, args[0].type(), {args[0]});
    }
    case Op::Exp:
    case Op::Exp2:
    case Op::Log:
    case Op::Log2:
    case Op::Sqrt:
    case Op::Rsqrt:
    case Op::Tanh:
    case Op::Sigmoid:
    case Op::Sin:
    case Op::Cos:
    case Op::Tan:
    case Op::Atan:
    case Op::Erf:
    case Op::Log1p:
    case Op::Expm1: return unaryFloat(op, args[0]);
    case Op::Floor:
    case Op::Ceil:
    case Op::Round:
    case Op::Trunc: {
      requireDefined(op, {&args[0]});
      if (!isFloatT(args[0])) return convert(args[0], ScalarType::I32);  // already integral
      return build(op, ScalarType::F32, {args[0]});
    }
    case Op::ToF32: requireDefined(op, {&args[0]}); return convert(args[0], ScalarType::F32);
    case Op::ToI32: requireDefined(op, {&args[0]}); return convert(args[0], ScalarType::I32);
    case Op::ToBool: requireDefined(op, {&args[0]}); return convert(args[0], ScalarType::Bool);
    case Op::Where: {
      requireDefined(op, {&args[0], &args[1], &args[2]});
      if (args[0].type() != ScalarType::Bool)
        traceError(fmt::format("the condition of where() must be bool, got {}; compare explicitly, e.g. where(x != 0, a, b)",
                               scalarTypeName(args[0].type())));
      ScalarType t = promote(args[1].type(), args[2].type());
      return build(op, t, {args[0], convert(args[1], t), convert(args[2], t)});
    }
    default: break;
  }
  traceError(fmt::format("operator '{}' cannot be built with makeOp", opName(op)));
}

Expr operator+(const Expr& a, const Expr& b) { return makeOp(Op::Add, {a, b}); }
Expr operator-(const Expr& a, const Expr& b) { return makeOp(Op::Sub, {a, b}); }
Expr operator*(const Expr& a, const Expr& b) { return makeOp(Op::Mul, {a, b}); }
Expr operator/(const Expr& a, const Expr& b) { return makeOp(Op::Div, {a, b}); }
Expr operator%(const Expr& a, const Expr& b) { return makeOp(Op::Mod, {a, b}); }
Expr operator-(const Expr& a) { return makeOp(Op::Neg, {a}); }
Expr floordiv(const Expr& a, const Expr& b) { return makeOp(Op::FloorDiv, {a, b}); }
Expr operator==(const Expr& a, const Expr& b) { return makeOp(Op::Eq, {a, b}); }
Expr operator!=(const Expr& a, const Expr& b) { return makeOp(Op::Ne, {a, b}); }
Expr operator<(const Expr& a, const Expr& b) { return makeOp(Op::Lt, {a, b}); }
Expr operator<=(const Expr& a, const Expr& b) { return makeOp(Op::Le, {a, b}); }
Expr operator>(const Expr& a, const Expr& b) { return makeOp(Op::Gt, {a, b}); }
Expr operator>=(const Expr& a, const Expr& b) { return makeOp(Op::Ge, {a, b}); }
Expr operator&(const Expr& a, const Expr& b) { return makeOp(Op::And, {a, b}); }
Expr operator|(const Expr& a, const Expr& b) { return makeOp(Op::Or, {a, b}); }
Expr operator^(const Expr& a, const Expr& b) { return makeOp(Op::Xor, {a, b}); }

Expr operator&&(const Expr& a, const Expr& b) {
  if (a.type() != ScalarType::Bool || b.type() != ScalarType::Bool)
    traceError(fmt::format("operator '&&' needs bool operands, got {} and {}; use '&' for bitwise and",
                           scalarTypeName(a.type()), scalarTypeName(b.type())));
  return a & b;
}
Expr operator||(const Expr& a, const Expr& b) {
  if (a.type() != ScalarType::Bool || b.type() != ScalarType::Bool)
    traceError(fmt::format("operator '||' needs bool operands, got {} and {}; use '|' for bitwise or",
                           scalarTypeName(a.type()), scalarTypeName(b.type())));
  return a | b;
}
Expr operator!(const Expr& a) {
  if (a.type() != ScalarType::Bool)
    traceError(fmt::format("operator '!' needs a bool operand, got {}; use '~' for bitwise not", scalarTypeName(a.type())));
  return makeOp(Op::Not, {a});
}
Expr operator~(const Expr& a) { return makeOp(Op::Not, {a}); }

Expr where(const Expr& c, const Expr& a, const Expr& b) { return makeOp(Op::Where, {c, a, b}); }
Expr abs(const Expr& a) { return makeOp(Op::Abs, {a}); }
Expr minimum(const Expr& a, const Expr& b) { return makeOp(Op::Min, {a, b}); }
Expr maximum(const Expr& a, const Expr& b) { return makeOp(Op::Max, {a, b}); }
Expr clamp(const Expr& a, const Expr& lo, const Expr& hi) { return minimum(maximum(a, lo), hi); }
Expr exp(const Expr& a) { return makeOp(Op::Exp, {a}); }
Expr exp2(const Expr& a) { return makeOp(Op::Exp2, {a}); }
Expr log(const Expr& a) { return makeOp(Op::Log, {a}); }
Expr log2(const Expr& a) { return makeOp(Op::Log2, {a}); }
Expr sqrt(const Expr& a) { return makeOp(Op::Sqrt, {a}); }
Expr rsqrt(const Expr& a) { return makeOp(Op::Rsqrt, {a}); }
Expr tanh(const Expr& a) { return makeOp(Op::Tanh, {a}); }
Expr sigmoid(const Expr& a) { return makeOp(Op::Sigmoid, {a}); }
Expr floor(const Expr& a) { return makeOp(Op::Floor, {a}); }
Expr ceil(const Expr& a) { return makeOp(Op::Ceil, {a}); }
Expr round(const Expr& a) { return makeOp(Op::Round, {a}); }
Expr trunc(const Expr& a) { return makeOp(Op::Trunc, {a}); }
Expr sin(const Expr& a) { return makeOp(Op::Sin, {a}); }
Expr cos(const Expr& a) { return makeOp(Op::Cos, {a}); }
Expr tan(const Expr& a) { return makeOp(Op::Tan, {a}); }
Expr atan(const Expr& a) { return makeOp(Op::Atan, {a}); }
Expr erf(const Expr& a) { return makeOp(Op::Erf, {a}); }
Expr log1p(const Expr& a) { return makeOp(Op::Log1p, {a}); }
Expr expm1(const Expr& a) { return makeOp(Op::Expm1, {a}); }
Expr pow(const Expr& a, const Expr& b) { return makeOp(Op::Pow, {a, b}); }
Expr fmod(const Expr& a, const Expr& b) { return makeOp(Op::FMod, {a, b}); }
Expr operator<<(const Expr& a, const Expr& b) { return makeOp(Op::Shl, {a, b}); }
Expr operator>>(const Expr& a, const Expr& b) { return makeOp(Op::Shr, {a, b}); }
Expr toFloat(const Expr& a) { return makeOp(Op::ToF32, {a}); }
Expr toInt(const Expr& a) { return makeOp(Op::ToI32, {a}); }
Expr toBool(const Expr& a) { return makeOp(Op::ToBool, {a}); }

TraceScope::TraceScope(const char* kind, const std::string& name) : previous_(gTraceContext) {
  gTraceContext = fmt::format("{} '{}'", kind, name);
}
TraceScope::~TraceScope() { gTraceContext = previous_; }
std::string TraceScope::current() { return gTraceContext; }

void traceError(const std::string& message) {
  if (gTraceContext.empty()) throw Error(message);
  throw Error(fmt::format("{}: {}", gTraceContext, message));
}

}  // namespace flexjit
