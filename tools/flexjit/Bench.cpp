// `flexjit bench`: times flexjit's kernels for the seed variants at given shapes and writes JSON (read by
// bench/run_bench.py, which times the peers in the same run).
#include <fmt/format.h>

#include <cstdio>
#include <sstream>

#include "Cli.h"
#include "Runs.h"
#include "dsl/Error.h"
#include "runtime/BlockMask.h"
#include "runtime/Device.h"
#include "runtime/KernelBuild.h"

namespace flexjit::cli {

namespace {

/// "8,16,8192,128,bf16;16,16,8192,64,fp16"
std::vector<RunShape> parseShapes(const std::string& text) {
  std::vector<RunShape> shapes;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ';');) {
    std::stringstream fs(item);
    std::vector<std::string> f;
    for (std::string x; std::getline(fs, x, ',');) f.push_back(x);
    if (f.size() != 5) throw Error(fmt::format("--shapes entries are B,H,S,D,dtype; got '{}'", item));
    RunShape s;
    s.B = parseIntIn(f[0], 1, kMaxGridDim, "--shapes B");
    s.H = parseIntIn(f[1], 1, kMaxGridDim, "--shapes H");
    s.Lq = s.Lkv = parseIntIn(f[2], 1, kMaxLength, "--shapes S");
    s.D = parseIntIn(f[3], kMinHeadDim, kMaxHeadDim, "--shapes D");
    s.dtype = parseDType(f[4]);
    shapes.push_back(s);
  }
  return shapes;
}

/// "1024,65536"
std::vector<int64_t> parseSeqs(const std::string& text) {
  std::vector<int64_t> seqs;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) seqs.push_back(parseIntIn(item, 1, kMaxLength, "--mask-seqs"));
  return seqs;
}

/// create_block_mask(causal) on the GPU at long sequence lengths (the dense mask would not fit).
std::string benchCausalMask(const std::vector<int64_t>& seqs) {
  ScopedContext context(0);  // CUDA events need a current context
  std::string json;
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  for (int64_t S : seqs) {
    BlockMask m;
    double ms = medianMs([&] { m = createBlockMask(causal, 1, 1, S, S, Device::cuda(0)); }, 2, 5);
    std::fprintf(stderr, "create_block_mask(causal, S=%lld) on the GPU: %.3f ms (sparsity %.2f%%)\n", (long long)S, ms,
                 m.sparsity());
    json += fmt::format("{}{{\"S\": {}, \"ms\": {:.4f}}}", json.empty() ? "" : ", ", S, ms);
  }
  return json;
}

}  // namespace

int runBench(const Args& a) {
  const std::string shapeText = a.get("shapes", "8,16,8192,128,bf16;16,16,8192,64,fp16");
  std::vector<RunShape> shapes = shapeText == "none" ? std::vector<RunShape>{} : parseShapes(shapeText);
  std::vector<std::string> names = variantList(a.get("variants", "all"));
  const std::vector<int64_t> maskSeqs = parseSeqs(a.get("mask-seqs", ""));
  if (!gpuAvailable()) throw Error("bench needs a CUDA GPU");
  int reps = static_cast<int>(a.getInt("reps", 20));
  const bool backward = a.has("backward");
  std::string json = fmt::format("{{\"device\": \"{}\", \"results\": [\n", cachedDeviceInfo(0).name);
  bool first = true;
  for (const RunShape& s : shapes)
    for (const std::string& name : names) {
      RunResult r = timeVariant(name, s, reps, backward);
      std::fprintf(stderr, "%-16s B%lld H%lld S%lld D%lld %s: fwd %.3f ms, %.1f TFLOP/s; bwd %.3f ms, %.1f TFLOP/s "
                   "(density %.3f)\n", name.c_str(), (long long)s.B, (long long)s.H, (long long)s.Lq, (long long)s.D,
                   dtypeName(s.dtype), r.fwdMs, r.tflops, r.bwdMs, r.bwdTflops, r.density);
      json += fmt::format("{}  {{\"variant\": \"{}\", \"B\": {}, \"H\": {}, \"S\": {}, \"D\": {}, \"dtype\": \"{}\", "
                          "\"fwd_ms\": {:.5f}, \"fwd_tflops\": {:.2f}, \"density\": {:.5f}, \"mask_ms\": {:.5f}, "
                          "\"first_call_ms\": {:.2f}, \"bwd_ms\": {:.5f}, \"bwd_tflops\": {:.2f}}}",
                          first ? "" : ",\n", name, s.B, s.H, s.Lq, s.D, dtypeName(s.dtype), r.fwdMs, r.tflops, r.density,
                          r.maskMs, r.firstCallMs, r.bwdMs, r.bwdTflops);
      first = false;
    }
  json += "\n]";
  if (a.has("mask-seqs")) json += ", \"causal_mask\": [" + benchCausalMask(maskSeqs) + "]";
  json += "}\n";
  std::string path = a.get("json", "-");
  if (path == "-") {
    std::fputs(json.c_str(), stdout);
  } else {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw Error(fmt::format("cannot write {}", path));
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  return 0;
}

}  // namespace flexjit::cli
