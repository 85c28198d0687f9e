"""ALiBi: a per-head linear bias on the distance, written two ways: reading a captured slopes tensor, and
computing the slope from the head index."""
import torch

from _common import DEVICE, inputs, run

H = 8
slopes = torch.exp2(-8.0 * torch.arange(1, H + 1, device=DEVICE) / H)


def alibi(score, b, h, q_idx, kv_idx):
    return score + slopes[h] * (kv_idx - q_idx)


def alibi_functional(score, b, h, q_idx, kv_idx):
    return score + torch.exp2(-((h + 1) * 8.0 / H)) * (kv_idx - q_idx)


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


q, k, v = inputs(2, H, 512)
run("ALiBi (captured slopes)", q, k, v, score_mod=alibi, mask_mod=causal)
run("ALiBi (functional)", q, k, v, score_mod=alibi_functional, mask_mod=causal, show_mask=False)
