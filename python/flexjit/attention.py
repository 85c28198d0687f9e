"""flex_attention with torch's signature: torch tensors in and out without copies, autograd through a
torch.autograd.Function whose backward is flexjit's (dq, dk, dv and the gradients of captured tensors that
require one, derived from the score_mod by the compiler).

CPU tensors run through the C++ float64 reference (correct, not fast), forward and backward; CUDA tensors
run the generated kernels on torch's current stream.
"""
import atexit
import numbers

import torch
from torch.autograd.function import once_differentiable

from . import _flexjit
from ._cache import resolve
from ._errors import FlexjitError
from ._tensors import stream_handle, view
from ._trace import SCORE_MOD, BoundMod, TracedMod
from .block_mask import block_mask_view

try:
    from torch.nn.attention.flex_attention import AuxOutput
except ImportError:  # torch before 2.9
    AuxOutput = None

# A training forward compiles the backward on C++ threads; exiting under one (the script failed right
# after its first forward) would crash in NVRTC's destroyed statics, so the interpreter waits at exit.
atexit.register(_flexjit.wait_for_background_compiles)

_NOOP_SCORE = BoundMod(TracedMod(_flexjit.ScoreMod.noop(), []), [])
_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LAYOUTS = {"query": "[B, Hq, Q_LEN, D]", "key": "[B, Hkv, KV_LEN, D]", "value": "[B, Hkv, KV_LEN, Dv]"}


class _Call:
    """What forward and backward share: the bound score_mod, the block mask and the scale."""

    __slots__ = ("score", "block_mask", "scale")

    def __init__(self, score, block_mask, scale):
        self.score, self.block_mask, self.scale = score, block_mask, scale


def _check_inputs(q, k, v, enable_gqa):
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if not isinstance(t, torch.Tensor):
            raise FlexjitError(f"flex_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise FlexjitError(f"flex_attention: {name} must be 4-D {_LAYOUTS[name]}, got shape {list(t.shape)}")
        if t.dtype not in _INPUT_DTYPES:
            raise FlexjitError(f"flex_attention: {name} has dtype {t.dtype}; use float16 or bfloat16 (or float32 "
                               f"on the CPU)")
    if not enable_gqa and q.size(1) != k.size(1):
        raise FlexjitError(f"flex_attention: query has {q.size(1)} heads but key/value have {k.size(1)}; pass "
                           f"enable_gqa=True for grouped-query attention")


def _scale(scale):
    """None (1/sqrt(D)) or a float; any finite value, 0 and negative ones included (checked in C++)."""
    if scale is None:
        return None
    if isinstance(scale, numbers.Real) or (isinstance(scale, torch.Tensor) and scale.numel() == 1):
        return float(scale)
    raise FlexjitError(f"flex_attention: scale must be a number, got {type(scale).__name__}")


def _forward(call: _Call, q, k, v, training=False):
    out = torch.empty((q.size(0), q.size(1), q.size(2), v.size(3)), dtype=q.dtype, device=q.device)
    lse = torch.empty((q.size(0), q.size(1), q.size(2)), dtype=torch.float32, device=q.device)
    mask = block_mask_view(call.block_mask)
    call.score.bind()
    _flexjit.flex_attention_into(view(q, "query"), view(k, "key"), view(v, "value"), call.score.mod, mask,
                                 view(out, "out"), view(lse, "lse"), call.scale, stream_handle(q.device),
                                 compile_backward_ahead=training)
    return out, lse


def _last_dim_contiguous(t):
    return t if t.size(-1) <= 1 or t.stride(-1) == 1 else t.contiguous()


class _FlexAttentionFunction(torch.autograd.Function):
    """Inputs: q, k, v, the call, then the captured tensors that receive gradients (so autograd routes their
    gradients to .grad). Outputs: out and lse."""

    @staticmethod
    def forward(ctx, q, k, v, call, *grad_tensors):
        # A backward will follow: its kernels compile in the background while the forward runs.
        out, lse = _forward(call, q, k, v, training=True)
        ctx.call = call
        ctx.num_grad_tensors = len(grad_tensors)
        ctx.save_for_backward(q, k, v, out, lse, *call.score.tensors)
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse):
        if dlse is not None and bool((dlse != 0).any()):
            raise FlexjitError("flex_attention: gradients through the returned lse are not supported; use the "
                               "lse without gradient (lse.detach()) or compute the loss from the output")
        none_grads = (None,) * (4 + ctx.num_grad_tensors)
        if dout is None:
            return none_grads
        q, k, v, out, lse, *score_tensors = ctx.saved_tensors
        call = ctx.call
        score = call.score.with_tensors(score_tensors)
        grad_tensors = score.gradient_tensors()
        dout = _last_dim_contiguous(dout.to(q.dtype))
        dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
        capture_grads = [torch.zeros(t.shape if t.dim() > 0 else (1,), dtype=torch.float32, device=q.device)
                         for t in grad_tensors]
        mask = block_mask_view(call.block_mask)
        score.bind()
        _flexjit.flex_attention_backward_into(
            view(q, "query"), view(k, "key"), view(v, "value"), view(out, "out"), view(lse, "lse"),
            view(dout, "grad_out"), score.mod, mask, view(dq, "dq"), view(dk, "dk"), view(dv, "dv"),
            [view(g, "capture gradient") for g in capture_grads], call.scale, stream_handle(q.device))
        grads = [g.reshape(t.shape).to(t.dtype) for g, t in zip(capture_grads, grad_tensors)]
        return (dq, dk, dv, None, *grads)


def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None, enable_gqa=False,
                   return_lse=False, kernel_options=None, *, return_aux=None):
    """Attention with a score_mod and a block mask, torch.nn.attention.flex_attention's signature.

    query [B, Hq, Q_LEN, D], key [B, Hkv, KV_LEN, D], value [B, Hkv, KV_LEN, Dv]: float16 / bfloat16 on a
    GPU, float16 / bfloat16 / float32 on the CPU. Returns out [B, Hq, Q_LEN, Dv] (query's dtype), with
    return_lse=True also the log-sum-exp [B, Hq, Q_LEN] (float32, natural log; -inf for fully masked rows,
    whose output is 0). kernel_options is accepted and ignored (flexjit chooses its own tiles).
    """
    _check_inputs(query, key, value, enable_gqa)
    if return_aux is not None and getattr(return_aux, "max_scores", False):
        raise FlexjitError("flex_attention: return_aux max_scores is not supported; request lse only")
    score = resolve(SCORE_MOD, score_mod) if score_mod is not None else _NOOP_SCORE
    call = _Call(score, block_mask, _scale(scale))
    grad_tensors = score.gradient_tensors() if torch.is_grad_enabled() else []
    if torch.is_grad_enabled() and (grad_tensors or query.requires_grad or key.requires_grad or value.requires_grad):
        out, lse = _FlexAttentionFunction.apply(query, key, value, call, *grad_tensors)
    else:
        out, lse = _forward(call, query, key, value)
    if return_aux is not None:
        if AuxOutput is None:
            raise FlexjitError("flex_attention: return_aux needs torch >= 2.9; use return_lse=True")
        return out, AuxOutput(lse=lse if getattr(return_aux, "lse", False) else None)
    return (out, lse) if return_lse else out
