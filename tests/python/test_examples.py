"""The example scripts run (on the GPU when there is one) and agree with torch's flex_attention."""
import os
import re
import subprocess
import sys

import pytest
import torch

import flexjit

_EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")
_SCRIPTS = sorted(f for f in os.listdir(_EXAMPLES) if f.endswith(".py") and not f.startswith("_"))
_TOLERANCE = 5e-2 if torch.cuda.is_available() else 1e-4


@pytest.mark.parametrize("script", _SCRIPTS)
def test_example_runs_and_agrees_with_torch(script):
    package_parent = os.path.dirname(os.path.dirname(flexjit.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, script], cwd=_EXAMPLES, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = [float(d) for d in re.findall(r"max \|flexjit - torch\| = (\S+)", result.stdout)]
    assert diffs and max(diffs) < _TOLERANCE, result.stdout
