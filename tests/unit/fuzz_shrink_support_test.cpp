// The differential fuzzer's shrinker (FuzzOracles.h): a failing case is made smaller, one node at a time,
// while the same oracle still fails, so a failure is reported with the few ops that cause it.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "FuzzOracles.h"

namespace flexjit::testing {

namespace {

/// Candidates tried per round (each is one host-compiled variant).
constexpr size_t kMaxCandidates = 400;

/// Every distinct node of a graph, parents before children (so early replacements remove the most).
std::vector<const Node*> nodesOf(const NodeRef& root) {
  std::vector<const Node*> order{root.get()};
  std::unordered_set<const Node*> seen{root.get()};
  for (size_t k = 0; k < order.size(); ++k)
    for (const NodeRef& a : order[k]->args)
      if (seen.insert(a.get()).second) order.push_back(a.get());
  return order;
}

/// `root` with `target` replaced by `replacement`; the nodes on the paths to it are rebuilt, the rest shared.
NodeRef replaceNode(const NodeRef& root, const Node* target, const NodeRef& replacement,
                    std::unordered_map<const Node*, NodeRef>& memo) {
  if (root.get() == target) return replacement;
  if (auto it = memo.find(root.get()); it != memo.end()) return it->second;
  std::vector<NodeRef> args;
  bool changed = false;
  for (const NodeRef& a : root->args) {
    args.push_back(replaceNode(a, target, replacement, memo));
    changed |= args.back() != a;
  }
  NodeRef out = root;
  if (changed) {
    auto copy = std::make_shared<Node>(*root);
    copy->args = std::move(args);
    out = copy;
  }
  return memo[root.get()] = out;
}

/// What a node may become: one of its operands of the same type, or a simple leaf of its type.
std::vector<NodeRef> replacementsOf(const Node& n, bool allowScore) {
  std::vector<NodeRef> out;
  for (const NodeRef& a : n.args)
    if (a->type == n.type) out.push_back(a);
  if (n.op == Op::Const || n.op == Op::Param) return out;
  for (double v : {0.0, 1.0}) out.push_back(Expr::constant(n.type, v).node());
  if (n.type == ScalarType::F32 && allowScore) out.push_back(Expr::param(Param::Score).node());
  if (n.type == ScalarType::I32) out.push_back(Expr::param(Param::Q).node());
  return out;
}

/// Every one-node reduction of `c`, in either mod.
std::vector<FuzzCase> reductionsOf(const FuzzCase& c) {
  std::vector<FuzzCase> out;
  for (bool score : {true, false}) {
    const NodeRef& root = score ? c.score->body().node() : c.mask->body().node();
    for (const Node* n : nodesOf(root))
      for (const NodeRef& r : replacementsOf(*n, score)) {
        std::unordered_map<const Node*, NodeRef> memo;
        FuzzCase next = c;
        Expr body(replaceNode(root, n, r, memo));
        if (score)
          next.score.emplace(ScoreMod::fromBody(c.score->name(), body));
        else
          next.mask.emplace(MaskMod::fromBody(c.mask->name(), body));
        out.push_back(std::move(next));
        if (out.size() >= kMaxCandidates) return out;
      }
  }
  return out;
}

size_t sizeOf(const FuzzCase& c) {
  return nodesOf(c.score->body().node()).size() + nodesOf(c.mask->body().node()).size();
}

}  // namespace

FuzzCase shrinkFuzzCase(const FuzzCase& failing, const std::string& oracle, int maxRounds) {
  FuzzCase best = failing;
  for (int round = 0; round < maxRounds; ++round) {
    FuzzFailures ignored;
    FuzzBatch batch = lowerFuzzCases(reductionsOf(best), ignored);
    compileFuzzBatch(batch, fmt::format("shrink{}", round), 2);
    if (!batch.ok()) break;
    std::optional<size_t> smallest;
    for (size_t k = 0; k < batch.cases.size(); ++k) {
      FuzzStats stats;
      FuzzFailures failures;
      if (!checkFuzzCase(batch, k, stats, failures).count(oracle)) continue;
      if (!smallest || sizeOf(batch.cases[k]) < sizeOf(batch.cases[*smallest])) smallest = k;
    }
    if (!smallest || sizeOf(batch.cases[*smallest]) >= sizeOf(best)) break;
    best = batch.cases[*smallest];
  }
  return best;
}

}  // namespace flexjit::testing
