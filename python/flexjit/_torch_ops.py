"""The torch functions, tensor methods and Python operators a traced mod may use on SymValues.

One table, by name: ``torch.exp(x)``, ``x.exp()`` and ``Tensor.exp`` (reached through __torch_function__)
share the handler "exp". Each handler builds C++ DSL nodes (whose type rules follow torch: bool < int32 <
float32, ``/`` gives float, ``//`` and ``%`` round like Python). Anything not listed raises a TraceError that
names the function.
"""
import math
import numbers

import torch

from ._errors import trace_error
from ._sym import (Op, ScalarType, SymValue, TraceContext, constant, index_tensor, make_op, to_expr)


def _op(op, *args) -> SymValue:
    return SymValue(make_op(op, [to_expr(a) for a in args]))


def _scalar_type(dtype) -> "ScalarType":
    """The DSL type a torch dtype computes in: every float is float32, every integer int32."""
    if dtype == torch.bool:
        return ScalarType.Bool
    if dtype.is_floating_point:
        return ScalarType.F32
    if dtype.is_complex:
        raise trace_error(f"{dtype} is not supported in traced mods")
    return ScalarType.I32


_CONVERT = {ScalarType.Bool: Op.ToBool, ScalarType.I32: Op.ToI32, ScalarType.F32: Op.ToF32}


def _convert(x, stype) -> SymValue:
    e = to_expr(x)
    return SymValue(e if e.type == stype else make_op(_CONVERT[stype], [e]))


def _constant_of(value, dtype) -> SymValue:
    stype = _scalar_type(dtype)
    if isinstance(value, SymValue):
        return _convert(value, stype)
    if isinstance(value, torch.Tensor):
        value = TraceContext.current().value_of(value)
    if stype == ScalarType.Bool:
        return SymValue(constant(bool(value)))
    return SymValue(constant(int(value) if stype == ScalarType.I32 else float(value)))


def _unary(op):
    return lambda x: _op(op, x)


def _binary(op):
    return lambda a, b: _op(op, a, b)


def _reflected(op):
    return lambda a, b: _op(op, b, a)


def _logical(op):
    return lambda a, b: _op(op, _convert(a, ScalarType.Bool), _convert(b, ScalarType.Bool))


def _add(a, b, *, alpha=None):
    return _op(Op.Add, a, b if alpha is None else _op(Op.Mul, b, alpha))


def _sub(a, b, *, alpha=None):
    return _op(Op.Sub, a, b if alpha is None else _op(Op.Mul, b, alpha))


def _rsub(a, b, *, alpha=None):
    return _sub(b, a, alpha=alpha)


def _is_float(x) -> bool:
    return to_expr(x).type == ScalarType.F32


def _div(a, b, *, rounding_mode=None):
    if rounding_mode is None:
        return _op(Op.Div, a, b)
    if rounding_mode == "floor":
        return _op(Op.FloorDiv, a, b)
    if rounding_mode == "trunc":
        if _is_float(a) or _is_float(b):
            return _op(Op.Trunc, _op(Op.Div, a, b))   # torch: trunc(a / b)
        # a - fmod(a, b) is a multiple of b, so floor division is exact there; b == 0 gives 0 as // does.
        return _op(Op.FloorDiv, _op(Op.Sub, a, _op(Op.FMod, a, b)), b)
    raise trace_error(f"torch.div(rounding_mode={rounding_mode!r}): the rounding modes are None, 'trunc' and "
                      f"'floor'")


def _round(x, *, decimals=0):
    if decimals == 0:
        return _op(Op.Round, x)
    # torch: round(x * 10^d) / 10^d, or round(x / 10^-d) * 10^-d for negative d
    if decimals > 0:
        return _op(Op.Div, _op(Op.Round, _op(Op.Mul, x, 10.0 ** decimals)), 10.0 ** decimals)
    return _op(Op.Mul, _op(Op.Round, _op(Op.Div, x, 10.0 ** -decimals)), 10.0 ** -decimals)


def _sign(x):
    """torch.sign: -1, 0 or 1 in x's type (0 for NaN, whose comparisons are false); no gradient, as in torch."""
    stype = to_expr(x).type
    if stype == ScalarType.Bool:
        return SymValue(to_expr(x))
    return _op(Op.Sub, _convert(_op(Op.Gt, x, 0), stype), _convert(_op(Op.Lt, x, 0), stype))


def _softplus(x, beta=1.0, threshold=20.0):
    """torch.nn.functional.softplus: log1p(exp(beta x)) / beta, linear where beta x > threshold."""
    bx = _op(Op.Mul, x, beta)
    return _op(Op.Where, _op(Op.Gt, bx, threshold), _convert(x, ScalarType.F32),
               _op(Op.Div, _op(Op.Log1p, _op(Op.Exp, bx)), beta))


_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu(x, approximate="none"):
    """torch.nn.functional.gelu: x * Phi(x) through erf, or the tanh approximation."""
    if approximate == "none":
        return _op(Op.Mul, _op(Op.Mul, x, 0.5), _op(Op.Add, 1.0, _op(Op.Erf, _op(Op.Mul, x, _SQRT_HALF))))
    if approximate == "tanh":
        inner = _op(Op.Mul, _op(Op.Add, x, _op(Op.Mul, _op(Op.Mul, _op(Op.Mul, x, x), x), 0.044715)),
                    _SQRT_2_OVER_PI)
        return _op(Op.Mul, _op(Op.Mul, x, 0.5), _op(Op.Add, 1.0, _op(Op.Tanh, inner)))
    raise trace_error(f"gelu(approximate={approximate!r}): approximate is 'none' or 'tanh'")


_F32_MAX = 3.4028234663852886e38


def _nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """torch.nan_to_num; infinities become float32's extremes by default (mods compute in float32)."""
    if not _is_float(x):
        return SymValue(to_expr(x))
    x = SymValue(to_expr(x))
    posinf = _F32_MAX if posinf is None else posinf
    neginf = -_F32_MAX if neginf is None else neginf
    r = _op(Op.Where, _op(Op.Eq, x, _INF), posinf, x)
    r = _op(Op.Where, _op(Op.Eq, x, -_INF), neginf, r)
    return _op(Op.Where, _op(Op.Ne, x, x), nan, r)


def _shift(op):
    return lambda a, b: _op(op, a, b)


def _ipow(x, n: int) -> SymValue:
    result, base = None, x
    while n:
        if n & 1:
            result = base if result is None else _op(Op.Mul, result, base)
        n >>= 1
        if n:
            base = _op(Op.Mul, base, base)
    return result if result is not None else _constant_of(1, x.dtype)


_MAX_INT_EXPONENT = 16


def _traced_pow(a, b) -> SymValue:
    """a ** b through the pow op: a float result (an int base with a traced int exponent would be an int power)."""
    if not _is_float(a) and not _is_float(b):
        raise trace_error("int ** (traced int) is not traced (torch computes an integer power); convert one side "
                          "to float, e.g. x.float() ** n")
    return _op(Op.Pow, a, b)


def _pow(a, b):
    if isinstance(b, numbers.Real) and not isinstance(a, numbers.Real):
        a = SymValue(to_expr(a))
        e = float(b)
        if e.is_integer() and abs(e) <= _MAX_INT_EXPONENT:
            r = _ipow(a, abs(int(e)))
            if not isinstance(b, numbers.Integral):
                r = _convert(r, ScalarType.F32)
            return _op(Op.Div, 1.0, r) if e < 0 else r
        if e == 0.5:
            return _op(Op.Sqrt, a)
        if e == -0.5:
            return _op(Op.Rsqrt, a)
        return _op(Op.Pow, a, e)
    if isinstance(a, numbers.Real) and not isinstance(a, bool) and a > 0:
        b = SymValue(to_expr(b))
        if isinstance(a, numbers.Integral) and b.expr.type != ScalarType.F32:
            raise trace_error(f"{a} ** (int) is not traced (it would be an integer power); write {float(a)} ** x "
                              f"for a float result")
        return _op(Op.Exp2, b if a == 2 else _op(Op.Mul, b, math.log2(a)))
    return _traced_pow(a, b)


def _where(cond, a=None, b=None):
    if a is None or b is None:
        raise trace_error("torch.where(cond) with one argument is not traced; use torch.where(cond, a, b)")
    return _op(Op.Where, cond, a, b)


def _where_method(x, condition=None, y=None):
    """x.where(condition, y) is torch's where(condition, x, y)."""
    return _where(condition, x, y)


def _clamp(x, min=None, max=None):
    r = SymValue(to_expr(x))
    if min is not None:
        r = _op(Op.Max, r, min)
    if max is not None:
        r = _op(Op.Min, r, max)
    return r


def _two_arg(op, name):
    def f(a, b=None, *args, **kwargs):
        if b is None or args or kwargs:
            raise trace_error(f"torch.{name} is traced only in its two-tensor form {name}(a, b) (elementwise); "
                              f"use torch.{'maximum' if op == Op.Max else 'minimum'}(a, b)")
        return _op(op, a, b)
    return f


def _dtype_argument(args, kwargs):
    """The target dtype of .to(...) / .type(...): a dtype, or another tensor's dtype; None for device moves."""
    for a in list(args) + [kwargs.get("dtype"), kwargs.get("other")]:
        if isinstance(a, torch.dtype):
            return a
        if isinstance(a, (torch.Tensor, SymValue)):
            return a.dtype
    return None


def _to(x, *args, **kwargs):
    dtype = _dtype_argument(args, kwargs)
    return SymValue(to_expr(x)) if dtype is None else _convert(x, _scalar_type(dtype))


def _type(x, dtype=None, **kwargs):
    if dtype is None:
        raise trace_error("x.type() without a dtype returns a string; use x.dtype")
    if not isinstance(dtype, torch.dtype):
        raise trace_error(f"x.type({dtype!r}) is not traced; use x.to(torch.float32) and similar")
    return _convert(x, _scalar_type(dtype))


def _cast(stype):
    return lambda x, *args, **kwargs: _convert(x, stype)


def _scalar_size(size) -> None:
    sizes = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    if math.prod(int(s) for s in sizes) != 1:
        raise trace_error(f"new tensors of size {tuple(sizes)} are not traced; inside a mod every value is a "
                          f"scalar (use size ())")


def _new_full_like(x, fill, dtype):
    return _constant_of(fill, dtype if dtype is not None else x.dtype)


def _new_ones(x, *size, dtype=None, **kwargs):
    _scalar_size(size)
    return _new_full_like(x, 1, dtype)


def _new_zeros(x, *size, dtype=None, **kwargs):
    _scalar_size(size)
    return _new_full_like(x, 0, dtype)


def _new_full(x, size, fill_value, *, dtype=None, **kwargs):
    _scalar_size((size,))
    return _new_full_like(x, fill_value, dtype)


def _new_tensor(x, data, *, dtype=None, **kwargs):
    if isinstance(data, (list, tuple)):
        raise trace_error("new_tensor with a list is not traced; capture a torch tensor made outside the mod")
    return _new_full_like(x, data, dtype)


def _full_like(x, fill_value, *, dtype=None, **kwargs):
    return _new_full_like(x, fill_value, dtype)


def _getitem(t, index):
    if isinstance(t, torch.Tensor):
        return index_tensor(t, index)
    raise trace_error(f"cannot index a {type(t).__name__} with a traced value")


def _identity(x, *args, **kwargs):
    return SymValue(to_expr(x))


_INF = float("inf")

HANDLERS = {
    # Unary math (ints are converted to float first, like torch).
    **{n: _unary(op) for n, op in {
        "exp": Op.Exp, "exp2": Op.Exp2, "log": Op.Log, "log2": Op.Log2, "sqrt": Op.Sqrt, "rsqrt": Op.Rsqrt,
        "tanh": Op.Tanh, "sigmoid": Op.Sigmoid, "expit": Op.Sigmoid, "special_expit": Op.Sigmoid,
        "abs": Op.Abs, "absolute": Op.Abs, "__abs__": Op.Abs, "floor": Op.Floor, "ceil": Op.Ceil,
        "neg": Op.Neg, "negative": Op.Neg, "__neg__": Op.Neg, "bitwise_not": Op.Not, "__invert__": Op.Not,
        "trunc": Op.Trunc, "fix": Op.Trunc, "sin": Op.Sin, "cos": Op.Cos, "tan": Op.Tan, "atan": Op.Atan,
        "arctan": Op.Atan, "erf": Op.Erf, "special_erf": Op.Erf, "log1p": Op.Log1p, "special_log1p": Op.Log1p,
        "expm1": Op.Expm1, "special_expm1": Op.Expm1,
    }.items()},
    "round": _round, "sign": _sign, "sgn": _sign, "reciprocal": lambda x: _op(Op.Div, 1.0, x),
    "softplus": _softplus, "gelu": _gelu, "nan_to_num": _nan_to_num,
    "logical_not": lambda x: _op(Op.Not, _convert(x, ScalarType.Bool)),
    "square": lambda x: _op(Op.Mul, x, x),
    "relu": lambda x, inplace=False: _op(Op.Max, x, 0),
    "__pos__": _identity, "positive": _identity, "clone": _identity, "contiguous": _identity,
    "isnan": lambda x: _op(Op.Ne, x, x),
    "isinf": lambda x: _op(Op.Eq, _op(Op.Abs, x), _INF),
    "isfinite": lambda x: _op(Op.Lt, _op(Op.Abs, x), _INF),
    "isposinf": lambda x: _op(Op.Eq, x, _INF),
    "isneginf": lambda x: _op(Op.Eq, x, -_INF),
    # Arithmetic.
    "add": _add, "__add__": _add, "__radd__": _reflected(Op.Add),
    "sub": _sub, "subtract": _sub, "__sub__": _sub, "rsub": _rsub, "__rsub__": _reflected(Op.Sub),
    **{n: _binary(Op.Mul) for n in ("mul", "multiply", "__mul__")}, "__rmul__": _reflected(Op.Mul),
    "div": _div, "divide": _div, "true_divide": _binary(Op.Div), "__truediv__": _binary(Op.Div),
    "__div__": _binary(Op.Div), "__rtruediv__": _reflected(Op.Div), "__rdiv__": _reflected(Op.Div),
    "floor_divide": _binary(Op.FloorDiv), "__floordiv__": _binary(Op.FloorDiv),
    "__rfloordiv__": _reflected(Op.FloorDiv),
    "remainder": _binary(Op.Mod), "__mod__": _binary(Op.Mod), "__rmod__": _reflected(Op.Mod), "fmod": _binary(Op.FMod),
    "pow": _pow, "__pow__": _pow, "__rpow__": lambda a, b: _pow(b, a), "float_power": _pow,
    "minimum": _binary(Op.Min), "maximum": _binary(Op.Max), "min": _two_arg(Op.Min, "min"),
    "max": _two_arg(Op.Max, "max"),
    # Comparisons and logic.
    **{n: _binary(op) for n, op in {
        "eq": Op.Eq, "__eq__": Op.Eq, "ne": Op.Ne, "not_equal": Op.Ne, "__ne__": Op.Ne,
        "lt": Op.Lt, "less": Op.Lt, "__lt__": Op.Lt, "le": Op.Le, "less_equal": Op.Le, "__le__": Op.Le,
        "gt": Op.Gt, "greater": Op.Gt, "__gt__": Op.Gt, "ge": Op.Ge, "greater_equal": Op.Ge, "__ge__": Op.Ge,
        "bitwise_and": Op.And, "__and__": Op.And, "bitwise_or": Op.Or, "__or__": Op.Or,
        "bitwise_xor": Op.Xor, "__xor__": Op.Xor,
    }.items()},
    "bitwise_left_shift": _shift(Op.Shl), "__lshift__": _shift(Op.Shl), "__rlshift__": _reflected(Op.Shl),
    "bitwise_right_shift": _shift(Op.Shr), "__rshift__": _shift(Op.Shr), "__rrshift__": _reflected(Op.Shr),
    "__rand__": _reflected(Op.And), "__ror__": _reflected(Op.Or), "__rxor__": _reflected(Op.Xor),
    "logical_and": _logical(Op.And), "logical_or": _logical(Op.Or), "logical_xor": _logical(Op.Xor),
    "where": _where, "clamp": _clamp, "clip": _clamp,
    "clamp_min": lambda x, min: _clamp(x, min=min), "clamp_max": lambda x, max: _clamp(x, max=max),
    # Conversions and scalar constructors.
    "to": _to, "type": _type, "type_as": lambda x, other: _convert(x, _scalar_type(other.dtype)),
    "float": _cast(ScalarType.F32), "double": _cast(ScalarType.F32), "half": _cast(ScalarType.F32),
    "bfloat16": _cast(ScalarType.F32), "int": _cast(ScalarType.I32), "long": _cast(ScalarType.I32),
    "short": _cast(ScalarType.I32), "bool": _cast(ScalarType.Bool),
    "new_ones": _new_ones, "new_zeros": _new_zeros, "new_full": _new_full, "new_tensor": _new_tensor,
    "full_like": _full_like, "zeros_like": lambda x, **kw: _full_like(x, 0, **kw),
    "ones_like": lambda x, **kw: _full_like(x, 1, **kw),
    # Captured tensors indexed with traced values.
    "__getitem__": _getitem,
}

# Tensor methods whose arguments come in another order than the torch function of the same name.
_METHOD_HANDLERS = {"where": _where_method}

# Python operators and tensor methods on SymValue (torch functions reach dispatch() instead).
_METHODS = [n for n in HANDLERS if n not in ("__getitem__", "expit", "special_expit", "relu", "rsub", "softplus",
                                             "gelu") and not n.startswith("special_")]


def _function_name(func, name) -> str:
    """'torch.softmax', 'Tensor.softmax' or 'torch.nn.functional.gelu' for messages."""
    qualified = getattr(func, "__qualname__", None) or name or repr(func)
    if qualified.startswith("_VariableFunctionsClass."):
        return f"torch.{name}"
    if qualified.startswith(("Tensor.", "TensorBase.", "_TensorBase.")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None)
    return f"{module}.{qualified}" if module else qualified


def dispatch(func, args, kwargs):
    """SymValue.__torch_function__: the handler of `func`, or a TraceError naming it."""
    name = getattr(func, "__name__", None)
    shown = _function_name(func, name)
    handler = _METHOD_HANDLERS.get(name) if shown.startswith("Tensor.") else None
    handler = handler or HANDLERS.get(name)
    if handler is None:
        raise trace_error(f"{shown} is not supported in traced mods; see docs/python.md for the torch functions "
                          f"flexjit traces (where, exp, log, sqrt, tanh, sigmoid, sin, cos, atan, erf, log1p, "
                          f"expm1, pow, abs, clamp, minimum, maximum, floor, round, trunc, fmod, arithmetic, "
                          f"shifts, comparisons, indexing captured tensors)")
    return handler(*args, **kwargs)


def _install_methods():
    for name in _METHODS:
        setattr(SymValue, name, _METHOD_HANDLERS.get(name, HANDLERS[name]))


_install_methods()
