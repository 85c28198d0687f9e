// Tracing user lambdas into mods, and the canonical form behind structural keys.
#include "dsl/Mods.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "dsl/Error.h"
#include "dsl/Sha256.h"

namespace flexjit {

namespace {

/// Writes the canonical form of a graph: one line per distinct node in post-order, operands as %ids.
/// Structurally equal nodes built separately share one line, so sharing in the user's DAG does not
/// change the key; captures are numbered by first use, so their identity does not enter either.
class Canonicalizer {
 public:
  void run(const NodeRef& root) {
    // Iterative post-order: user graphs can be long chains (a sum of many terms).
    std::vector<std::pair<const Node*, size_t>> stack{{root.get(), 0}};
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (ids_.count(node)) {
        stack.pop_back();
        continue;
      }
      if (next < node->args.size()) {
        const Node* child = node->args[next++].get();
        if (!ids_.count(child)) stack.push_back({child, 0});
        continue;
      }
      ids_[node] = intern(describe(*node));
      stack.pop_back();
    }
    text_ += fmt::format("return %{}\n", ids_.at(root.get()));
  }

  std::string text() const { return header_ + text_; }
  std::vector<std::shared_ptr<TensorCapture>> tensors;
  std::vector<std::shared_ptr<ScalarCapture>> scalars;

 private:
  std::string describe(const Node& n) {
    std::string line = fmt::format("{} {}", opName(n.op), scalarTypeName(n.type));
    switch (n.op) {
      case Op::Param: line += fmt::format(" {}", paramName(n.param)); break;
      case Op::Const:
        line += n.type == ScalarType::F32 ? fmt::format(" {:a}", static_cast<float>(n.fconst))
                                          : fmt::format(" {}", n.iconst);
        break;
      case Op::Scalar: line += fmt::format(" s{}", indexOf(scalars, n.scalar)); break;
      case Op::Load: line += fmt::format(" t{}", tensorIndex(n.tensor)); break;
      default: break;
    }
    for (const NodeRef& a : n.args) line += fmt::format(" %{}", ids_.at(a.get()));
    return line;
  }

  template <class T>
  size_t indexOf(std::vector<std::shared_ptr<T>>& list, const std::shared_ptr<T>& item) {
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i] == item) return i;
    list.push_back(item);
    return list.size() - 1;
  }

  size_t tensorIndex(const std::shared_ptr<TensorCapture>& t) {
    size_t before = tensors.size();
    size_t i = indexOf(tensors, t);
    if (i == before) header_ += fmt::format("tensor t{} {} rank {}\n", i, dtypeName(t->dtype), t->rank);
    return i;
  }

  size_t intern(const std::string& line) {
    auto it = lines_.find(line);
    if (it != lines_.end()) return it->second;
    size_t id = lines_.size();
    lines_.emplace(line, id);
    text_ += fmt::format("%{} = {}\n", id, line);
    return id;
  }

  std::unordered_map<const Node*, size_t> ids_;
  std::unordered_map<std::string, size_t> lines_;
  std::string header_;
  std::string text_;
};

bool usesParam(const NodeRef& root, Param p) {
  std::vector<const Node*> stack{root.get()};
  std::unordered_map<const Node*, bool> seen;
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (seen[n]) continue;
    seen[n] = true;
    if (n->op == Op::Param && n->param == p) return true;
    for (const NodeRef& a : n->args) stack.push_back(a.get());
  }
  return false;
}

Expr checkedBody(ModKind kind, const std::string& name, const Expr& body) {
  const HookKindInfo& info = hookKind(kind);
  TraceScope scope(info.name, name);
  if (!body.defined()) traceError("returned an uninitialized Expr");
  for (int p = 0; p < kNumParams; ++p) {
    const Param param = static_cast<Param>(p);
    if (std::find(info.params.begin(), info.params.end(), param) != info.params.end()) continue;
    if (!usesParam(body.node(), param)) continue;
    traceError(param == Param::Score && kind == ModKind::Mask
                   ? std::string("a mask_mod cannot read the score; use a score_mod")
                   : fmt::format("a {} has no parameter {} (it receives {})", info.name, paramName(param),
                                 kind == ModKind::Sink   ? "b, h, q_idx: one logit per row"
                                 : kind == ModKind::Prob ? "p, b, h, q_idx, kv_idx, num_visible"
                                                         : "score, b, h, q_idx, kv_idx"));
  }
  if (body.type() == info.result) return body;
  if (kind == ModKind::Mask)
    traceError(fmt::format("must return bool (true keeps the position), but returned {}; compare explicitly, "
                           "e.g. `x != 0`", scalarTypeName(body.type())));
  traceError(fmt::format("must return float32, but returned {}; {}", scalarTypeName(body.type()),
                         body.type() == ScalarType::Bool && kind == ModKind::Score
                             ? "to mask positions use a mask_mod, or where(cond, score, -INFINITY)"
                             : "convert with toFloat()"));
  return body;
}

}  // namespace

const HookKindInfo& hookKind(ModKind kind) {
  static const HookKindInfo kinds[] = {
      {ModKind::Score, "score_mod", {Param::Score, Param::B, Param::H, Param::Q, Param::KV}, ScalarType::F32,
       /*hasInput=*/true, Param::Score, /*differentiable=*/true},
      {ModKind::Mask, "mask_mod", {Param::B, Param::H, Param::Q, Param::KV}, ScalarType::Bool, false, Param::Score,
       false},
      {ModKind::Sink, "sink_mod", {Param::B, Param::H, Param::Q}, ScalarType::F32, false, Param::Score, true},
      {ModKind::Prob, "prob_mod", {Param::Score, Param::B, Param::H, Param::Q, Param::KV, Param::Visible},
       ScalarType::F32, /*hasInput=*/true, Param::Score, /*differentiable=*/true},
  };
  return kinds[static_cast<int>(kind)];
}

const char* modKindName(ModKind kind) { return hookKind(kind).name; }

Mod::Mod(ModKind kind, std::string name, Expr body)
    : kind_(kind), name_(std::move(name)), body_(checkedBody(kind, name_, body)) {
  Canonicalizer c;
  c.run(body_.node());
  canonical_ = fmt::format("{}\n{}", modKindName(kind_), c.text());
  tensors_ = std::move(c.tensors);
  scalars_ = std::move(c.scalars);
  key_ = Sha256::hex(canonical_).substr(0, 16);
}

std::string Mod::describe() const { return fmt::format("{} '{}'", modKindName(kind_), name_); }

static Expr traceScore(const std::string& name, const ScoreMod::Fn& fn) {
  if (!fn) throw Error(fmt::format("score_mod '{}' is an empty function", name));
  TraceScope scope("score_mod", name);
  return fn(Expr::param(Param::Score), Expr::param(Param::B), Expr::param(Param::H), Expr::param(Param::Q),
            Expr::param(Param::KV));
}

static Expr traceMask(const std::string& name, const MaskMod::Fn& fn) {
  if (!fn) throw Error(fmt::format("mask_mod '{}' is an empty function", name));
  TraceScope scope("mask_mod", name);
  return fn(Expr::param(Param::B), Expr::param(Param::H), Expr::param(Param::Q), Expr::param(Param::KV));
}

ScoreMod::ScoreMod(std::string name, const Fn& fn) : ScoreMod(name, traceScore(name, fn)) {}
ScoreMod::ScoreMod(std::string name, Expr body) : Mod(ModKind::Score, std::move(name), std::move(body)) {}
ScoreMod ScoreMod::fromBody(std::string name, Expr body) { return ScoreMod(std::move(name), std::move(body)); }
ScoreMod ScoreMod::noop() { return ScoreMod("noop", Expr::param(Param::Score)); }
bool ScoreMod::isNoop() const {
  const Node& n = *body().node();
  return n.op == Op::Param && n.param == Param::Score;
}

MaskMod::MaskMod(std::string name, const Fn& fn) : MaskMod(name, traceMask(name, fn)) {}
MaskMod::MaskMod(std::string name, Expr body) : Mod(ModKind::Mask, std::move(name), std::move(body)) {}
MaskMod MaskMod::fromBody(std::string name, Expr body) { return MaskMod(std::move(name), std::move(body)); }
MaskMod MaskMod::noop() { return MaskMod("noop", Expr(true)); }
bool MaskMod::isNoop() const {
  const Node& n = *body().node();
  return n.op == Op::Const && n.iconst != 0;
}

static Expr traceSink(const std::string& name, const SinkMod::Fn& fn) {
  if (!fn) throw Error(fmt::format("sink_mod '{}' is an empty function", name));
  TraceScope scope("sink_mod", name);
  return fn(Expr::param(Param::B), Expr::param(Param::H), Expr::param(Param::Q));
}

SinkMod::SinkMod(std::string name, const Fn& fn) : SinkMod(name, traceSink(name, fn)) {}
SinkMod::SinkMod(std::string name, Expr body) : Mod(ModKind::Sink, std::move(name), std::move(body)) {}
SinkMod SinkMod::fromBody(std::string name, Expr body) { return SinkMod(std::move(name), std::move(body)); }

static Expr traceProb(const std::string& name, const ProbMod::Fn& fn) {
  if (!fn) throw Error(fmt::format("prob_mod '{}' is an empty function", name));
  TraceScope scope("prob_mod", name);
  return fn(Expr::param(Param::Score), Expr::param(Param::B), Expr::param(Param::H), Expr::param(Param::Q),
            Expr::param(Param::KV), Expr::param(Param::Visible));
}

ProbMod::ProbMod(std::string name, const Fn& fn) : ProbMod(name, traceProb(name, fn)) {}
ProbMod::ProbMod(std::string name, Expr body) : Mod(ModKind::Prob, std::move(name), std::move(body)) {}
ProbMod ProbMod::fromBody(std::string name, Expr body) { return ProbMod(std::move(name), std::move(body)); }

static MaskMod combineMasks(const std::vector<MaskMod>& masks, bool conjunction) {
  const char* what = conjunction ? "and_masks" : "or_masks";
  if (masks.empty()) throw Error(fmt::format("{}() needs at least one mask_mod", what));
  std::string name = masks.front().name();
  Expr body = masks.front().body();
  for (size_t i = 1; i < masks.size(); ++i) {
    name += conjunction ? "&" : "|";
    name += masks[i].name();
    body = conjunction ? (body & masks[i].body()) : (body | masks[i].body());
  }
  return MaskMod::fromBody(name, body);
}

MaskMod and_masks(const std::vector<MaskMod>& masks) { return combineMasks(masks, true); }
MaskMod or_masks(const std::vector<MaskMod>& masks) { return combineMasks(masks, false); }
MaskMod noop_mask() { return MaskMod::noop(); }
ScoreMod noop_score_mod() { return ScoreMod::noop(); }

}  // namespace flexjit
