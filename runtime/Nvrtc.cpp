// Implementation of Nvrtc.h: one NVRTC compile per call, straight to CUBIN.
//
// Why CUBIN from NVRTC rather than PTX linked by nvJitLink: NVRTC runs ptxas itself when given a real
// target (sm_XX), so one call yields both the CUBIN and the PTX, plus the ptxas -v report we parse for
// resource usage. nvJitLink would add a second library and a second step and buys nothing until flexjit
// links several separately compiled units (LTO-IR); it is therefore not loaded.
#include "runtime/Nvrtc.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "dsl/Error.h"
#include "runtime/Arch.h"
#include "runtime/Dump.h"
#include "runtime/NvrtcLibrary.h"

namespace flexjit {

namespace {

using detail::checkNvrtc;
using detail::NvrtcApi;

/// The C++ dialect generated sources are written in.
constexpr const char* kStdOption = "-std=c++17";

/// The toolkit include directory: the build's (a CMake list, ';'-separated), else $CUDA_HOME/include,
/// else /usr/local/cuda/include, whichever exists first. Generated sources include no toolkit headers;
/// the path is passed so hand-written extra sources may.
std::vector<std::string> findIncludeDirs() {
  std::vector<std::string> wanted;
#ifdef FLEXJIT_CUDA_INCLUDE_DIR
  std::stringstream list(FLEXJIT_CUDA_INCLUDE_DIR);
  for (std::string dir; std::getline(list, dir, ';');) wanted.push_back(dir);
#endif
  if (const char* home = std::getenv("CUDA_HOME"); home && *home) wanted.push_back(std::string(home) + "/include");
  wanted.push_back("/usr/local/cuda/include");
  std::error_code ec;
  for (const std::string& dir : wanted)
    if (!dir.empty() && std::filesystem::is_directory(dir, ec)) return {dir};
  return {};
}

/// Owns an nvrtcProgram.
class Program {
 public:
  Program(const NvrtcApi& api, const std::string& source, const std::string& fileName) : api_(api) {
    checkNvrtc(api_, api_.createProgram(&program_, source.c_str(), fileName.c_str(), 0, nullptr, nullptr),
               "nvrtcCreateProgram");
  }
  ~Program() { api_.destroyProgram(&program_); }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  nvrtcProgram get() const { return program_; }

 private:
  const NvrtcApi& api_;
  nvrtcProgram program_ = nullptr;
};

std::string programLog(const NvrtcApi& api, nvrtcProgram program) {
  size_t size = 0;
  checkNvrtc(api, api.getProgramLogSize(program, &size), "nvrtcGetProgramLogSize");
  std::string log(size, '\0');
  checkNvrtc(api, api.getProgramLog(program, log.data()), "nvrtcGetProgramLog");
  while (!log.empty() && log.back() == '\0') log.pop_back();  // the size counts the terminator
  return log;
}

std::string programPtx(const NvrtcApi& api, nvrtcProgram program) {
  size_t size = 0;
  checkNvrtc(api, api.getPTXSize(program, &size), "nvrtcGetPTXSize");
  std::string ptx(size, '\0');
  checkNvrtc(api, api.getPTX(program, ptx.data()), "nvrtcGetPTX");
  while (!ptx.empty() && ptx.back() == '\0') ptx.pop_back();
  return ptx;
}

std::vector<char> programCubin(const NvrtcApi& api, nvrtcProgram program) {
  size_t size = 0;
  checkNvrtc(api, api.getCUBINSize(program, &size), "nvrtcGetCUBINSize");
  std::vector<char> cubin(size);
  checkNvrtc(api, api.getCUBIN(program, cubin.data()), "nvrtcGetCUBIN");
  return cubin;
}

Error compileFailure(const NvrtcApi& api, const std::string& name, const CompileOptions& options,
                     nvrtcResult result, const std::string& log, const std::string& source) {
  std::string saved = dumpFailedSource(name, source);
  return Error(fmt::format(
      "NVRTC failed to compile kernel '{}' for {} ({}; NVRTC {}).\n--- NVRTC log ---\n{}\n--- end of log "
      "---\nThe source was saved to {}\nThis is a flexjit bug if the kernel came from a score_mod/mask_mod: "
      "please report it with that file attached.",
      name, options.arch, api.getErrorString(result), api.versionText, log, saved));
}

/// Looked up once: nvrtcOptions is on the cache-key path of every kernel lookup.
const std::vector<std::string>& includeDirs() {
  static const std::vector<std::string> dirs = findIncludeDirs();
  return dirs;
}

}  // namespace

std::vector<std::string> nvrtcOptions(const CompileOptions& options) {
  std::vector<std::string> out = {"-arch=" + options.arch, kStdOption, "-default-device"};
  // The ptxas report feeds ResourceUsage; a PTX-only target never runs ptxas, so it has nothing to say.
  if (parseArch(options.arch).real) out.push_back("--ptxas-options=-v");
  if (options.lineInfo) out.push_back("-lineinfo");
  for (const std::string& dir : includeDirs()) out.push_back("--include-path=" + dir);
  out.insert(out.end(), options.extra.begin(), options.extra.end());
  return out;
}

CompileResult compileCuda(const std::string& source, const std::string& name, const CompileOptions& options) {
  ArchName arch = parseArch(options.arch);
  const NvrtcApi& api = detail::nvrtcApi();
  std::vector<std::string> optionStrings = nvrtcOptions(options);
  std::vector<const char*> argv;
  for (const std::string& option : optionStrings) argv.push_back(option.c_str());

  Program program(api, source, name + ".cu");
  nvrtcResult result = api.compileProgram(program.get(), static_cast<int>(argv.size()), argv.data());
  CompileResult out;
  out.log = programLog(api, program.get());
  if (result != NVRTC_SUCCESS) throw compileFailure(api, name, options, result, out.log, source);
  out.ptx = programPtx(api, program.get());
  if (arch.real) out.cubin = programCubin(api, program.get());
  out.resources = parsePtxasInfo(out.log);
  return out;
}

std::string nvrtcVersion() { return detail::nvrtcApi().versionText; }

bool nvrtcAvailable() { return detail::nvrtcLoads(); }

std::string nvrtcLibraryPath() { return detail::nvrtcApi().libraryPath; }

const ResourceUsage& resourceUsage(const CompileResult& result, const std::string& function) {
  return resourceUsageOf(result.resources, function);
}

}  // namespace flexjit
