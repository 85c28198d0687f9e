# lit configuration for flexjit's pass and codegen tests.
import os

import lit.formats

config.name = "flexjit"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.flexjit_bin_dir, "..", "tests", "lit")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in"]
config.environment["FLEXJIT_CACHE_DIR"] = "off"
config.environment.pop("FLEXJIT_DUMP_DIR", None) if hasattr(config.environment, "pop") else None
for tool_dir in (config.flexjit_bin_dir, config.llvm_tools_dir):
    config.environment["PATH"] = tool_dir + os.pathsep + config.environment.get("PATH", os.environ["PATH"])
