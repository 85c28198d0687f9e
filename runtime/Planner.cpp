// Family choice and environment overrides of the forward kernel (see Planner.h).
#include "runtime/Planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "codegen/BackwardConfig.h"
#include "codegen/templates/decode/decode_params.h"
#include "dsl/Error.h"
#include "runtime/ConfigOverrides.h"

namespace flexjit {

namespace {

constexpr const char* kFwdOverrideEnv = "FLEXJIT_FWD_CONFIG";
constexpr int kSm80FamilyCode = 80;
constexpr int kSm90FamilyCode = 90;

/// decode= of FLEXJIT_FWD_CONFIG: not given (the planner decides), 0 (never) or 1 (required).
constexpr int kDecodeAuto = -1;
/// The planner takes the decode family by itself when the packed rows of one (batch, KV head) fit one
/// decode CTA (Q_LEN x packed heads <= 64, four row tiles). Measured on the H200 (docs/performance.md,
/// 2026-12-02: B4, 32 query / 8 KV heads, KV 32768, D128): Q_LEN 1 and 4 (16 packed rows) run in 152-155 us
/// against the prefill family's 415 us; Q_LEN 16 (64 rows) took 435 us in four 16-row CTAs that each
/// streamed the whole cache, 197 us in one 64-row CTA (the decode default since). Wider problems stay on the
/// prefill families.
/// decode=1 / decode=0 override.
constexpr int kDecodeAutoRows = fjk::kDecodeRows * fjk::kDecodeMaxRowTiles;

/// The query heads one decode CTA would pack for `p` (a mask with lists per head keeps one head per CTA).
int decodePackHeads(const ForwardProblem& p) {
  return p.maskSameForEveryHead && p.headsKV > 0 ? std::max(p.headsQ / p.headsKV, 1) : 1;
}

/// Q_LEN x packed heads: the rows one (batch, head group) gives the decode family.
long long decodePackedRows(const ForwardProblem& p) { return static_cast<long long>(p.lenQ) * decodePackHeads(p); }

/// What FLEXJIT_FWD_CONFIG asks of the family choice: family=80|90 (0 when not given) and decode=0|1.
struct FamilyRequest {
  int family = 0;
  int decode = kDecodeAuto;
};

/// Read first because the other keys depend on the family (each family then accepts only its own, and
/// names the keys it accepts, see applyTunables).
FamilyRequest requestedFamily() {
  FamilyRequest r;
  r.family = readConfigKey(kFwdOverrideEnv, "family").value_or(0);
  r.decode = readConfigKey(kFwdOverrideEnv, "decode").value_or(kDecodeAuto);
  if (r.family != 0 && r.family != kSm80FamilyCode && r.family != kSm90FamilyCode)
    throw Error(fmt::format("{}: family={} is not a kernel family; use family=80 (mma.sync) or family=90 "
                            "(wgmma + TMA, Hopper)", kFwdOverrideEnv, r.family));
  if (r.decode != kDecodeAuto && r.decode != 0 && r.decode != 1)
    throw Error(fmt::format("{}: decode={} must be 0 (never the decode family) or 1 (require it)", kFwdOverrideEnv,
                            r.decode));
  if (r.decode == 1 && r.family != 0)
    throw Error(fmt::format("{}: decode=1 and family={} ask for two families; give one", kFwdOverrideEnv, r.family));
  return r;
}

FwdKernelConfig sm80Config(const ForwardProblem& p) {
  FwdKernelConfig c = defaultFwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor, p.maskBlockQ,
                                       p.maskBlockKV);
  // Masks that cost many operations per element run faster with narrow S slices (AttentionConfig.h).
  if (p.facts.maskOps > kCostlyMaskOps && c.subN > kCostlyMaskSubN) c.subN = kCostlyMaskSubN;
  return c;
}

/// FLEXJIT_FWD_CONFIG's family-specific keys (family= itself was applied by the planner).
void applyTunables(FwdKernelConfig& c) {
  int family = c.family == KernelFamily::Sm90 ? kSm90FamilyCode : kSm80FamilyCode;
  int decode = c.family == KernelFamily::Decode;
  if (c.family == KernelFamily::Sm90) {
    applyConfigOverrides(kFwdOverrideEnv, {{"family", &family}, {"decode", &decode}, {"stages", &c.stages}});
    return;
  }
  if (c.family == KernelFamily::Decode) {
    applyConfigOverrides(kFwdOverrideEnv,
                         {{"decode", &decode},
                          {"blockM", &c.blockM},
                          {"blockN", &c.blockN},
                          {"warps", &c.numWarps},
                          {"stages", &c.stages}});
    c.subN = c.blockN;
    return;
  }
  // Only fields that keep the tiles' fit to the BlockMask's blocks (checked below) may change.
  int qInRegs = c.qInRegs, decideSubTiles = c.decideSubTiles;
  applyConfigOverrides(kFwdOverrideEnv, {{"family", &family},
                                         {"decode", &decode},
                                         {"subN", &c.subN},
                                         {"qInRegs", &qInRegs},
                                         {"decideSubTiles", &decideSubTiles}});
  c.qInRegs = qInRegs != 0, c.decideSubTiles = decideSubTiles != 0;
}

}  // namespace

std::string sm90Unavailable(const KernelProblem& p) {
  if (p.archMajor != 9 || p.archMinor != 0) return fmt::format("the GPU is sm_{}{}, not sm_90", p.archMajor, p.archMinor);
  if (!p.driverHasTensorMaps) return "the driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer is needed)";
  if (!p.tmaDescribable)
    return "a tensor's layout cannot be described to TMA (a broadcast stride of 0, or a stride or base that is "
           "not 16-byte aligned)";
  return "";
}

std::string sm90ForwardUnsupported(const ForwardProblem& p) {
  if (std::string why = sm90Unavailable(p); !why.empty()) return why;
  FwdKernelConfig c = defaultSm90FwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor);
  if (FwdConfigCheck check = checkFwdConfig(c); !check.ok()) return check.message;
  if (FwdConfigCheck check = checkFwdMaskBlocks(c, p.maskBlockQ, p.maskBlockKV); !check.ok()) return check.message;
  return "";
}

std::string decodeForwardUnsupported(const ForwardProblem& p) {
  if (p.lenQ > kDecodeMaxQueries)
    return fmt::format("Q_LEN = {} is more than the decode family's {} rows per head", p.lenQ, kDecodeMaxQueries);
  if (p.lenQ > p.maskBlockQ)
    return fmt::format("Q_LEN = {} spans more than one BlockMask row block ({} rows)", p.lenQ, p.maskBlockQ);
  if (p.facts.hasProb) return "a prob_mod needs the statistics and apply passes of the prefill families";
  FwdKernelConfig c =
      defaultDecodeConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor, decodePackedRows(p));
  if (p.pageSize > 0 && p.pageSize % c.blockN != 0)
    return fmt::format("the page size {} is not a multiple of the decode tiles' {} keys", p.pageSize, c.blockN);
  if (FwdConfigCheck check = checkFwdConfig(c); !check.ok()) return check.message;
  if (FwdConfigCheck check = checkFwdMaskBlocks(c, p.maskBlockQ, p.maskBlockKV); !check.ok()) return check.message;
  return "";
}

ForwardPlan planForward(const ForwardProblem& p) {
  ForwardPlan plan;
  const FamilyRequest request = requestedFamily();
  const int requested = request.family;
  const std::string decodeWhy = decodeForwardUnsupported(p);
  const bool decodeOnly = p.pageSize > 0 || p.kvLengths;
  if (decodeOnly && (!decodeWhy.empty() || request.decode == 0 || requested != 0))
    throw Error(fmt::format("flex_attention: a paged KV cache and kv_lengths run on the decode family only, {}",
                            !decodeWhy.empty() ? "which cannot run this problem: " + decodeWhy
                                               : std::string("which FLEXJIT_FWD_CONFIG rules out")));
  if (request.decode == 1 && !decodeWhy.empty())
    throw Error(fmt::format("{}: decode=1 cannot run this problem: {}", kFwdOverrideEnv, decodeWhy));
  const std::string sm90Why = sm90ForwardUnsupported(p);
  if (requested == kSm90FamilyCode && !sm90Why.empty())
    throw Error(fmt::format("{}: family=90 cannot run this problem: {}", kFwdOverrideEnv, sm90Why));
  const bool decodeFits = decodePackedRows(p) <= kDecodeAutoRows;
  const bool wantDecode = decodeOnly || request.decode == 1 || (request.decode == kDecodeAuto && decodeFits);
  if (decodeWhy.empty() && wantDecode && requested == 0) {
    plan.config = defaultDecodeConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor, decodePackedRows(p));
    // Packed heads must walk the same kv blocks; a mask with lists per head keeps one head per CTA.
    plan.decodePackHeads = decodePackHeads(p);
    plan.reason = fmt::format("decode family: Q_LEN = {} <= {}, split KV, {} query head(s) per CTA", p.lenQ,
                              kDecodeMaxQueries, plan.decodePackHeads);
  } else if (sm90Why.empty() && requested != kSm80FamilyCode) {
    plan.config = defaultSm90FwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor);
    plan.reason = "sm90 family: wgmma + TMA on Hopper";
    // A score_mod that loads a tensor per element spills the consumers at 128-wide kv tiles (relative_bias:
    // the spill search of runtime/KernelBuild.cpp then built the 64-wide kernel, twice the cold compile
    // time, 3.1 s on the development machine); such variants start at 64.
    FwdKernelConfig narrow = plan.config;
    narrow.blockN = narrow.subN = 64;
    if (p.scoreElementLoads > 0 && plan.config.blockN > narrow.blockN && checkFwdConfig(narrow).ok() &&
        checkFwdMaskBlocks(narrow, p.maskBlockQ, p.maskBlockKV).ok()) {
      plan.config = narrow;
      plan.reason += ", kv tiles of 64 (the score_mod loads a tensor per element)";
    }
  } else {
    plan.config = sm80Config(p);
    plan.reason = requested == kSm80FamilyCode ? "sm80 family: asked for by FLEXJIT_FWD_CONFIG"
                  : p.archMajor < 9            ? "sm80 family: mma.sync (the GPU predates Hopper)"
                                               : "sm80 family: " + sm90Why;
  }
  applyTunables(plan.config);
  if (plan.config.family == KernelFamily::Decode && p.pageSize > 0 && p.pageSize % plan.config.blockN != 0)
    throw Error(fmt::format("{}: blockN={} does not divide the page size {}: a tile must lie in one page",
                            kFwdOverrideEnv, plan.config.blockN, p.pageSize));
  plan.config.probPasses = p.facts.hasProb;
  plan.config.probDelta = p.facts.hasProb && p.probDelta;
  if (FwdConfigCheck check = checkFwdConfig(plan.config); !check.ok())
    throw Error(std::string(std::getenv(kFwdOverrideEnv) ? "FLEXJIT_FWD_CONFIG: " : "") + check.message);
  if (FwdConfigCheck check = checkFwdMaskBlocks(plan.config, p.maskBlockQ, p.maskBlockKV); !check.ok())
    throw Error(check.message);
  return plan;
}

int requestedBackwardFamily() {
  const int family = readConfigKey("FLEXJIT_BWD_CONFIG", "family").value_or(0);
  if (family != 0 && family != kSm80FamilyCode && family != kSm90FamilyCode)
    throw Error(fmt::format("FLEXJIT_BWD_CONFIG: family={} is not a backward family; use family=80 (mma.sync) or "
                            "family=90 (wgmma + TMA, Hopper)", family));
  return family;
}

std::string sm90BackwardUnsupported(const BackwardProblem& p) {
  if (std::string why = sm90Unavailable(p); !why.empty()) return why;
  if (p.gradSites > 0 && p.gradSitesMixQAndKv)
    return "captured tensors with gradients indexed by q and kv together are summed in the sm80 family's "
           "shared-memory windows";
  if (p.accumRows >= (1ll << 31)) return "B * H * Q_LEN is beyond the int32 coordinates of a TMA reduction";
  BwdKernelConfig c = defaultSm90BwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor, p.deterministic);
  if (BwdConfigCheck check = checkBwdConfig(c); !check.ok) return check.message;
  if (BwdConfigCheck check = checkBwdMaskBlocks(c, p.maskBlockQ, p.maskBlockKV); !check.ok) return check.message;
  return "";
}

bool planSm90Backward(const BackwardProblem& p) {
  const int requested = requestedBackwardFamily();
  const std::string why = sm90BackwardUnsupported(p);
  if (requested == kSm90FamilyCode && !why.empty())
    throw Error("FLEXJIT_BWD_CONFIG: family=90 cannot run this backward: " + why +
                "; use family=80 or unset FLEXJIT_BWD_CONFIG");
  if (requested != 0) return requested == kSm90FamilyCode;
  // The default wherever it applies since the H200 runs of 2026-12-02 (docs/performance.md): every seed
  // variant it takes matched the float64 reference, and the backward ran 1.53-1.65x the sm80 family's speed
  // (causal D128: 466 against 282 TFLOP/s); deterministic mode, gradients of captured tensors indexed by q
  // or kv alone and a prob_mod's and a sink's gradients (AttentionBackwardGpuSm90Rows.*) passed there too.
  return why.empty();
}

void describeVariant(ForwardProblem& p, const Variant& variant) {
  p.facts = variant.facts;
  p.scoreElementLoads = variant.scoreElementLoads;
}

ForwardPlan planContiguousForward(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                  const Variant& variant) {
  ForwardProblem p;
  p.dtype = dtype;
  p.headDim = headDim;
  p.headDimV = headDimV;
  p.archMajor = archMajor;
  p.archMinor = archMinor;
  describeVariant(p, variant);
  return planForward(p);
}

}  // namespace flexjit
