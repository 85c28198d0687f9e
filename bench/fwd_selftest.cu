// Standalone self-test and benchmark of the block-sparse attention forward kernel template.
//
// Checks O and LSE of the kernel (built here by nvcc from codegen/templates/, and through NVRTC exactly
// as the runtime builds it) against a float64 CPU reference, for handwritten variants (noop, causal,
// sliding window, tanh soft-cap, document mask over a captured int32 tensor, ALiBi with captured float
// slopes, a mask that empties rows q < 5), odd sizes, Lq != Lkv, GQA, both dtypes and head dims 32-256;
// then times the peer shapes of shared/ANCHORS.md. Prints PASS/FAIL per check and a summary.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. bench/fwd_selftest.cu -o fwd_selftest
//   ./fwd_selftest [--no-bench] [--bench-only] [--profile] [--normal] [--family sm80|sm90]   (run from the
//   repository root: NVRTC reads the sources; --profile runs only the default D128 noop kernel, a few
//   launches, for ncu; --family checks and times one kernel family only, both by default)
// Both forward families are instantiated: sm80 (mma.sync) and, on Hopper, sm90 (wgmma + TMA). Building
// with -DFJ_SELFTEST_SM90_ONLY leaves the sm80 instantiations out (a faster build while iterating).
//
// The host code of codegen/AttentionConfig.cpp is compiled into this file so that one nvcc command builds
// it; NVRTC and the driver API are loaded at run time (dlopen), as flexjit's runtime does.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nvrtc.h>

#include "dsl/Interval.h"
#include "codegen/templates/fastmath.cuh"
#include "codegen/templates/sm80/attention_fwd.cuh"
#include "codegen/templates/sm90/attention_fwd.cuh"
#include "codegen/AttentionConfig.cpp"
#include "dsl/Types.cpp"
#include "runtime/TmaMaps.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#define CK(call)                                                                                  \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #call); \
      std::exit(2);                                                                               \
    }                                                                                             \
  } while (0)

#define ST_HD __host__ __device__ __forceinline__
using flexjit::DType;
using flexjit::FwdKernelConfig;

// ---- variants: the fjv hooks of the generated prelude, written by hand, callable on host and device ----
struct VarNoop {
  static constexpr const char* kName = "noop";
  static constexpr bool kScoreModIsNoop = true, kMaskModIsNoop = true, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs&) { return s; }
  static ST_HD bool mask_mod(int, int, int, int, const fj::CaptureArgs&) { return true; }
};
struct VarCausal {
  static constexpr const char* kName = "causal";
  static constexpr bool kScoreModIsNoop = true, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs&) { return s; }
  static ST_HD bool mask_mod(int, int, int q, int kv, const fj::CaptureArgs&) { return q >= kv; }
};
/// Causal sliding window of cap.i[0] keys.
struct VarSliding {
  static constexpr const char* kName = "sliding";
  static constexpr bool kScoreModIsNoop = true, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs&) { return s; }
  static ST_HD bool mask_mod(int, int, int q, int kv, const fj::CaptureArgs& c) { return q >= kv && q - kv < c.i[0]; }
};
/// cap.f[0] * tanh(score / cap.f[0]) with a causal mask.
struct VarSoftcap {
  static constexpr const char* kName = "softcap";
  static constexpr bool kScoreModIsNoop = false, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs& c) {
#ifdef __CUDA_ARCH__
    return c.f[0] * fj::fastTanh(s * (1.0f / c.f[0]));
#else
    return c.f[0] * std::tanh(s / c.f[0]);
#endif
  }
  static ST_HD bool mask_mod(int, int, int q, int kv, const fj::CaptureArgs&) { return q >= kv; }
};
/// Keys and queries attend within one document: doc ids [B, L] int32 in tensor 0.
struct VarDocument {
  static constexpr const char* kName = "document";
  static constexpr bool kScoreModIsNoop = true, kMaskModIsNoop = false, kMaskUsesB = true;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs&) { return s; }
  static ST_HD bool mask_mod(int b, int, int q, int kv, const fj::CaptureArgs& c) {
    const fj::TensorArg& t = c.tensor[0];
    const int iq[2] = {b, q}, ik[2] = {b, kv};
    return fj::loadInt(t, fj::kElemI32, fj::elementOffset(t, 2, iq)) ==
           fj::loadInt(t, fj::kElemI32, fj::elementOffset(t, 2, ik));
  }
};
/// score + slope[h] * (kv - q), causal; slopes [Hq] float32 in tensor 0.
struct VarAlibi {
  static constexpr const char* kName = "alibi";
  static constexpr bool kScoreModIsNoop = false, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int h, int q, int kv, const fj::CaptureArgs& c) {
    const int ih[1] = {h};
    return s + fj::loadFloat(c.tensor[0], fj::kElemF32, fj::elementOffset(c.tensor[0], 1, ih)) * (float)(kv - q);
  }
  static ST_HD bool mask_mod(int, int, int q, int kv, const fj::CaptureArgs&) { return q >= kv; }
};
/// Rows q < 5 see no key at all: O = 0 and LSE = -inf there.
struct VarKillRows {
  static constexpr const char* kName = "killrows";
  static constexpr bool kScoreModIsNoop = true, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int, int, const fj::CaptureArgs&) { return s; }
  static ST_HD bool mask_mod(int, int, int q, int, const fj::CaptureArgs&) { return q >= 5; }
};

/// score_mod returns NaN on rows q % 7 == 3 (causal): those rows must come out NaN (O and LSE), not
/// masked, as torch's do.
struct VarNanRows {
  static constexpr const char* kName = "nanrows";
  static constexpr bool kScoreModIsNoop = false, kMaskModIsNoop = false, kMaskUsesB = false;
  static ST_HD float score_mod(float s, int, int, int q, int, const fj::CaptureArgs&) {
    return q % 7 == 3 ? fj::quietNaN() : s;
  }
  static ST_HD bool mask_mod(int, int, int q, int kv, const fj::CaptureArgs&) { return q >= kv; }
};

// ---- kernel registry: every instantiation this harness can launch ----
template <class Tr, class Var>
__global__ void __launch_bounds__(Tr::kNThreads, 1) fwd_kernel(const __grid_constant__ fjk::FwdParams p) {
  fjk::attention_fwd<Tr, Var>(p);
}

template <class Tr, class Var>
__global__ void __launch_bounds__(Tr::kNThreads, 1) fwd_kernel_sm90(const __grid_constant__ fjk::Sm90FwdParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  fjk::attention_fwd_sm90<Tr, Var>(p);
#endif
}

struct KernelEntry {
  std::string variant;
  FwdKernelConfig cfg;
  const void* fn;
  int smem;
};
static std::vector<KernelEntry>& registry() {
  static std::vector<KernelEntry> r;
  return r;
}
template <class Var, bool kBf16, int D, int Dv, int BM, int BN, int W, bool QR, int SN>
static void add_kernel() {
  using Tr = fjk::FwdTraits<kBf16, D, Dv, BM, BN, W, QR, SN>;
  FwdKernelConfig c;
  c.dtype = kBf16 ? DType::BF16 : DType::F16;
  c.headDim = D, c.headDimV = Dv, c.blockM = BM, c.blockN = BN, c.subN = SN, c.numWarps = W, c.qInRegs = QR;
  c.archMajor = c.archMinor = 0;
  registry().push_back({Var::kName, c, (const void*)&fwd_kernel<Tr, Var>, Tr::kSmemBytes});
}
/// An sm90-family instantiation of the default tiles for (D, Dv).
template <class Var, bool kBf16, int D, int Dv>
static void add_kernel_sm90() {
  const FwdKernelConfig c = flexjit::defaultSm90FwdConfig(kBf16 ? DType::BF16 : DType::F16, D, Dv, 0, 0);
  constexpr int kBlockN = (D > Dv ? D : Dv) > 128 ? 64 : 128;  // defaultSm90FwdConfig's choice, checked below
  using Tr = fjk::Sm90FwdTraits<kBf16, D, Dv, kBlockN, 2, 2>;
  if (c.blockN != kBlockN) std::printf("FAIL  sm90 registry: blockN %d != default %d\n", kBlockN, c.blockN);
  registry().push_back({Var::kName, c, (const void*)&fwd_kernel_sm90<Tr, Var>, Tr::kSmemBytes});
}
/// An sm90 alternative the benchmark compares with the default (a deeper ring).
template <class Var, bool kBf16, int D, int Dv, int BN, int kStages>
static void add_kernel_sm90_alt() {
  FwdKernelConfig c = flexjit::defaultSm90FwdConfig(kBf16 ? DType::BF16 : DType::F16, D, Dv, 0, 0);
  c.blockN = c.subN = BN, c.stages = kStages;
  using Tr = fjk::Sm90FwdTraits<kBf16, D, Dv, BN, kStages, 2>;
  registry().push_back({Var::kName, c, (const void*)&fwd_kernel_sm90<Tr, Var>, Tr::kSmemBytes});
}
#define FJ_SM90(V, BF)                 \
  add_kernel_sm90<V, BF, 64, 64>();    \
  add_kernel_sm90<V, BF, 128, 128>();
static void register_sm90_kernels() {
  FJ_SM90(VarNoop, true) FJ_SM90(VarNoop, false) FJ_SM90(VarCausal, true) FJ_SM90(VarCausal, false)
  FJ_SM90(VarSliding, true) FJ_SM90(VarSliding, false) FJ_SM90(VarSoftcap, true) FJ_SM90(VarSoftcap, false)
  FJ_SM90(VarDocument, true) FJ_SM90(VarDocument, false) FJ_SM90(VarAlibi, true) FJ_SM90(VarAlibi, false)
  FJ_SM90(VarKillRows, true) FJ_SM90(VarKillRows, false) FJ_SM90(VarNanRows, true) FJ_SM90(VarNanRows, false)
  add_kernel_sm90<VarNoop, true, 256, 256>();
  add_kernel_sm90<VarCausal, true, 256, 256>();
  add_kernel_sm90<VarKillRows, true, 256, 256>();
  add_kernel_sm90<VarCausal, false, 256, 256>();
  add_kernel_sm90<VarCausal, true, 128, 64>();  // Dv != D
  add_kernel_sm90<VarCausal, true, 64, 128>();
  add_kernel_sm90_alt<VarNoop, true, 128, 128, 128, 3>();
  add_kernel_sm90_alt<VarCausal, true, 128, 128, 128, 3>();
  add_kernel_sm90_alt<VarNoop, false, 64, 64, 128, 3>();
  add_kernel_sm90_alt<VarCausal, false, 64, 64, 128, 3>();
}
// Defaults of defaultFwdConfig for sm_90 (checked at run time) and the alternatives the benchmark compares.
#define FJ_DEFAULTS(V, BF)                               \
  add_kernel<V, BF, 64, 64, 128, 128, 4, true, 64>();   \
  add_kernel<V, BF, 128, 128, 128, 64, 4, false, 32>();
#define FJ_SMALL_BIG(V, BF)                                \
  add_kernel<V, BF, 32, 32, 128, 128, 4, false, 128>();   \
  add_kernel<V, BF, 96, 96, 128, 64, 4, false, 32>();     \
  add_kernel<V, BF, 256, 256, 64, 32, 4, false, 32>();
static void register_kernels() {
  register_sm90_kernels();
#ifndef FJ_SELFTEST_SM90_ONLY
  FJ_DEFAULTS(VarNoop, true) FJ_DEFAULTS(VarNoop, false) FJ_DEFAULTS(VarCausal, true) FJ_DEFAULTS(VarCausal, false)
  FJ_DEFAULTS(VarSliding, true) FJ_DEFAULTS(VarSliding, false) FJ_DEFAULTS(VarSoftcap, true)
  FJ_DEFAULTS(VarSoftcap, false) FJ_DEFAULTS(VarDocument, true) FJ_DEFAULTS(VarDocument, false)
  FJ_DEFAULTS(VarAlibi, true) FJ_DEFAULTS(VarAlibi, false) FJ_DEFAULTS(VarKillRows, true)
  FJ_DEFAULTS(VarKillRows, false)
  FJ_SMALL_BIG(VarNoop, true) FJ_SMALL_BIG(VarCausal, true) FJ_SMALL_BIG(VarKillRows, true)
  FJ_SMALL_BIG(VarCausal, false)
  add_kernel<VarCausal, true, 128, 64, 128, 64, 4, true, 32>();  // Dv != D
  // Benchmark alternatives: one S tile per loaded tile (32 and FlashAttention-2's 64 for D128; 64 and
  // 128 for D64), and D64 with Q in shared memory.
#define FJ_BENCH_ALT(...)                     \
  add_kernel<VarNoop, __VA_ARGS__>();         \
  add_kernel<VarCausal, __VA_ARGS__>();
  FJ_BENCH_ALT(true, 128, 128, 128, 32, 4, false, 32)
  FJ_BENCH_ALT(true, 128, 128, 128, 64, 4, false, 64)
  FJ_BENCH_ALT(false, 64, 64, 128, 64, 4, true, 64)
  FJ_BENCH_ALT(false, 64, 64, 128, 128, 4, false, 128)
  FJ_BENCH_ALT(false, 64, 64, 128, 128, 4, false, 64)
  FJ_DEFAULTS(VarNanRows, true) FJ_DEFAULTS(VarNanRows, false)
#endif
}
static const KernelEntry* find_kernel(const std::string& var, const FwdKernelConfig& want) {
  for (const KernelEntry& e : registry()) {
    FwdKernelConfig c = e.cfg;
    c.archMajor = want.archMajor, c.archMinor = want.archMinor;
    if (e.variant == var && c == want) return &e;
  }
  return nullptr;
}

// ---- host helpers ----
static float round_to(bool bf16, float x) {
  return bf16 ? __bfloat162float(__float2bfloat16_rn(x)) : __half2float(__float2half_rn(x));
}
static unsigned short bits_of(bool bf16, float x) {
  if (bf16) {
    __nv_bfloat16 v = __float2bfloat16_rn(x);
    unsigned short u;
    std::memcpy(&u, &v, 2);
    return u;
  }
  __half v = __float2half_rn(x);
  unsigned short u;
  std::memcpy(&u, &v, 2);
  return u;
}
static float from_bits(bool bf16, unsigned short u) {
  if (bf16) return fj::bf16ToFloat(u);
  return fj::halfToFloat(u);
}
struct Rng {
  unsigned long long s;
  unsigned long long next() {
    s += 0x9e3779b97f4a7c15ull;
    unsigned long long z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
};
static void parallel_for(int n, const std::function<void(int)>& f) {
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) f(i);
    });
  for (auto& t : pool) t.join();
}
template <class T>
struct DevBuf {
  T* p = nullptr;
  explicit DevBuf(size_t n) { CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
  DevBuf(const DevBuf&) = delete;
  ~DevBuf() { cudaFree(p); }
  void upload(const std::vector<T>& v) { CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  void download(std::vector<T>& v) { CK(cudaMemcpy(v.data(), p, v.size() * sizeof(T), cudaMemcpyDeviceToHost)); }
};

// ---- BlockMask built on the host by evaluating mask_mod element-wise (torch's create_block_mask) ----
struct HostBlockMask {
  int bm = 1, hm = 1, nqb = 0, nkvb = 0;
  std::vector<int> num, idx, fnum, fidx;
  long long computed = 0;  // partial + full blocks over all (b, h, q block)
};
template <class Var>
static HostBlockMask build_block_mask(int bm, int hm, int lq, int lkv, int mbq, int mbkv, const fj::CaptureArgs& cap,
                                      bool no_full_list) {
  HostBlockMask m;
  m.bm = bm, m.hm = hm, m.nqb = (lq + mbq - 1) / mbq, m.nkvb = (lkv + mbkv - 1) / mbkv;
  const int rows = bm * hm * m.nqb;
  m.num.assign(rows, 0), m.fnum.assign(rows, 0);
  m.idx.assign((size_t)rows * m.nkvb, 0), m.fidx.assign((size_t)rows * m.nkvb, 0);
  parallel_for(rows, [&](int r) {
    const int qb = r % m.nqb, h = (r / m.nqb) % hm, b = r / (m.nqb * hm);
    for (int kb = 0; kb < m.nkvb; ++kb) {
      bool any = false, all = true;
      // Only positions inside the sequences count: the kernel bounds kv < Lkv itself and never writes
      // rows >= Lq, so a block is full when every in-range position is kept.
      for (int q = qb * mbq; q < std::min(lq, (qb + 1) * mbq) && (all || !any); ++q)
        for (int kv = kb * mbkv; kv < std::min(lkv, (kb + 1) * mbkv); ++kv) {
          const bool keep = Var::mask_mod(b, h, q, kv, cap);
          any |= keep, all &= keep;
        }
      if (!any) continue;
      if (all && !no_full_list) m.fidx[(size_t)r * m.nkvb + m.fnum[r]++] = kb;
      else m.idx[(size_t)r * m.nkvb + m.num[r]++] = kb;
    }
  });
  for (int r = 0; r < rows; ++r) m.computed += m.num[r] + m.fnum[r];
  return m;
}
struct DevBlockMask {
  DevBuf<int> num, idx, fnum, fidx;
  explicit DevBlockMask(const HostBlockMask& m)
      : num(m.num.size()), idx(m.idx.size()), fnum(m.fnum.size()), fidx(m.fidx.size()) {
    num.upload(m.num), idx.upload(m.idx), fnum.upload(m.fnum), fidx.upload(m.fidx);
  }
  void fill(fjk::FwdParams& p, const HostBlockMask& m, bool no_full_list) const {
    auto list = [&](fjk::BlockList& l, const int* n, const int* ix) {
      l.num_blocks = n, l.indices = ix;
      // A mask built for B = 1 / H = 1 broadcasts through zero strides, as torch allows.
      l.num_stride_q = 1, l.num_stride_h = m.hm == 1 ? 0 : m.nqb, l.num_stride_b = m.bm == 1 ? 0 : (long long)m.hm * m.nqb;
      l.idx_stride_kv = 1, l.idx_stride_q = m.nkvb, l.idx_stride_h = m.hm == 1 ? 0 : (long long)m.nqb * m.nkvb;
      l.idx_stride_b = m.bm == 1 ? 0 : (long long)m.hm * m.nqb * m.nkvb;
    };
    list(p.partial, num.p, idx.p);
    if (no_full_list) std::memset(&p.full, 0, sizeof p.full);
    else list(p.full, fnum.p, fidx.p);
  }
};

// ---- captured tensors of the variants (host copy for the reference, device copy for the kernel) ----
struct Captures {
  fj::CaptureArgs host{}, dev{};
  std::vector<int> docs;
  std::vector<float> slopes;
  std::unique_ptr<DevBuf<int>> ddocs;
  std::unique_ptr<DevBuf<float>> dslopes;
  Captures(const std::string& var, int B, int Hq, int L, bool bench, Rng& rng) {
    if (var == "sliding") host.i[0] = bench ? 1024 : 100;
    if (var == "softcap") host.f[0] = bench ? 30.0f : 10.0f;
    if (var == "document") {
      docs.resize((size_t)B * L);
      for (int b = 0; b < B; ++b)
        for (int i = 0, d = 0, left = 0; i < L; ++i, --left) {
          if (left <= 0) left = 50 + (int)(rng.next() % 350), ++d;
          docs[(size_t)b * L + i] = d;
        }
      ddocs.reset(new DevBuf<int>(docs.size()));
      ddocs->upload(docs);
      host.tensor[0].data = docs.data();
      host.tensor[0].size[0] = B, host.tensor[0].size[1] = L;
      host.tensor[0].stride[0] = L, host.tensor[0].stride[1] = 1;
    }
    if (var == "alibi") {
      for (int h = 0; h < Hq; ++h) slopes.push_back(std::exp2(-8.0f * (h + 1) / Hq));
      dslopes.reset(new DevBuf<float>(slopes.size()));
      dslopes->upload(slopes);
      host.tensor[0].data = slopes.data();
      host.tensor[0].size[0] = Hq, host.tensor[0].stride[0] = 1;
    }
    dev = host;
    if (ddocs) dev.tensor[0].data = ddocs->p;
    if (dslopes) dev.tensor[0].data = dslopes->p;
  }
};

// ---- one correctness case ----
struct Case {
  std::string var;
  bool bf16;
  int D, Dv, B, Hq, Hkv, Lq, Lkv;
  int mbq = 128, mbkv = 128;
  bool bshd = false;            // [B, L, H, D] memory (strided heads) instead of [B, H, L, D]
  bool broadcast_mask = false;  // B = H = 1 BlockMask with zero strides
  bool no_full_list = false;    // full_* pointers null, every block partial
  float q_amp = 1.5f;
  double atol = 1e-3;
  int sched_heads = 0;  // 0: fwdLaunch's choice; -1: left unset (0) in FwdParams; else an override
};
using Launcher = std::function<void(const fjk::FwdParams&, const flexjit::FwdLaunch&)>;

static long long offset_of(bool bshd, int b, int h, int l, int H, int L, int D) {
  return bshd ? (((long long)b * L + l) * H + h) * D : (((long long)b * H + h) * L + l) * D;
}
static fjk::BhlStrides strides_of(bool bshd, int H, int L, int D) {
  return bshd ? fjk::BhlStrides{(long long)L * H * D, D, (long long)H * D}
              : fjk::BhlStrides{(long long)H * L * D, (long long)L * D, D};
}

template <class Var>
static bool run_case(const Case& c, const FwdKernelConfig& cfg, const Launcher& launch, std::string& detail) {
  Rng rng{(unsigned long long)(c.Lq * 7919 + c.Lkv * 104729 + c.D * 31 + c.bf16)};
  const int B = c.B, Hq = c.Hq, Hkv = c.Hkv, D = c.D, Dv = c.Dv, Lq = c.Lq, Lkv = c.Lkv;
  Captures cap(c.var, B, Hq, std::max(Lq, Lkv), false, rng);
  // Inputs rounded to the dtype; the reference reads the same rounded values.
  auto make = [&](int H, int L, int Dd, float amp, std::vector<unsigned short>& bits, std::vector<float>& vals) {
    bits.assign((size_t)B * H * L * Dd, 0), vals.assign(bits.size(), 0.0f);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int l = 0; l < L; ++l)
          for (int d = 0; d < Dd; ++d) {
            const float x = round_to(c.bf16, amp * rng.uniform());
            bits[offset_of(c.bshd, b, h, l, H, L, Dd) + d] = bits_of(c.bf16, x);
            vals[(((size_t)b * H + h) * L + l) * Dd + d] = x;
          }
  };
  std::vector<unsigned short> qb, kb, vb;
  std::vector<float> qv, kv, vv;
  make(Hq, Lq, D, c.q_amp, qb, qv), make(Hkv, Lkv, D, 1.0f, kb, kv), make(Hkv, Lkv, Dv, 1.0f, vb, vv);
  const float scale = 1.0f / std::sqrt((float)D);

  const int mbB = c.broadcast_mask ? 1 : B, mbH = c.broadcast_mask ? 1 : Hq;
  HostBlockMask hm = build_block_mask<Var>(mbB, mbH, Lq, Lkv, c.mbq, c.mbkv, cap.host, c.no_full_list);
  DevBlockMask dm(hm);
  constexpr int kGuard = 64;  // poisoned elements after O and LSE that must stay untouched
  DevBuf<unsigned short> dq(qb.size()), dk(kb.size()), dv(vb.size()), dout((size_t)B * Hq * Lq * Dv + kGuard);
  DevBuf<float> dlse((size_t)B * Hq * Lq + kGuard);
  dq.upload(qb), dk.upload(kb), dv.upload(vb);
  CK(cudaMemset(dout.p, 0xff, ((size_t)B * Hq * Lq * Dv + kGuard) * 2));  // 0xffff: NaN in fp16 and bf16
  CK(cudaMemset(dlse.p, 0xff, ((size_t)B * Hq * Lq + kGuard) * 4));       // NaN

  fjk::FwdParams p{};
  p.q = dq.p, p.k = dk.p, p.v = dv.p, p.o = dout.p, p.lse = dlse.p;
  p.q_stride = strides_of(c.bshd, Hq, Lq, D), p.k_stride = strides_of(c.bshd, Hkv, Lkv, D);
  p.v_stride = strides_of(c.bshd, Hkv, Lkv, Dv), p.o_stride = strides_of(c.bshd, Hq, Lq, Dv);
  p.lse_stride = {(long long)Hq * Lq, Lq, 1};
  p.batch = B, p.heads_q = Hq, p.heads_kv = Hkv, p.q_per_kv = Hq / Hkv, p.len_q = Lq, p.len_kv = Lkv;
  p.scale = scale, p.mask_block_q = c.mbq, p.mask_block_kv = c.mbkv, p.cap = cap.dev;
  dm.fill(p, hm, c.no_full_list);
  const flexjit::FwdLaunch geometry = flexjit::fwdLaunch(cfg, B, Hq, Lq);
  p.sched_heads = c.sched_heads > 0 ? c.sched_heads : (c.sched_heads < 0 ? 0 : geometry.scheduleHeads);
  launch(p, geometry);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<unsigned short> ob((size_t)B * Hq * Lq * Dv + kGuard);
  std::vector<float> lse((size_t)B * Hq * Lq + kGuard);
  dout.download(ob), dlse.download(lse);

  // float64 reference, plus a low-precision one (P and O rounded to the dtype) that sets the tolerance.
  const int rows = B * Hq * Lq;
  std::vector<double> err(rows), err_lp(rows), err_lse(rows);
  std::vector<char> bad(rows, 0);
  parallel_for(rows, [&](int r) {
    const int i = r % Lq, h = (r / Lq) % Hq, b = r / (Lq * Hq), hk = h / (Hq / Hkv);
    const float* q = &qv[(((size_t)b * Hq + h) * Lq + i) * D];
    std::vector<double> s(Lkv), o(Dv, 0.0), olp(Dv, 0.0);
    double m = -INFINITY;
    for (int j = 0; j < Lkv; ++j) {
      const float* k = &kv[(((size_t)b * Hkv + hk) * Lkv + j) * D];
      double dot = 0;
      for (int d = 0; d < D; ++d) dot += (double)q[d] * k[d];
      float x = (float)(dot * scale);
      if (!Var::kScoreModIsNoop) x = Var::score_mod(x, b, h, i, j, cap.host);
      s[j] = Var::mask_mod(b, h, i, j, cap.host) ? (double)x : -INFINITY;
      if (std::isnan(s[j])) m = NAN;
      if (!std::isnan(m)) m = std::max(m, s[j]);
    }
    if (std::isnan(m)) {  // a NaN score: every output of the row and its LSE must be NaN
      for (int d = 0; d < Dv; ++d)
        if (!std::isnan(from_bits(c.bf16, ob[offset_of(c.bshd, b, h, i, Hq, Lq, Dv) + d]))) bad[r] = 1;
      if (!std::isnan(lse[(size_t)r])) bad[r] = 1;
      err[r] = err_lp[r] = err_lse[r] = 0;
      return;
    }
    double l = 0, lse_ref = -INFINITY;
    if (m != -INFINITY) {
      for (int j = 0; j < Lkv; ++j) l += (s[j] = std::exp(s[j] - m));
      for (int j = 0; j < Lkv; ++j) {
        const float* v = &vv[(((size_t)b * Hkv + hk) * Lkv + j) * Dv];
        const double pj = s[j] / l, pj_lp = round_to(c.bf16, (float)pj);
        for (int d = 0; d < Dv; ++d) o[d] += pj * v[d], olp[d] += pj_lp * v[d];
      }
      lse_ref = m + std::log(l);
    }
    double e = 0, elp = 0;
    for (int d = 0; d < Dv; ++d) {
      const float got = from_bits(c.bf16, ob[offset_of(c.bshd, b, h, i, Hq, Lq, Dv) + d]);
      if (std::isnan(got)) bad[r] = 1;  // unwritten (poison) or NaN: never passes
      e = std::max(e, std::fabs(got - o[d]));
      elp = std::max(elp, std::fabs(round_to(c.bf16, (float)olp[d]) - o[d]));
    }
    const float lg = lse[(size_t)r];
    if (std::isnan(lg) || (std::isinf(lse_ref) != std::isinf(lg)) || (std::isinf(lse_ref) && lg != lse_ref)) bad[r] = 1;
    err_lse[r] = std::isinf(lse_ref) ? 0.0 : std::fabs(lg - lse_ref) / std::max(1.0, std::fabs(lse_ref));
    err[r] = e, err_lp[r] = elp;
  });
  bool guard_ok = true;
  for (int g = 0; g < kGuard; ++g) guard_ok &= ob[(size_t)B * Hq * Lq * Dv + g] == 0xffff;
  for (int g = 0; g < kGuard; ++g) guard_ok &= std::isnan(lse[(size_t)rows + g]);
  const double emax = *std::max_element(err.begin(), err.end());
  const double elp = *std::max_element(err_lp.begin(), err_lp.end());
  const double else_ = *std::max_element(err_lse.begin(), err_lse.end());
  const long long nbad = std::count(bad.begin(), bad.end(), 1);
  const bool ok = nbad == 0 && guard_ok && emax <= 2 * elp + c.atol && else_ <= 1e-3;
  char buf[256];
  std::snprintf(buf, sizeof buf, "maxerr %.2e (lowp %.2e) lse %.1e nan/unwritten rows %lld guard %s blocks %lld",
                emax, elp, else_, nbad, guard_ok ? "ok" : "OVERWRITTEN", hm.computed);
  detail = buf;
  return ok;
}

static flexjit::TensorMapEncodeTiledFn tensor_map_encoder() {
  static flexjit::TensorMapEncodeTiledFn fn = [] {
    void* cu = dlopen("libcuda.so.1", RTLD_NOW);
    return cu ? (flexjit::TensorMapEncodeTiledFn)dlsym(cu, "cuTensorMapEncodeTiled") : nullptr;
  }();
  return fn;
}
static Launcher registry_launcher(const KernelEntry& e) {
  CK(cudaFuncSetAttribute(e.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, e.smem));
  if (e.cfg.family == flexjit::KernelFamily::Sm90) {
    return [fn = e.fn, smem = e.smem, cfg = e.cfg](const fjk::FwdParams& p, const flexjit::FwdLaunch& l) {
      if (l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0) return;
      fjk::Sm90FwdParams P{};
      P.p = p;
      const CUresult r = tensor_map_encoder() ? flexjit::encodeSm90FwdMaps(tensor_map_encoder(), P, cfg)
                                              : CUDA_ERROR_NOT_FOUND;
      if (r != CUDA_SUCCESS) {
        std::printf("cuTensorMapEncodeTiled failed: %d\n", (int)r);
        return;
      }
      void* args[] = {&P};
      CK(cudaLaunchKernel(fn, dim3(l.grid[0], l.grid[1], l.grid[2]), dim3(l.block[0]), args, smem, 0));
    };
  }
  return [fn = e.fn, smem = e.smem](const fjk::FwdParams& p, const flexjit::FwdLaunch& l) {
    if (l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0) return;
    void* args[] = {const_cast<fjk::FwdParams*>(&p)};
    CK(cudaLaunchKernel(fn, dim3(l.grid[0], l.grid[1], l.grid[2]), dim3(l.block[0]), args, smem, 0));
  };
}

static int g_pass = 0, g_fail = 0;
static bool g_profile = false;
static bool g_normal = false;  // --normal: N(0, 1) inputs (as torch.randn) instead of uniform [-1, 1)
static void report(bool ok, const std::string& what, const std::string& detail) {
  (ok ? g_pass : g_fail)++;
  std::printf("%s  %s  %s\n", ok ? "PASS" : "FAIL", what.c_str(), detail.c_str());
  std::fflush(stdout);
}
static std::string describe(const Case& c, const FwdKernelConfig& cfg) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %-8s %s D%d/%d B%d H%d/%d Lq%d Lkv%d mb%dx%d%s%s%s tile %dx%d/%dw%d%s",
                flexjit::familyName(cfg.family), c.var.c_str(), c.bf16 ? "bf16" : "fp16", c.D, c.Dv, c.B, c.Hq, c.Hkv, c.Lq, c.Lkv, c.mbq, c.mbkv,
                c.bshd ? " bshd" : "", c.broadcast_mask ? " bcast" : "", c.no_full_list ? " nofull" : "", cfg.blockM,
                cfg.blockN, cfg.subN, cfg.numWarps, cfg.qInRegs ? "q" : "");
  return buf;
}
/// Which families --family selected (both by default; sm90 only on an sm_90 GPU).
static bool g_sm80 = true, g_sm90 = true;
static bool family_enabled(flexjit::KernelFamily f, int major, int minor) {
#ifdef FJ_SELFTEST_SM90_ONLY
  if (f == flexjit::KernelFamily::Sm80) return false;
#endif
  if (f == flexjit::KernelFamily::Sm90) return g_sm90 && major == 9 && minor == 0;
  return g_sm80;
}
/// The default configuration of a family for a case; false when the family cannot run it (sm90: head dims
/// other than 64 / 128 / 256, or BlockMask blocks that are not multiples of its 128 x 128 tiles).
static bool family_config(flexjit::KernelFamily f, const Case& c, int major, int minor, FwdKernelConfig& cfg) {
  const DType dt = c.bf16 ? DType::BF16 : DType::F16;
  if (f == flexjit::KernelFamily::Sm80) {
    cfg = flexjit::defaultFwdConfig(dt, c.D, c.Dv, major, minor, c.mbq, c.mbkv);
    return true;
  }
  cfg = flexjit::defaultSm90FwdConfig(dt, c.D, c.Dv, major, minor);
  return flexjit::checkFwdConfig(cfg).ok() && flexjit::checkFwdMaskBlocks(cfg, c.mbq, c.mbkv).ok();
}
template <class Var>
static void check_case(const Case& c, int major, int minor) {
  for (flexjit::KernelFamily f : {flexjit::KernelFamily::Sm80, flexjit::KernelFamily::Sm90}) {
    FwdKernelConfig cfg;
    if (!family_enabled(f, major, minor) || !family_config(f, c, major, minor, cfg)) continue;
    const KernelEntry* e = find_kernel(c.var, cfg);
    if (!e) {
      report(false, describe(c, cfg), "no instantiation of the default config in this harness");
      continue;
    }
    std::string detail;
    const bool ok = run_case<Var>(c, cfg, registry_launcher(*e), detail);
    report(ok, describe(c, cfg), detail);
  }
}
template <class F>
static void with_variant(const std::string& v, F&& f) {
  if (v == "noop") f(VarNoop{});
  else if (v == "causal") f(VarCausal{});
  else if (v == "sliding") f(VarSliding{});
  else if (v == "softcap") f(VarSoftcap{});
  else if (v == "document") f(VarDocument{});
  else if (v == "alibi") f(VarAlibi{});
  else if (v == "killrows") f(VarKillRows{});
  else if (v == "nanrows") f(VarNanRows{});
}

static void correctness(int major, int minor) {
  const int sizes[][2] = {{1, 1}, {17, 17}, {127, 129}, {129, 127}, {1000, 1000}, {17, 1000}, {1000, 17}};
  const char* vars[] = {"noop", "causal", "sliding", "softcap", "document", "alibi", "killrows", "nanrows"};
  int n = 0;
  for (const char* v : vars)
    for (int d : {64, 128})
      for (bool bf16 : {true, false})
        for (auto& s : sizes) {
          Case c{v, bf16, d, d, 2, 4, (n % 3 == 0) ? 1 : (n % 3 == 1 ? 2 : 4), s[0], s[1]};
          c.bshd = n % 5 == 1;
          c.broadcast_mask = n % 3 == 2 && std::string(v) != "document";
          c.no_full_list = n % 7 == 3;
          if (n % 4 == 3) c.mbq = 256;
          if (n % 6 == 5) c.mbkv = 256;
          if (std::string(v) == "softcap") c.q_amp = 4.0f, c.atol = 3e-3;
          if (n % 4 == 1) c.sched_heads = 3;  // groups of 3, 3 and 2 (batch, head) pairs
          if (n % 4 == 2) c.sched_heads = 1;
          if (n % 8 == 3) c.sched_heads = -1;
          ++n;
          with_variant(v, [&](auto var) { check_case<decltype(var)>(c, major, minor); });
        }
  const int few[][2] = {{17, 17}, {129, 127}, {1000, 1000}, {1, 1000}};
  for (int d : {32, 96, 256})
    for (const char* v : {"noop", "causal", "killrows", "causal16"})
      for (auto& s : few) {
        const bool fp16 = std::string(v) == "causal16";
        Case c{fp16 ? "causal" : v, !fp16, d, d, 2, 4, 2, s[0], s[1]};
        c.bshd = (n++ % 2) == 1;
        with_variant(c.var, [&](auto var) { check_case<decltype(var)>(c, major, minor); });
      }
  for (auto& s : {std::make_pair(127, 129), std::make_pair(1000, 1000)}) {
    Case c{"causal", true, 128, 64, 2, 4, 2, s.first, s.second};
    check_case<VarCausal>(c, major, minor);
    Case wide{"causal", true, 64, 128, 2, 4, 2, s.first, s.second};
    check_case<VarCausal>(wide, major, minor);
  }
  // The benchmark's alternative tilings compute the same function.
  for (const KernelEntry& e : registry()) {
    FwdKernelConfig cfg = e.cfg;
    cfg.archMajor = major, cfg.archMinor = minor;
    const bool bf16 = cfg.dtype == DType::BF16;
    if (!family_enabled(cfg.family, major, minor)) continue;
    if (cfg == flexjit::defaultFwdConfig(cfg.dtype, cfg.headDim, cfg.headDimV, major, minor)) continue;
    if (cfg == flexjit::defaultSm90FwdConfig(cfg.dtype, cfg.headDim, cfg.headDimV, major, minor)) continue;
    for (auto& s : {std::make_pair(127, 129), std::make_pair(1000, 1000)}) {
      Case c{e.variant, bf16, cfg.headDim, cfg.headDimV, 2, 4, 2, s.first, s.second};
      with_variant(e.variant, [&](auto var) {
        std::string detail;
        const bool ok = run_case<decltype(var)>(c, cfg, registry_launcher(e), detail);
        report(ok, describe(c, cfg), detail);
      });
    }
  }
}

// ---- host-only checks of AttentionConfig ----
static void config_checks(int major, int minor) {
  bool ok = true;
  std::string why;
  for (const KernelEntry& e : registry()) {
    if (flexjit::fwdSharedMemoryBytes(e.cfg) != e.smem) ok = false, why = "smem formula differs for " + e.variant;
  }
  report(ok, "config: host shared-memory formula == FwdTraits::kSmemBytes for every instantiation", why);
  size_t static_smem = 0;
  for (const KernelEntry& e : registry()) {
    cudaFuncAttributes attr;
    CK(cudaFuncGetAttributes(&attr, e.fn));
    static_smem = std::max(static_smem, attr.sharedSizeBytes);
  }
  report(static_smem <= (size_t)flexjit::kFwdStaticSmemBytes,
         "config: static shared memory within the kFwdStaticSmemBytes AttentionConfig reserves",
         std::to_string(static_smem) + " bytes");
  FwdKernelConfig d128 = flexjit::defaultFwdConfig(DType::BF16, 128, 128, major, minor);
  report(flexjit::fwdInstantiationSource(d128) == flexjit::fwdInstantiationSource(d128) &&
             flexjit::checkFwdConfig(d128).ok() && flexjit::checkFwdMaskBlocks(d128, 128, 128).ok(),
         "config: default D128 valid, instantiation deterministic", "");
  const flexjit::FwdConfigCheck bad = flexjit::checkFwdMaskBlocks(d128, 64, 128);
  report(bad.status == flexjit::FwdConfigStatus::BadMaskBlock && d128.blockM == 128,
         "config: BlockMask 64x128 rejected for a 128-row tile", bad.message);
  FwdKernelConfig m64 = flexjit::defaultFwdConfig(DType::BF16, 128, 128, major, minor, 64, 64);
  report(m64.blockM == 64 && flexjit::checkFwdMaskBlocks(m64, 64, 64).ok(), "config: tiles shrink to a 64x64 BlockMask",
         "");
  report(flexjit::checkFwdConfig(flexjit::defaultFwdConfig(DType::F32, 128, 128, major, minor)).status ==
                 flexjit::FwdConfigStatus::UnsupportedDType &&
             flexjit::checkFwdConfig(flexjit::defaultFwdConfig(DType::BF16, 72, 72, major, minor)).status ==
                 flexjit::FwdConfigStatus::UnsupportedHeadDim,
         "config: float32 and D=72 rejected with a message", "");
  for (int d : {32, 64, 96, 128, 256})
    for (int arch : {80, 86, 90}) {
      const FwdKernelConfig c = flexjit::defaultFwdConfig(DType::BF16, d, d, arch / 10, arch % 10);
      const flexjit::FwdConfigCheck ck = flexjit::checkFwdConfig(c);
      report(ck.ok(), "config: default D" + std::to_string(d) + " sm_" + std::to_string(arch) + " tile " +
                          std::to_string(c.blockM) + "x" + std::to_string(c.blockN) + " smem " +
                          std::to_string(flexjit::fwdSharedMemoryBytes(c)),
             ck.message);
    }
}

// ---- NVRTC: the production path (generated prelude + templates + instantiation) ----
struct RtApi {
  nvrtcResult (*create)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*);
  nvrtcResult (*compile)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*logSize)(nvrtcProgram, size_t*);
  nvrtcResult (*log)(nvrtcProgram, char*);
  nvrtcResult (*cubinSize)(nvrtcProgram, size_t*);
  nvrtcResult (*cubin)(nvrtcProgram, char*);
  CUresult (*load)(CUmodule*, const void*);
  CUresult (*getFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*setAttribute)(CUfunction, CUfunction_attribute, int);
  CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                     void**, void**);
  bool ok = false;
};
static RtApi load_rt_api() {
  RtApi a;
  void* rt = nullptr;
  for (const char* n : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so"})
    if (!rt) rt = dlopen(n, RTLD_NOW);
  void* cu = dlopen("libcuda.so.1", RTLD_NOW);
  if (!rt || !cu) return a;
  a.create = (decltype(a.create))dlsym(rt, "nvrtcCreateProgram");
  a.compile = (decltype(a.compile))dlsym(rt, "nvrtcCompileProgram");
  a.logSize = (decltype(a.logSize))dlsym(rt, "nvrtcGetProgramLogSize");
  a.log = (decltype(a.log))dlsym(rt, "nvrtcGetProgramLog");
  a.cubinSize = (decltype(a.cubinSize))dlsym(rt, "nvrtcGetCUBINSize");
  a.cubin = (decltype(a.cubin))dlsym(rt, "nvrtcGetCUBIN");
  a.load = (decltype(a.load))dlsym(cu, "cuModuleLoadData");
  a.getFunction = (decltype(a.getFunction))dlsym(cu, "cuModuleGetFunction");
  a.setAttribute = (decltype(a.setAttribute))dlsym(cu, "cuFuncSetAttribute");
  a.launch = (decltype(a.launch))dlsym(cu, "cuLaunchKernel");
  a.ok = a.create && a.compile && a.logSize && a.log && a.cubinSize && a.cubin && a.load && a.getFunction &&
         a.setAttribute && a.launch;
  return a;
}
static std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
/// Pastes every #include "path" (repository-root path) once and drops #pragma once, like codegen's
/// expandIncludes, so the NVRTC program is one self-contained text.
static void expand_includes(const std::string& text, std::vector<std::string>& seen, std::string& out) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t");
    const std::string t = first == std::string::npos ? "" : line.substr(first);
    if (t.rfind("#pragma once", 0) == 0) continue;
    if (t.rfind("#include \"", 0) == 0) {
      const size_t a = t.find('"') + 1, b = t.find('"', a);
      const std::string path = t.substr(a, b - a);
      if (std::find(seen.begin(), seen.end(), path) == seen.end()) {
        seen.push_back(path);
        expand_includes(read_file(path), seen, out);
      }
      continue;
    }
    out += line + "\n";
  }
}
// A prelude as codegen/Variant.cpp emits it (its hooks are FJ_HD); the generated golden files in
// tests/golden/ are used when present.
static const char* kCausalPrelude = R"(namespace fjv {
constexpr bool kScoreModIsNoop = true;
constexpr bool kMaskModIsNoop = false;
FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  return score;
}
FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  return q_idx >= kv_idx;
}
struct Hooks {  // the adapter codegen/Variant.cpp emits
  static constexpr bool kScoreModIsNoop = fjv::kScoreModIsNoop;
  static constexpr bool kMaskModIsNoop = fjv::kMaskModIsNoop;
  static FJ_HD float score_mod(float s, int b, int h, int q, int kv, const fj::CaptureArgs& c) { return fjv::score_mod(s, b, h, q, kv, c); }
  static FJ_HD bool mask_mod(int b, int h, int q, int kv, const fj::CaptureArgs& c) { return fjv::mask_mod(b, h, q, kv, c); }
};
}  // namespace fjv
)";
static const char* kAlibiPrelude = R"(namespace fjv {
constexpr bool kScoreModIsNoop = false;
constexpr bool kMaskModIsNoop = false;
FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const int ih[1] = {h};
  return score + fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::elementOffset(cap.tensor[0], 1, ih)) * (float)(kv_idx - q_idx);
}
FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  return q_idx >= kv_idx;
}
struct Hooks {  // the adapter codegen/Variant.cpp emits
  static constexpr bool kScoreModIsNoop = fjv::kScoreModIsNoop;
  static constexpr bool kMaskModIsNoop = fjv::kMaskModIsNoop;
  static FJ_HD float score_mod(float s, int b, int h, int q, int kv, const fj::CaptureArgs& c) { return fjv::score_mod(s, b, h, q, kv, c); }
  static FJ_HD bool mask_mod(int b, int h, int q, int kv, const fj::CaptureArgs& c) { return fjv::mask_mod(b, h, q, kv, c); }
};
}  // namespace fjv
)";
template <class Var>
static void nvrtc_check(const RtApi& api, const char* prelude, Case c, int major, int minor) {
  const FwdKernelConfig cfg =
      flexjit::defaultFwdConfig(c.bf16 ? DType::BF16 : DType::F16, c.D, c.Dv, major, minor, c.mbq, c.mbkv);
  std::vector<std::string> seen;
  std::string src;
  expand_includes(std::string("#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n") + prelude +
                      "#include \"" + flexjit::fwdKernelTemplate(cfg.family) + "\"\n",
                  seen, src);
  src += flexjit::fwdInstantiationSource(cfg);
  const std::string what = "nvrtc   " + describe(c, cfg);
  nvrtcProgram prog;
  api.create(&prog, src.c_str(), "flexjit_attention_fwd.cu", 0, nullptr, nullptr);
  const std::string arch = "--gpu-architecture=sm_" + std::to_string(major * 10 + minor) + (major == 9 ? "a" : "");
  const char* opts[] = {arch.c_str(), "-std=c++17"};
  const auto t0 = std::chrono::steady_clock::now();
  const nvrtcResult r = api.compile(prog, 2, opts);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t n = 0;
  api.logSize(prog, &n);
  std::string log(n, '\0');
  api.log(prog, log.data());
  if (r != NVRTC_SUCCESS) return report(false, what, "compile failed:\n" + log);
  api.cubinSize(prog, &n);
  std::vector<char> cubin(n);
  api.cubin(prog, cubin.data());
  CUmodule mod;
  CUfunction fn;
  if (api.load(&mod, cubin.data()) != CUDA_SUCCESS || api.getFunction(&fn, mod, flexjit::kFwdKernelName) != CUDA_SUCCESS)
    return report(false, what, "module load failed");
  const int smem = flexjit::fwdSharedMemoryBytes(cfg);
  api.setAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem);
  Launcher launch = [&](const fjk::FwdParams& p, const flexjit::FwdLaunch& l) {
    void* args[] = {const_cast<fjk::FwdParams*>(&p)};
    if (l.grid[0] == 0) return;
    if (api.launch(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], 1, 1, smem, nullptr, args, nullptr) != CUDA_SUCCESS)
      std::printf("cuLaunchKernel failed\n");
  };
  std::string detail;
  const bool ok = run_case<Var>(c, cfg, launch, detail);
  char buf[96];
  std::snprintf(buf, sizeof buf, " (NVRTC compile %.2f s, log %zu bytes)", secs, log.size() > 1 ? log.size() : 0);
  report(ok, what, detail + buf);
}

// ---- benchmark ----
__global__ void fill_random(unsigned short* x, long long n, unsigned seed, bool bf16, bool normal) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    float f = (h >> 8) * (2.0f / 16777216.0f) - 1.0f;
    if (normal) {  // approximately N(0, 1), like torch.randn: the sum of four uniforms, rescaled
      float sum = 0.0f;
      for (int r = 0; r < 4; ++r) {
        h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
        sum += (h >> 8) * (1.0f / 16777216.0f);
      }
      f = (sum - 2.0f) * 1.7320508f;
    }
    if (bf16) {
      __nv_bfloat16 b = __float2bfloat16_rn(f);
      x[i] = *reinterpret_cast<unsigned short*>(&b);
    } else {
      __half b = __float2half_rn(f);
      x[i] = *reinterpret_cast<unsigned short*>(&b);
    }
  }
}
struct BenchRow {
  std::string line;
};
template <class Var>
static void bench_one(const KernelEntry& e, bool bf16, int B, int H, int S, int D, unsigned short* q, unsigned short* k,
                      unsigned short* v, unsigned short* o, float* lse, std::vector<std::string>& table,
                      int sched_heads = 0) {
  Rng rng{1};
  Captures cap(Var::kName, 1, H, S, true, rng);
  HostBlockMask hm = build_block_mask<Var>(1, 1, S, S, 128, 128, cap.host, false);
  DevBlockMask dm(hm);
  fjk::FwdParams p{};
  p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse;
  p.q_stride = p.k_stride = p.v_stride = p.o_stride = strides_of(false, H, S, D);
  p.lse_stride = {(long long)H * S, S, 1};
  p.batch = B, p.heads_q = p.heads_kv = H, p.q_per_kv = 1, p.len_q = p.len_kv = S;
  p.scale = 1.0f / std::sqrt((float)D), p.mask_block_q = p.mask_block_kv = 128, p.cap = cap.dev;
  dm.fill(p, hm, false);
  Launcher launch = registry_launcher(e);
  const flexjit::FwdLaunch l = flexjit::fwdLaunch(e.cfg, B, H, S);
  p.sched_heads = sched_heads ? sched_heads : l.scheduleHeads;
  const int warmup = g_profile ? 1 : 3, reps = g_profile ? 2 : 25;
  for (int i = 0; i < warmup; ++i) launch(p, l);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    launch(p, l);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double density = (double)hm.computed / ((double)hm.nqb * hm.nkvb);
  const double flops = 4.0 * B * H * (double)S * S * D * density;
  cudaFuncAttributes attr;
  CK(cudaFuncGetAttributes(&attr, e.fn));
  char buf[256];
  std::snprintf(buf, sizeof buf, "| %s B%d H%d S%d D%d | %-8s | %s %3dx%-3d S%-3d w%d st%d %-5s G%-3d | %3d regs, %3d B local, %6d B smem | %.3f | %.4f ms | %.1f |",
                bf16 ? "bf16" : "fp16", B, H, S, D, Var::kName, flexjit::familyName(e.cfg.family), e.cfg.blockM, e.cfg.blockN, e.cfg.subN, e.cfg.numWarps, e.cfg.stages,
                e.cfg.qInRegs ? "Qreg" : "Qsmem", p.sched_heads, attr.numRegs, (int)attr.localSizeBytes, e.smem, density, med,
                flops / (med * 1e-3) / 1e12);
  table.push_back(buf);
  std::printf("%s\n", buf);
  std::fflush(stdout);
  cudaEventDestroy(a), cudaEventDestroy(b);
}
static void benchmark(int major, int minor, std::vector<std::string>& table) {
  struct Shape {
    bool bf16;
    int B, H, S, D;
  };
  for (const Shape& s : {Shape{true, 8, 16, 8192, 128}, Shape{false, 16, 16, 8192, 64}}) {
    const long long n = (long long)s.B * s.H * s.S * s.D;
    DevBuf<unsigned short> q(n), k(n), v(n), o(n);
    DevBuf<float> lse((size_t)s.B * s.H * s.S);
    fill_random<<<1024, 256>>>(q.p, n, 1u, s.bf16, g_normal);
    fill_random<<<1024, 256>>>(k.p, n, 2u, s.bf16, g_normal);
    fill_random<<<1024, 256>>>(v.p, n, 3u, s.bf16, g_normal);
    CK(cudaGetLastError());
    const DType dt = s.bf16 ? DType::BF16 : DType::F16;
    const FwdKernelConfig def = flexjit::defaultFwdConfig(dt, s.D, s.D, major, minor);
    const FwdKernelConfig def90 = flexjit::defaultSm90FwdConfig(dt, s.D, s.D, major, minor);
    for (const KernelEntry& e : registry()) {
      FwdKernelConfig c = e.cfg;
      c.archMajor = major, c.archMinor = minor;
      if (c.dtype != def.dtype || c.headDim != s.D || c.headDimV != s.D) continue;
      if (!family_enabled(c.family, major, minor)) continue;
      const bool isDefault = c == def || c == def90;
      if (!isDefault && e.variant != "noop" && e.variant != "causal") continue;
      if (e.variant == "killrows" || e.variant == "nanrows") continue;
      if ((e.variant == "document" || e.variant == "alibi") && c.family == flexjit::KernelFamily::Sm80) continue;
      if (g_profile && (!isDefault || e.variant != "noop" || !s.bf16)) continue;
      with_variant(e.variant, [&](auto var) {
        bench_one<decltype(var)>(e, s.bf16, s.B, s.H, s.S, s.D, q.p, k.p, v.p, o.p, lse.p, table);
        // Scheduling groups: one head at a time (FlashAttention-2's order) and all heads at once.
        if (isDefault && !g_profile && c.family == flexjit::KernelFamily::Sm80 &&
            (e.variant == "noop" || e.variant == "causal"))
          for (int g : {1, s.B * s.H})
            bench_one<decltype(var)>(e, s.bf16, s.B, s.H, s.S, s.D, q.p, k.p, v.p, o.p, lse.p, table, g);
      });
    }
  }
}

int main(int argc, char** argv) {
  bool bench = true, tests = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--no-bench")) bench = false;
    if (!std::strcmp(argv[i], "--bench-only")) tests = false;
    if (!std::strcmp(argv[i], "--profile")) tests = false, g_profile = true;
    if (!std::strcmp(argv[i], "--normal")) g_normal = true;
    if (!std::strcmp(argv[i], "--family") && i + 1 < argc) {
      g_sm80 = !std::strcmp(argv[i + 1], "sm80");
      g_sm90 = !std::strcmp(argv[i + 1], "sm90");
      ++i;
    }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, sm_%d%d, %d SMs, %zu KB smem/block opt-in\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.sharedMemPerBlockOptin / 1024);
  register_kernels();
  if (tests) {
    config_checks(prop.major, prop.minor);
    correctness(prop.major, prop.minor);
    const RtApi api = load_rt_api();
    if (!api.ok) {
      report(false, "nvrtc", "could not load libnvrtc / libcuda");
    } else {
      const std::string causal = read_file("tests/golden/causal.cu"), softcap = read_file("tests/golden/softcap.cu");
      nvrtc_check<VarCausal>(api, causal.empty() ? kCausalPrelude : causal.c_str(),
                             Case{"causal", true, 128, 128, 2, 4, 2, 1000, 1000}, prop.major, prop.minor);
      if (!softcap.empty()) {
        Case c{"softcap", false, 64, 64, 2, 4, 2, 129, 1000};
        c.q_amp = 4.0f, c.atol = 3e-3;
        nvrtc_check<VarSoftcap>(api, softcap.c_str(), c, prop.major, prop.minor);
      }
      nvrtc_check<VarAlibi>(api, kAlibiPrelude, Case{"alibi", true, 64, 64, 2, 4, 1, 129, 1000}, prop.major,
                            prop.minor);
    }
  }
  std::vector<std::string> table;
  if (bench) benchmark(prop.major, prop.minor, table);
  std::printf("\n| shape | variant | tile | resources | density | median | TFLOP/s |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& row : table) std::printf("%s\n", row.c_str());
  std::printf("\nSUMMARY: %d passed, %d failed%s\n", g_pass, g_fail, g_fail ? "  ==> FAIL" : "  ==> ALL PASS");
  return g_fail ? 1 : 0;
}
