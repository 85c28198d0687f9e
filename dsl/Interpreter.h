// The CPU interpreter: the meaning of a mod, and the oracle every other layer is tested against.
//
// A mod is flattened once into a Program (operations in dependency order); the program is then evaluated
// per position with float32 semantics (what the kernel computes), float64 semantics (for the reference
// attention), as intervals over a box of positions (block classification), or backwards for gradients.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsl/Interval.h"
#include "dsl/Mods.h"

namespace flexjit {

/// One flattened operation; operands are indices of earlier instructions.
struct Instr {
  Op op;
  ScalarType type;
  std::vector<int> args;
  Param param = Param::Score;
  double fconst = 0.0;
  int64_t iconst = 0;
  int capture = -1;  ///< index into the mod's tensors() (Load) or scalars() (Scalar)
};

/// Parameter values at one position (`visible`: the row's number of unmasked keys, read by prob_mods).
struct Position {
  int32_t b = 0, h = 0, q = 0, kv = 0;
  int32_t visible = 0;
};

/// Parameter ranges of a block pair (inclusive); `visible` spans every count unless narrowed.
struct Box {
  fj::IvInt b, h, q, kv;
  fj::IvInt visible = fj::ivInt(0, 2147483647);
};

/// What a mask keeps over a box, or where a score_mod can be -inf.
enum class BlockClass : uint8_t { Empty, Partial, Full };
const char* blockClassName(BlockClass c);

/// Gradients of a score_mod at one position.
struct ScoreGrad {
  double dscore = 0.0;
  /// For each captured tensor (mod order): (row-major linear index, contribution) pairs.
  std::vector<std::vector<std::pair<int64_t, double>>> tensorGrads;
};

class Program {
 public:
  explicit Program(const Mod& mod);

  const std::vector<Instr>& instrs() const { return instrs_; }
  const Mod& mod() const { return mod_; }

  /// Rebinds captured tensor data and scalar values from the mod's captures. Tensors must be on the CPU;
  /// with `requireData` false, unbound tensors are treated as unknown (for symbolic analysis).
  void bindCaptures(bool requireData = true);

  /// Evaluates with float32 semantics (what the kernel computes).
  float scoreF32(float score, const Position& p) const;
  /// Evaluates float ops in float64 (the reference attention's scores).
  double scoreF64(double score, const Position& p) const;
  bool mask(const Position& p) const;

  /// Bounds the result over a box. The score parameter ranges over `score`.
  fj::IvBool maskInterval(const Box& box) const;
  fj::IvFloat scoreInterval(const Box& box, fj::IvFloat score = fj::ivFloatFinite()) const;
  /// Mask: Full if every position is kept, Empty if none. Score mod: Empty if the result is always -inf,
  /// Full if it is never -inf.
  BlockClass classify(const Box& box) const;

  /// Reverse-mode gradient of a score_mod in float64, given d(loss)/d(result) = `gradOut`: the chain rule
  /// op by op with fj-autodiff's rules (zero adjoints included, so 0 * inf gives NaN as in torch).
  ScoreGrad scoreGrad(double score, const Position& p, double gradOut) const;
  /// The same pass in float32 with fj-autodiff's formulas and accumulation order: what the generated
  /// score_mod_grad computes, up to the sign of zeros (the differential fuzzer compares the two).
  ScoreGrad scoreGradF32(float score, const Position& p, float gradOut) const;

 private:
  struct Slot {
    double f = 0.0;
    int32_t i = 0;
  };
  template <class Real>
  Real runScalar(Real score, const Position& p, std::vector<Slot>& slots) const;
  Slot evalInstr(const Instr& in, const std::vector<Slot>& slots, double score, const Position& p, bool f32) const;
  struct IvSlot {
    fj::IvFloat f;
    fj::IvInt i;
    fj::IvBool b;
  };
  IvSlot runInterval(const Box& box, fj::IvFloat score) const;
  template <class Real>
  ScoreGrad reverseMode(Real score, const Position& p, Real gradOut) const;
  /// Pushes the adjoint `g` of instruction `in` (value `res`) to its operands through `acc(operand, d)`.
  template <class Real, class Acc>
  void pushAdjoint(const Instr& in, const std::vector<Slot>& s, Real res, Real g, Acc&& acc, ScoreGrad& out) const;

  Mod mod_;
  std::vector<Instr> instrs_;
  std::vector<fj::TensorArg> tensors_;
  std::vector<int> elemTypes_;
  std::vector<double> scalars_;
};

}  // namespace flexjit
