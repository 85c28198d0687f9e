// The hooks a variant is made of: traced user functions, with their captures and a structural key.
//   score_mod(score, b, h, q_idx, kv_idx) -> float   modifies a score before the softmax
//   mask_mod(b, h, q_idx, kv_idx) -> bool            keeps (true) or masks a position
//   sink_mod(b, h, q_idx) -> float                   a logit whose exp joins the softmax denominator of a row
//   prob_mod(p, b, h, q_idx, kv_idx, num_visible) -> float   rewrites a normalised probability before P @ V
// One table (hookKind) says what each kind takes and returns; the tracer, the MLIR import, the autodiff
// pass and the code generator all read it.
//
//   auto causal = MaskMod("causal", [](Expr b, Expr h, Expr q, Expr kv) { return q >= kv; });
//   auto alibi  = ScoreMod("alibi", [&](Expr s, Expr b, Expr h, Expr q, Expr kv) {
//     return s + slopes[h] * toFloat(kv - q); });
//
// The key is a hash of the graph's canonical form: equal expressions give equal keys however they were
// built, a different constant gives a different key, and captures enter only through dtype and rank.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsl/Capture.h"
#include "dsl/Expr.h"

namespace flexjit {

enum class ModKind : uint8_t { Score, Mask, Sink, Prob };
const char* modKindName(ModKind kind);  ///< "score_mod" / "mask_mod" / "sink_mod" / "prob_mod"

/// What a hook kind is, for every layer that handles hooks generically.
struct HookKindInfo {
  ModKind kind;
  const char* name;            ///< "score_mod", also the MLIR function's name
  std::vector<Param> params;   ///< what the user function receives, in call order
  ScalarType result;
  /// The gradient function (NAME_grad) returns d(result)/d(this parameter) and adds the captured tensors'
  /// gradients; none: it only adds the captured tensors' gradients (a sink has no input to differentiate).
  bool hasInput;
  Param input = Param::Score;
  bool differentiable;         ///< captured tensors read by this kind may require a gradient
};
const HookKindInfo& hookKind(ModKind kind);

/// Common part of ScoreMod and MaskMod.
class Mod {
 public:
  ModKind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  const Expr& body() const { return body_; }
  /// Captures in canonical order (first use in a deterministic walk of the graph).
  const std::vector<std::shared_ptr<TensorCapture>>& tensors() const { return tensors_; }
  const std::vector<std::shared_ptr<ScalarCapture>>& scalars() const { return scalars_; }
  /// A deterministic, identity-free text form of the graph (one line per distinct node).
  const std::string& canonicalForm() const { return canonical_; }
  /// 16 hex digits of SHA-256 of canonicalForm().
  const std::string& key() const { return key_; }
  /// "mask_mod 'causal'"
  std::string describe() const;

 protected:
  Mod(ModKind kind, std::string name, Expr body);

 private:
  ModKind kind_;
  std::string name_;
  Expr body_;
  std::vector<std::shared_ptr<TensorCapture>> tensors_;
  std::vector<std::shared_ptr<ScalarCapture>> scalars_;
  std::string canonical_;
  std::string key_;
};

/// score_mod(score, b, h, q_idx, kv_idx) -> float
class ScoreMod : public Mod {
 public:
  using Fn = std::function<Expr(Expr score, Expr b, Expr h, Expr q_idx, Expr kv_idx)>;
  ScoreMod(std::string name, const Fn& fn);
  /// A mod from an expression over Expr::param(...) (used by composition and the Python tracer).
  static ScoreMod fromBody(std::string name, Expr body);
  /// Returns the score unchanged.
  static ScoreMod noop();
  bool isNoop() const;

 private:
  ScoreMod(std::string name, Expr body);
};

/// mask_mod(b, h, q_idx, kv_idx) -> bool; true keeps the position.
class MaskMod : public Mod {
 public:
  using Fn = std::function<Expr(Expr b, Expr h, Expr q_idx, Expr kv_idx)>;
  MaskMod(std::string name, const Fn& fn);
  static MaskMod fromBody(std::string name, Expr body);
  /// Keeps every position.
  static MaskMod noop();
  bool isNoop() const;

 private:
  MaskMod(std::string name, Expr body);
};

/// sink_mod(b, h, q_idx) -> float: a per-row logit s_sink whose exp is added to the softmax denominator, as
/// an extra key with no value (gpt-oss's attention sinks, Lazy Attention's norm_bias):
///   p_ij = exp(s_ij) / (sum_j exp(s_ij) + exp(s_sink_i)),  LSE_i = log(sum_j exp(s_ij) + exp(s_sink_i)).
/// A row whose keys are all masked then gives O = 0 and LSE = s_sink (finite). Its captured tensors may require
/// a gradient: d loss / d s_sink_i = -exp(s_sink_i - LSE_i) * rowsum(dO_i * O_i).
class SinkMod : public Mod {
 public:
  using Fn = std::function<Expr(Expr b, Expr h, Expr q_idx)>;
  SinkMod(std::string name, const Fn& fn);
  static SinkMod fromBody(std::string name, Expr body);

 private:
  SinkMod(std::string name, Expr body);
};

/// prob_mod(p, b, h, q_idx, kv_idx, num_visible) -> float: applied to each kept position's normalised
/// probability p_ij (after the softmax, the sink included) before P @ V; O_i = sum_j prob_mod(p_ij, ...) v_j is
/// not renormalised. num_visible is the row's number of unmasked keys (int32). Lazy Attention's
/// relu(p - |offset[h] + 1| / num_visible). Masked positions stay 0. Differentiable in p and in the captured
/// tensors it reads.
class ProbMod : public Mod {
 public:
  using Fn = std::function<Expr(Expr p, Expr b, Expr h, Expr q_idx, Expr kv_idx, Expr num_visible)>;
  ProbMod(std::string name, const Fn& fn);
  static ProbMod fromBody(std::string name, Expr body);

 private:
  ProbMod(std::string name, Expr body);
};

/// The hooks of a variant beyond score_mod and the block mask's mask_mod (absent ones are not used).
struct ExtraHooks {
  std::optional<SinkMod> sink;
  std::optional<ProbMod> prob;
  bool empty() const { return !sink && !prob; }
};

/// A position is kept when every mask keeps it (torch.nn.attention.flex_attention.and_masks).
MaskMod and_masks(const std::vector<MaskMod>& masks);
/// A position is kept when any mask keeps it.
MaskMod or_masks(const std::vector<MaskMod>& masks);
/// The noop mask and score mod under torch's names.
MaskMod noop_mask();
ScoreMod noop_score_mod();

}  // namespace flexjit
