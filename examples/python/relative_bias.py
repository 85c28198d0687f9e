"""A learned relative-position bias (T5-style, one value per head and distance): the bias is a captured
tensor that requires a gradient, so the backward pass fills bias.grad (derived by flexjit's autodiff)."""
import torch

from _common import DEVICE, backward, inputs, run

H, L = 4, 512
bias = torch.zeros(H, L, device=DEVICE, requires_grad=True)


def learned_relative_bias(score, b, h, q_idx, kv_idx):
    return score + bias[h, (q_idx - kv_idx).clamp(0, L - 1)]


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


q, k, v = inputs(2, H, L, requires_grad=True)
out = run("learned relative bias", q, k, v, score_mod=learned_relative_bias, mask_mod=causal, show_mask=False)
backward(out, ("q", q), ("bias", bias))
