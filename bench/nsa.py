#!/usr/bin/env python3
"""Native Sparse Attention through flexjit.nsa against FlashAttention-2 full causal attention (SDPA's flash
backend, GQA) on the same inputs, on one GPU in one run; each branch's time too.

    python3 bench/nsa.py [--seq 65536] [--heads 64] [--kv-heads 4] [--head-dim 128] [--top-n 16]
                         [--selection-block 64] [--out DIR]

The issue 15 shape by default: 64k tokens, 64 query heads over 4 KV heads, D128, top-16 blocks of 64, the
paper's compression (blocks of 32, stride 16) and window (512). Prints milliseconds for the forward and
forward + backward of NSA, of each branch, and of FA2, and FA2's time over NSA's.
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F

import flexjit
from flexjit.nsa import NSAConfig, _compress_blocks, compress_mean, nsa_attention, nsa_window_mask


def ms(fn, backward=False, grads=()):
    from triton.testing import do_bench
    if not backward:
        return do_bench(fn, warmup=5, rep=50)

    def step():
        out = fn()
        torch.autograd.grad(out, grads, torch.ones_like(out))
    return do_bench(step, warmup=3, rep=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=65536)
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--top-n", type=int, default=16)
    ap.add_argument("--selection-block", type=int, default=64)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev, dt = "cuda", torch.bfloat16
    L, H, Hkv, D = a.seq, a.heads, a.kv_heads, a.head_dim
    cfg = NSAConfig(block=32, stride=16, selection_block=a.selection_block, top_n=a.top_n, window=512)
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(1, H, L, D, device=dev, dtype=dt, generator=g).requires_grad_()
    k = torch.randn(1, Hkv, L, D, device=dev, dtype=dt, generator=g).requires_grad_()
    v = torch.randn(1, Hkv, L, D, device=dev, dtype=dt, generator=g).requires_grad_()
    gates = torch.rand(1, H, L, 3, device=dev, generator=g).requires_grad_()
    wmask = nsa_window_mask(L, cfg, dev)
    rows = {}
    nsa = lambda: nsa_attention(q, k, v, gates, cfg, window_mask=wmask)  # noqa: E731
    rows["nsa"] = (ms(nsa), ms(nsa, True, (q, k, v, gates)))
    _, aux = nsa_attention(q, k, v, gates, cfg, window_mask=wmask, return_branches=True)
    # Each branch alone (the selected one on the selection just made).
    from flexjit.nsa import _compressed_mask, _selection_mask
    ck = compress_mean(_compress_blocks(k, cfg)).contiguous()
    cv = compress_mean(_compress_blocks(v, cfg)).contiguous()
    cmask = flexjit.create_block_mask(_compressed_mask(0, cfg), 1, 1, L, ck.shape[2], device=dev)
    smask = _selection_mask(aux["count"], aux["indices"], cfg, L, H, H // Hkv)
    branch = {
        "compressed": lambda: flexjit.flex_attention(q, ck, cv, block_mask=cmask, enable_gqa=True),
        "selected": lambda: flexjit.flex_attention(q, k, v, block_mask=smask, enable_gqa=True),
        "window": lambda: flexjit.flex_attention(q, k, v, block_mask=wmask, enable_gqa=True),
    }
    for name, fn in branch.items():
        rows[name] = (ms(fn), ms(fn, True, (q, k, v)))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
        rows["fa2 causal"] = (ms(fa), ms(fa, True, (q, k, v)))
    print(f"NSA: L {L}, Hq {H} / Hkv {Hkv}, D {D}, top-{cfg.top_n} of {cfg.selection_block}, bf16")
    print(f"{'':>12} {'fwd ms':>9} {'fwd+bwd ms':>11}")
    for name, (f, fb) in rows.items():
        print(f"{name:>12} {f:9.2f} {fb:11.2f}")
    fa_f, fa_fb = rows["fa2 causal"]
    n_f, n_fb = rows["nsa"]
    print(f"FA2 / NSA: forward {fa_f / n_f:.2f}x, backward {(fa_fb - fa_f) / (n_fb - n_f):.2f}x (target 5x / 8x)")
    if a.out:
        with open(os.path.join(a.out, "nsa.json"), "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
