"""The cases of test_distributed.py and the process that runs them.

A case is a plain dict (it crosses into spawned processes): sizes, layout, mods by name, a seed. ``build``
makes its whole-sequence inputs and mods deterministically, so the pytest process (the single-process
reference on the full sequence) and every rank (its shard) see the same data. ``worker`` is one rank of a
gloo world of 4: it runs the 4-rank cases on the world, the 2-rank cases on the pairs {0, 1} and {2, 3}
(alternately, so the ranks of a group differ from the global ones) and the 1-rank cases on {0}, and saves
each rank's results for the pytest process to compare.
"""
import datetime
import os
import traceback

import torch

SPAWNED_WORLD = 4
_TIMEOUT = datetime.timedelta(seconds=180)


def case(name, world, layout, L, *, Lkv=None, B=1, H=2, Hkv=None, D=8, Dv=None, block=8, mask="causal",
         score=None, seed=0, all_reduce=False, dtype="float32", mask_mod_call=False):
    return dict(name=name, world=world, layout=layout, B=B, H=H, Hkv=Hkv or H, Lq=L, Lkv=Lkv or L, D=D,
                Dv=Dv or D, block=block, mask=mask, score=score, seed=seed, all_reduce=all_reduce, dtype=dtype,
                mask_mod_call=mask_mod_call)


# Sizes are tiny: the CPU reference is the kernel. Odd lengths where the layout allows them: contiguous shards
# of any length (uneven ones included), zigzag chunks of odd length.
CASES = [
    # zigzag, chunks of 5 positions (odd) straddling the 8-wide blocks; the mask given as mask_mod=
    case("causal_zigzag_w4", 4, "zigzag", 40, mask_mod_call=True),
    # uneven contiguous shards (10, 9, 9, 9): the future shards' steps are skipped
    case("causal_contiguous_uneven_w4", 4, "contiguous", 37, block=4),
    # a learned relative bias with its gradient all-reduced, under a causal mask
    case("relative_bias_zigzag_w4", 4, "zigzag", 24, score="relative_bias", all_reduce=True, seed=3),
    # packed documents (a captured int32 tensor) with causality, uneven shards (16, 15)
    case("document_contiguous_w2", 2, "contiguous", 31, mask="document", seed=1),
    # a causal sliding window of 5, zigzag chunks of 7
    case("sliding_window_zigzag_w2", 2, "zigzag", 28, mask="sliding_window", block=4, seed=2),
    # ALiBi with learned slopes (the gradient left as each rank's share), GQA, Q_LEN != KV_LEN, no mask
    case("alibi_gqa_cross_contiguous_w2", 2, "contiguous", 18, Lkv=26, H=4, Hkv=2, Dv=6, mask=None,
         score="alibi", seed=4),
    # rows 0-2 keep no key anywhere (O = 0, LSE = -inf, zero gradients); bfloat16 inputs on the CPU
    case("masked_rows_bf16_zigzag_w2", 2, "zigzag", 20, mask="late_causal", dtype="bfloat16", seed=5),
    # two batches whose document ids differ (the mask reads b)
    case("document_batches_zigzag_w2", 2, "zigzag", 16, B=2, mask="document", block=4, seed=6),
    # a world of one: the ring degenerates to one local call
    case("causal_single_w1", 1, "contiguous", 13, seed=7),
]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mods(c, g, device):
    """(score_mod, mask_mod, the captured tensor that requires a gradient or None) of a case; captured tensors
    on `device`."""
    Lq, Lkv, H = c["Lq"], c["Lkv"], c["H"]
    capture = None

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    masks = {None: None, "causal": causal}
    if c["mask"] == "document":
        lengths = torch.randint(1, 9, (c["B"], Lq), generator=g)   # documents of 1-8 positions, packed
        document = torch.stack([torch.repeat_interleave(torch.arange(Lq), n)[:Lq] for n in lengths])
        document = document.to(device, torch.int32)

        def document_causal(b, h, q_idx, kv_idx):
            return (document[b, q_idx] == document[b, kv_idx]) & (q_idx >= kv_idx)
        masks["document"] = document_causal
    masks["sliding_window"] = lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx <= 5)
    masks["late_causal"] = lambda b, h, q_idx, kv_idx: (q_idx >= 3) & (q_idx >= kv_idx)

    score = None
    if c["score"] == "relative_bias":
        capture = (0.5 * torch.randn(H, Lq + Lkv - 1, generator=g)).to(device).requires_grad_()
        bias = capture

        def relative_bias(s, b, h, q_idx, kv_idx):
            return s + bias[h, q_idx - kv_idx + (Lkv - 1)]
        score = relative_bias
    elif c["score"] == "alibi":
        capture = (0.1 * torch.rand(H, generator=g) + 0.05).to(device).requires_grad_()
        slopes = capture

        def alibi(s, b, h, q_idx, kv_idx):
            return s + slopes[h] * (kv_idx - q_idx)
        score = alibi
    return score, masks[c["mask"]], capture


def build(c, device="cpu", dtype=None):
    """The whole-sequence q, k, v, upstream gradient and mods of a case (deterministic), on `device`; `dtype`
    (default the case's) is applied after rounding to the case's dtype, so a float32 build of a bfloat16
    case holds the same values."""
    g = _gen(c["seed"])
    rounded = getattr(torch, c["dtype"])
    dtype = dtype or rounded
    q = torch.randn(c["B"], c["H"], c["Lq"], c["D"], generator=g)
    k = torch.randn(c["B"], c["Hkv"], c["Lkv"], c["D"], generator=g)
    v = torch.randn(c["B"], c["Hkv"], c["Lkv"], c["Dv"], generator=g)
    dout = torch.randn(c["B"], c["H"], c["Lq"], c["Dv"], generator=g)
    q, k, v, dout = (t.to(rounded).to(device, dtype) for t in (q, k, v, dout))
    score, mask, capture = _mods(c, g, device)
    return q, k, v, dout, score, mask, capture


def result_path(outdir, name, rank):
    return os.path.join(outdir, f"{name}.rank{rank}.pt")


def _run_case(c, group, rank, device="cpu"):
    from flexjit import distributed as fd

    q, k, v, dout, score, mask, capture = build(c, device)
    layout, world = c["layout"], c["world"]
    shard = lambda x: fd.shard_sequence(x, layout, group).detach().clone()   # noqa: E731
    ql, kl, vl, dl = (shard(t).requires_grad_(t is not dout) for t in (q, k, v, dout))
    kwargs = dict(score_mod=score, enable_gqa=c["H"] != c["Hkv"], return_lse=True, group=group,
                  all_reduce_capture_grads=c["all_reduce"])
    if c["mask_mod_call"]:
        kwargs.update(mask_mod=mask, layout=layout)
        plan = fd.create_ring_block_mask(mask, c["B"], c["H"], c["Lq"], c["Lkv"], layout=layout, group=group,
                                         device=device, BLOCK_SIZE=128)
    else:
        plan = fd.create_ring_block_mask(mask, c["B"], c["H"], c["Lq"], c["Lkv"], layout=layout, group=group,
                                         device=device, BLOCK_SIZE=c["block"])
        kwargs.update(block_mask=plan)
    out, lse = fd.ring_flex_attention(ql, kl, vl, **kwargs)
    (out.float() * dl.float()).sum().backward()
    with torch.no_grad():
        out_nograd = fd.ring_flex_attention(ql, kl, vl, **{**kwargs, "return_lse": False})
    result = dict(out=out.detach(), lse=lse.detach(), dq=ql.grad, dk=kl.grad, dv=vl.grad, out_nograd=out_nograd,
                  skipped=plan.skipped_steps, sources=plan.sources, world=world,
                  capture_grad=None if capture is None else capture.grad)
    result = {key: value.cpu() if isinstance(value, torch.Tensor) else value for key, value in result.items()}
    if c["name"] == "causal_zigzag_w4":
        result["errors"] = _user_errors(q, k, v, ql, kl, vl, group, plan)
    return result


def _user_errors(q, k, v, ql, kl, vl, group, plan):
    """Messages of mistakes a user can make with a live process group (checked before any transfer)."""
    import flexjit
    from flexjit import distributed as fd

    attempts = {
        "no_layout": lambda: fd.ring_flex_attention(ql, kl, vl, group=group),
        "wrong_length": lambda: fd.ring_flex_attention(ql[:, :, :-1], kl, vl, layout="zigzag", group=group,
                                                       seq_lengths=(q.size(2), k.size(2))),
        "layout_mismatch": lambda: fd.ring_flex_attention(ql, kl, vl, block_mask=plan, layout="contiguous"),
        "local_block_mask": lambda: fd.ring_flex_attention(
            ql, kl, vl, block_mask=flexjit.create_block_mask(lambda b, h, i, j: i >= j, None, None, 10, 10,
                                                             device="cpu")),
        "mask_and_block_mask": lambda: fd.ring_flex_attention(ql, kl, vl, block_mask=plan,
                                                              mask_mod=lambda b, h, i, j: i >= j),
        "zigzag_indivisible": lambda: fd.create_ring_block_mask(None, 1, 1, 30, 30, layout="zigzag", group=group,
                                                               device="cpu"),
        "bad_layout": lambda: fd.create_ring_block_mask(None, 1, 1, 32, 32, layout="striped", group=group,
                                                       device="cpu"),
        "mask_not_callable": lambda: fd.create_ring_block_mask(3, 1, 1, 32, 32, layout="zigzag", group=group,
                                                              device="cpu"),
        "mask_arity": lambda: fd.create_ring_block_mask(lambda b, h, i: i > 0, 1, 1, 32, 32, layout="zigzag",
                                                       group=group, device="cpu"),
        "lse_gradient": lambda: fd.ring_flex_attention(ql, kl, vl, block_mask=plan, return_lse=True)[1].sum()
        .backward(),
    }
    messages = {}
    for key, attempt in attempts.items():
        try:
            attempt()
            messages[key] = None
        except flexjit.FlexjitError as e:
            messages[key] = f"FlexjitError: {e}"
        except Exception as e:   # recorded: the test says which mistake raised the wrong kind of error
            messages[key] = f"{type(e).__name__}: {e}"
    return messages


def worker(rank, port, cases, outdir):
    """One rank of the gloo world of SPAWNED_WORLD processes."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=SPAWNED_WORLD, timeout=_TIMEOUT)
        # Group creation is collective: every rank makes every group, in the same order.
        pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
        singles = [dist.new_group([r]) for r in range(SPAWNED_WORLD)]
        pair_cases = 0
        for c in cases:
            if c["world"] == SPAWNED_WORLD:
                group, members = None, range(SPAWNED_WORLD)
            elif c["world"] == 2:
                members = (0, 1) if pair_cases % 2 == 0 else (2, 3)
                group = pairs[pair_cases % 2]
                pair_cases += 1
            else:
                group, members = singles[0], (0,)
            if rank not in members:
                continue
            local = dist.get_rank(group)
            try:
                result = _run_case(c, group, local)
            except Exception:
                result = dict(failure=traceback.format_exc())
            torch.save(result, result_path(outdir, c["name"], local))
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ---- GPUs ----------------------------------------------------------------------------------------------

def gpu_cases(world):
    """The NCCL cases for `world` GPUs: bfloat16, the kernels' default 128-wide blocks, lengths of a few
    thousand (zigzag: multiples of 2 * world; contiguous: uneven)."""
    return [
        case("causal_zigzag_gpu", world, "zigzag", 2048, H=4, D=64, block=128, dtype="bfloat16", seed=10),
        case("document_contiguous_gpu", world, "contiguous", 2047, H=4, D=64, block=128, mask="document",
             dtype="bfloat16", seed=11),
        case("sliding_window_zigzag_gpu", world, "zigzag", 2048, H=4, D=64, block=128, mask="sliding_window",
             dtype="bfloat16", seed=12),
        case("relative_bias_zigzag_gpu", world, "zigzag", 1024, H=4, D=64, block=128, score="relative_bias",
             all_reduce=True, dtype="bfloat16", seed=13),
    ]


def _whole_sequence(c, device, dtype):
    """flexjit on the whole sequence in one process: out, lse and the gradients (on the CPU)."""
    import flexjit

    q, k, v, dout, score, mask, capture = build(c, device, dtype)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    block_mask = None if mask is None else flexjit.create_block_mask(mask, c["B"], c["H"], c["Lq"], c["Lkv"],
                                                                      device=device, BLOCK_SIZE=c["block"])
    out, lse = flexjit.flex_attention(q, k, v, score_mod=score, block_mask=block_mask,
                                      enable_gqa=c["H"] != c["Hkv"], return_lse=True)
    (out.float() * dout.float()).sum().backward()
    result = dict(out=out.detach(), lse=lse.detach(), dq=q.grad, dk=k.grad, dv=v.grad,
                  capture_grad=None if capture is None else capture.grad)
    return {key: None if t is None else t.cpu() for key, t in result.items()}


def float_reference(c):
    """The whole sequence through the CPU float64 reference, from the case's (rounded) inputs in float32."""
    return _whole_sequence(c, "cpu", torch.float32)


def single_gpu(c):
    """The whole sequence on one GPU in the case's dtype."""
    return _whole_sequence(c, "cuda", None)


def nccl_worker(rank, world, port, cases, outdir):
    """One rank of an NCCL world, on GPU `rank`."""
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    try:
        dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=_TIMEOUT, device_id=device)
        for c in cases:
            try:
                result = _run_case(c, None, rank, device)
            except Exception:
                result = dict(failure=traceback.format_exc())
            torch.save(result, result_path(outdir, c["name"], rank))
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
