"""GatedFWA (../shared/seeds/gatedfwa_abstract_002.txt): a per-token, per-head gate a -> the decay bias
G[q] - G[kv] with G = cumsum(logsigmoid(a)), added to the logits of a sliding window. flexjit.gated builds it
in a form that stays exact at any length (block-wise prefixes instead of G itself); the gate logits require a
gradient, which flows through the cumulative sum."""
import torch

from _common import DEVICE, backward, inputs, run
from flexjit.gated import gated_decay_bias

B, H, L, WINDOW = 2, 4, 512, 128
torch.manual_seed(0)
a = torch.randn(B, H, L, device=DEVICE).requires_grad_()   # the gate logits (a projection of x in a model)
bias = gated_decay_bias(a, WINDOW)

q, k, v = inputs(B, H, L, requires_grad=True)
out = run("gated sliding window", q, k, v, score_mod=bias.score_mod, mask_mod=bias.mask_mod, show_mask=False)
backward(out, ("q", q), ("gate logits", a))
