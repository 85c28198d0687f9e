// flexjit::Error: the one exception type flexjit raises for user mistakes at a public boundary.
//
// Messages say what was wrong and what to do (which mod, which op, what was expected). Internal
// invariant violations are bugs and use assertions, not this type.
#pragma once

#include <stdexcept>
#include <string>

namespace flexjit {

/// Raised for every user-facing error: bad expressions, bad shapes, failed compiles, missing GPU.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace flexjit
