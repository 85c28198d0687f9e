"""flexjit._fused.GpuCompiled: eager off the GPU; on a GPU compiled once, and a failing compile warns once and
leaves every call eager with the same result."""
import types
import warnings

import pytest
import torch

from flexjit import _fused


def _on(device_type):
    return types.SimpleNamespace(device=torch.device(device_type), value=3)


def test_off_the_gpu_the_function_runs_eagerly(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled for a CPU input"))
    f = _fused.GpuCompiled(lambda x, n: x.value * n, "test")
    assert f(_on("cpu"), 2) == 6


def test_a_failing_compile_warns_once_and_falls_back(monkeypatch):
    compiles = []

    def broken(fn, dynamic):
        compiles.append(dynamic)

        def run(*args):
            raise RuntimeError("no inductor here")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    f = _fused.GpuCompiled(lambda x, n: x.value * n, "flexjit.test: the thing")
    with pytest.warns(UserWarning, match="flexjit.test: the thing: torch.compile failed .*no inductor here"):
        assert f(_on("cuda"), 2) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no second warning
        assert f(_on("cuda"), 5) == 15
    assert compiles == [True]   # compiled once, with dynamic shapes
