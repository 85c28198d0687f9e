#!/usr/bin/env python3
"""Forward kernel diagnosis on one GPU: flexjit (through its Python package) against SDPA FlashAttention-2 on
the same inputs, for two input distributions (torch.randn, and uniform in [-1, 1) as bench/fwd_selftest.cu
uses), with the SM clock and board power sampled by nvidia-smi while each one runs.

    PYTHONPATH=build-py python3 bench/profile_fwd.py [--shape B,H,S,D] [--seconds 3]
    ncu ... python3 bench/profile_fwd.py --ncu   (one launch of each kernel, no timing loop)

It answers whether a gap between two timings of the same kernel comes from the data (power and clocks) or
from the kernel, and how far flexjit's forward is from FA2 when both see the same data and clocks.
"""
import argparse
import subprocess
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flexjit


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def inputs(B, H, S, D, dist):
    g = torch.Generator(device="cuda").manual_seed(0)
    make = {"normal": lambda: torch.randn(B, H, S, D, device="cuda", generator=g),
            "uniform": lambda: torch.rand(B, H, S, D, device="cuda", generator=g) * 2 - 1}[dist]
    return [make().to(torch.bfloat16) for _ in range(3)]


def sampled(fn, seconds):
    """Median ms of fn (CUDA events, back to back for `seconds`), with the mean SM clock and power meanwhile."""
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                            "-lms", "100"], stdout=subprocess.PIPE, text=True)
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    smi.terminate()
    rows = [line.split(",") for line in smi.communicate()[0].strip().splitlines()[2:]]  # skip ramp-up
    clock = sum(float(r[0]) for r in rows) / max(1, len(rows))
    power = sum(float(r[1]) for r in rows) / max(1, len(rows))
    times.sort()
    return times[len(times) // 2], clock, power


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8,16,8192,128")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ncu", action="store_true", help="run each kernel twice (warm-up, profiled), no timing")
    args = ap.parse_args()
    B, H, S, D = (int(x) for x in args.shape.split(","))
    mask = flexjit.create_block_mask(causal, None, None, S, S, device="cuda")
    density = 1.0 - mask.sparsity() / 100.0
    rows = []
    for dist in ("normal", "uniform"):
        q, k, v = inputs(B, H, S, D, dist)
        cases = {
            "flexjit noop": (lambda: flexjit.flex_attention(q, k, v), 1.0),
            "flexjit causal": (lambda: flexjit.flex_attention(q, k, v, block_mask=mask), density),
        }
        for causal_flag in (False, True):
            def fa2(c=causal_flag):
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=c)
            cases["FA2 causal" if causal_flag else "FA2 noop"] = (fa2, density if causal_flag else 1.0)
        for name, (fn, dens) in cases.items():
            fn()
            torch.cuda.synchronize()
            if args.ncu:
                fn()
                torch.cuda.synchronize()
                continue
            ms, clock, power = sampled(fn, args.seconds)
            tflops = 4.0 * B * H * S * S * D * dens / (ms * 1e-3) / 1e12
            rows.append((dist, name, ms, tflops, clock, power))
        if args.ncu:
            break
    if rows:
        print(f"{'data':<8} {'kernel':<16} {'ms':>8} {'TFLOP/s':>8} {'SM MHz':>7} {'W':>6}")
        for dist, name, ms, tf, clock, power in rows:
            print(f"{dist:<8} {name:<16} {ms:8.3f} {tf:8.1f} {clock:7.0f} {power:6.0f}")
        print("(TFLOP/s count 4*B*H*S*S*D times the computed fraction of 128x128 blocks, as bench/run_bench.py)")


if __name__ == "__main__":
    main()
