// `flexjit compile VARIANT`: the cold compile time of a variant's forward and backward kernels (no GPU
// needed): MLIR lowering, then NVRTC for the forward and the backward, one after the other or side by
// side (what a training step's first call does with compileBackwardAhead).
#include <fmt/format.h>

#include <cstdlib>

#include "Cli.h"
#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "dsl/Error.h"
#include "runtime/Planner.h"
#include "runtime/AttentionGpu.h"
#include "runtime/BackwardBuild.h"
#include "runtime/Captures.h"
#include "runtime/KernelBuild.h"

namespace flexjit::cli {

int runCompile(const Args& a) {
  // Cold: no disk cache, and a fresh process has an empty memory cache.
  setenv("FLEXJIT_CACHE_DIR", "off", 1);
  const std::string name = a.positional[0], mode = a.get("mode", "parallel");
  const int headDim = static_cast<int>(a.getInt("head-dim", 128));
  const DType dtype = parseDType(a.get("dtype", "bf16"));
  examples::SeedVariant v = examples::makeSeedVariant(name);
  DeviceInfo info;
  info.computeMajor = static_cast<int>(a.getInt("cc-major", 9));
  info.computeMinor = static_cast<int>(a.getInt("cc-minor", 0));
  AttentionShape shape;
  shape.D = shape.Dv = headDim;
  BlockMask blocks = fullBlockMask(kDefaultMaskBlock, kDefaultMaskBlock, Device::cpu());

  std::shared_ptr<const Variant> fwd, bwd;
  double lowerMs = wallMs([&] {
    fwd = cachedVariant(v.score, v.mask, false);
    bwd = cachedVariant(v.score, v.mask, true);
  });
  FwdKernelConfig fc = planContiguousForward(dtype, headDim, headDim, info.computeMajor, info.computeMinor, *fwd).config;
  BwdKernelConfig bc = backwardConfigFor(dtype, shape, info, blocks, false, *bwd);
  const std::string tag = variantTag(v.score, v.mask);
  double fwdMs = 0;
  double totalMs = wallMs([&] {
    if (mode == "parallel") compileBackwardAhead(v.score, v.mask, dtype, shape, info, blocks);
    fwdMs = wallMs([&] { forwardKernel(*fwd, fc, tag); });
    // Waits for the background compile in parallel mode (the cache joins the in-flight request).
    backwardKernel(nullptr, bc, BwdKernelKind::Aux, tag);
    backwardKernel(bwd.get(), bc, BwdKernelKind::DkDv, tag);
  });
  fmt::print("{} {} D={} sm_{}{}: MLIR {:.1f} ms; forward NVRTC {:.0f} ms; forward + backward ({}) {:.0f} ms\n", name,
             dtypeName(dtype), headDim, info.computeMajor, info.computeMinor, lowerMs, fwdMs, mode, totalMs);
  return 0;
}

}  // namespace flexjit::cli
