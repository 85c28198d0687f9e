"""A gated decay bias: score + G[b, h, q] - G[b, h, kv], with G a cumulative log-gate (as in gated linear
attention / Forgetting Transformer). G requires a gradient; each read contributes to G.grad."""
import torch

from _common import DEVICE, backward, inputs, run

B, H, L = 2, 4, 512
G = torch.cumsum(-0.05 * torch.rand(B, H, L, device=DEVICE), -1).requires_grad_()


def gated_decay(score, b, h, q_idx, kv_idx):
    return score + G[b, h, q_idx] - G[b, h, kv_idx]


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


q, k, v = inputs(B, H, L, requires_grad=True)
out = run("gated decay", q, k, v, score_mod=gated_decay, mask_mod=causal, show_mask=False)
backward(out, ("q", q), ("G", G))
