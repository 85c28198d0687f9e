"""Tracing a Python score_mod / mask_mod / sink_mod / prob_mod into the C++ mod of that kind.

``trace`` calls the function once with SymValues and returns a ``TracedMod``: the C++ mod and its captured
tensor slots. A ``BoundMod`` pairs a TracedMod with the torch tensors of one use; ``bind()`` points the
slots at those tensors and is called right before every C++ call that evaluates the mod, so a traced mod
shared through the cache (or by a block mask and a later forward) never reads another use's tensors.

While a mod is traced, ``_DataWatch`` sees the torch functions it runs eagerly on real tensors (``w.sum()``,
``t[0]``, ``float(x)``): a value computed from tensor data the cache key does not hold is baked into the
trace, so such a trace is marked ``read_data`` and the cache never reuses it.
"""
import functools
import inspect

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode

from . import _flexjit
from . import _torch_ops  # noqa: F401  (installs the torch functions and methods on SymValue)
from ._errors import trace_error
from ._sym import Op, PartialIndex, ScalarType, SymValue, TraceContext, constant, result_expr
from ._tensors import capture_tensor, capture_view

Param = _flexjit.Param
Expr = _flexjit.Expr

SCORE_MOD, MASK_MOD, SCORE_AS_MASK = "score_mod", "mask_mod", "score_as_mask"
SINK_MOD, PROB_MOD = "sink_mod", "prob_mod"


class RowStats:
    """The last argument of a prob_mod: statistics of the query row. ``row.num_visible`` is the number of keys
    the block mask and mask_mod keep in the row (an int; Lazy Attention divides its offset by it)."""

    __slots__ = ("num_visible",)

    def __init__(self, num_visible):
        self.num_visible = num_visible


def mod_name(fn) -> str:
    """A name for messages and dumps: the function's name (a lambda is '<lambda>')."""
    if isinstance(fn, functools.partial):
        return mod_name(fn.func)
    return getattr(fn, "__name__", None) or type(fn).__name__


# Tensor functions whose non-tensor results are metadata the cache key holds (shape, dtype, device, ...);
# "__get__" is every property (t.shape, t.dtype, t.ndim).
_METADATA = frozenset({"__get__", "size", "dim", "ndimension", "numel", "nelement", "stride", "__len__",
                       "element_size", "is_contiguous", "is_floating_point", "is_complex", "is_signed",
                       "storage_offset", "get_device", "data_ptr"})


class TracedMod:
    """A traced mod and its captured-tensor slots, in the C++ mod's capture order. `read_data`: the trace
    baked in a value computed from tensor data (it holds only for that data, so it is never reused)."""

    __slots__ = ("mod", "captures", "read_data")

    def __init__(self, mod, captures, read_data=False):
        self.mod, self.captures, self.read_data = mod, captures, read_data


class BoundMod:
    """A TracedMod with the torch tensors of one use (captures[i] reads tensors[i])."""

    __slots__ = ("traced", "tensors")

    def __init__(self, traced: TracedMod, tensors):
        self.traced, self.tensors = traced, [capture_tensor(t) for t in tensors]

    @property
    def mod(self):
        return self.traced.mod

    def bind(self) -> "BoundMod":
        for cap, t in zip(self.traced.captures, self.tensors):
            cap.bind(capture_view(t, f"{self.traced.mod.describe()}: captured tensor '{cap.name}'"))
        return self

    def with_tensors(self, tensors) -> "BoundMod":
        return BoundMod(self.traced, tensors)


class _DataWatch(TorchFunctionMode):
    """Follows eager torch operations during a trace: results computed only from tensors whose values the
    cache key holds (0-d constants of the walk, tensors made from Python numbers) stay known; a Python value
    (item(), float(), bool(), tolist(), torch.equal) computed from any other tensor sets ctx.read_data.
    Operations on traced values build graph nodes and read no data."""

    def __init__(self, ctx: TraceContext):
        super().__init__()
        self.ctx = ctx

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = pytree.tree_leaves((args, kwargs))
        if any(isinstance(x, (SymValue, PartialIndex)) for x in inputs):
            return result
        known = all(self.ctx.knows(t) for t in inputs if isinstance(t, torch.Tensor))
        outputs = pytree.tree_leaves(result)
        self.ctx.learn([o for o in outputs if isinstance(o, torch.Tensor)], known)
        if not known and getattr(func, "__name__", None) not in _METADATA and \
                any(o is not None and not isinstance(o, torch.Tensor) for o in outputs):
            self.ctx.read_data = True
        return result


def _arguments(kind: str):
    params = [SymValue(Expr.param(p)) for p in (Param.B, Param.H, Param.Q, Param.KV)]
    if kind == SCORE_MOD:
        return [SymValue(Expr.param(Param.Score))] + params
    if kind == SCORE_AS_MASK:
        return [SymValue(constant(0.0))] + params
    if kind == SINK_MOD:
        return params[:3]
    if kind == PROB_MOD:
        return [SymValue(Expr.param(Param.Score))] + params + [RowStats(SymValue(Expr.param(Param.Visible)))]
    return params


_CALLS = {SCORE_MOD: "score_mod(score, b, h, q_idx, kv_idx)", MASK_MOD: "mask_mod(b, h, q_idx, kv_idx)",
          SCORE_AS_MASK: "score_mod(score, b, h, q_idx, kv_idx)", SINK_MOD: "sink_mod(b, h, q_idx)",
          PROB_MOD: "prob_mod(p, b, h, q_idx, kv_idx, row)"}
_ARITY = {MASK_MOD: 4, SINK_MOD: 3, PROB_MOD: 6}
# The C++ mod each kind is traced into, and the kind its messages name.
_MOD_CLASS = {SCORE_MOD: "ScoreMod", MASK_MOD: "MaskMod", SCORE_AS_MASK: "MaskMod", SINK_MOD: "SinkMod",
              PROB_MOD: "ProbMod"}
_SCOPE = {SCORE_MOD: SCORE_MOD, MASK_MOD: MASK_MOD, SCORE_AS_MASK: MASK_MOD, SINK_MOD: SINK_MOD, PROB_MOD: PROB_MOD}


def _check_arity(kind: str, fn, name: str) -> None:
    """A TraceError when `fn` cannot take the mod's arguments (Python's own TypeError would name neither the
    mod nor what it is called with); callables without a signature are simply called."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*[None] * _ARITY.get(kind, 5))
    except TypeError as e:
        call = _CALLS[kind]
        raise trace_error(f"{call.partition('(')[0]} '{name}' cannot be called as {call} ({e}); a mask_mod takes "
                          f"(b, h, q_idx, kv_idx), a score_mod (score, b, h, q_idx, kv_idx), a sink_mod (b, h, "
                          f"q_idx), a prob_mod (p, b, h, q_idx, kv_idx, row)") from None


def trace(kind: str, fn, names, valued=(), unsized=()) -> "tuple[TracedMod, list]":
    """Traces `fn` as a score_mod, a mask_mod, or a score_mod read as a mask (score_mod(0, ...) != -inf).
    `names` maps id(tensor) to a variable name; `valued` are the tensors whose values the caller's cache key
    holds; `unsized` the ids of tensors whose sizes are not known yet (stand-ins of torch.compile's graph
    inputs). Returns the TracedMod and the tensors its captures read."""
    scope_kind = _SCOPE[kind]
    if not callable(fn):
        raise trace_error(f"{scope_kind} must be a callable, got {type(fn).__name__}")
    name = mod_name(fn)
    _check_arity(kind, fn, name)
    ctx = TraceContext(names, valued, unsized)
    with ctx, _DataWatch(ctx), _flexjit.TraceScope(scope_kind, name):
        result = fn(*_arguments(kind))
        body = result_expr(result, "score_mod" if kind == SCORE_AS_MASK else scope_kind)
        if kind == SCORE_AS_MASK:
            if body.type == ScalarType.Bool:
                raise trace_error("a score_mod must return the score (float), got bool")
            body = _flexjit.make_op(Op.Ne, [body, constant(float("-inf"))])
        mod = getattr(_flexjit, _MOD_CLASS[kind]).from_body(name, body)
    by_id = {cap.id: (cap, t) for cap, t in ctx.captures.values()}
    used = [by_id[i] for i in mod.tensor_ids]
    return TracedMod(mod, [cap for cap, _ in used], ctx.read_data), [t for _, t in used]
