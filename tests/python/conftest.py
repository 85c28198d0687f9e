"""pytest setup: finds the flexjit package (installed, or built into build/python or build-py). Warning
filters and the summary options are in pyproject.toml."""
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import flexjit  # noqa: F401
except ImportError:
    for candidate in ("build/python", "build-py"):
        path = os.path.join(_root, candidate)
        if os.path.isdir(os.path.join(path, "flexjit")):
            sys.path.insert(0, path)
            break

