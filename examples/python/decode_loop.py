"""A decode loop: prefill a prompt, then generate STEPS tokens one at a time against a KV cache, with a
sliding window and ALiBi, each step checked against float64 eager math.

The recipe is torch's: one block mask for the whole cache, built once; each step takes its row block
(mask[:, :, pos // BLOCK]) and crops it to one query (_adjust). The mods read the position from a captured
tensor updated in place, so every step reuses one trace and one kernel (a Python int in the mod would be
baked into the trace). On a GPU the steps run the decode family (4 query heads per KV head packed into one
CTA's rows, the KV split over CTAs)."""
import math

import torch

import flexjit
from _common import DEVICE, DTYPE

B, HQ, HKV, D = 2, 8, 2, 64
PROMPT, STEPS, CACHE, BLOCK, WINDOW = 300, 8, 512, 128, 256

torch.manual_seed(0)
slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / HQ) for h in range(HQ)], device=DEVICE)
pos = torch.zeros(1, dtype=torch.int32, device=DEVICE)  # the first query's position, read by the mods


def window(b, h, q_idx, kv_idx):
    return (kv_idx <= q_idx) & (q_idx - kv_idx < WINDOW)


def step_window(b, h, q_idx, kv_idx):
    return window(b, h, q_idx + pos[0], kv_idx)


def alibi(score, b, h, q_idx, kv_idx):
    return score - slopes[h] * (q_idx + pos[0] - kv_idx)


def reference(q, k, v, first):
    """float64 attention of queries at positions first.. over the cache's keys 0 .. first + Lq - 1."""
    q64, k64, v64 = (t.double().cpu() for t in (q, k, v))
    k64 = k64.repeat_interleave(HQ // HKV, dim=1)
    v64 = v64.repeat_interleave(HQ // HKV, dim=1)
    qi = torch.arange(q.shape[2]).view(-1, 1) + first
    kj = torch.arange(k.shape[2]).view(1, -1)
    s = (q64 @ k64.transpose(-1, -2)) / math.sqrt(D) - slopes.double().cpu().view(1, -1, 1, 1) * (qi - kj)
    s = s.masked_fill(~((kj <= qi) & (qi - kj < WINDOW)), float("-inf"))
    return torch.softmax(s, dim=-1) @ v64


k_cache = torch.zeros(B, HKV, CACHE, D, device=DEVICE, dtype=DTYPE)
v_cache = torch.zeros_like(k_cache)
k_cache[:, :, :PROMPT] = torch.randn(B, HKV, PROMPT, D, device=DEVICE, dtype=DTYPE)
v_cache[:, :, :PROMPT] = torch.randn(B, HKV, PROMPT, D, device=DEVICE, dtype=DTYPE)

# The whole cache's mask, built once (H = 1: the same for every head, so GQA heads share a decode CTA).
full = flexjit.create_block_mask(window, 1, 1, CACHE, CACHE, device=DEVICE, BLOCK_SIZE=BLOCK)

with torch.no_grad():
    q = torch.randn(B, HQ, PROMPT, D, device=DEVICE, dtype=DTYPE)
    prefill_mask = flexjit.create_block_mask(window, 1, 1, PROMPT, PROMPT, device=DEVICE, BLOCK_SIZE=BLOCK)
    out = flexjit.flex_attention(q, k_cache[:, :, :PROMPT], v_cache[:, :, :PROMPT], score_mod=alibi,
                                 block_mask=prefill_mask, enable_gqa=True)
    diff = (out.double().cpu() - reference(q, k_cache[:, :, :PROMPT], v_cache[:, :, :PROMPT], 0)).abs().max().item()
    print(f"prefill of {PROMPT} tokens: max |flexjit - torch| = {diff:.2e} (torch: float64 eager math)")

    for t in range(PROMPT, PROMPT + STEPS):
        # The new token's key and value join the cache; its query attends to the cache up to itself.
        k_cache[:, :, t] = torch.randn(B, HKV, D, device=DEVICE, dtype=DTYPE)
        v_cache[:, :, t] = torch.randn(B, HKV, D, device=DEVICE, dtype=DTYPE)
        pos.fill_(t)
        step = full[:, :, t // BLOCK]._adjust(1, CACHE)
        step.mask_mod = step_window
        q = torch.randn(B, HQ, 1, D, device=DEVICE, dtype=DTYPE)
        out = flexjit.flex_attention(q, k_cache, v_cache, score_mod=alibi, block_mask=step, enable_gqa=True)
        diff = (out.double().cpu() - reference(q, k_cache, v_cache, t)).abs().max().item()
        print(f"decode step at position {t}: max |flexjit - torch| = {diff:.2e} (torch: float64 eager math)")
