// `flexjit show VARIANT`: every stage of one variant, from MLIR to PTX statistics and its block mask.
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "Cli.h"
#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "dsl/Error.h"
#include "runtime/Planner.h"
#include "runtime/BlockMask.h"
#include "runtime/KernelBuild.h"
#include "runtime/KernelCache.h"
#include "runtime/Nvrtc.h"

namespace flexjit::cli {

namespace {

/// One line per (label, needle): how often the needle occurs in `text` (static instruction counts).
std::string countLines(const std::string& text, std::initializer_list<std::pair<const char*, const char*>> kinds) {
  std::string out;
  for (auto [label, needle] : kinds) {
    size_t n = 0;
    for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
    out += fmt::format("  {:<30} {}\n", label, n);
  }
  return out;
}

/// Counts of the instructions that tell whether a kernel is on the fast path.
std::string ptxStatistics(const std::string& ptx) {
  return countLines(ptx, {{"mma.sync (tensor cores)", "mma.sync"}, {"wgmma (Hopper tensor cores)", "wgmma.mma_async"},
                          {"ldmatrix", "ldmatrix"},                {"cp.async (async copies)", "cp.async.cg"},
                          {"cp.async.bulk.tensor (TMA)", "cp.async.bulk.tensor"},
                          {"mbarrier", "mbarrier."},               {"setmaxnreg", "setmaxnreg"},
                          {"ex2.approx (exp2)", "ex2.approx"},     {"tanh.approx", "tanh.approx"},
                          {"ld.global", "ld.global"},              {"st.global", "st.global"},
                          {"bar.sync", "bar.sync"},                {"shfl.sync", "shfl.sync"}});
}

/// cuobjdump from the CUDA toolkit: $CUDA_HOME/bin, /usr/local/cuda/bin, or PATH; empty when absent.
std::string findCuobjdump() {
  std::vector<std::string> dirs;
  if (const char* home = std::getenv("CUDA_HOME")) dirs.push_back(std::string(home) + "/bin");
  dirs.push_back("/usr/local/cuda/bin");
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (size_t at = 0; at <= p.size();) {
      size_t end = p.find(':', at);
      if (end == std::string::npos) end = p.size();
      if (end > at) dirs.push_back(p.substr(at, end - at));
      at = end + 1;
    }
  }
  for (const std::string& d : dirs)
    if (access((d + "/cuobjdump").c_str(), X_OK) == 0) return d + "/cuobjdump";
  return "";
}

/// The SASS of a CUBIN (cuobjdump -sass), with counts of the instructions that show where time goes.
std::string disassemble(const std::vector<char>& cubin) {
  const std::string tool = findCuobjdump();
  if (tool.empty()) {
    throw Error("--stage sass needs cuobjdump from the CUDA toolkit (looked in $CUDA_HOME/bin, /usr/local/cuda/bin "
                "and PATH); --stage ptx works without it");
  }
  char path[] = "/tmp/flexjit-show-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw Error("--stage sass: could not create a temporary file in /tmp");
  close(fd);
  std::ofstream(path, std::ios::binary).write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
  std::string sass;
  if (FILE* pipe = popen(fmt::format("'{}' -sass '{}' 2>&1", tool, path).c_str(), "r")) {
    std::array<char, 4096> buf;
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) sass.append(buf.data(), n);
    pclose(pipe);
  }
  std::remove(path);
  size_t total = 0;
  for (size_t pos = sass.find("/*"); pos != std::string::npos; pos = sass.find("/*", pos + 1))
    if (pos + 6 < sass.size() && sass.compare(pos + 6, 3, "*/ ") == 0) ++total;  // "/*0a80*/ " instruction addresses
  return fmt::format("-- SASS ({}) --\n{}\n-- SASS statistics (static counts) --\n", tool, sass) +
         countLines(sass, {{"HMMA (tensor cores)", " HMMA."}, {"MUFU.EX2", " MUFU.EX2"}, {"FFMA", " FFMA "},
                           {"FMUL", " FMUL "}, {"FADD", " FADD "}, {"FMNMX", " FMNMX"}, {"IMAD", " IMAD"},
                           {"LDG", " LDG."}, {"LDSM (ldmatrix)", " LDSM."}, {"LDL/STL (spills)", " LDL"},
                           {"BAR", " BAR."}, {"SHFL", " SHFL."}}) +
         fmt::format("  {:<30} {}\n", "instructions", total);
}

}  // namespace

int runShow(const Args& a) {
  const std::string name = a.positional[0], stage = a.get("stage", "summary");
  const int64_t seq = a.getInt("seq", 2048), headDim = a.getInt("head-dim", 128);
  const DType dtype = parseDType(a.get("dtype", "bf16"));
  const std::string arch = a.get("arch", gpuAvailable() ? cachedDeviceInfo(0).arch : "sm_90a");
  examples::SeedVariant v = examples::makeSeedVariant(name, examples::Shape{1, 1, seq, seq});
  auto all = [&](const char* s) { return stage == "summary" || stage == s; };

  Variant variant;
  double lowerMs = wallMs([&] { variant = generateVariant(v.score, v.mask); });
  fmt::print("== {}: {}\n", name, v.description);
  fmt::print("score_mod '{}' (key {}), mask_mod '{}' (key {}); MLIR lowering + autodiff + emission: {:.1f} ms\n",
             v.score.name(), v.score.key(), v.mask.name(), v.mask.key(), lowerMs);
  fmt::print("facts: score_mod {}, mask_mod {}, score can be -inf: {}, captured-tensor gradients: {}\n\n",
             variant.facts.scoreIsNoop ? "is the identity" : "transforms scores",
             variant.facts.maskIsNoop ? "keeps everything" : "masks", variant.facts.scoreCanBeNegInf,
             variant.facts.hasTensorGrads);
  if (stage == "mlir") fmt::print("-- MLIR as imported --\n{}\n-- with its gradient (autodiff) --\n{}\n", variant.importedIR, variant.differentiatedIR);
  if (all("mlir")) fmt::print("-- MLIR after simplification --\n{}\n", variant.simplifiedIR);
  if (all("hooks")) fmt::print("-- generated CUDA hooks --\n{}\n", variant.prelude);

  auto [major, minor] = parseArchNumber(arch);
  const ForwardPlan plan =
      planContiguousForward(dtype, static_cast<int>(headDim), static_cast<int>(headDim), major, minor, variant);
  const FwdKernelConfig& config = plan.config;
  if (all("ptx") || stage == "cuda" || stage == "sass") {
    ForwardBuild build;
    double ms = wallMs([&] { build = forwardKernel(variant, config, variantTag(v.score, v.mask)); });
    const FwdKernelConfig& c = build.config;
    const ResourceUsage& use = build.kernel->usage(kFwdKernelName);
    fmt::print("-- forward kernel ({} D={} {}) for {}: {:.0f} ms (NVRTC, or the kernel cache) --\n", dtypeName(dtype),
               headDim, fwdConfigSummary(c), arch, ms);
    fmt::print("  planner: {}\n", plan.reason);
    fmt::print("  registers {}, static smem {} B, dynamic smem {} B, stack {} B, spills {} B stored / {} B loaded\n",
               use.registers, use.staticSharedBytes, fwdSharedMemoryBytes(c), use.stackFrameBytes, use.spillStoreBytes,
               use.spillLoadBytes);
    // The source of the configuration built (the runtime may narrow the default's S slices).
    if (stage == "cuda") fmt::print("{}\n", forwardSource(variant, c));
    fmt::print("{}\n", ptxStatistics(build.kernel->ptx));
    if (stage == "ptx") fmt::print("{}\n", build.kernel->ptx);
    if (stage == "sass") fmt::print("{}", disassemble(build.kernel->cubin));
  }
  if (all("mask")) {
    BlockMask m = createBlockMask(v.mask, 1, 1, seq, seq);
    fmt::print("-- block mask at Q_LEN = KV_LEN = {} --\n{}\n", seq, m.toString(64, 1));
  }
  return 0;
}

}  // namespace flexjit::cli
