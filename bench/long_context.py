#!/usr/bin/env python3
"""Long-context forward (and optionally backward) on one GPU in one run: flexjit's Python frontend vs torch
FlexAttention (Triton) and its FLASH backend (with --flash) at B1 H8 S32768 D128 bf16, for causal attention
and packed documents of random lengths 64-4096 (a mask reading a captured document-id tensor). All three
are timed by triton's do_bench on the same mod functions (bench/torch_variants.py).

    python3 bench/long_context.py [--flash] [--backward] [--seq 32768] [--out DIR]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import run_bench  # noqa: E402
import torch  # noqa: E402

VARIANTS = ["causal", "packed_documents"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32768)
    ap.add_argument("--flash", action="store_true")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    B, H, S, D, dtype = 1, 8, args.seq, 128, torch.bfloat16
    rows = []
    for name in VARIANTS:
        row = {"variant": name, "B": B, "H": H, "S": S, "D": D}
        run_bench._record(row, "flexjit_python", lambda: run_bench.time_flexjit_python(name, B, H, S, D, dtype,
                                                                                         args.backward))
        run_bench._record(row, "torch_flex", lambda: run_bench.time_torch_flex(name, B, H, S, D, dtype, args.backward))
        if args.flash:
            run_bench._record(row, "flash", lambda: run_bench.time_torch_flex(name, B, H, S, D, dtype, args.backward,
                                                                               "FLASH"))
        rows.append(row)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "long_context.json"), "w") as f:
        json.dump(rows, f, indent=1)
    for key, title in (("fwd_ms", "forward"), ("bwd_ms", "backward")):
        if key == "bwd_ms" and not args.backward:
            continue
        print(f"{title} B{B} H{H} S{S} D{D} bf16 (TFLOP/s, density-weighted)")
        for r in rows:
            density = r.get("flexjit_python", {}).get("density") or r.get("torch_flex", {}).get("density", 1.0)
            factor = run_bench.BACKWARD_FLOPS if key == "bwd_ms" else 1.0
            cells = []
            for peer in ("flexjit_python", "torch_flex", "flash"):
                e = r.get(peer)
                if e is None:
                    continue
                t = run_bench.tflops_of(e, r, density, key, factor)
                cells.append(f"{peer} {t:.0f}" if t else f"{peer} {e.get('error', '-')[:60]}")
            print(f"  {r['variant']:<18} density {density:.3f}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
