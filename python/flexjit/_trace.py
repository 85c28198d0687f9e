"""Tracing a Python score_mod / mask_mod into a C++ ScoreMod / MaskMod.

``trace`` calls the function once with SymValues and returns a ``TracedMod``: the C++ mod and its captured
tensor slots. A ``BoundMod`` pairs a TracedMod with the torch tensors of one use; ``bind()`` points the
slots at those tensors and is called right before every C++ call that evaluates the mod, so a traced mod
shared through the cache (or by a block mask and a later forward) never reads another use's tensors.
"""
import functools

from . import _flexjit
from . import _torch_ops  # noqa: F401  (installs the torch functions and methods on SymValue)
from ._errors import trace_error
from ._sym import Op, ScalarType, SymValue, TraceContext, constant, result_expr
from ._tensors import view

Param = _flexjit.Param
Expr = _flexjit.Expr

SCORE_MOD, MASK_MOD, SCORE_AS_MASK = "score_mod", "mask_mod", "score_as_mask"


def mod_name(fn) -> str:
    """A name for messages and dumps: the function's name (a lambda is '<lambda>')."""
    if isinstance(fn, functools.partial):
        return mod_name(fn.func)
    return getattr(fn, "__name__", None) or type(fn).__name__


class TracedMod:
    """A traced mod and its captured-tensor slots, in the C++ mod's capture order."""

    __slots__ = ("mod", "captures")

    def __init__(self, mod, captures):
        self.mod, self.captures = mod, captures


class BoundMod:
    """A TracedMod with the torch tensors of one use (captures[i] reads tensors[i])."""

    __slots__ = ("traced", "tensors")

    def __init__(self, traced: TracedMod, tensors):
        self.traced, self.tensors = traced, list(tensors)

    @property
    def mod(self):
        return self.traced.mod

    def bind(self) -> "BoundMod":
        for cap, t in zip(self.traced.captures, self.tensors):
            cap.bind(view(t, f"captured tensor '{cap.name}'"))
        return self

    def with_tensors(self, tensors) -> "BoundMod":
        return BoundMod(self.traced, tensors)

    def gradient_tensors(self):
        """The captured tensors that receive gradients, in the order the C++ backward fills them."""
        by_id = {cap.id: t for cap, t in zip(self.traced.captures, self.tensors)}
        return [by_id[i] for i in _flexjit.gradient_capture_ids(self.traced.mod)]


def _arguments(kind: str):
    params = [SymValue(Expr.param(p)) for p in (Param.B, Param.H, Param.Q, Param.KV)]
    if kind == SCORE_MOD:
        return [SymValue(Expr.param(Param.Score))] + params
    if kind == SCORE_AS_MASK:
        return [SymValue(constant(0.0))] + params
    return params


def trace(kind: str, fn, names) -> "tuple[TracedMod, list]":
    """Traces `fn` as a score_mod, a mask_mod, or a score_mod read as a mask (score_mod(0, ...) != -inf).
    `names` maps id(tensor) to a variable name. Returns the TracedMod and the tensors its captures read."""
    if not callable(fn):
        raise trace_error(f"{'score_mod' if kind == SCORE_MOD else 'mask_mod'} must be a callable, got "
                          f"{type(fn).__name__}")
    name = mod_name(fn)
    ctx = TraceContext(names)
    scope_kind = SCORE_MOD if kind == SCORE_MOD else MASK_MOD
    with ctx, _flexjit.TraceScope(scope_kind, name):
        result = fn(*_arguments(kind))
        body = result_expr(result, "score_mod" if kind != MASK_MOD else "mask_mod")
        if kind == SCORE_AS_MASK:
            if body.type == ScalarType.Bool:
                raise trace_error("a score_mod must return the score (float), got bool")
            body = _flexjit.make_op(Op.Ne, [body, constant(float("-inf"))])
        mod = (_flexjit.ScoreMod if kind == SCORE_MOD else _flexjit.MaskMod).from_body(name, body)
    by_id = {cap.id: (cap, t) for cap, t in ctx.captures.values()}
    used = [by_id[i] for i in mod.tensor_ids]
    return TracedMod(mod, [cap for cap, _ in used]), [t for _, t in used]
