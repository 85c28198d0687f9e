"""Small functions of torch operations that run as one torch.compile'd pass on a GPU (inductor fuses their
pointwise ops, reductions and scans into single kernels, and their backward likewise) and eagerly elsewhere.
Used by flexjit.nsa (the selection scores) and flexjit.gated (the gate preprocessing)."""
import warnings

import torch


class GpuCompiled:
    """`fn` compiled with dynamic shapes (sizes and int arguments vary without recompiling) when its first
    argument is on a GPU, eager otherwise. The compile happens at the first GPU call; if it fails (no
    inductor, a backend error), `what` is named in one warning and every later call runs eagerly: the same
    maths, slower."""

    def __init__(self, fn, what: str):
        self._fn, self._what = fn, what
        self._compiled = None
        self._failed = False

    def __call__(self, *args):
        if args[0].device.type != "cuda" or self._failed:
            return self._fn(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self._fn, dynamic=True)
        try:
            return self._compiled(*args)
        except Exception as e:  # noqa: BLE001 - inductor missing or failing: the same maths eagerly
            warnings.warn(f"{self._what}: torch.compile failed ({type(e).__name__}: {e}); running it eagerly "
                          f"(slower)")
            self._failed = True
            return self._fn(*args)
