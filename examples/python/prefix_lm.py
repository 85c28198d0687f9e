"""Prefix LM: bidirectional attention over a prefix (its length per batch element, a captured tensor),
causal after it."""
import torch

from _common import DEVICE, inputs, run

prefix_lengths = torch.tensor([300, 100], device=DEVICE)


def prefix_lm(b, h, q_idx, kv_idx):
    return (kv_idx < prefix_lengths[b]) | (q_idx >= kv_idx)


q, k, v = inputs(2, 4, 700)
run("prefix LM", q, k, v, mask_mod=prefix_lm)
