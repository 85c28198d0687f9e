// Internal to runtime/: the dlopen'ed NVRTC library and its entry points (see Nvrtc.h for the search
// order). Nothing outside runtime/ should need this; use compileCuda instead.
#pragma once

#include <nvrtc.h>

#include <string>

namespace flexjit::detail {

/// NVRTC entry points, resolved with dlsym (NVRTC's C API has no versioned symbols).
struct NvrtcApi {
  decltype(&::nvrtcVersion) version = nullptr;
  decltype(&::nvrtcGetErrorString) getErrorString = nullptr;
  decltype(&::nvrtcCreateProgram) createProgram = nullptr;
  decltype(&::nvrtcDestroyProgram) destroyProgram = nullptr;
  decltype(&::nvrtcCompileProgram) compileProgram = nullptr;
  decltype(&::nvrtcGetProgramLogSize) getProgramLogSize = nullptr;
  decltype(&::nvrtcGetProgramLog) getProgramLog = nullptr;
  decltype(&::nvrtcGetPTXSize) getPTXSize = nullptr;
  decltype(&::nvrtcGetPTX) getPTX = nullptr;
  decltype(&::nvrtcGetCUBINSize) getCUBINSize = nullptr;
  decltype(&::nvrtcGetCUBIN) getCUBIN = nullptr;

  std::string libraryPath;  ///< what dlopen was given
  std::string versionText;  ///< "13.0"
};

/// The loaded NVRTC (loaded once, thread-safe). Throws flexjit::Error listing what was tried when no
/// candidate loads.
const NvrtcApi& nvrtcApi();

/// Whether nvrtcApi() would succeed; never throws.
bool nvrtcLoads();

/// Throws flexjit::Error "<what> failed: <NVRTC error string>" unless `result` is NVRTC_SUCCESS.
void checkNvrtc(const NvrtcApi& api, nvrtcResult result, const char* what);

}  // namespace flexjit::detail
