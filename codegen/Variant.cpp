#include "codegen/Variant.h"

#include <fmt/format.h>

#include <cctype>
#include <set>
#include <sstream>

#include "codegen/Embedded.h"
#include "codegen/FunctionEmitter.h"
#include "codegen/SplitEmitter.h"
#include "compiler/Pipeline.h"
#include "dsl/Error.h"

namespace flexjit {

namespace {

const char* boolText(bool b) { return b ? "true" : "false"; }

}  // namespace

std::string variantTag(const ScoreMod& score, const MaskMod& mask) {
  std::string tag = score.name() + "__" + mask.name();
  for (char& c : tag)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  return tag;
}

CaptureLayout captureLayout(const ScoreMod& score, const MaskMod& mask, const ExtraHooks& extra) {
  CaptureLayout layout;
  std::vector<const Mod*> mods{&score, &mask};
  if (extra.sink) mods.push_back(&*extra.sink);
  if (extra.prob) mods.push_back(&*extra.prob);
  for (const Mod* m : mods) {
    layout.tensors.insert(layout.tensors.end(), m->tensors().begin(), m->tensors().end());
    layout.scalars.insert(layout.scalars.end(), m->scalars().begin(), m->scalars().end());
  }
  return layout;
}

namespace {

void expandInto(const std::string& text, std::set<std::string>& seen, std::string& out) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::string trimmed = line.substr(line.find_first_not_of(" \t") == std::string::npos ? line.size()
                                                                                         : line.find_first_not_of(" \t"));
    if (trimmed.rfind("#pragma once", 0) == 0) continue;
    if (trimmed.rfind("#include \"", 0) == 0) {
      size_t start = trimmed.find('"') + 1, end = trimmed.find('"', start);
      std::string path = trimmed.substr(start, end - start);
      std::string_view body = embeddedFile(path);
      if (body.empty()) throw Error(fmt::format("flexjit codegen: '{}' is not an embedded file", path));
      if (seen.insert(path).second) {
        out += fmt::format("// ---- begin {} ----\n", path);
        expandInto(std::string(body), seen, out);
        out += fmt::format("// ---- end {} ----\n", path);
      }
      continue;
    }
    out += line;
    out += '\n';
  }
}

/// The variant as the kernel templates take it: one type with the hooks as static members (and the
/// gradient hook only when it was generated; with accumulation sites it is a template over the gradient
/// sink and comes with its gradient windows).
/// The row / column split's members of the adapter (kernels detect them with kScoreSplit / kMaskSplit).
std::string splitAdapter(bool scoreSplit, bool maskSplit) {
  std::string s = fmt::format("  static constexpr bool kScoreSplit = {};\n  static constexpr bool kMaskSplit = {};\n",
                              boolText(scoreSplit), boolText(maskSplit));
  if (scoreSplit)
    s += "  using ScoreRow = fjv::score_mod_Row;\n"
         "  using ScoreCol = fjv::score_mod_Col;\n"
         "  static FJ_HD ScoreRow score_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {\n"
         "    return fjv::score_mod_row(b, h, q_idx, cap);\n"
         "  }\n"
         "  static FJ_HD ScoreCol score_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {\n"
         "    return fjv::score_mod_col(b, h, kv_idx, cap);\n"
         "  }\n"
         "  static FJ_HD float score_mod_split(float score, int b, int h, int q_idx, int kv_idx, const ScoreRow& row,\n"
         "                                     const ScoreCol& col, const fj::CaptureArgs& cap) {\n"
         "    return fjv::score_mod_split(score, b, h, q_idx, kv_idx, row, col, cap);\n"
         "  }\n";
  if (maskSplit)
    s += "  using MaskRow = fjv::mask_mod_Row;\n"
         "  using MaskCol = fjv::mask_mod_Col;\n"
         "  static FJ_HD MaskRow mask_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {\n"
         "    return fjv::mask_mod_row(b, h, q_idx, cap);\n"
         "  }\n"
         "  static FJ_HD MaskCol mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {\n"
         "    return fjv::mask_mod_col(b, h, kv_idx, cap);\n"
         "  }\n"
         "  static FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const MaskRow& row, const MaskCol& col,\n"
         "                                   const fj::CaptureArgs& cap) {\n"
         "    return fjv::mask_mod_split(b, h, q_idx, kv_idx, row, col, cap);\n"
         "  }\n";
  return s;
}

std::string hooksAdapter(bool withGradient, int gradSites, bool scoreSplit, bool maskSplit) {
  std::string s =
      "struct Hooks {\n"
      "  static constexpr bool kScoreModIsNoop = fjv::kScoreModIsNoop;\n"
      "  static constexpr bool kMaskModIsNoop = fjv::kMaskModIsNoop;\n"
      "  static constexpr bool kHasSink = fjv::kHasSink;\n"
      "  static constexpr bool kHasProb = fjv::kHasProb;\n"
      "  static FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {\n"
      "    return fjv::score_mod(score, b, h, q_idx, kv_idx, cap);\n"
      "  }\n"
      "  static FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {\n"
      "    return fjv::mask_mod(b, h, q_idx, kv_idx, cap);\n"
      "  }\n"
      "  // Whether kernels may decide sub-tiles of partial blocks with the interval form: only when it reads no\n"
      "  // captured tensor (those intervals scan the tensor's values, too slow per warp and sub-tile).\n"
      "  static constexpr bool kMaskIntervalIsCheap = !fjv::kMaskModIsNoop && !fjv::kMaskReadsTensors;\n"
      "  static FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx,\n"
      "                                            const fj::CaptureArgs& cap) {\n"
      "    return fjv::mask_mod_interval(b, h, q_idx, kv_idx, cap);\n"
      "  }\n" + splitAdapter(scoreSplit, maskSplit);
  if (withGradient && gradSites > 0)
    s += "  static constexpr int kGradSites = fjv::kGradSites;\n"
         "  template <class Grads>\n"
         "  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,\n"
         "                                    const fj::CaptureArgs& cap, const Grads& grads) {\n"
         "    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);\n"
         "  }\n"
         "  static FJ_HD void score_mod_grad_windows(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx,\n"
         "                                           const fj::CaptureArgs& cap, const fj::GradArgs& grads,\n"
         "                                           fj::IvOffset* offsets, int* slots) {\n"
         "    fjv::score_mod_grad_windows(b, h, q_idx, kv_idx, cap, grads, offsets, slots);\n"
         "  }\n";
  else if (withGradient)
    s += "  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,\n"
         "                                    const fj::CaptureArgs& cap, const fj::GradArgs& grads) {\n"
         "    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);\n"
         "  }\n";
  return s + "};\n";
}

}  // namespace

std::string expandIncludes(const std::string& text) {
  std::set<std::string> seen;
  std::string out;
  expandInto(text, seen, out);
  return out;
}

std::string blockMaskSource(const Variant& variant) {
  return expandIncludes("#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n" + variant.prelude +
                        "#include \"codegen/templates/block_mask.cuh\"\n");
}

std::string hookTestSource(const Variant& variant) {
  return expandIncludes("#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n" + variant.prelude +
                        "#include \"codegen/templates/hook_test.cuh\"\n");
}

namespace {

/// The compile-time facts at the top of a prelude.
std::string factsSource(const Variant& v) {
  std::string p;
  p += fmt::format("inline constexpr bool kScoreModIsNoop = {};\n", boolText(v.facts.scoreIsNoop));
  p += fmt::format("inline constexpr bool kMaskModIsNoop = {};\n", boolText(v.facts.maskIsNoop));
  p += fmt::format("inline constexpr bool kScoreCanBeNegInf = {};\n", boolText(v.facts.scoreCanBeNegInf));
  p += fmt::format("inline constexpr bool kHasTensorGrads = {};\n", boolText(v.facts.hasTensorGrads));
  p += fmt::format("inline constexpr bool kMaskReadsTensors = {};\n", boolText(v.facts.maskReadsTensors));
  p += fmt::format("inline constexpr bool kHasSink = {};\n", boolText(v.facts.hasSink));
  p += fmt::format("inline constexpr bool kHasProb = {};\n", boolText(v.facts.hasProb));
  if (v.facts.hasProb)
    p += fmt::format("inline constexpr bool kProbReadsVisible = {};\n", boolText(v.facts.probReadsVisible));
  if (v.gradSites > 0) p += fmt::format("inline constexpr int kGradSites = {};\n", v.gradSites);
  return p;
}

/// The sink_mod, its gradient (when it reads tensors that require one) and their adapter members.
std::string sinkSource(const LoweredMods& lowered, const Variant& v, bool withGradient, std::string& adapter) {
  if (!v.facts.hasSink) return "";
  ScalarEmitter scalar;
  std::string p = "\n" + scalar.emit(lowered.lookup("sink_mod"), "sink_mod");
  adapter +=
      "  static FJ_HD float sink_mod(int b, int h, int q_idx, const fj::CaptureArgs& cap) {\n"
      "    return fjv::sink_mod(b, h, q_idx, cap);\n"
      "  }\n";
  if (withGradient && v.facts.sinkHasTensorGrads) {
    p += "\n" + scalar.emit(lowered.lookup("sink_mod_grad"), "sink_mod_grad");
    adapter +=
        "  static constexpr bool kSinkHasGrads = true;\n"
        "  template <class Grads>\n"
        "  static FJ_HD void sink_mod_grad(int b, int h, int q_idx, float grad_out, const fj::CaptureArgs& cap,\n"
        "                                  const Grads& grads) {\n"
        "    fjv::sink_mod_grad(b, h, q_idx, grad_out, cap, grads);\n"
        "  }\n";
  }
  return p;
}

/// The prob_mod, its gradient (always: the forward's delta-weights pass needs d p' / d p too) and their
/// adapter members: prob_mod, prob_mod_dp (the derivative alone) and, with the gradient, prob_mod_grad.
std::string probSource(const LoweredMods& lowered, const Variant& v, bool withGradient, std::string& adapter) {
  if (!v.facts.hasProb) return "";
  ScalarEmitter scalar;
  std::string p = "\n" + scalar.emit(lowered.lookup("prob_mod"), "prob_mod");
  mlir::func::FuncOp grad = lowered.lookup("prob_mod_grad");
  p += "\n" + scalar.emit(grad, "prob_mod_grad");
  const int siteCount = FunctionEmitter::gradSiteCount(grad);
  const bool sites = siteCount > 0;
  p += fmt::format("inline constexpr int kProbGradSites = {};\n", siteCount);
  adapter +=
      "  static constexpr bool kProbReadsVisible = fjv::kProbReadsVisible;\n"
      "  static constexpr int kProbGradSites = fjv::kProbGradSites;\n"
      "  static FJ_HD float prob_mod(float p, int b, int h, int q_idx, int kv_idx, int num_visible,\n"
      "                              const fj::CaptureArgs& cap) {\n"
      "    return fjv::prob_mod(p, b, h, q_idx, kv_idx, num_visible, cap);\n"
      "  }\n"
      "  static FJ_HD float prob_mod_dp(float p, int b, int h, int q_idx, int kv_idx, int num_visible,\n"
      "                                 const fj::CaptureArgs& cap) {\n" +
      std::string(sites ? "    return fjv::prob_mod_grad(p, b, h, q_idx, kv_idx, num_visible, 1.0f, cap, fj::NoGrads{});\n"
                        : "    const fj::GradArgs none{};  // read by nothing: this prob_mod_grad adds no gradient\n"
                          "    return fjv::prob_mod_grad(p, b, h, q_idx, kv_idx, num_visible, 1.0f, cap, none);\n") +
      "  }\n";
  if (withGradient) {
    // A template over the gradient sink either way (the kernels pass their own reducing sinks); a gradient
    // without accumulation sites takes none.
    adapter += std::string("  template <class Grads>\n") +
               "  static FJ_HD float prob_mod_grad(float p, int b, int h, int q_idx, int kv_idx, int num_visible,\n"
               "                                   float grad_out, const fj::CaptureArgs& cap, const Grads& grads) {\n" +
               (sites ? "    return fjv::prob_mod_grad(p, b, h, q_idx, kv_idx, num_visible, grad_out, cap, grads);\n"
                      : "    const fj::GradArgs none{};  // read by nothing: this prob_mod_grad adds no gradient\n"
                        "    return fjv::prob_mod_grad(p, b, h, q_idx, kv_idx, num_visible, grad_out, cap, none);\n") +
               "  }\n";
  }
  return p;
}

}  // namespace

Variant generateVariant(const ScoreMod& score, const MaskMod& mask, const VariantOptions& options,
                        const ExtraHooks& extra) {
  // A prob_mod's derivative is used by the forward too (its delta-weights pass): such variants are always
  // differentiated.
  const LowerOptions lower{options.withGradient || extra.prob.has_value(), options.simplify};
  LoweredMods lowered = lowerMods(score, mask, lower, extra);
  Variant v;
  v.facts = lowered.facts;
  v.captures = captureLayout(score, mask, extra);
  v.importedIR = lowered.importedIR;
  v.differentiatedIR = lowered.differentiatedIR;
  v.simplifiedIR = lowered.simplifiedIR;
  v.scoreName = score.name();
  v.maskName = mask.name();
  if (options.withGradient) {
    v.gradSites = FunctionEmitter::gradSiteCount(lowered.lookup("score_mod_grad"));
    v.gradSitesMixQAndKv = FunctionEmitter::gradSiteMixesQAndKv(lowered.lookup("score_mod_grad"));
  }

  ScalarEmitter scalar;
  IntervalEmitter interval;
  std::string& p = v.prelude;
  p += fmt::format("// flexjit variant: score_mod {} / mask_mod {}{}{} (structural keys). Generated; do not edit.\n",
                   score.key(), mask.key(), extra.sink ? " / sink_mod " + extra.sink->key() : "",
                   extra.prob ? " / prob_mod " + extra.prob->key() : "");
  p += "namespace fjv {\n" + factsSource(v);
  p += "\n" + scalar.emit(lowered.lookup("score_mod"), "score_mod");
  p += "\n" + scalar.emit(lowered.lookup("mask_mod"), "mask_mod");
  // The row / column split of each mod, where it hoists something (SplitEmitter.h): the kernels' tile
  // loops evaluate the row part once per row and the column part once per column.
  SplitEmitter split;
  v.scoreElementLoads = v.facts.scoreIsNoop ? 0 : split.elementLoads(lowered.lookup("score_mod"));
  const std::string scoreSplit = v.facts.scoreIsNoop ? "" : split.emitSplit(lowered.lookup("score_mod"), "score_mod");
  const std::string maskSplit = v.facts.maskIsNoop ? "" : split.emitSplit(lowered.lookup("mask_mod"), "mask_mod");
  p += scoreSplit.empty() ? "" : "\n" + scoreSplit;
  p += maskSplit.empty() ? "" : "\n" + maskSplit;
  if (options.withGradient) p += "\n" + scalar.emit(lowered.lookup("score_mod_grad"), "score_mod_grad");
  if (v.gradSites > 0) {
    GradWindowEmitter windows;
    p += "\n" + windows.emitWindows(lowered.lookup("score_mod_grad"), "score_mod_grad_windows");
  }
  std::string sinkAdapter;  // the sink's and the prob_mod's adapter members
  p += sinkSource(lowered, v, options.withGradient, sinkAdapter);
  p += probSource(lowered, v, options.withGradient, sinkAdapter);
  p += "\n" + interval.emit(lowered.lookup("mask_mod"), "mask_mod_interval");
  p += "\n" + interval.emit(lowered.lookup("score_mod"), "score_mod_interval");
  std::string adapter = hooksAdapter(options.withGradient, v.gradSites, !scoreSplit.empty(), !maskSplit.empty());
  p += "\n" + adapter.insert(adapter.rfind("};"), sinkAdapter);
  p += "}  // namespace fjv\n";
  return v;
}

}  // namespace flexjit
