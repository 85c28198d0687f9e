#!/usr/bin/env python3
"""Decoding: a few query rows over a long KV cache, flexjit's decode family against FlashAttention-2 (SDPA's
flash backend), torch flex_attention (compiled; it picks its own decode kernel) and flexjit's prefill
family (FLEXJIT_FWD_CONFIG=decode=0), on one GPU in one run.

    python3 bench/decode.py [--batch 4] [--heads 32] [--kv-heads 8] [--kv-len 32768] [--q-lens 1,4,16]
                            [--mods none,alibi,softcap] [--out DIR]

The queries sit at the end of the cache (q_idx + KV_LEN - Q_LEN is their position): causal over the
cache, ALiBi over that distance, or a tanh softcap. Prints one table: microseconds, the K/V bytes read per
microsecond (TB/s) and each peer's time over flexjit's. Each row is also checked against SDPA (max error).
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

import flexjit


def bench_us(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=200) * 1e3


def mods(name, heads, offset, device):
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)], device=device)

    def causal(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    if name == "none":
        return None, causal
    if name == "alibi":
        def alibi(score, b, h, q_idx, kv_idx):
            return score - slopes[h] * (q_idx + offset - kv_idx)
        return alibi, causal
    if name == "softcap":
        def softcap(score, b, h, q_idx, kv_idx):
            return 30.0 * torch.tanh(score / 30.0)
        return softcap, causal
    raise SystemExit(f"unknown mod {name}")


def sdpa_reference(q, k, v, score_mod, offset):
    """The same attention in plain torch (materialised scores in float32): the check of every row."""
    B, H, L, D = q.shape
    g = H // k.size(1)
    kk = k.repeat_interleave(g, 1).float()
    vv = v.repeat_interleave(g, 1).float()
    s = (q.float() @ kk.transpose(-1, -2)) / math.sqrt(D)
    qi = torch.arange(L, device=q.device).view(1, 1, L, 1)
    kj = torch.arange(k.size(2), device=q.device).view(1, 1, 1, -1)
    hh = torch.arange(H, device=q.device).view(1, H, 1, 1)
    if score_mod is not None:
        s = score_mod(s, 0, hh, qi, kj)
    s = s.masked_fill(kj > qi + offset, float("-inf"))
    return (torch.softmax(s, -1) @ vv).to(q.dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--kv-len", type=int, default=32768)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--q-lens", default="1,4,16")
    ap.add_argument("--mods", default="none,alibi,softcap")
    ap.add_argument("--peers", default="sdpa,flex,prefill,paged")
    ap.add_argument("--sweep", default="",
                    help="decode tile settings to time next to the default, ';'-separated FLEXJIT_FWD_CONFIG keys "
                         "(e.g. 'stages=3;stages=4;warps=4,stages=4'); mod none, every Q_LEN")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = "cuda"
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention as torch_flex
    torch_flex_c = torch.compile(torch_flex, dynamic=False)
    B, H, Hkv, S, D = a.batch, a.heads, a.kv_heads, a.kv_len, a.head_dim
    gen = torch.Generator(device=dev).manual_seed(0)
    k = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16, generator=gen)
    v = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16, generator=gen)
    kv_bytes = k.numel() * k.element_size() * 2
    peers = a.peers.split(",")
    if "paged" in peers:
        # The same K/V in pages of 256 rows, in a shuffled pool (the vLLM layout), built once: the decode
        # family reads them through the page table.
        page = 256
        pages = S // page
        perm = torch.randperm(B * pages, generator=torch.Generator().manual_seed(1))
        table = perm.view(B, pages).to(torch.int32).to(dev)
        pool_k = torch.empty(1, Hkv, B * pages * page, D, device=dev, dtype=k.dtype)
        pool_v = torch.empty_like(pool_k)
        for b in range(B):
            for i in range(pages):
                slot = int(perm[b * pages + i]) * page
                pool_k[0, :, slot:slot + page] = k[b, :, i * page:(i + 1) * page]
                pool_v[0, :, slot:slot + page] = v[b, :, i * page:(i + 1) * page]
    rows = []
    for L in [int(x) for x in a.q_lens.split(",")]:
        q = torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, generator=gen)
        offset = S - L
        for mod in a.mods.split(","):
            score_mod, mask_mod = mods(mod, H, offset, dev)
            mask = flexjit.create_block_mask(mask_mod, 1, 1, L, S, device=dev)
            run = lambda: flexjit.flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, enable_gqa=True)
            # The decode family, forced: the planner takes it by itself only when the packed rows fit one
            # CTA (runtime/Planner.cpp); the prefill column below is the alternative.
            os.environ["FLEXJIT_FWD_CONFIG"] = "decode=1"
            out = run()
            ref = sdpa_reference(q, k, v, score_mod, offset)
            err = (out.float() - ref.float()).abs().max().item()
            row = {"q_len": L, "mod": mod, "flexjit_us": bench_us(run), "max_error": err}
            if "paged" in peers:
                paged = lambda: flexjit.flex_attention(q, pool_k, pool_v, score_mod=score_mod, block_mask=mask,
                                                       enable_gqa=True, page_table=table, page_size=page)
                try:
                    with torch.no_grad():
                        row["paged_error"] = (paged().float() - out.float()).abs().max().item()
                        row["paged_us"] = bench_us(paged)
                except Exception as e:  # noqa: BLE001 - reported, the table goes on
                    row["paged_failure"] = f"{type(e).__name__}: {e}"[:200]
            del os.environ["FLEXJIT_FWD_CONFIG"]
            if "prefill" in peers:
                os.environ["FLEXJIT_FWD_CONFIG"] = "decode=0"
                run()
                row["prefill_us"] = bench_us(run)
                del os.environ["FLEXJIT_FWD_CONFIG"]
            if "sdpa" in peers and mod == "none":
                # FA2 through SDPA: the queries at the end of the cache are the bottom-right causal band,
                # which SDPA's is_causal (top-left) is not, so the L > 1 rows run unmasked (the same bytes).
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    fa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=True)
                    fa()
                    row["fa2_us"] = bench_us(fa)
            if "flex" in peers:
                tmask = create_block_mask(mask_mod, 1, 1, L, S, device=dev)
                tf = lambda: torch_flex_c(q, k, v, score_mod=score_mod, block_mask=tmask, enable_gqa=True)
                try:
                    tf()
                    row["torch_flex_us"] = bench_us(tf)
                except Exception as e:  # noqa: BLE001 - reported, the table goes on
                    row["torch_flex_error"] = f"{type(e).__name__}: {e}"[:200]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    sweep = []
    for cfg in [c for c in a.sweep.split(";") if c]:
        for L in [int(x) for x in a.q_lens.split(",")]:
            q = torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, generator=gen)
            mask = flexjit.create_block_mask(mods("none", H, S - L, dev)[1], 1, 1, L, S, device=dev)
            run = lambda: flexjit.flex_attention(q, k, v, block_mask=mask, enable_gqa=True)
            os.environ["FLEXJIT_FWD_CONFIG"] = "decode=1," + cfg
            try:
                err = (run().float() - sdpa_reference(q, k, v, None, S - L).float()).abs().max().item()
                sweep.append((cfg, L, bench_us(run), err))
            except Exception as e:  # noqa: BLE001 - reported, the sweep goes on
                print(f"sweep {cfg} Q_LEN {L}: {type(e).__name__}: {e}"[:300])
            del os.environ["FLEXJIT_FWD_CONFIG"]
    print(f"decode: B{B} Hq{H} Hkv{Hkv} KV_LEN {S} D{D} bf16, K/V {kv_bytes / 1e6:.0f} MB")
    print(f"{'Q_LEN':>5} {'mod':>8} {'flexjit us':>10} {'TB/s':>6} {'paged us':>8} {'FA2 us':>8} {'flex us':>8}"
          f" {'prefill us':>10} {'FA2/fj':>7} {'flex/fj':>7} {'max err':>8}")
    for r in rows:
        f = r["flexjit_us"]
        pg, fa, tf, pf = r.get("paged_us"), r.get("fa2_us"), r.get("torch_flex_us"), r.get("prefill_us")
        fmt = lambda x: f"{x:8.1f}" if x else "       -"
        ratio = lambda x: f"{x / f:7.2f}" if x else "      -"
        print(f"{r['q_len']:>5} {r['mod']:>8} {f:10.1f} {kv_bytes / f / 1e6:6.2f} {fmt(pg)} {fmt(fa)} {fmt(tf)} "
              f"{(f'{pf:10.1f}' if pf else '         -')} {ratio(fa)} {ratio(tf)} {r['max_error']:8.4f}")
    for cfg, L, us, err in sweep:
        print(f"sweep decode=1,{cfg:<22} Q_LEN {L:>2}: {us:8.1f} us {kv_bytes / us / 1e6:5.2f} TB/s  max err {err:.4f}")
    if a.out:
        with open(os.path.join(a.out, "decode.json"), "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
