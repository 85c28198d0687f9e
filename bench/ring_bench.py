#!/usr/bin/env python3
"""Context parallelism's throughput: flexjit.distributed.ring_flex_attention on every GPU of a torchrun world
against flexjit.flex_attention on one GPU, for one long sequence (issue 16's target: B1 H16 S131072 D128
bf16 causal on 2 GPUs at >= 1.8x one GPU).

Every rank first runs the whole sequence on its own GPU (the one-GPU baseline, at the same time on every GPU,
so no rank waits), then its shard in the ring. Times are CUDA-event medians; the ring's is the slowest
rank's per repetition. FLOPs = 4 * B * H * S * S * D * density (density 0.5 for causal; the backward 2.5x the
forward), the count bench/run_bench.py uses. The ring's output shard is compared with the one-GPU output.

    torchrun --nproc_per_node=2 bench/ring_bench.py [--seq 131072] [--heads 16] [--dim 128] [--mask causal]
        [--layout zigzag] [--backward] [--reps 5] [--json ring.json]
"""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.distributed as dist

import flexjit
from flexjit import distributed as fd

BACKWARD_FLOPS = 2.5


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


MASKS = {"causal": (causal, 0.5), "none": (None, 1.0)}


def _event_ms(fn, reps, group=None):
    """Median milliseconds of fn over `reps` runs (the slowest rank's each time when `group` is given)."""
    times = []
    for _ in range(reps):
        if group is not None:
            dist.barrier(group)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        ms = torch.tensor([start.elapsed_time(end)], device="cuda")
        if group is not None:
            dist.all_reduce(ms, op=dist.ReduceOp.MAX, group=group)
        times.append(ms.item())
    return statistics.median(times)


def _timed(forward, backward, reps, warmup, group=None):
    for _ in range(warmup):   # the first calls compile (NVRTC, then the disk cache)
        out = forward()
        if backward is not None:
            backward(out)
    result = {"fwd_ms": _event_ms(forward, reps, group)}
    if backward is not None:
        result["fwd_bwd_ms"] = _event_ms(lambda: backward(forward()), reps, group)
    return result, forward()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seq", type=int, default=131072)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--mask", choices=sorted(MASKS), default="causal")
    ap.add_argument("--layout", choices=fd.LAYOUTS, default="zigzag")
    ap.add_argument("--backward", action="store_true", help="also time forward + backward")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", help="write the results here (rank 0)")
    args = ap.parse_args()

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl", device_id=device)
    rank, world = dist.get_rank(), dist.get_world_size()
    B, H, S, D = args.batch, args.heads, args.seq, args.dim
    mask_mod, density = MASKS[args.mask]

    g = torch.Generator(device=device).manual_seed(0)
    q, k, v, dout = (torch.randn(B, H, S, D, device=device, dtype=torch.bfloat16, generator=g) for _ in range(4))
    leaves = [t.requires_grad_(args.backward) for t in (q, k, v)]

    # One GPU, the whole sequence.
    block_mask = None if mask_mod is None else flexjit.create_block_mask(mask_mod, None, None, S, S, device=device)
    single, single_out = _timed(
        lambda: flexjit.flex_attention(q, k, v, block_mask=block_mask),
        (lambda out: torch.autograd.grad(out, leaves, dout)) if args.backward else None, args.reps, args.warmup)

    # The ring, this rank's shard.
    ql, kl, vl = (fd.shard_sequence(t.detach(), args.layout).contiguous().requires_grad_(args.backward)
                  for t in (q, k, v))
    dl = fd.shard_sequence(dout, args.layout).contiguous()
    plan = fd.create_ring_block_mask(mask_mod, None, None, S, S, layout=args.layout, device=device)
    ring, ring_out = _timed(
        lambda: fd.ring_flex_attention(ql, kl, vl, block_mask=plan),
        (lambda out: torch.autograd.grad(out, [ql, kl, vl], dl)) if args.backward else None, args.reps,
        args.warmup, group=dist.group.WORLD)

    diff = (ring_out.float() - fd.shard_sequence(single_out.detach(), args.layout).float()).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    fwd_flops = 4.0 * B * H * S * S * D * density
    result = dict(batch=B, heads=H, seq=S, dim=D, mask=args.mask, layout=args.layout, world=world,
                  gpu=torch.cuda.get_device_name(device), skipped_steps=plan.skipped_steps,
                  max_abs_diff_out=diff.item(), single=single, ring=ring)
    for key in single:
        flops = fwd_flops * (1 + BACKWARD_FLOPS if key == "fwd_bwd_ms" else 1)
        result[f"speedup_{key[:-3]}"] = single[key] / ring[key]
        result[f"single_tflops_{key[:-3]}"] = flops / single[key] / 1e9
        result[f"ring_tflops_per_gpu_{key[:-3]}"] = flops / ring[key] / 1e9 / world
    if rank == 0:
        print(json.dumps(result, indent=1))
        for key in single:
            print(f"{key[:-3]}: one GPU {single[key]:.2f} ms, {world} GPUs {ring[key]:.2f} ms, "
                  f"speedup {result[f'speedup_{key[:-3]}']:.2f}x (target >= {0.9 * world:.1f}x)", file=sys.stderr)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
