// Background compilation of backward kernels during a training step's first forward: NVRTC runs for the
// forward and the backward at the same time instead of one after the other.
#include <fmt/format.h>

#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "runtime/Attention.h"
#include "runtime/AttentionGpu.h"
#include "runtime/BackwardBuild.h"
#include "runtime/Captures.h"

namespace flexjit {

namespace {

/// Background compile threads, joined by waitForBackgroundCompiles and, as a last resort, when the
/// process exits (too late when statics the compile uses were made after this object: hence the
/// explicit wait).
class AheadCompiles {
 public:
  static AheadCompiles& instance() {
    static AheadCompiles compiles;
    return compiles;
  }
  ~AheadCompiles() { joinAll(); }
  /// Joins every thread started so far (a compile already started is not started again).
  void joinAll() {
    std::vector<std::thread> running;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running.swap(threads_);
    }
    for (std::thread& t : running) t.join();
  }
  /// Starts `work` unless a compile under `key` was started before.
  template <class F>
  void start(const std::string& key, F&& work) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_.insert(key).second) return;
    threads_.emplace_back(std::forward<F>(work));
  }

 private:
  std::mutex mutex_;
  std::set<std::string> started_;
  std::vector<std::thread> threads_;
};

}  // namespace

void waitForBackgroundCompiles() { AheadCompiles::instance().joinAll(); }

void compileBackwardAhead(const ScoreMod& scoreMod, const MaskMod& mask, DType dtype, const AttentionShape& shape,
                          const DeviceInfo& info, const BlockMask& blockMask, const ExtraHooks& extra) {
  try {
    std::shared_ptr<const Variant> variant = cachedVariant(scoreMod, mask, /*withGradient=*/true, extra);
    BwdKernelConfig config = backwardConfigFor(dtype, shape, info, blockMask, /*deterministic=*/false, *variant);
    std::string tag = variantTag(scoreMod, mask);
    std::string key = fmt::format("{}/{}", static_cast<const void*>(variant.get()),
                                  bwdInstantiationSource(config, BwdKernelKind::DkDv));
    // The main backward program and the small auxiliary one (preprocess, convert) are separate NVRTC
    // programs: each gets its own thread.
    for (BwdKernelKind kind : {BwdKernelKind::DkDv, BwdKernelKind::Aux}) {
      const Variant* forKind = kind == BwdKernelKind::Aux ? nullptr : variant.get();
      AheadCompiles::instance().start(key + (kind == BwdKernelKind::Aux ? "/aux" : "/main"), [variant, forKind, config, kind, tag] {
        try {
          backwardKernel(forKind, config, kind, tag);
        } catch (const std::exception&) {
          // Nothing to report here: the backward call compiles again and raises the error where it is seen.
        }
      });
    }
  } catch (const std::exception&) {
    // Same: an unsupported backward is reported by the backward call, not by the forward.
  }
}

}  // namespace flexjit
