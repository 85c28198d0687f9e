// The on-disk format of one kernel cache entry, and its validation.
//
// An entry is a fixed header followed by a payload:
//   magic "FLEXJITK" (8 bytes) | format version (u32) | reserved, 0 (u32) | payload length (u64) |
//   SHA-256 of the payload (32 bytes) | payload
// All integers little-endian. The payload holds length-prefixed fields: key, name, arch, toolkit version,
// cubin, ptx, log, then the resource usage table. A reader trusts nothing: bad magic, another format
// version, a length that disagrees with the file, a checksum mismatch, a payload that does not parse, or a
// key other than the one asked for all make the entry corrupt (the cache then removes and rebuilds it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/CompiledKernel.h"

namespace flexjit::cacheentry {

/// Bumped whenever the layout changes; it is also part of the cache key and directory (v<N>), so entries
/// of another version are never even opened.
constexpr uint32_t kFormatVersion = 1;

/// Serialises `kernel` (its `origin` is not stored).
std::vector<char> encode(const CompiledKernel& kernel);

/// Parses and validates an entry read from disk. Returns nullopt and says why in `problem` when the
/// bytes are not a valid entry for `expectedKey`.
std::optional<CompiledKernel> decode(const std::vector<char>& bytes, const std::string& expectedKey,
                                     std::string& problem);

}  // namespace flexjit::cacheentry
