"""torch tensors <-> flexjit views, without copies.

A torch tensor crosses into C++ as a ``TensorView``: its data pointer, dtype, device and shape and strides
in elements. Tensors flexjit owns (block-mask tensors, dense masks) come back as torch tensors over the same
memory: through the buffer protocol on the CPU, through ``__cuda_array_interface__`` on a GPU. Either way
the torch tensor keeps the flexjit tensor alive.
"""
import sys

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import _flexjit
from ._errors import FlexjitError

_DType = _flexjit.DType

TORCH_TO_DTYPE = {
    torch.bool: _DType.Bool,
    torch.int32: _DType.I32,
    torch.int64: _DType.I64,
    torch.float32: _DType.F32,
    torch.float16: _DType.F16,
    torch.bfloat16: _DType.BF16,
}
DTYPE_TO_TORCH = {v: k for k, v in TORCH_TO_DTYPE.items()}
_TYPESTR = {_DType.Bool: "|b1", _DType.I32: "<i4", _DType.I64: "<i8", _DType.F32: "<f4", _DType.F16: "<f2"}


def flexjit_dtype(dtype: torch.dtype, what: str) -> "_flexjit.DType":
    """The flexjit dtype of a torch dtype; FlexjitError naming `what` for one flexjit cannot read."""
    try:
        return TORCH_TO_DTYPE[dtype]
    except KeyError:
        names = ", ".join(str(d).replace("torch.", "") for d in TORCH_TO_DTYPE)
        raise FlexjitError(f"{what} has dtype {dtype}; flexjit supports {names}") from None


def flexjit_device(device) -> "_flexjit.Device":
    """A flexjit Device from a torch device (or anything torch.device accepts)."""
    device = torch.device(device)
    if device.type == "cpu":
        return _flexjit.Device(_flexjit.DeviceKind.CPU, 0)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return _flexjit.Device(_flexjit.DeviceKind.CUDA, index)
    raise FlexjitError(f"flexjit runs on cpu and cuda devices, got {device}")


def torch_device(device: "_flexjit.Device") -> torch.device:
    if device.kind == _flexjit.DeviceKind.CPU:
        return torch.device("cpu")
    return torch.device("cuda", device.index)


def view(t: torch.Tensor, what: str) -> "_flexjit.TensorView":
    """A view of `t` (no copy). 0-d tensors are seen as shape [1]."""
    dtype = flexjit_dtype(t.dtype, what)
    shape, strides = (list(t.shape), list(t.stride())) if t.dim() > 0 else ([1], [1])
    return _flexjit.TensorView(t.data_ptr(), dtype, flexjit_device(t.device), shape, strides)


# A mod computes integers in int32. On a little-endian host an int64 tensor is read through the low 32-bit
# word of each element (the same pointer, doubled strides), which is its value whenever the value fits
# int32: checked here once per tensor version, so a GPU tensor costs one reduction when new, not a host
# copy on every call (the C++ check of int64 views). Elsewhere int64 views go to C++ as they are.
INT64_AS_INT32 = sys.byteorder == "little"
_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1
_int64_checked = WeakIdKeyDictionary()   # tensor -> (version, data pointer) when its values last fit int32


# Captured tensors of these dtypes are read through a copy in the dtype a mod computes in (float32, int32),
# made by torch on every call (differentiable: a float64 parameter gets its gradient through the copy). The
# kernels read only bool, int32, int64, float32, float16 and bfloat16; these are rare in mods and small.
CONVERTED_CAPTURES = {torch.float64: torch.float32, torch.int8: torch.int32, torch.uint8: torch.int32,
                      torch.int16: torch.int32}


def capture_tensor(t: torch.Tensor) -> torch.Tensor:
    """The tensor a mod's capture reads for `t`: `t` itself, or its copy (CONVERTED_CAPTURES)."""
    to = CONVERTED_CAPTURES.get(t.dtype)
    return t if to is None else t.to(to)


def capture_dtype(dtype: torch.dtype, what: str) -> "_flexjit.DType":
    """The flexjit dtype a captured tensor of `dtype` is read as."""
    dtype = CONVERTED_CAPTURES.get(dtype, dtype)
    if dtype == torch.int64 and INT64_AS_INT32:
        return _DType.I32
    if dtype not in TORCH_TO_DTYPE:
        names = ", ".join(str(d).replace("torch.", "") for d in TORCH_TO_DTYPE)
        raise FlexjitError(f"{what} has dtype {dtype}; a mod reads {names} (and float64, int8, uint8, int16 "
                           f"through a float32 / int32 copy)")
    return flexjit_dtype(dtype, what)


def _check_fits_int32(t: torch.Tensor, what: str) -> None:
    try:
        stamp = (t._version, t.data_ptr())
    except RuntimeError:   # an inference-mode tensor has no version counter: checked on every use
        stamp = None
    if stamp is not None and _int64_checked.get(t) == stamp:
        return
    if t.numel() > 0:
        lo, hi = (int(x) for x in torch.aminmax(t.detach()))
        if lo < _INT32_MIN or hi > _INT32_MAX:
            bad = hi if hi > _INT32_MAX else lo
            raise FlexjitError(f"{what} (int64) holds {bad}; a mod computes integers in int32, so it would wrap: "
                               f"keep the values in [-2^31, 2^31) (e.g. renumber ids) or pass int32")
    if stamp is not None:
        _int64_checked[t] = stamp


def capture_view(t: torch.Tensor, what: str) -> "_flexjit.TensorView":
    """The view a captured tensor is bound through (see INT64_AS_INT32)."""
    if t.dtype != torch.int64 or not INT64_AS_INT32:
        return view(t, what)
    _check_fits_int32(t, what)
    shape, strides = (list(t.shape), list(t.stride())) if t.dim() > 0 else ([1], [1])
    return _flexjit.TensorView(t.data_ptr(), _DType.I32, flexjit_device(t.device), shape, [2 * s for s in strides])


def contiguous_view(t: torch.Tensor, what: str) -> "_flexjit.TensorView":
    """A view of a contiguous tensor with row-major strides (torch leaves the strides of size-1 dims
    arbitrary; flexjit's contiguity checks compare every stride)."""
    t = t.contiguous()
    strides, step = [], 1
    for n in reversed(t.shape):
        strides.append(step)
        step *= max(int(n), 1)
    return _flexjit.TensorView(t.data_ptr(), flexjit_dtype(t.dtype, what), flexjit_device(t.device), list(t.shape),
                               strides[::-1])


def optional_view(t, what: str):
    return None if t is None else view(t, what)


def stream_handle(device: torch.device) -> int:
    """The CUstream of torch's current stream on `device` (0 on the CPU)."""
    if device.type != "cuda":
        return 0
    return torch.cuda.current_stream(device).cuda_stream


class _CudaArray:
    """A flexjit-owned GPU tensor described by __cuda_array_interface__ (torch.as_tensor keeps it alive)."""

    def __init__(self, tensor):
        self._tensor = tensor

    @property
    def __cuda_array_interface__(self):
        t = self._tensor
        return {"shape": tuple(t.shape), "typestr": _TYPESTR[t.dtype], "data": (t.data_ptr, False),
                "version": 2, "strides": None}


def from_owned(tensor) -> torch.Tensor:
    """A torch tensor over a flexjit-owned tensor's memory (no copy)."""
    if tensor is None:
        return None
    dtype = DTYPE_TO_TORCH[tensor.dtype]
    shape = tuple(tensor.shape)
    device = torch_device(tensor.device)
    if tensor.nbytes == 0:
        return torch.empty(shape, dtype=dtype, device=device)
    if device.type == "cpu":
        return torch.frombuffer(tensor, dtype=dtype).view(shape)
    return torch.as_tensor(_CudaArray(tensor), device=device)
