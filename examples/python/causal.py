"""Causal attention: a mask_mod. flexjit decides every 128 x 128 block from the mask's interval form, so
the blocks above the diagonal are skipped and those below it need no per-element mask."""
from _common import inputs, run


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


q, k, v = inputs(2, 4, 1000)
run("causal", q, k, v, mask_mod=causal)
