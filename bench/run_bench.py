#!/usr/bin/env python3
"""Side-by-side benchmark on one GPU, in one run: flexjit vs torch FlexAttention (torch.compile, Triton; and its
FLASH backend, FlashAttention-4, with --flash) vs SDPA FlashAttention-2 vs cuDNN, for the seed variants at the
shapes of ../shared/ANCHORS.md.

flexjit is timed by `flexjit bench` (its own CUDA-event medians); the peers here with
triton.testing.do_bench (median). TFLOP/s use FLOPs = 4 * B * H * S * S * D * density, density = the
fraction of 128 x 128 blocks computed (the same density for every implementation of a variant).

    python3 bench/run_bench.py --flexjit build/bin/flexjit --out bench-results [--backward] [--python-frontend]

--flash adds torch flex's FLASH backend (kernel_options={"BACKEND": "FLASH"}; needs the FlashAttention-4 wheels,
../shared/tools/fa4_wheels.sh); it refuses captured tensors that require grad, recorded as its error.
--backward times every implementation's backward too (flexjit: `flexjit bench --backward`; the peers:
torch.autograd.grad with a fixed random gradient). --python-frontend also times flexjit through its Python package
on the very score_mod / mask_mod functions torch FlexAttention gets.
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


BACKWARD_FLOPS = 2.5  # backward FLOPs over forward FLOPs (ANCHORS.md)


def flops(B, H, S, D, density):
    return 4.0 * B * H * S * S * D * density


def median_ms(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def _timed(fn, backward, leaves=()):
    """fwd_ms (and bwd_ms: the gradients of `leaves` for a fixed random output gradient) of an attention call.

    The backward is timed with torch.autograd.grad, which returns fresh gradients: out.backward would add
    each repetition's gradients into .grad, an extra elementwise pass over every input that flexjit's own
    C++ timing (`flexjit bench`) does not have. The runs in docs/performance.md up to 2026-11-23 used
    out.backward (every Python-timed column, flexjit's and the peers', paid that pass)."""
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    result = {"first_call_s": time.perf_counter() - t0, "fwd_ms": median_ms(fn)}
    if backward:
        grad = torch.randn_like(out)
        result["bwd_ms"] = median_ms(lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True))
    return result


def _inputs(B, H, S, D, dtype, backward):
    return [torch.randn(B, H, S, D, device="cuda", dtype=dtype, requires_grad=backward) for _ in range(3)]


def time_torch_flex(name, B, H, S, D, dtype, backward=False, backend=None):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    # A fresh dynamo state per variant: past the recompile limit torch.compile silently falls back to eager
    # flex_attention, which materialises the B*H*S*S scores (32 GiB here) and runs out of memory.
    torch._dynamo.reset()
    flex = torch.compile(flex_attention, dynamic=False)
    score_mod, mask_mod, captured = torch_variants.build(name, B, H, S, requires_grad=backward)
    q, k, v = _inputs(B, H, S, D, dtype, backward)
    block_mask = None
    density = 1.0
    if mask_mod is not None:
        block_mask = create_block_mask(mask_mod, None, None, S, S, device="cuda")
        density = 1.0 - block_mask.sparsity() / 100.0
    options = {"BACKEND": backend} if backend else None
    result = _timed(lambda: flex(q, k, v, score_mod=score_mod, block_mask=block_mask, kernel_options=options),
                    backward, [q, k, v, *captured])
    result["density"] = density
    return result


def time_flexjit_python(name, B, H, S, D, dtype, backward=False):
    """flexjit through its Python frontend, on the very functions torch flex gets (issue 5's comparison)."""
    import flexjit
    score_mod, mask_mod, captured = torch_variants.build(name, B, H, S, requires_grad=backward)
    q, k, v = _inputs(B, H, S, D, dtype, backward)
    block_mask = None
    density = 1.0
    if mask_mod is not None:
        block_mask = flexjit.create_block_mask(mask_mod, None, None, S, S, device="cuda")
        density = 1.0 - block_mask.sparsity() / 100.0
    result = _timed(lambda: flexjit.flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask), backward,
                    [q, k, v, *captured])
    result["density"] = density
    return result


def time_sdpa(backend, causal, B, H, S, D, dtype, backward=False):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = _inputs(B, H, S, D, dtype, backward)
    be = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]
    with sdpa_kernel([be]):
        return _timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), backward, [q, k, v])


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


def _record(row, key, fn):
    try:
        row[key] = fn()
    except Exception as e:  # e.g. torch flex fails on some variants (shared memory); record why
        row[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def run_peers(names, shapes, backward=False, python_frontend=False, flash=False):
    import gc
    rows = []
    for (B, H, S, D, dtype) in shapes:
        for name in names:
            row = {"variant": name, "B": B, "H": H, "S": S, "D": D, "dtype": DTYPE_NAME[dtype]}
            _record(row, "torch_flex", lambda: time_torch_flex(name, B, H, S, D, dtype, backward))
            if flash:
                _record(row, "flash", lambda: time_torch_flex(name, B, H, S, D, dtype, backward, "FLASH"))
            if python_frontend:
                _record(row, "flexjit_python", lambda: time_flexjit_python(name, B, H, S, D, dtype, backward))
            if name in ("noop", "causal"):
                for be in ("fa2", "cudnn"):
                    _record(row, be, lambda: time_sdpa(be, name == "causal", B, H, S, D, dtype, backward))
            rows.append(row)
            gc.collect()
            torch.cuda.empty_cache()
            print(f"peers: {name} B{B} H{H} S{S} D{D} done", file=sys.stderr, flush=True)
    return rows


PEERS = ("flexjit_python", "torch_flex", "flash", "fa2", "cudnn")


def tflops_of(entry, row, density, key="fwd_ms", factor=1.0):
    if not entry or key not in entry:
        return None
    return factor * flops(row["B"], row["H"], row["S"], row["D"], density) / (entry[key] * 1e-3) / 1e12


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
        out["bwd_tflops"] = {"flexjit": fj.get("bwd_tflops") if fj and fj.get("bwd_ms") else None}
        for peer in PEERS:
            out["tflops"][peer] = tflops_of(row.get(peer), row, density)
            out["bwd_tflops"][peer] = tflops_of(row.get(peer), row, density, "bwd_ms", BACKWARD_FLOPS)
        table.append(out)
    return table


def print_table(table, which="tflops", title="forward"):
    """One row per variant and shape. The ratios compare flexjit's Python frontend (timed by do_bench like the
    peers) when it ran, else flexjit's own CLI timing, with torch flex (Triton) and with its FLASH backend."""
    has_py = any(r[which].get("flexjit_python") for r in table)
    has_flash = any("flash" in r for r in table)
    head = f"{'variant':<16} {'shape':<22} {'flexjit':>9}" + (f" {'fj (py)':>8}" if has_py else "")
    head += f" {'torch flex':>11}" + (f" {'FLASH':>7}" if has_flash else "")
    print(head + f" {'FA2':>7} {'cuDNN':>7} {'vs flex':>8}" + (f" {'vs FLASH':>9}" if has_flash else ""))
    for r in table:
        t = r[which]
        fmt = lambda x: f"{x:.0f}" if x else "-"  # noqa: E731
        ours = t.get("flexjit_python") or t["flexjit"]
        ratio = lambda peer: f"{ours / t[peer]:.2f}x" if ours and t.get(peer) else "-"  # noqa: E731
        cell = lambda peer: fmt(t[peer]) if "error" not in r.get(peer, {}) else "fails"  # noqa: E731
        shape = f"B{r['B']} H{r['H']} S{r['S']} D{r['D']} {r['dtype'][:4]}"
        line = f"{r['variant']:<16} {shape:<22} {fmt(t['flexjit']):>9}"
        line += f" {fmt(t.get('flexjit_python')):>8}" if has_py else ""
        line += f" {cell('torch_flex'):>11}" + (f" {cell('flash'):>7}" if has_flash else "")
        line += f" {fmt(t['fa2']):>7} {fmt(t['cudnn']):>7} {ratio('torch_flex'):>8}"
        print(line + (f" {ratio('flash'):>9}" if has_flash else ""))
    print(f"({title} TFLOP/s; density-weighted FLOPs; '-' = not applicable)")


def write_chart(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no chart written ({path})", file=sys.stderr)
        return
    labels = [f"{r['variant']}\nD{r['D']}" for r in table]
    peers = ["flexjit", "torch_flex", "flash", "fa2", "cudnn"]
    fig, ax = plt.subplots(figsize=(max(10, len(table) * 0.9), 5))
    width = 0.16
    for i, p in enumerate(peers):
        ax.bar([x + i * width for x in range(len(table))], [r["tflops"].get(p) or 0 for r in table], width, label=p)
    ax.set_xticks([x + 2 * width for x in range(len(table))])
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
    ap.add_argument("--backward", action="store_true", help="also time the backward (every implementation)")
    ap.add_argument("--flash", action="store_true", help="also time torch flex's FLASH backend (FlashAttention-4)")
    ap.add_argument("--python-frontend", action="store_true",
                    help="also time flexjit through its Python package on torch's own mod functions")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = args.variants.split(",")
    shapes = []
    for s in args.shapes.split(";"):
        B, H, S, D, dt = s.split(",")
        shapes.append((int(B), int(H), int(S), int(D), torch.bfloat16 if dt == "bf16" else torch.float16))
    fj_json = os.path.join(args.out, "flexjit.json")
    subprocess.run([args.flexjit, "bench", "--shapes", args.shapes, "--variants", args.variants, "--json", fj_json,
                    "--mask-seqs", args.mask_seqs] + (["--backward"] if args.backward else []), check=True)
    with open(fj_json) as f:
        fj = json.load(f)
    peers = [] if args.skip_peers else run_peers(names, shapes, args.backward, args.python_frontend, args.flash)
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
    if args.backward:
        print_table(table, "bwd_tflops", "backward")
    for fj_row, t_row in zip(result["flexjit_causal_mask"], result["torch_causal_mask"]):
        print(f"create_block_mask(causal) S={fj_row['S']}: flexjit {fj_row['ms']:.3f} ms, "
              f"torch {t_row.get('ms', float('nan')):.3f} ms {t_row.get('error', '')}")


if __name__ == "__main__":
    main()
