#!/usr/bin/env python3
"""The cost of flexjit's torch custom op (the torch.compile route) against a direct flexjit call, on a GPU.

Measures microseconds per call, CPU side (the host time to issue one forward, which is what the op's
dispatch adds to) and GPU side (CUDA events around many calls), for a small problem where the launch
overhead dominates and a larger one:
  - direct: flexjit.flex_attention in eager mode (trace cache hit, autograd.Function when training);
  - op: the same call through torch.ops.flexjit.flex_attention (what a compiled graph calls);
  - compiled: torch.compile(fullgraph=True) of a function making the call, default mode;
  - cudagraphs: the same with mode="reduce-overhead".

    python3 bench/compile_overhead.py [--iters 200]
"""
import argparse
import time

import torch

import flexjit
from flexjit import attention


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def bench(fn, iters):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start_evt, end_evt = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    start_evt.record()
    for _ in range(iters):
        fn()
    end_evt.record()
    host_us = (time.perf_counter() - t0) / iters * 1e6
    torch.cuda.synchronize()
    return host_us, start_evt.elapsed_time(end_evt) / iters * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    print(f"{'problem':>24} {'route':>11} {'host us/call':>13} {'gpu us/call':>12}")
    for B, H, L, D in ((1, 4, 256, 64), (4, 16, 2048, 128)):
        q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        bias = torch.randn(H, 2 * L, device="cuda", dtype=torch.bfloat16)
        mask = flexjit.create_block_mask(causal, None, None, L, L, device="cuda")

        def relative(s, b, h, q_idx, kv_idx):
            return s + bias[h, q_idx - kv_idx + L]

        def call(q, k, v):
            return flexjit.flex_attention(q, k, v, score_mod=relative, block_mask=mask)

        routes = {"direct": lambda: call(q, k, v)}
        real = attention._runs_through_op
        routes["op"] = lambda: _through_op(call, q, k, v, real)
        compiled = torch.compile(call, fullgraph=True)
        routes["compiled"] = lambda: compiled(q, k, v)
        graphed = torch.compile(call, fullgraph=True, mode="reduce-overhead")
        routes["cudagraphs"] = lambda: graphed(q, k, v)
        with torch.no_grad():
            for name, fn in routes.items():
                host, gpu = bench(fn, args.iters)
                print(f"{f'B{B} H{H} L{L} D{D}':>24} {name:>11} {host:13.1f} {gpu:12.1f}")


def _through_op(call, q, k, v, real):
    attention._runs_through_op = lambda tensors: True
    try:
        return call(q, k, v)
    finally:
        attention._runs_through_op = real


if __name__ == "__main__":
    main()
