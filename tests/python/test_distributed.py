"""flexjit.distributed (context parallelism) on the CPU: ring attention over torch.distributed gloo with 1, 2
and 4 processes against the single-process flexjit call on the whole sequence (outputs, LSE, dq, dk, dv and
captured-tensor gradients), plus the pieces that need no process group (layouts, the LSE merge, one ring
step's backward). The GPU versions (one GPU: a step's backward through the kernels; NCCL on >= 2 GPUs) skip
without the hardware.

The multi-process cases run in one spawned world of 4 gloo processes (ring_cases.py), started once for the
module: process start-up dominates the time, the CPU reference runs tiny shapes.
"""
import math
import socket

import pytest
import torch
import torch.distributed as dist

import flexjit
import ring_cases
from flexjit import _ring
from flexjit import distributed as fd
from flexjit.attention import _Call
from flexjit._cache import resolve
from flexjit._trace import MASK_MOD, SCORE_MOD

_TOLERANCE = {"float32": dict(atol=2e-5, rtol=2e-5), "bfloat16": dict(atol=2e-2, rtol=2e-2)}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ring_results(tmp_path_factory):
    """Runs every case in a spawned gloo world; the directory of the ranks' saved results."""
    outdir = tmp_path_factory.mktemp("ring")
    torch.multiprocessing.spawn(ring_cases.worker, args=(_free_port(), ring_cases.CASES, str(outdir)),
                                nprocs=ring_cases.SPAWNED_WORLD, join=True)
    return outdir


def _reference(c):
    """The single-process flexjit call on the whole sequence: out, lse and the gradients."""
    return ring_cases._whole_sequence(c, "cpu", None)


def _load(outdir, c):
    results = []
    for rank in range(c["world"]):
        r = torch.load(ring_cases.result_path(outdir, c["name"], rank), weights_only=False)
        assert "failure" not in r, f"rank {rank} failed:\n{r['failure']}"
        results.append(r)
    return results


@pytest.mark.parametrize("c", ring_cases.CASES, ids=[c["name"] for c in ring_cases.CASES])
def test_ring_matches_single_process(ring_results, c):
    ref = _reference(c)
    results = _load(ring_results, c)
    tol = _TOLERANCE[c["dtype"]]
    W = c["world"]
    for rank, r in enumerate(results):
        shard = lambda t: fd.shard_sequence(t, c["layout"], rank=rank, world_size=W)   # noqa: E731
        for key in ("out", "dq"):
            torch.testing.assert_close(r[key], shard(ref[key]), **tol, msg=lambda m: f"{key}, rank {rank}: {m}")
        torch.testing.assert_close(r["lse"], shard(ref["lse"]), **tol, msg=lambda m: f"lse, rank {rank}: {m}")
        for key in ("dk", "dv"):
            torch.testing.assert_close(r[key], shard(ref[key]), **tol, msg=lambda m: f"{key}, rank {rank}: {m}")
        torch.testing.assert_close(r["out_nograd"], r["out"], atol=0, rtol=0)
        assert not any(torch.isnan(r[key]).any() for key in ("out", "lse", "dq", "dk", "dv"))
        assert r["sources"] == tuple((rank - t) % W for t in range(W))
    if ref["capture_grad"] is not None:
        grads = [r["capture_grad"] for r in results]
        if c["all_reduce"]:   # every rank holds the whole gradient
            for rank, g in enumerate(grads):
                torch.testing.assert_close(g, ref["capture_grad"], **tol, msg=lambda m: f"rank {rank}: {m}")
        else:   # each rank holds its queries' share; the shares sum to the whole
            assert not torch.equal(grads[0], grads[1])
            torch.testing.assert_close(sum(grads), ref["capture_grad"], **tol)


def test_ring_skips_steps_the_mask_keeps_nothing_of(ring_results):
    by_name = {c["name"]: c for c in ring_cases.CASES}
    # Contiguous causal: rank r's step t attends to rank r - t, whose keys are all in its future for t > r.
    results = _load(ring_results, by_name["causal_contiguous_uneven_w4"])
    assert [r["skipped"] for r in results] == [tuple(range(rank + 1, 4)) for rank in range(4)]
    # Zigzag causal: every step has work on every rank (the point of the layout).
    assert [r["skipped"] for r in _load(ring_results, by_name["causal_zigzag_w4"])] == [()] * 4


def test_ring_fully_masked_rows(ring_results):
    c = {c["name"]: c for c in ring_cases.CASES}["masked_rows_bf16_zigzag_w2"]
    positions = fd.shard_positions(c["Lq"], c["layout"], rank=0, world_size=2)
    r = _load(ring_results, c)[0]
    masked = positions < 3   # late_causal keeps no key for rows 0-2: O = 0, LSE = -inf, zero dq
    assert masked.any()
    assert torch.all(r["lse"][..., masked] == -math.inf)
    assert torch.all(r["out"][..., masked, :] == 0) and torch.all(r["dq"][..., masked, :] == 0)
    assert torch.isfinite(r["lse"][..., ~masked]).all()


def test_ring_user_errors(ring_results):
    c = {c["name"]: c for c in ring_cases.CASES}["causal_zigzag_w4"]
    errors = _load(ring_results, c)[0]["errors"]
    expected = {
        "no_layout": "say how the sequence is sharded: layout='contiguous' or layout='zigzag'",
        "wrong_length": "query holds 9 positions on rank 0, but layout 'zigzag' of Q_LEN 40 over 4 ranks gives it 10",
        "layout_mismatch": "layout='contiguous' but the block_mask was made for layout 'zigzag'",
        "local_block_mask": "block_mask must be a RingBlockMask made with flexjit.distributed.create_ring_block_mask",
        "mask_and_block_mask": "the block_mask already holds the mask_mod",
        "zigzag_indivisible": "2 * world_size = 8 equal chunks, but it has 30 positions",
        "bad_layout": "layout must be one of 'contiguous', 'zigzag', got 'striped'",
        "mask_not_callable": "mask_mod must be a callable, got int",
        "mask_arity": "cannot be called as mask_mod(b, h, q_idx, kv_idx)",
        "lse_gradient": "gradients through the returned lse are not supported",
    }
    for key, text in expected.items():
        assert errors[key] is not None, f"{key}: no error"
        assert errors[key].startswith("FlexjitError: ") and text in errors[key], f"{key}: {errors[key]}"


# ---- without a process group ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout, length, world", [("contiguous", 37, 4), ("contiguous", 5, 5), ("contiguous", 9, 1),
                                                   ("zigzag", 40, 4), ("zigzag", 6, 3), ("zigzag", 14, 1)])
def test_layout_positions_cover_the_sequence(layout, length, world):
    positions = [fd.shard_positions(length, layout, rank=r, world_size=world) for r in range(world)]
    assert torch.equal(torch.sort(torch.cat(positions)).values, torch.arange(length))
    sharding = _ring.Sharding(layout, length, world, "test")
    for rank, pos in enumerate(positions):
        # The three offsets the mods read reproduce every global position from the local index.
        offsets = torch.tensor(sharding.offsets(rank) * 2, dtype=torch.int32)
        local = torch.arange(pos.numel(), dtype=torch.int32)
        assert torch.equal(_ring.global_index(local, offsets, _ring.Q_OFFSETS).long(), pos)
        x = torch.randn(2, length, 3)
        assert torch.equal(fd.shard_sequence(x, layout, dim=1, rank=rank, world_size=world), x[:, pos])
    if layout == "zigzag":   # rank r holds chunk r then chunk 2W - 1 - r
        chunk = length // (2 * world)
        assert positions[0][:chunk].tolist() == list(range(chunk))
        assert positions[0][chunk:].tolist() == list(range(length - chunk, length))
    else:   # torch.tensor_split's sizes
        assert [p.numel() for p in positions] == [t.numel() for t in torch.arange(length).tensor_split(world)]


def test_global_mods_share_one_trace():
    """Every ring step's mods are one traced graph (one kernel) reading the step's offsets tensor: the offsets
    are captured, not baked in as constants."""
    document = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2], dtype=torch.int32)

    def document_mask(b, h, q_idx, kv_idx):
        return document[q_idx] == document[kv_idx]

    def alibi(s, b, h, q_idx, kv_idx):
        return s + 0.5 * (kv_idx - q_idx)

    for kind, mod, wrap in ((MASK_MOD, document_mask, fd._global_mask_mod), (SCORE_MOD, alibi, fd._global_score_mod)):
        steps = [torch.tensor(o, dtype=torch.int32) for o in ([2, 0, 4, 2, 2, 6], [4, 1, 1, 4, 3, 3])]
        bound = [resolve(kind, wrap(mod, offsets)) for offsets in steps]
        assert bound[0].traced is bound[1].traced
        for b, offsets in zip(bound, steps):
            assert any(t is offsets for t in b.tensors)
    sharding = _ring.Sharding("zigzag", 8, 2, "test")
    offsets = torch.tensor(sharding.offsets(1) + sharding.offsets(0), dtype=torch.int32)
    local = flexjit.create_mask(fd._global_mask_mod(document_mask, offsets), 1, 1, 4, 4, device="cpu")
    q_pos, kv_pos = sharding.positions(1), sharding.positions(0)
    whole = flexjit.create_mask(document_mask, 1, 1, 8, 8, device="cpu")
    assert torch.equal(local[0, 0], whole[0, 0][q_pos][:, kv_pos])


def _block_kinds(block_mask):
    """[nQ, nKV] of a (B=1, H=1) block mask: 0 skipped, 1 partial, 2 full."""
    kinds = block_mask.to_dense()[0, 0].clone()
    if block_mask.full_kv_num_blocks is not None:
        full = flexjit.block_mask._ordered_to_dense(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
        kinds += full[0, 0]
    return kinds


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("mask_name", ["causal", "sliding_window"])
def test_step_block_masks_are_the_global_ones(mask_name, device):
    """With chunks a multiple of the block size, every shard pair's block mask (from the global mask_mod on
    offset indices) classifies each block exactly as the global block mask does: the offsets' interval
    form is exact, so no block becomes partial or kept that the single call would skip or run unmasked."""
    masks = {"causal": lambda b, h, q_idx, kv_idx: q_idx >= kv_idx,
             "sliding_window": lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx <= 20)}
    mask_mod, world, block, length = masks[mask_name], 2, 16, 128
    whole = _block_kinds(flexjit.create_block_mask(mask_mod, None, None, length, length, device=device,
                                                   BLOCK_SIZE=block)).cpu()
    sharding = _ring.Sharding("zigzag", length, world, "test")
    for rank in range(world):
        for source in range(world):
            offsets = torch.tensor(sharding.offsets(rank) + sharding.offsets(source), dtype=torch.int32,
                                   device=device)
            local = flexjit.create_block_mask(fd._global_mask_mod(mask_mod, offsets), None, None, length // world,
                                              length // world, device=device, BLOCK_SIZE=block)
            q_blocks = sharding.positions(rank)[::block] // block
            kv_blocks = sharding.positions(source)[::block] // block
            assert torch.equal(_block_kinds(local).cpu(), whole[q_blocks][:, kv_blocks]), (rank, source)


def test_layout_errors():
    with pytest.raises(flexjit.FlexjitError, match="layout 'zigzag' cuts the sequence into 2 \\* world_size = 6"):
        fd.shard_positions(10, "zigzag", rank=0, world_size=3)
    with pytest.raises(flexjit.FlexjitError, match="3 positions cannot be cut over 4 ranks"):
        fd.shard_sequence(torch.zeros(1, 1, 3, 2), "contiguous", rank=0, world_size=4)
    with pytest.raises(flexjit.FlexjitError, match="rank 4 is not in a world of 4"):
        fd.shard_positions(8, "contiguous", rank=4, world_size=4)
    with pytest.raises(flexjit.FlexjitError, match="give both rank and world_size"):
        fd.shard_positions(8, "contiguous", rank=1)
    with pytest.raises(flexjit.FlexjitError, match="dim 4 is not a dimension of a 4-D tensor"):
        fd.shard_sequence(torch.zeros(1, 1, 8, 2), "contiguous", dim=4, rank=0, world_size=2)


@pytest.mark.skipif(dist.is_initialized(), reason="a process group is initialized in this process")
def test_errors_without_a_process_group():
    with pytest.raises(flexjit.FlexjitError, match="torch.distributed is not initialized; call torch.distributed"):
        fd.create_ring_block_mask(None, 1, 1, 16, 16, layout="zigzag", device="cpu")
    q = torch.randn(1, 1, 8, 4)
    with pytest.raises(flexjit.FlexjitError, match="torch.distributed is not initialized"):
        fd.ring_flex_attention(q, q, q, layout="contiguous")
    with pytest.raises(flexjit.FlexjitError, match="torch.distributed is not initialized"):
        fd.shard_sequence(q, "zigzag")
    with pytest.raises(flexjit.FlexjitError, match="key must be this rank's 4-D shard"):
        fd.ring_flex_attention(q, q[0], q, layout="contiguous")
    with pytest.raises(flexjit.FlexjitError, match="query has dtype torch.float64"):
        fd.ring_flex_attention(q.double(), q, q, layout="contiguous")


def _split_problem(device, dtype, parts, D, seed=0):
    """A causal relative-bias problem on the whole sequence, and its keys cut at `parts`."""
    g = torch.Generator().manual_seed(seed)
    B, H, L = 1, 2, parts[-1]
    q, k, v, dout = (torch.randn(B, H, L, D, generator=g).to(device, dtype) for _ in range(4))
    bias = (0.5 * torch.randn(H, 2 * L - 1, generator=g)).to(device).requires_grad_()

    def relative_bias(s, b, h, q_idx, kv_idx):
        return s + bias[h, q_idx - kv_idx + (L - 1)]

    def late_causal(b, h, q_idx, kv_idx):   # row 0 keeps nothing
        return (q_idx >= kv_idx) & (q_idx > 0)
    return q, k, v, dout, bias, relative_bias, late_causal, parts


def _merge_and_step_backward(device, dtype, parts, block, D):
    """The whole-sequence result and gradients, and the same from per-part calls: partial (out, lse) merged,
    then each part's backward under the merged softmax, summed."""
    q, k, v, dout, bias, score_mod, mask_mod, parts = _split_problem(device, dtype, parts, D)
    L = q.size(2)
    qr, kr, vr = (t.clone().requires_grad_() for t in (q, k, v))
    full = flexjit.create_block_mask(mask_mod, None, None, L, L, device=device, BLOCK_SIZE=block)
    out_ref, lse_ref = flexjit.flex_attention(qr, kr, vr, score_mod=score_mod, block_mask=full, return_lse=True)
    out_ref.backward(dout)
    bias_ref, bias.grad = bias.grad, None
    out = lse = None
    pieces = []
    for lo, hi in zip(parts[:-1], parts[1:]):
        if lo == hi:
            continue
        def shifted_mask(b, h, q_idx, kv_idx, lo=lo):
            return mask_mod(b, h, q_idx, kv_idx + lo)
        def shifted_score(s, b, h, q_idx, kv_idx, lo=lo):
            return score_mod(s, b, h, q_idx, kv_idx + lo)
        mask = flexjit.create_block_mask(shifted_mask, None, None, L, hi - lo, device=device, BLOCK_SIZE=block)
        with torch.no_grad():
            o, l = flexjit.flex_attention(q, k[:, :, lo:hi], v[:, :, lo:hi], score_mod=shifted_score,
                                          block_mask=mask, return_lse=True)
        out, lse = _ring.merge(out, lse, o, l)
        pieces.append((lo, hi, _Call(resolve(SCORE_MOD, shifted_score), mask, None), (o, l)))
    out = out.to(dtype)
    dq, dk, dv = (torch.zeros(t.shape, dtype=torch.float32, device=device) for t in (q, k, v))
    dbias = torch.zeros_like(bias, dtype=torch.float32)
    for lo, hi, call, partial in pieces:
        g = _ring.step_backward(call, q, k[:, :, lo:hi], v[:, :, lo:hi], out, lse, dout, partial)
        dq += g.dq
        dk[:, :, lo:hi] += g.dk
        dv[:, :, lo:hi] += g.dv
        dbias += g.captures[0]
    return (out_ref, lse_ref, qr.grad, kr.grad, vr.grad, bias_ref), (out, lse, dq, dk, dv, dbias)


def test_merge_and_step_backward_cpu():
    """The LSE merge, and the CPU reference's step backward (a sink logit and a shifted Delta, _ring.py), equal
    the single call up to float32 rounding; a fully masked row (row 0), rows a part keeps no key of (rows
    0-6 in keys 7-18) and an empty part included."""
    ref, got = _merge_and_step_backward("cpu", torch.float32, parts=(0, 7, 19, 19, 32), block=16, D=16)
    names = ("out", "lse", "dq", "dk", "dv", "bias grad")
    for name, r, g in zip(names, ref, got):
        torch.testing.assert_close(g.to(r.dtype), r, atol=2e-5, rtol=2e-5, msg=lambda m: f"{name}: {m}")
    assert got[1][0, 0, 0] == -math.inf and torch.all(got[0][0, 0, 0] == 0)


def test_merge_keeps_masked_rows_and_nan():
    neg = float("-inf")
    out, lse = _ring.merge(None, None, torch.zeros(1, 3, 2), torch.tensor([[neg, 0.5, float("nan")]]))
    out, lse = _ring.merge(out, lse, torch.ones(1, 3, 2), torch.tensor([[neg, neg, 1.0]]))
    assert lse[0, 0] == neg and torch.all(out[0, 0] == 0)        # masked in both parts
    assert lse[0, 1] == 0.5 and torch.all(out[0, 1] == 0)        # the second part kept nothing
    assert torch.isnan(lse[0, 2]) and torch.isnan(out[0, 2]).all()   # a NaN row stays NaN


# ---- GPUs ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_merge_and_step_backward_gpu():
    """The kernels' backward called with the merged out / lse (the standard ring-attention backward): the
    summed step gradients against the single call, within bfloat16 accumulation of a few parts."""
    ref, got = _merge_and_step_backward("cuda", torch.bfloat16, parts=(0, 200, 520, 1031), block=128, D=64)
    for name, r, g in zip(("out", "lse", "dq", "dk", "dv", "bias grad"), ref, got):
        torch.testing.assert_close(g.float(), r.float(), atol=3e-2, rtol=3e-2, msg=lambda m: f"{name}: {m}")


@pytest.mark.skipif(torch.cuda.device_count() < 2 or not dist.is_nccl_available(), reason="needs >= 2 GPUs and NCCL")
def test_nccl_ring_matches_single_gpu(tmp_path):
    """NCCL on up to 4 GPUs against the float64 reference, with one GPU's error on the whole sequence as the
    yardstick. Each ring step rounds its partial output and gradients to bfloat16 once and the merged result
    is rounded again, where the single call rounds once: hence world + 1 times its error (plus 1e-3)."""
    world = min(torch.cuda.device_count(), 4)
    cases = ring_cases.gpu_cases(world)
    torch.multiprocessing.spawn(ring_cases.nccl_worker, args=(world, _free_port(), cases, str(tmp_path)),
                                nprocs=world, join=True)
    factor = world + 1
    for c in cases:
        results = _load(tmp_path, c)
        exact = ring_cases.float_reference(c)
        single = ring_cases.single_gpu(c)
        for rank, r in enumerate(results):
            def shard(t):
                return fd.shard_sequence(t, c["layout"], rank=rank, world_size=world).float()
            for key in ("out", "lse", "dq", "dk", "dv"):
                finite = torch.isfinite(shard(exact[key]))
                assert torch.equal(torch.isfinite(r[key]), finite), f"{c['name']} {key} rank {rank}: inf / NaN"
                err_ring = (r[key].float() - shard(exact[key]))[finite].abs().max().item()
                err_single = (shard(single[key]) - shard(exact[key]))[finite].abs().max().item()
                assert err_ring <= factor * err_single + 1e-3, \
                    f"{c['name']} {key} rank {rank}: ring error {err_ring}, one GPU {err_single}"
        if exact["capture_grad"] is not None:   # all-reduced in the GPU cases: every rank holds the whole
            for rank, r in enumerate(results):
                err_ring = (r["capture_grad"].float() - exact["capture_grad"]).abs().max().item()
                err_single = (single["capture_grad"].float() - exact["capture_grad"]).abs().max().item()
                assert err_ring <= factor * err_single + 1e-3, \
                    f"{c['name']} capture grad rank {rank}: ring error {err_ring}, one GPU {err_single}"
        if c["mask"] == "causal" and c["layout"] == "zigzag":
            assert [r["skipped"] for r in results] == [()] * world
