"""Flamingo-style cross attention: text tokens (queries) attend to the image tokens (keys) of the latest
image before them. intervals[i] = [first, last + 1) text positions that see image i; Q_LEN != KV_LEN.
Text before the first image sees nothing: its rows are fully masked (output 0)."""
import torch

from _common import DEVICE, inputs, run

TEXT_LEN, TOKENS_PER_IMAGE = 600, 64
intervals = torch.tensor([[10, 200], [200, 450], [450, 600]], device=DEVICE)
IMAGE_LEN = TOKENS_PER_IMAGE * intervals.shape[0]


def flamingo_cross(b, h, q_idx, kv_idx):
    image = kv_idx // TOKENS_PER_IMAGE
    return (q_idx >= intervals[image][0]) & (q_idx < intervals[image][1])


q, k, v = inputs(2, 4, TEXT_LEN, IMAGE_LEN)
out = run("Flamingo cross attention", q, k, v, mask_mod=flamingo_cross)
print(f"  rows before the first image are zero: {bool((out[:, :, :10] == 0).all())}")
