"""Attention sinks as in gpt-oss: a learned logit per head that joins every row's softmax denominator (an
extra key with no value), with a sliding-window mask. The sinks are a captured tensor that requires a
gradient: flexjit's backward fills sinks.grad. Checked against the same maths in plain torch.
"""
import torch

import flexjit
from _common import DEVICE, inputs

B, H, L, WINDOW = 2, 8, 512, 128
sinks = torch.nn.Parameter(torch.randn(H, device=DEVICE))


def sliding_window(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx < WINDOW)


def plain(q, k, v):
    """softmax over [scores, sink] (the sink column dropped afterwards) in float64."""
    q, k, v = (t.double() for t in (q, k, v))
    i = torch.arange(L, device=q.device).view(L, 1)
    j = torch.arange(L, device=q.device).view(1, L)
    s = (q @ k.transpose(-1, -2) / q.size(-1) ** 0.5).masked_fill(~((i >= j) & (i - j < WINDOW)), float("-inf"))
    sink = sinks.double().view(1, H, 1, 1).expand(B, H, L, 1)
    p = torch.softmax(torch.cat([s, sink], dim=-1), dim=-1)[..., :L]
    return p @ v


q, k, v = inputs(B, H, L, requires_grad=True)
mask = flexjit.create_block_mask(sliding_window, None, None, L, L, device=DEVICE)
out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, sink_mod=lambda b, h, q_idx: sinks[h], return_lse=True)
out.float().sum().backward()
got = (q.grad.clone(), sinks.grad.clone())
q.grad = None
sinks.grad = None
want = plain(q, k, v)
want.sum().backward()
print(f"attention sinks + sliding window: out {tuple(out.shape)} {out.dtype} on {DEVICE}")
print(f"  max |flexjit - torch| = {(out.double() - want).abs().max().item():.2e} (plain torch, float64)")
print(f"  max |dq - plain torch| = {(got[0].double() - q.grad.double()).abs().max().item():.2e}")
print(f"  sinks.grad = {got[1].tolist()}")
print(f"  max |d sinks - plain torch| = {(got[1].double() - sinks.grad.double()).abs().max().item():.2e}")
