#!/usr/bin/env python3
"""Side-by-side benchmark on one GPU, in one run: flexjit vs torch FlexAttention (torch.compile, Triton) vs
SDPA FlashAttention-2 vs cuDNN, for the seed variants at the shapes of ../shared/ANCHORS.md.

flexjit is timed by `flexjit bench` (its own CUDA-event medians); the peers here with
triton.testing.do_bench (median). TFLOP/s use FLOPs = 4 * B * H * S * S * D * density, density = the
fraction of 128 x 128 blocks computed (the same density for every implementation of a variant).

    python3 bench/run_bench.py --flexjit build/bin/flexjit --out bench-results
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import torch_variants  # noqa: E402

SHAPES = [(8, 16, 8192, 128, torch.bfloat16), (16, 16, 8192, 64, torch.float16)]
DTYPE_NAME = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def flops(B, H, S, D, density):
    return 4.0 * B * H * S * S * D * density


def median_ms(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def time_torch_flex(name, B, H, S, D, dtype):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    # A fresh dynamo state per variant: past the recompile limit torch.compile silently falls back to eager
    # flex_attention, which materialises the B*H*S*S scores (32 GiB here) and runs out of memory.
    torch._dynamo.reset()
    flex = torch.compile(flex_attention, dynamic=False)
    score_mod, mask_mod, _ = torch_variants.build(name, B, H, S)
    q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=dtype) for _ in range(3))
    block_mask = None
    density = 1.0
    if mask_mod is not None:
        block_mask = create_block_mask(mask_mod, None, None, S, S, device="cuda")
        density = 1.0 - block_mask.sparsity() / 100.0
    t0 = time.perf_counter()
    flex(q, k, v, score_mod=score_mod, block_mask=block_mask)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    ms = median_ms(lambda: flex(q, k, v, score_mod=score_mod, block_mask=block_mask))
    return {"fwd_ms": ms, "density": density, "first_call_s": compile_s}


def time_sdpa(backend, causal, B, H, S, D, dtype):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=dtype) for _ in range(3))
    be = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]
    with sdpa_kernel([be]):
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
        fn()
        return {"fwd_ms": median_ms(fn)}


def time_torch_masks(seqs):
    """torch's create_block_mask(causal) at the same lengths (compiled, like ANCHORS.md); OOM is recorded."""
    from torch.nn.attention.flex_attention import create_block_mask
    out = []
    for S in (int(x) for x in seqs.split(",")):
        try:
            compiled = torch.compile(create_block_mask)
            fn = lambda: compiled(torch_variants.causal, 1, 1, S, S, device="cuda")  # noqa: E731
            fn()
            out.append({"S": S, "ms": median_ms(fn)})
        except Exception as e:  # out of memory at long S
            out.append({"S": S, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})
        torch.cuda.empty_cache()
    return out


def run_peers(names, shapes):
    rows = []
    for (B, H, S, D, dtype) in shapes:
        for name in names:
            row = {"variant": name, "B": B, "H": H, "S": S, "D": D, "dtype": DTYPE_NAME[dtype]}
            try:
                row["torch_flex"] = time_torch_flex(name, B, H, S, D, dtype)
            except Exception as e:  # torch flex fails on some variants (shared memory); record why
                row["torch_flex"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            if name in ("noop", "causal"):
                for be in ("fa2", "cudnn"):
                    try:
                        row[be] = time_sdpa(be, name == "causal", B, H, S, D, dtype)
                    except Exception as e:
                        row[be] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            rows.append(row)
            import gc
            gc.collect()
            torch.cuda.empty_cache()
            print(f"peers: {name} B{B} H{H} S{S} D{D} done", file=sys.stderr, flush=True)
    return rows


def tflops_of(entry, row, density):
    if not entry or "fwd_ms" not in entry:
        return None
    return flops(row["B"], row["H"], row["S"], row["D"], density) / (entry["fwd_ms"] * 1e-3) / 1e12


def merge(peers, flexjit_results):
    by_key = {(r["variant"], r["S"], r["D"], r["dtype"]): r for r in flexjit_results}
    table = []
    for row in peers:
        fj = by_key.get((row["variant"], row["S"], row["D"], row["dtype"]))
        density = fj["density"] if fj else row.get("torch_flex", {}).get("density", 1.0)
        out = dict(row)
        out["density"] = density
        out["flexjit"] = fj
        out["tflops"] = {"flexjit": fj["fwd_tflops"] if fj else None}
        for peer in ("torch_flex", "fa2", "cudnn"):
            out["tflops"][peer] = tflops_of(row.get(peer), row, density)
        table.append(out)
    return table


def print_table(table):
    print(f"{'variant':<16} {'shape':<22} {'flexjit':>9} {'torch flex':>11} {'FA2':>7} {'cuDNN':>7} {'vs flex':>8}")
    for r in table:
        t = r["tflops"]
        fmt = lambda x: f"{x:.0f}" if x else "-"  # noqa: E731
        ratio = f"{t['flexjit'] / t['torch_flex']:.2f}x" if t["flexjit"] and t["torch_flex"] else "-"
        flex = fmt(t["torch_flex"]) if "error" not in r.get("torch_flex", {}) else "fails"
        shape = f"B{r['B']} H{r['H']} S{r['S']} D{r['D']} {r['dtype'][:4]}"
        print(f"{r['variant']:<16} {shape:<22} {fmt(t['flexjit']):>9} {flex:>11} {fmt(t['fa2']):>7} "
              f"{fmt(t['cudnn']):>7} {ratio:>8}")
    print("(forward TFLOP/s; density-weighted FLOPs; '-' = not applicable)")


def write_chart(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no chart written ({path})", file=sys.stderr)
        return
    labels = [f"{r['variant']}\nD{r['D']}" for r in table]
    peers = ["flexjit", "torch_flex", "fa2", "cudnn"]
    fig, ax = plt.subplots(figsize=(max(10, len(table) * 0.9), 5))
    width = 0.2
    for i, p in enumerate(peers):
        ax.bar([x + i * width for x in range(len(table))], [r["tflops"][p] or 0 for r in table], width, label=p)
    ax.set_xticks([x + 1.5 * width for x in range(len(table))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("forward TFLOP/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flexjit", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "flexjit"))
    ap.add_argument("--variants", default=",".join(torch_variants.NAMES))
    ap.add_argument("--shapes", default="8,16,8192,128,bf16;16,16,8192,64,fp16")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--mask-seqs", default="8192,131072,1048576", help="causal create_block_mask timings")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = args.variants.split(",")
    shapes = []
    for s in args.shapes.split(";"):
        B, H, S, D, dt = s.split(",")
        shapes.append((int(B), int(H), int(S), int(D), torch.bfloat16 if dt == "bf16" else torch.float16))
    fj_json = os.path.join(args.out, "flexjit.json")
    subprocess.run([args.flexjit, "bench", "--shapes", args.shapes, "--variants", args.variants, "--json", fj_json,
                    "--mask-seqs", args.mask_seqs], check=True)
    with open(fj_json) as f:
        fj = json.load(f)
    peers = [] if args.skip_peers else run_peers(names, shapes)
    if args.skip_peers:
        peers = [{"variant": r["variant"], "B": r["B"], "H": r["H"], "S": r["S"], "D": r["D"], "dtype": r["dtype"]}
                 for r in fj["results"]]
    table = merge(peers, fj["results"])
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": table,
              "flexjit_causal_mask": fj.get("causal_mask", []), "torch_causal_mask": time_torch_masks(args.mask_seqs)}
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_chart(table, os.path.join(args.out, "bench.png"))
    print_table(table)
    for fj_row, t_row in zip(result["flexjit_causal_mask"], result["torch_causal_mask"]):
        print(f"create_block_mask(causal) S={fj_row['S']}: flexjit {fj_row['ms']:.3f} ms, "
              f"torch {t_row.get('ms', float('nan')):.3f} ms {t_row.get('error', '')}")


if __name__ == "__main__":
    main()
