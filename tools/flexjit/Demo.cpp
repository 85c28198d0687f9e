// `flexjit demo`: the README's first command. Compiles every seed variant (MLIR -> CUDA -> NVRTC), prints a
// block mask and generated code, and on a GPU checks each variant against the float64 reference and times it.
#include <fmt/format.h>

#include "Cli.h"
#include "Runs.h"
#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "runtime/Planner.h"
#include "runtime/BlockMask.h"
#include "runtime/KernelBuild.h"
#include "runtime/KernelCache.h"
#include "runtime/Nvrtc.h"

namespace flexjit::cli {

namespace {

void printCompileTable(const std::vector<std::string>& names, const std::string& arch, DType dtype, int headDim) {
  auto [major, minor] = parseArchNumber(arch);
  fmt::print("{:<16} {:>9} {:>9} {:>6} {:>9} {:>7}  {}\n", "variant", "lower ms", "nvrtc ms", "regs", "smem KB", "spills",
             "kernel");
  for (const std::string& name : names) {
    examples::SeedVariant v = examples::makeSeedVariant(name);
    Variant variant;
    double lowerMs = wallMs([&] { variant = generateVariant(v.score, v.mask); });
    FwdKernelConfig config = planContiguousForward(dtype, headDim, headDim, major, minor, variant).config;
    ForwardBuild build;
    auto before = KernelCache::global().stats();
    double compileMs = wallMs([&] { build = forwardKernel(variant, config, variantTag(v.score, v.mask)); });
    bool compiled = KernelCache::global().stats().compilations != before.compilations;
    const ResourceUsage& use = build.kernel->usage(kFwdKernelName);
    const FwdKernelConfig& c = build.config;
    fmt::print("{:<16} {:>9.1f} {:>9} {:>6} {:>9.1f} {:>7}  {}\n", name, lowerMs,
               compiled ? fmt::format("{:.0f}", compileMs) : std::string("cached"), use.registers,
               fwdSharedMemoryBytes(c) / 1024.0, use.spillStoreBytes, fwdConfigSummary(c));
  }
}

}  // namespace

int runDemo(const Args& a) {
  const std::vector<std::string> names = variantList(a.get("variants", "all"));
  const bool gpu = gpuAvailable();
  const std::string arch = gpu ? cachedDeviceInfo(0).arch : "sm_90a";
  RunShape shape;
  shape.B = a.getInt("batch", 4);
  shape.H = a.getInt("heads", 16);
  shape.Lq = shape.Lkv = a.getInt("seq", 4096);
  shape.D = a.getInt("head-dim", 128);
  shape.dtype = parseDType(a.get("dtype", "bf16"));

  fmt::print("flexjit demo: NVRTC {}, {}\n\n", nvrtcVersion(),
             gpu ? fmt::format("GPU {} ({})", cachedDeviceInfo(0).name, arch)
                 : "no GPU here: compiling for sm_90a only (run on a GPU machine to execute and time)");

  examples::SeedVariant doc = examples::makeSeedVariant("document", examples::Shape{1, 1, 4096, 4096});
  MaskMod docWindow = and_masks({doc.mask, examples::makeSeedVariant("sliding_window").mask});
  fmt::print("== A block mask: document mask AND a 1024 sliding window at 4096 tokens ==\n{}\n",
             createBlockMask(docWindow, 1, 1, 4096, 4096).toString(64, 1));

  examples::SeedVariant alibi = examples::makeSeedVariant("alibi");
  fmt::print("== The CUDA flexjit generated for ALiBi (score_mod + causal mask_mod, with the gradient) ==\n{}\n",
             generateVariant(alibi.score, alibi.mask).prelude);

  fmt::print("== Compiling the forward kernel of every seed variant ({} D={} for {}) ==\n", dtypeName(shape.dtype), shape.D, arch);
  printCompileTable(names, arch, shape.dtype, static_cast<int>(shape.D));
  if (!gpu) return 0;

  fmt::print("\n== On the GPU: accuracy vs the float64 reference (B1 H2 S300 D64 bf16), then speed at B{} H{} S{} D{} {} ==\n",
             shape.B, shape.H, shape.Lq, shape.D, dtypeName(shape.dtype));
  fmt::print("{:<16} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9} {:>9}\n", "variant", "max|dO|", "bf16 ref", "max|dLSE|",
             "mask ms", "density", "fwd ms", "TFLOP/s");
  for (const std::string& name : names) {
    Accuracy acc = checkVariant(name);
    RunResult r = timeVariant(name, shape, static_cast<int>(a.getInt("reps", 10)));
    fmt::print("{:<16} {:>10.2e} {:>10.2e} {:>10.2e} | {:>9.3f} {:>9.3f} {:>9.3f} {:>9.1f}\n", name, acc.outError,
               acc.lowPrecisionError, acc.lseError, r.maskMs, r.density, r.fwdMs, r.tflops);
  }
  return 0;
}

}  // namespace flexjit::cli
