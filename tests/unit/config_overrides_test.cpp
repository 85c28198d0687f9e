// FLEXJIT_FWD_CONFIG / FLEXJIT_BWD_CONFIG parsing (the forward planner's use of it: planner_test.cpp).
#include <gtest/gtest.h>

#include <cstdlib>

#include "dsl/Error.h"
#include "runtime/ConfigOverrides.h"

using namespace flexjit;

namespace {
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~ScopedEnv() { unsetenv(name); }
};
}  // namespace

TEST(ConfigOverrides, SetsNamedFieldsAndLeavesOthers) {
  int a = 1, b = 2;
  ScopedEnv env("FLEXJIT_TEST_CONFIG", "a=7,b=-3");
  applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}, {"b", &b}});
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, -3);
}

TEST(ConfigOverrides, UnsetOrEmptyChangesNothing) {
  int a = 1;
  applyConfigOverrides("FLEXJIT_TEST_CONFIG_UNSET", {{"a", &a}});
  ScopedEnv env("FLEXJIT_TEST_CONFIG", "");
  applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
  EXPECT_EQ(a, 1);
}

TEST(ConfigOverrides, BadEntriesNameTheVariableAndTheKeys) {
  int a = 1;
  for (const char* bad : {"c=1", "a", "a=x", "a=1x", "a="}) {
    ScopedEnv env("FLEXJIT_TEST_CONFIG", bad);
    try {
      applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("FLEXJIT_TEST_CONFIG: bad entry"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("among a"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(a, 1);
}
