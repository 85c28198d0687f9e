"""Inference layouts of flex_attention (page_table / page_size, kv_lengths; forward only): on the CPU a paged
cache gives the contiguous result and kv_lengths the result of the equivalent mask_mod, bit for bit; bad
arguments are named; on a GPU (skipped here) the decode family gives the CPU's results."""
import pytest
import torch

import flexjit

B, HQ, HKV, LQ, D, PAGE, PAGES = 3, 4, 2, 2, 16, 32, 4


def _paged(k, v, seed=0):
    """A pool holding k and v [B, Hkv, PAGES * PAGE, D] in shuffled pages (two spare pages of noise)."""
    g = torch.Generator().manual_seed(seed)
    total = B * PAGES + 2
    ids = torch.randperm(total, generator=g)[:B * PAGES].view(B, PAGES).to(torch.int32)
    pools = []
    for t in (k, v):
        pool = torch.randn(1, HKV, total * PAGE, D, generator=g, dtype=t.dtype)
        for b in range(B):
            for j in range(PAGES):
                p = int(ids[b, j])
                pool[0, :, p * PAGE:(p + 1) * PAGE] = t[b, :, j * PAGE:(j + 1) * PAGE]
        pools.append(pool)
    return ids, pools


def _inputs(device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    L = PAGE * PAGES
    return [torch.randn(*s, generator=g).to(device, dtype) for s in ((B, HQ, LQ, D), (B, HKV, L, D), (B, HKV, L, D))]


def test_a_paged_cache_gives_the_contiguous_result():
    q, k, v = _inputs()
    table, (pk, pv) = _paged(k, v)
    offset = PAGE * PAGES - LQ

    def alibi(score, b, h, q_idx, kv_idx):
        return score - (h + 1) * 0.05 * (q_idx + offset - kv_idx)

    want = flexjit.flex_attention(q, k, v, score_mod=alibi, enable_gqa=True)
    got = flexjit.flex_attention(q, pk, pv, score_mod=alibi, enable_gqa=True, page_table=table, page_size=PAGE)
    assert torch.equal(got, want)


def test_kv_lengths_are_the_equivalent_mask():
    q, k, v = _inputs()
    lengths = torch.tensor([128, 0, 37], dtype=torch.int32)
    mask = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: kv_idx < lengths[b], B, None, LQ, k.size(2),
                                     device="cpu")
    want, want_lse = flexjit.flex_attention(q, k, v, block_mask=mask, enable_gqa=True, return_lse=True)
    got, lse = flexjit.flex_attention(q, k, v, enable_gqa=True, kv_lengths=lengths, return_lse=True)
    assert torch.equal(got, want) and torch.equal(lse, want_lse)
    assert bool((lse[1] == float("-inf")).all()) and bool((got[1] == 0).all())  # the empty sequence


@pytest.mark.parametrize("kwargs, says", [
    (dict(page_table=torch.zeros(B, PAGES, dtype=torch.int32)), "page_table needs page_size"),
    (dict(page_size=32), "page_size without page_table"),
    (dict(page_table=torch.zeros(B, PAGES), page_size=32), "page_table must be an int32 tensor"),
    (dict(kv_lengths=[1, 2, 3]), "kv_lengths must be an int32 tensor"),
    (dict(kv_lengths=torch.tensor([1, 2, 999], dtype=torch.int32)), "kv_lengths\\[2\\] = 999 is outside"),
    (dict(page_table=torch.full((B, PAGES), 50, dtype=torch.int32), page_size=32), "page_table\\[0\\]\\[0\\] = 50"),
])
def test_bad_arguments_are_named(kwargs, says):
    q, k, v = _inputs()
    if "page_table" in kwargs and "page_size" in kwargs:
        _, (k, v) = _paged(k, v)
    with pytest.raises(flexjit.FlexjitError, match=says):
        flexjit.flex_attention(q, k, v, enable_gqa=True, **kwargs)


def test_they_are_forward_only():
    q, k, v = _inputs()
    q.requires_grad_()
    with pytest.raises(flexjit.FlexjitError, match="for inference"):
        flexjit.flex_attention(q, k, v, enable_gqa=True, kv_lengths=torch.tensor([1, 2, 3], dtype=torch.int32))
    with torch.no_grad():
        flexjit.flex_attention(q, k, v, enable_gqa=True, kv_lengths=torch.tensor([1, 2, 3], dtype=torch.int32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_decode_family_gives_the_cpu_results():
    q, k, v = _inputs("cpu", torch.bfloat16)
    table, (pk, pv) = _paged(k, v)
    lengths = torch.tensor([128, 5, 77], dtype=torch.int32)
    want = flexjit.flex_attention(q.float(), pk.float(), pv.float(), enable_gqa=True, page_table=table,
                                  page_size=PAGE, kv_lengths=lengths)
    got = flexjit.flex_attention(q.cuda(), pk.cuda(), pv.cuda(), enable_gqa=True, page_table=table.cuda(),
                                 page_size=PAGE, kv_lengths=lengths.cuda())
    assert (got.float().cpu() - want).abs().max().item() < 2e-2


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_a_decode_step_slices_the_prefill_mask(device, monkeypatch):
    """torch's decode recipe: the mask of the whole cache, its row block for the current position
    (mask[:, :, pos // BLOCK]), cropped to one query (_adjust), with the mask_mod shifted to the position; a
    step then gives that position's row of the full attention (on a GPU through the decode family)."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    L, BLOCK = 512, 128
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 4, L, 64, generator=g).to(device, dtype) for _ in range(3))

    def window(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < 200)

    full = flexjit.create_block_mask(window, 1, 1, L, L, device=device, BLOCK_SIZE=BLOCK)
    want = flexjit.flex_attention(q, k, v, block_mask=full)
    if device == "cuda":  # the steps through the decode family, never a fallback (the prefill above is not one)
        monkeypatch.setenv("FLEXJIT_FWD_CONFIG", "decode=1")
    for pos in (0, 130, 300, L - 1):
        step = full[:, :, pos // BLOCK]._adjust(1, L)
        step.mask_mod = lambda b, h, q_idx, kv_idx, pos=pos: window(b, h, q_idx + pos, kv_idx)
        got = flexjit.flex_attention(q[:, :, pos:pos + 1].contiguous(), k, v, block_mask=step)
        assert (got.float() - want[:, :, pos:pos + 1].float()).abs().max().item() < (2e-2 if device == "cuda" else 1e-6)
