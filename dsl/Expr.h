// The expression graph that score_mod / mask_mod are traced into, and `Expr`, the symbolic value users
// write C++ lambdas over.
//
// A mod is traced once: flexjit calls the user's lambda with symbolic parameters, and every operator on
// `Expr` records a node instead of computing. Nodes are immutable and shared (a DAG). Type rules follow
// torch: Bool < I32 < F32 promotion, `/` always gives float, `//` and `%` have Python semantics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "dsl/Types.h"

namespace flexjit {

enum class Op : uint8_t {
#define FJ_OP(name, spelling, arity) name,
#include "dsl/Ops.def"
};

/// Spelling of an op for messages ("+", "exp", "where").
const char* opName(Op op);
/// Number of operands; -1 for Load (one per tensor dimension).
int opArity(Op op);

/// The parameters of a mod, in torch's order: score_mod(score, b, h, q_idx, kv_idx). A prob_mod receives the
/// normalised probability in the Score slot and, besides the indices, the row's number of visible keys.
enum class Param : uint8_t { Score, B, H, Q, KV, Visible };
constexpr int kNumParams = 6;
const char* paramName(Param p);

struct TensorCapture;
struct ScalarCapture;
struct Node;
using NodeRef = std::shared_ptr<const Node>;

/// One operation in the graph.
struct Node {
  Op op;
  ScalarType type;
  std::vector<NodeRef> args;
  Param param = Param::Score;                 // Op::Param
  double fconst = 0.0;                        // Op::Const of type F32
  int64_t iconst = 0;                         // Op::Const of type I32 / Bool
  std::shared_ptr<TensorCapture> tensor;      // Op::Load
  std::shared_ptr<ScalarCapture> scalar;      // Op::Scalar

  Node() = default;
  Node(const Node&) = default;
  Node& operator=(const Node&) = default;
  /// Iterative: releasing a chain of 200k ops through nested shared_ptr destructors overflows the stack.
  ~Node();
};

/// A symbolic value inside a traced mod. Arithmetic types convert implicitly to constants, so
/// `q_idx - 5`, `score * 0.5f` and `where(m, score, -INFINITY)` all work.
class Expr {
 public:
  Expr() = default;
  explicit Expr(NodeRef node) : node_(std::move(node)) {}
  template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  Expr(T value) : node_(makeConstant(value)) {}  // NOLINT: implicit by design

  ScalarType type() const;
  const NodeRef& node() const;
  bool defined() const { return node_ != nullptr; }

  /// Expressions are not C++ booleans: use where(cond, a, b) instead of `if`.
  explicit operator bool() const = delete;

  static Expr param(Param p);
  static Expr constant(ScalarType type, double value);

 private:
  template <class T>
  static NodeRef makeConstant(T value) {
    if constexpr (std::is_same_v<T, bool>) {
      return constant(ScalarType::Bool, value ? 1.0 : 0.0).node_;
    } else if constexpr (std::is_integral_v<T>) {
      return makeIntConstant(static_cast<long long>(value), std::is_signed_v<T>);
    } else {
      return constant(ScalarType::F32, static_cast<double>(value)).node_;
    }
  }
  static NodeRef makeIntConstant(long long value, bool isSigned);

  NodeRef node_;
};

// Arithmetic. Bool operands promote to int; any float operand makes the result float.
Expr operator+(const Expr& a, const Expr& b);
Expr operator-(const Expr& a, const Expr& b);
Expr operator*(const Expr& a, const Expr& b);
Expr operator/(const Expr& a, const Expr& b);  ///< true division, always float (torch semantics)
Expr operator%(const Expr& a, const Expr& b);  ///< Python remainder: result has the divisor's sign
Expr operator-(const Expr& a);
Expr floordiv(const Expr& a, const Expr& b);   ///< Python `//`: rounds toward negative infinity

// Comparisons (result bool).
Expr operator==(const Expr& a, const Expr& b);
Expr operator!=(const Expr& a, const Expr& b);
Expr operator<(const Expr& a, const Expr& b);
Expr operator<=(const Expr& a, const Expr& b);
Expr operator>(const Expr& a, const Expr& b);
Expr operator>=(const Expr& a, const Expr& b);

// Logical on bool, bitwise on int. `&&`/`||` are the same ops (no short-circuit: both sides are traced).
Expr operator&(const Expr& a, const Expr& b);
Expr operator|(const Expr& a, const Expr& b);
Expr operator^(const Expr& a, const Expr& b);
Expr operator&&(const Expr& a, const Expr& b);
Expr operator||(const Expr& a, const Expr& b);
Expr operator!(const Expr& a);  ///< logical not; bool only
Expr operator~(const Expr& a);  ///< logical not on bool, bitwise not on int

// Functions (torch names).
Expr where(const Expr& cond, const Expr& a, const Expr& b);
Expr abs(const Expr& a);
Expr minimum(const Expr& a, const Expr& b);
Expr maximum(const Expr& a, const Expr& b);
Expr clamp(const Expr& a, const Expr& lo, const Expr& hi);  ///< minimum(maximum(a, lo), hi)
Expr exp(const Expr& a);
Expr exp2(const Expr& a);
Expr log(const Expr& a);
Expr log2(const Expr& a);
Expr sqrt(const Expr& a);
Expr rsqrt(const Expr& a);
Expr tanh(const Expr& a);
Expr sigmoid(const Expr& a);
Expr floor(const Expr& a);
Expr ceil(const Expr& a);
Expr round(const Expr& a);  ///< to the nearest integer, ties to even (torch.round); int: identity
Expr trunc(const Expr& a);  ///< toward zero; int: identity
Expr sin(const Expr& a);
Expr cos(const Expr& a);
Expr tan(const Expr& a);
Expr atan(const Expr& a);
Expr erf(const Expr& a);
Expr log1p(const Expr& a);  ///< log(1 + a), accurate near 0
Expr expm1(const Expr& a);  ///< exp(a) - 1, accurate near 0
Expr pow(const Expr& a, const Expr& b);   ///< float a ** b (C pow: a negative base with a fractional exponent is NaN)
Expr fmod(const Expr& a, const Expr& b);  ///< C remainder, the dividend's sign (torch.fmod); ints: x fmod 0 == x
/// int32 shifts with torch's meaning: a shift outside [0, 32) gives 0 (<<) or the sign fill, 0 or -1 (>>).
Expr operator<<(const Expr& a, const Expr& b);
Expr operator>>(const Expr& a, const Expr& b);
Expr toFloat(const Expr& a);  ///< int/bool -> float32
Expr toInt(const Expr& a);    ///< float -> int32 truncating toward zero (saturating, NaN -> 0); bool -> 0/1
Expr toBool(const Expr& a);   ///< x != 0

/// Builds a node, checking operand types. Used by the operators above and by the Python tracer.
Expr makeOp(Op op, const std::vector<Expr>& args);

/// Names the mod being traced in errors raised while it is traced ("mask_mod 'causal': ...").
class TraceScope {
 public:
  TraceScope(const char* kind, const std::string& name);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
  /// "mask_mod 'causal'" or "" outside a trace.
  static std::string current();

 private:
  std::string previous_;
};

/// Raises flexjit::Error prefixed with the mod being traced.
[[noreturn]] void traceError(const std::string& message);

}  // namespace flexjit
