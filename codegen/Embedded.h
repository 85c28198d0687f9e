// Files embedded into libflexjit at build time (kernel templates, the shared semantics headers), so
// NVRTC can compile generated kernels without the source tree.
#pragma once

#include <string_view>
#include <vector>

namespace flexjit {

/// The text of an embedded file by its path in the source tree ("dsl/Semantics.h"); empty if absent.
std::string_view embeddedFile(std::string_view path);
std::vector<std::string_view> embeddedFileNames();

}  // namespace flexjit
