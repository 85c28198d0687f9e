"""A dense attention reference written with torch ops (autograd included): the score_mod and mask_mod are
evaluated on the whole [B, H, Lq, Lkv] score matrix with torch.vmap, the way torch's create_mask does, then
softmax and the product with V. Fully masked rows give output 0 and LSE -inf, as flex_attention defines.
"""
import torch
from torch.nn.attention.flex_attention import create_mask as torch_create_mask

try:
    from torch._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex
except ImportError:  # pragma: no cover - older torch
    TransformGetItemToIndex = None

_INNER_TO_OUTER = [(None, None, None, 0), (None, None, 0, None), (None, 0, None, None), (0, None, None, None)]


def _apply_score_mod(score_mod, scores):
    B, H, Lq, Lkv = scores.shape
    dev = scores.device
    idx = [torch.arange(n, device=dev, dtype=torch.int32) for n in (B, H, Lq, Lkv)]
    fn = score_mod
    for dims in _INNER_TO_OUTER:
        fn = torch.vmap(fn, in_dims=(0,) + dims, out_dims=0)
    with TransformGetItemToIndex():
        return fn(scores, *idx)


def dense_attention(q, k, v, score_mod=None, mask_mod=None, scale=None, dtype=torch.float64):
    """(out, lse) in `dtype`, differentiable w.r.t. q, k, v and tensors the mods capture."""
    B, Hq, Lq, D = q.shape
    Hkv, Lkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scale = D ** -0.5 if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    if score_mod is not None:
        s = _apply_score_mod(score_mod, s)
    if mask_mod is not None:
        keep = torch_create_mask(mask_mod, B, Hq, Lq, Lkv, device=q.device)
        s = s.masked_fill(~keep, float("-inf"))
    m = s.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    denom = p.sum(-1, keepdim=True)
    # Captured float32 tensors promote the scores (and p) past a low-precision `dtype`: multiply in v's.
    out = (p.to(v.dtype) @ v) / torch.where(denom > 0, denom, torch.ones_like(denom)).to(v.dtype)
    lse = (torch.log(denom) + m).squeeze(-1)
    return out, lse
