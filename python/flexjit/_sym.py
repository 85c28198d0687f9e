"""Symbolic values for tracing: ``SymValue`` wraps a C++ ``Expr``.

A score_mod / mask_mod is called once with SymValues for (score, b, h, q_idx, kv_idx); every operator on
them records a node of the C++ expression graph instead of computing. Python numbers become constants,
captured torch tensors become ``CapturedTensor`` reads when indexed with SymValues (``bias[h, q_idx]``).
The type rules and most error messages are the C++ DSL's; the constructs Python cannot trace (``if``,
``and``/``or``, ``float()``, ``math.*``) raise a TraceError saying what to write instead.

torch functions on SymValues (``torch.where``, ``torch.exp``, ``Tensor.__getitem__`` with a SymValue index)
reach ``SymValue.__torch_function__``; the table of supported ones is in _torch_ops.py.
"""
import numbers
import threading

import torch

from . import _flexjit
from ._errors import TraceAttributeError, trace_error
from ._tensors import capture_dtype

Op = _flexjit.Op
ScalarType = _flexjit.ScalarType
Expr = _flexjit.Expr
make_op = _flexjit.make_op

SCALAR_TO_TORCH = {ScalarType.Bool: torch.bool, ScalarType.I32: torch.int32, ScalarType.F32: torch.float32}
_MAX_RANK = 4


class TraceContext:
    """The captured tensors of one trace, deduplicated by identity, named after the variables holding them."""

    _current = threading.local()

    def __init__(self, names, valued=()):
        self.names = names          # id(tensor) -> variable name, from the closure walk
        self.captures = {}          # id(tensor) -> (CapturedTensor, tensor)
        self.read_data = False      # a value came from tensor data the trace cache's key does not hold
        self._known = {id(t): t for t in valued}   # tensors whose values the key determines (kept alive)

    @classmethod
    def current(cls) -> "TraceContext":
        ctx = getattr(cls._current, "ctx", None)
        if ctx is None:
            raise trace_error("traced values can only be used while flexjit traces a score_mod or mask_mod")
        return ctx

    def __enter__(self):
        self._previous = getattr(TraceContext._current, "ctx", None)
        TraceContext._current.ctx = self
        return self

    def __exit__(self, *exc):
        TraceContext._current.ctx = self._previous

    def knows(self, t: torch.Tensor) -> bool:
        return self._known.get(id(t)) is t

    def learn(self, tensors, known: bool) -> None:
        """Records results of an eager torch operation: known when computed only from known tensors."""
        for t in tensors:
            if known:
                self._known[id(t)] = t
            else:
                self._known.pop(id(t), None)

    def value_of(self, t: torch.Tensor):
        """The Python value of a 0-d tensor the trace bakes in as a constant."""
        if not self.knows(t):
            self.read_data = True
        return t.item()

    def capture(self, t: torch.Tensor):
        """The CapturedTensor reading `t` (one per tensor object and trace)."""
        entry = self.captures.get(id(t))
        if entry is not None:
            return entry[0]
        name = self.names.get(id(t), f"tensor{len(self.captures)}")
        if t.dim() > _MAX_RANK:
            raise trace_error(f"captured tensor '{name}' has {t.dim()} dims; flexjit reads tensors of 1 to "
                              f"{_MAX_RANK} dims (reshape it outside the mod)")
        dtype = capture_dtype(t.dtype, f"{_flexjit.current_trace()}: captured tensor '{name}'")
        cap = _flexjit.CapturedTensor(name, dtype, max(t.dim(), 1), bool(t.requires_grad and t.is_floating_point()))
        self.captures[id(t)] = (cap, t)
        return cap


def constant(value) -> Expr:
    """A constant Expr for a Python bool, int or float."""
    if isinstance(value, bool):
        return Expr.constant(ScalarType.Bool, 1.0 if value else 0.0)
    if isinstance(value, numbers.Integral):
        return Expr.constant(ScalarType.I32, float(int(value)))
    return Expr.constant(ScalarType.F32, float(value))


def _is_constant_tensor(t: torch.Tensor) -> bool:
    """0-d CPU tensors without a gradient are read as constants (torch treats them as scalars anywhere)."""
    return t.dim() == 0 and t.device.type == "cpu" and not t.requires_grad


def to_expr(x) -> Expr:
    """The Expr of a SymValue, a Python number or a 0-d tensor; a TraceError for anything else."""
    if isinstance(x, SymValue):
        return x.expr
    if isinstance(x, (bool, numbers.Real)) and not isinstance(x, torch.Tensor):
        return constant(x)
    if isinstance(x, torch.Tensor):
        if _is_constant_tensor(x):
            return constant(TraceContext.current().value_of(x))
        if x.dim() == 0:
            return _flexjit.make_load(TraceContext.current().capture(x), [constant(0)])
        name = TraceContext.current().names.get(id(x), "a captured tensor")
        raise trace_error(f"{name} (shape {list(x.shape)}) is used as a whole; inside a mod every value is a "
                          f"scalar: index it with the mod's indices, e.g. {_index_hint(x.dim())}")
    if isinstance(x, PartialIndex):
        raise x.incomplete()
    raise trace_error(f"a {type(x).__name__} value cannot be used in a traced mod; use Python numbers, traced "
                      f"values or captured torch tensors indexed with them")


def _index_hint(rank: int) -> str:
    return "t[" + ", ".join(["h", "q_idx", "kv_idx", "b"][:rank]) + "]"


def sym(expr: Expr) -> "SymValue":
    return SymValue(expr)


def index_tensor(t: torch.Tensor, index) -> "SymValue | PartialIndex":
    """``t[index]`` for a captured tensor and an index holding SymValues, ints or 0-d tensors."""
    return PartialIndex(TraceContext.current().capture(t), t, []).__getitem__(index)


class PartialIndex:
    """A captured tensor indexed in fewer dims than it has, ``bias[h]`` of a 2-D bias."""

    __slots__ = ("capture", "tensor", "indices")

    def __init__(self, capture, tensor, indices):
        self.capture, self.tensor, self.indices = capture, tensor, indices

    def __getitem__(self, index):
        items = index if isinstance(index, tuple) else (index,)
        indices = list(self.indices)
        for item in items:
            dim = len(indices)
            if dim >= self.capture.rank:
                raise trace_error(f"captured tensor '{self.capture.name}' has {self.capture.rank} dims but was "
                                  f"indexed with {dim + 1} indices")
            indices.append(self._index_expr(item, dim))
        if len(indices) < self.capture.rank:
            return PartialIndex(self.capture, self.tensor, indices)
        return SymValue(_flexjit.make_load(self.capture, indices))

    def _index_expr(self, item, dim: int) -> Expr:
        if item is None or item is Ellipsis or isinstance(item, slice):
            raise trace_error(f"captured tensor '{self.capture.name}' is indexed with {item!r}; slices, None and "
                              f"... are not traced: index every dimension with an int or a traced value, "
                              f"e.g. {_index_hint(self.capture.rank)}")
        if isinstance(item, torch.Tensor) and _is_constant_tensor(item):
            item = TraceContext.current().value_of(item)
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            size = self.tensor.shape[dim] if self.tensor.dim() > 0 else 1
            if not -size <= item < size:
                raise trace_error(f"index {item} is out of range for dim {dim} of captured tensor "
                                  f"'{self.capture.name}' (size {size})")
            return constant(item % size)
        e = to_expr(item)
        if e.type != ScalarType.I32 and e.type != ScalarType.Bool:
            raise trace_error(f"captured tensor '{self.capture.name}' indexed with a float expression at position "
                              f"{dim}; indices must be integers: use .int() (truncates), torch.floor(x).int(), "
                              f"or integer arithmetic (// and %)")
        return e

    def incomplete(self):
        return trace_error(f"captured tensor '{self.capture.name}' has {self.capture.rank} dims but was indexed "
                           f"with {len(self.indices)}; index every dimension, e.g. {_index_hint(self.capture.rank)}")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.incomplete()

    def _use(self, *args, **kwargs):
        raise self.incomplete()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _use
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __and__ = __or__ = __bool__ = _use
    __hash__ = object.__hash__


_BOOL_HINT = ("use torch.where(cond, a, b) instead of `if`/`x if c else y`, and `&`, `|`, `~` instead of "
              "`and`, `or`, `not` (parenthesize comparisons: (q_idx >= lo) & (q_idx < hi)); "
              "torch.maximum/torch.minimum instead of max()/min()")


class SymValue:
    """A traced scalar: score (float32), b, h, q_idx, kv_idx (int32), or an expression of them."""

    __slots__ = ("expr",)
    __hash__ = object.__hash__

    def __init__(self, expr: Expr):
        self.expr = expr

    # Value-like attributes torch code reads.
    @property
    def dtype(self) -> torch.dtype:
        return SCALAR_TO_TORCH[self.expr.type]

    @property
    def shape(self) -> torch.Size:
        return torch.Size([])

    @property
    def ndim(self) -> int:
        return 0

    @property
    def device(self) -> torch.device:
        # Tensors made with device=score.device are 0-d CPU tensors: read as constants, valid on any device.
        return torch.device("cpu")

    def dim(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"SymValue({self.expr.type.name})"

    # Python constructs that need a concrete value.
    def __bool__(self):
        raise trace_error(f"a traced value was used as a Python bool (in `if`, `and`, `or`, `not`, a chained "
                          f"comparison like a < x < b, or bool()); {_BOOL_HINT}")

    def __float__(self):
        raise trace_error("a traced value has no Python value: float() and math.* functions cannot take it; use "
                          "torch functions (torch.exp, torch.log, torch.sqrt, ...) and .float() to convert")

    def __int__(self):
        raise trace_error("a traced value has no Python value: int() cannot take it; use .int() or "
                          ".to(torch.int32) to convert, and // for integer division")

    def __index__(self):
        raise trace_error("a traced value cannot index a Python list or tuple or be used as a Python int; put "
                          "the values in a torch tensor (torch.tensor(values)) and index that")

    def __complex__(self):
        raise trace_error("complex numbers are not supported in traced mods")

    def _math_function(self, *args):
        raise trace_error("math.floor/ceil/trunc and round() cannot take a traced value; use torch.floor, "
                          "torch.ceil or .int() (which truncates)")

    __floor__ = __ceil__ = __trunc__ = __round__ = _math_function

    def __len__(self):
        raise trace_error("a traced value is a scalar: it has no len() and cannot be iterated")

    def __iter__(self):
        raise trace_error("a traced value is a scalar: it has no len() and cannot be iterated")

    def __getitem__(self, index):
        raise trace_error("a traced value is a scalar and cannot be indexed; index captured tensors with it "
                          "instead, e.g. bias[h, q_idx]")

    def item(self):
        raise trace_error("a traced value has no Python value (.item() needs one); keep computing with torch "
                          "operations")

    def tolist(self):
        raise trace_error("a traced value has no Python value (.tolist() needs one)")

    def __array__(self, *args, **kwargs):
        raise trace_error("numpy cannot take a traced value; use the torch function of the same name")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise trace_error(f"numpy.{ufunc.__name__} cannot take a traced value; use torch.{ufunc.__name__} "
                          f"(or the torch equivalent)")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise trace_error(f"'{name}' is not supported on a traced value; see docs/python.md for the torch "
                          f"functions and methods flexjit traces", TraceAttributeError)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from ._torch_ops import dispatch
        return dispatch(func, args, kwargs or {})


def result_expr(value, kind: str) -> Expr:
    """The Expr a mod returned (a SymValue, a Python number or a 0-d tensor)."""
    if isinstance(value, (SymValue, bool, numbers.Real, torch.Tensor, PartialIndex)):
        return to_expr(value)
    raise trace_error(f"a {kind} must return a scalar tensor expression, got {type(value).__name__}")

