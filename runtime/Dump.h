// FLEXJIT_DUMP_DIR support: every stage of a kernel's lowering (.mlir before/after passes, .cu, .ptx,
// resource usage) can be written to a directory for debugging, and a source NVRTC rejected is always
// kept on disk so the error message can point at it.
#pragma once

#include <optional>
#include <string>

namespace flexjit {

/// Name of the environment variable that turns stage dumps on.
constexpr const char* kDumpDirEnv = "FLEXJIT_DUMP_DIR";

/// The directory named by FLEXJIT_DUMP_DIR, or nullopt when it is unset or empty.
std::optional<std::string> dumpDir();

/// Writes `text` to `<FLEXJIT_DUMP_DIR>/<kernelName>.<stageExtension>` (for example "attn.mlir.before",
/// "attn.cu", "attn.ptx", "attn.resources.txt"); a leading '.' on the extension is optional. A no-op
/// when FLEXJIT_DUMP_DIR is unset. A failed write prints a warning on stderr and does not throw: dumps
/// are a debugging aid and must not break a run.
void dumpStage(const std::string& kernelName, const std::string& stageExtension, const std::string& text);

/// Keeps the source of a failed compile: writes `<base>/failed/<kernelName>-<hash>.cu`, where <base> is
/// FLEXJIT_DUMP_DIR when set and the per-user temp directory otherwise. Returns the path written, or a
/// sentence saying why nothing could be written.
std::string dumpFailedSource(const std::string& kernelName, const std::string& source);

}  // namespace flexjit
