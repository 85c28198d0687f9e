// Family choice and environment overrides of the forward kernel (see Planner.h).
#include "runtime/Planner.h"

#include <fmt/format.h>

#include <cstdlib>

#include "dsl/Error.h"
#include "runtime/ConfigOverrides.h"

namespace flexjit {

namespace {

constexpr const char* kFwdOverrideEnv = "FLEXJIT_FWD_CONFIG";
constexpr int kSm80FamilyCode = 80;
constexpr int kSm90FamilyCode = 90;

/// The family FLEXJIT_FWD_CONFIG's family=80|90 asks for (0 when it does not), read first because the other
/// keys depend on it (each family then accepts only its own, see applyTunables).
int requestedFamily() {
  int family = 0, ignored = 0;
  applyConfigOverrides(kFwdOverrideEnv, {{"family", &family},
                                         {"subN", &ignored},
                                         {"qInRegs", &ignored},
                                         {"decideSubTiles", &ignored},
                                         {"stages", &ignored}});
  if (family != 0 && family != kSm80FamilyCode && family != kSm90FamilyCode)
    throw Error(fmt::format("{}: family={} is not a kernel family; use family=80 (mma.sync) or family=90 "
                            "(wgmma + TMA, Hopper)", kFwdOverrideEnv, family));
  return family;
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
  if (c.family == KernelFamily::Sm90) {
    applyConfigOverrides(kFwdOverrideEnv, {{"family", &family}, {"stages", &c.stages}});
    return;
  }
  // Only fields that keep the tiles' fit to the BlockMask's blocks (checked below) may change.
  int qInRegs = c.qInRegs, decideSubTiles = c.decideSubTiles;
  applyConfigOverrides(kFwdOverrideEnv, {{"family", &family},
                                         {"subN", &c.subN},
                                         {"qInRegs", &qInRegs},
                                         {"decideSubTiles", &decideSubTiles}});
  c.qInRegs = qInRegs != 0, c.decideSubTiles = decideSubTiles != 0;
}

}  // namespace

std::string sm90ForwardUnsupported(const ForwardProblem& p) {
  if (p.archMajor != 9 || p.archMinor != 0) return fmt::format("the GPU is sm_{}{}, not sm_90", p.archMajor, p.archMinor);
  if (!p.driverHasTensorMaps) return "the driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer is needed)";
  if (!p.tmaDescribable)
    return "a tensor's layout cannot be described to TMA (a broadcast stride of 0, or a stride or base that is "
           "not 16-byte aligned)";
  FwdKernelConfig c = defaultSm90FwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor);
  if (FwdConfigCheck check = checkFwdConfig(c); !check.ok()) return check.message;
  if (FwdConfigCheck check = checkFwdMaskBlocks(c, p.maskBlockQ, p.maskBlockKV); !check.ok()) return check.message;
  return "";
}

ForwardPlan planForward(const ForwardProblem& p) {
  ForwardPlan plan;
  const int requested = requestedFamily();
  const std::string sm90Why = sm90ForwardUnsupported(p);
  if (requested == kSm90FamilyCode && !sm90Why.empty())
    throw Error(fmt::format("{}: family=90 cannot run this problem: {}", kFwdOverrideEnv, sm90Why));
  if (sm90Why.empty() && requested != kSm80FamilyCode) {
    plan.config = defaultSm90FwdConfig(p.dtype, p.headDim, p.headDimV, p.archMajor, p.archMinor);
    plan.reason = "sm90 family: wgmma + TMA on Hopper";
  } else {
    plan.config = sm80Config(p);
    plan.reason = requested == kSm80FamilyCode ? "sm80 family: asked for by FLEXJIT_FWD_CONFIG"
                  : p.archMajor < 9            ? "sm80 family: mma.sync (the GPU predates Hopper)"
                                               : "sm80 family: " + sm90Why;
  }
  applyTunables(plan.config);
  plan.config.probPasses = p.facts.hasProb;
  if (FwdConfigCheck check = checkFwdConfig(plan.config); !check.ok())
    throw Error(std::string(std::getenv(kFwdOverrideEnv) ? "FLEXJIT_FWD_CONFIG: " : "") + check.message);
  if (FwdConfigCheck check = checkFwdMaskBlocks(plan.config, p.maskBlockQ, p.maskBlockKV); !check.ok())
    throw Error(check.message);
  return plan;
}

ForwardPlan planContiguousForward(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                  const ModFacts& facts) {
  ForwardProblem p;
  p.dtype = dtype;
  p.headDim = headDim;
  p.headDimV = headDimV;
  p.archMajor = archMajor;
  p.archMinor = archMinor;
  p.facts = facts;
  return planForward(p);
}

}  // namespace flexjit
