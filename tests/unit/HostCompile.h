// Compiles generated variant preludes with the host C++ compiler into a shared library and loads it, so
// CPU tests can run exactly the code flexjit emits for the GPU (with the precise host fallbacks of the
// fast-math functions) and compare it with the interpreter.
#pragma once

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "codegen/Variant.h"
#include "dsl/Interval.h"

namespace flexjit::testing {

using ScoreFn = float (*)(float, int, int, int, int, const fj::CaptureArgs*);
using MaskFn = bool (*)(int, int, int, int, const fj::CaptureArgs*);
using GradFn = float (*)(float, int, int, int, int, float, const fj::CaptureArgs*, const fj::GradArgs*);
using MaskIntervalFn = void (*)(const long long*, const fj::CaptureArgs*, int*);
/// score_mod_interval over the box {b, h, q, kv ranges} and the score interval {lo, hi, nan}; writes
/// {lo, hi, nan} of the result.
using ScoreIntervalFn = void (*)(const long long*, const float*, const fj::CaptureArgs*, float*);
/// score_mod_grad through a recording sink: writes (site, slot, offset) of every in-bounds gradient write
/// (at most `max`), returns how many.
using GradWritesFn = int (*)(float, int, int, int, int, const fj::CaptureArgs*, const fj::GradArgs*, long long*, int);
using SinkFn = float (*)(int, int, int, const fj::CaptureArgs*);
using SinkGradFn = float (*)(int, int, int, float, const fj::CaptureArgs*, const fj::GradArgs*);
/// prob_mod(p, b, h, q_idx, kv_idx, num_visible) and its gradient (returns d/dp).
using ProbFn = float (*)(float, int, int, int, int, int, const fj::CaptureArgs*);
using ProbGradFn = float (*)(float, int, int, int, int, int, float, const fj::CaptureArgs*, const fj::GradArgs*);
/// score_mod_grad_windows over the box {b, h, q, kv ranges}.
using GradWindowsFn = void (*)(const long long*, const fj::CaptureArgs*, const fj::GradArgs*, fj::IvOffset*, int*);

/// A shared library built from several variants; variant k's hooks are `score_k`, `mask_k`, ...
class HostLibrary {
 public:
  /// Builds the library; on failure the test fails with the compiler output (and the files stay for a
  /// look). `optLevel` trades compile time for run time: the differential fuzzer compiles thousands of
  /// variants once each and uses -O0.
  explicit HostLibrary(const std::vector<Variant>& variants, const std::string& tag, const char* optLevel = "-O1") {
    std::string dir = fmt::format("/tmp/flexjit-hosttest-{}-{}", getpid(), tag);
    std::string cmd = fmt::format("mkdir -p {}", dir);
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot create " << dir;
    std::string src = dir + "/variants.cpp", lib = dir + "/variants.so";
    std::ofstream(src) << source(variants);
    cmd = fmt::format("{} -std=c++17 {} -ffp-contract=off -fPIC -shared -w -I{} -o {} {} > {}/log.txt 2>&1",
                      FLEXJIT_HOST_CXX, optLevel, FLEXJIT_SOURCE_DIR, lib, src, dir);
    if (std::system(cmd.c_str()) != 0) {
      std::ifstream log(dir + "/log.txt");
      std::string text((std::istreambuf_iterator<char>(log)), {});
      ADD_FAILURE() << "host compile of generated code failed (" << src << "):\n" << text.substr(0, 4000);
      return;
    }
    handle_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) ADD_FAILURE() << "dlopen: " << dlerror();
    else std::filesystem::remove_all(dir);  // loaded: the files are no longer needed
  }
  ~HostLibrary() {
    if (handle_) dlclose(handle_);
  }
  bool ok() const { return handle_ != nullptr; }

  template <class Fn>
  Fn get(const char* prefix, size_t k) const {
    return reinterpret_cast<Fn>(dlsym(handle_, fmt::format("{}_{}", prefix, k).c_str()));
  }

 private:
  static std::string source(const std::vector<Variant>& variants) {
    std::string s =
        "#include <cmath>\n#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n"
        // A gradient sink that records where score_mod_grad writes instead of adding.
        "struct RecordingSink {\n"
        "  const fj::GradArgs* g; long long* out; int max; int* n;\n"
        "  template <class... I> void accumulate(int site, int slot, const fj::TensorArg& t, float, I... idx) const {\n"
        "    long long off = fj::gradOffset(g->stride[slot], t, idx...);\n"
        "    if (off < 0 || *n >= max) return;\n"
        "    out[3 * *n] = site; out[3 * *n + 1] = slot; out[3 * *n + 2] = off; ++*n;\n"
        "  }\n"
        "};\n";
    for (size_t k = 0; k < variants.size(); ++k) {
      // Each prelude in its own enclosing namespace: fjv::... inside it resolves to that variant's fjv.
      s += fmt::format("namespace v{} {{\n{}}}  // namespace v{}\n", k, variants[k].prelude, k);
      s += fmt::format(
          "extern \"C\" float score_{0}(float s, int b, int h, int q, int kv, const fj::CaptureArgs* c) {{ return "
          "v{0}::fjv::score_mod(s, b, h, q, kv, *c); }}\n"
          "extern \"C\" bool mask_{0}(int b, int h, int q, int kv, const fj::CaptureArgs* c) {{ return "
          "v{0}::fjv::mask_mod(b, h, q, kv, *c); }}\n",
          k);
      // The interval forms (a prelude cut down to the scalar hooks has none).
      if (variants[k].prelude.find("mask_mod_interval(") != std::string::npos)
        s += fmt::format(
          "extern \"C\" void mask_interval_{0}(const long long* x, const fj::CaptureArgs* c, int* out) {{\n"
          "  fj::IvBool r = v{0}::fjv::mask_mod_interval(fj::ivInt(x[0], x[1]), fj::ivInt(x[2], x[3]), "
          "fj::ivInt(x[4], x[5]), fj::ivInt(x[6], x[7]), *c);\n  out[0] = r.canFalse; out[1] = r.canTrue; }}\n"
          "extern \"C\" void score_interval_{0}(const long long* x, const float* s, const fj::CaptureArgs* c, float* out) {{\n"
          "  fj::IvFloat r = v{0}::fjv::score_mod_interval(fj::ivFloat(s[0], s[1], s[2] != 0), fj::ivInt(x[0], x[1]), "
          "fj::ivInt(x[2], x[3]), fj::ivInt(x[4], x[5]), fj::ivInt(x[6], x[7]), *c);\n"
          "  out[0] = r.lo; out[1] = r.hi; out[2] = r.nan; }}\n",
          k);
      // The row / column split, reassembled: it must compute exactly the unsplit mod.
      if (variants[k].prelude.find("score_mod_split(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float score_split_{0}(float s, int b, int h, int q, int kv, const fj::CaptureArgs* c) {{\n"
            "  return v{0}::fjv::score_mod_split(s, b, h, q, kv, v{0}::fjv::score_mod_row(b, h, q, *c), "
            "v{0}::fjv::score_mod_col(b, h, kv, *c), *c); }}\n",
            k);
      if (variants[k].prelude.find("mask_mod_split(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" bool mask_split_{0}(int b, int h, int q, int kv, const fj::CaptureArgs* c) {{\n"
            "  return v{0}::fjv::mask_mod_split(b, h, q, kv, v{0}::fjv::mask_mod_row(b, h, q, *c), "
            "v{0}::fjv::mask_mod_col(b, h, kv, *c), *c); }}\n",
            k);
      if (variants[k].prelude.find("score_mod_grad(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float grad_{0}(float s, int b, int h, int q, int kv, float g, const fj::CaptureArgs* c, "
            "const fj::GradArgs* gr) {{ return v{0}::fjv::score_mod_grad(s, b, h, q, kv, g, *c, *gr); }}\n",
            k);
      // The extra hooks, where the variant has them.
      if (variants[k].prelude.find("FJ_HD float sink_mod(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float sink_{0}(int b, int h, int q, const fj::CaptureArgs* c) {{ return "
            "v{0}::fjv::sink_mod(b, h, q, *c); }}\n",
            k);
      if (variants[k].prelude.find("FJ_HD float sink_mod_grad(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float sink_grad_{0}(int b, int h, int q, float g, const fj::CaptureArgs* c, "
            "const fj::GradArgs* gr) {{ return v{0}::fjv::sink_mod_grad(b, h, q, g, *c, *gr); }}\n",
            k);
      if (variants[k].prelude.find("FJ_HD float prob_mod(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float prob_{0}(float p, int b, int h, int q, int kv, int n, const fj::CaptureArgs* c) "
            "{{ return v{0}::fjv::prob_mod(p, b, h, q, kv, n, *c); }}\n",
            k);
      if (variants[k].prelude.find("FJ_HD float prob_mod_grad(") != std::string::npos)
        s += fmt::format(
            "extern \"C\" float prob_grad_{0}(float p, int b, int h, int q, int kv, int n, float g, "
            "const fj::CaptureArgs* c, const fj::GradArgs* gr) {{ return "
            "v{0}::fjv::prob_mod_grad(p, b, h, q, kv, n, g, *c, *gr); }}\n",
            k);
      if (variants[k].gradSites > 0)
        s += fmt::format(
            "extern \"C\" int grad_writes_{0}(float s, int b, int h, int q, int kv, const fj::CaptureArgs* c, "
            "const fj::GradArgs* gr, long long* out, int max) {{\n"
            "  int n = 0; RecordingSink sink{{gr, out, max, &n}};\n"
            "  v{0}::fjv::score_mod_grad(s, b, h, q, kv, 1.0f, *c, sink); return n; }}\n"
            "extern \"C\" void grad_windows_{0}(const long long* x, const fj::CaptureArgs* c, const fj::GradArgs* gr, "
            "fj::IvOffset* offsets, int* slots) {{\n"
            "  v{0}::fjv::score_mod_grad_windows(fj::ivInt(x[0], x[1]), fj::ivInt(x[2], x[3]), fj::ivInt(x[4], x[5]), "
            "fj::ivInt(x[6], x[7]), *c, *gr, offsets, slots); }}\n",
            k);
    }
    return s;
  }

  void* handle_ = nullptr;
};

/// Fills CaptureArgs from a variant's capture layout (host data must be bound).
inline fj::CaptureArgs hostCaptures(const Variant& v) {
  fj::CaptureArgs cap{};
  for (size_t k = 0; k < v.captures.tensors.size(); ++k) {
    const auto& t = v.captures.tensors[k];
    cap.tensor[k].data = t->view->data;
    for (int d = 0; d < t->rank; ++d) {
      cap.tensor[k].stride[d] = t->view->strides[d];
      cap.tensor[k].size[d] = static_cast<int>(t->view->shape[d]);
    }
  }
  for (size_t k = 0; k < v.captures.scalars.size(); ++k) {
    cap.f[k] = static_cast<float>(v.captures.scalars[k]->value);
    cap.i[k] = static_cast<int>(v.captures.scalars[k]->value);
  }
  return cap;
}

}  // namespace flexjit::testing
