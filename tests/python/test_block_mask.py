"""BlockMask, create_block_mask, create_mask and the mask combinators against torch's."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from reference import dense_attention
from variants import make_variant


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx < 24)


def head_window(b, h, q_idx, kv_idx):
    return (q_idx - kv_idx).abs() <= 8 * (h + 1)


def _sorted_lists(num, idx):
    """Row lists as sets (the order of indices within a row is an implementation choice)."""
    rows = num.reshape(-1).tolist()
    flat = idx.reshape(len(rows), -1)
    return [sorted(flat[r, :n].tolist()) for r, n in enumerate(rows)]


@pytest.mark.parametrize("mask_mod", [causal, sliding, head_window])
@pytest.mark.parametrize("block", [16, (16, 32)])
def test_block_lists_match_torch(mask_mod, block):
    B, H, Lq, Lkv = 2, 3, 96, 128
    ours = flexjit.create_block_mask(mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    theirs = tflex.create_block_mask(mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    assert ours.shape == theirs.shape == (B, H, Lq, Lkv)
    assert ours.BLOCK_SIZE == theirs.BLOCK_SIZE
    assert ours.seq_lengths == (Lq, Lkv)
    for prefix in ("", "full_"):
        for kind in ("kv", "q"):
            num = getattr(ours, f"{prefix}{kind}_num_blocks")
            idx = getattr(ours, f"{prefix}{kind}_indices")
            assert num.dtype == torch.int32 and num.shape[:2] == (B, H)
            torch.testing.assert_close(num, getattr(theirs, f"{prefix}{kind}_num_blocks"))
            assert _sorted_lists(num, idx) == _sorted_lists(getattr(theirs, f"{prefix}{kind}_num_blocks"),
                                                            getattr(theirs, f"{prefix}{kind}_indices"))
    torch.testing.assert_close(ours.to_dense(), theirs.to_dense().to(torch.int32))
    assert ours.sparsity() == pytest.approx(theirs.sparsity())


def test_none_batch_and_heads_broadcast():
    mask = flexjit.create_block_mask(causal, None, None, 64, 64, device="cpu", BLOCK_SIZE=16)
    assert mask.shape == (1, 1, 64, 64)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 64, 8, generator=g)
    out = flexjit.flex_attention(q, q, q, block_mask=mask)
    ref, _ = dense_attention(q, q, q, mask_mod=causal)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


def test_picture_and_repr():
    mask = flexjit.create_block_mask(causal, 1, 1, 64, 64, device="cpu", BLOCK_SIZE=16)
    picture = str(mask)
    assert "BlockMask(shape=(1, 1, 64, 64)" in picture
    assert "\u2588" in picture and "\u2591" in picture        # full and partial blocks
    assert len(picture.splitlines()) >= 5
    assert "sparsity" in repr(mask) and "causal" in repr(mask)


def test_to_same_device_and_mask_mod_attribute():
    mask = flexjit.create_block_mask(causal, 1, 1, 33, 33, device="cpu")
    moved = mask.to("cpu")
    assert moved.device == torch.device("cpu") and moved.mask_mod is causal
    torch.testing.assert_close(moved.kv_num_blocks, mask.kv_num_blocks)


def test_from_kv_blocks_reproduces_a_mask():
    B, H, L = 1, 2, 64
    made = flexjit.create_block_mask(sliding, B, H, L, L, device="cpu", BLOCK_SIZE=16)
    rebuilt = flexjit.BlockMask.from_kv_blocks(made.kv_num_blocks.contiguous(), made.kv_indices.contiguous(),
                                               made.full_kv_num_blocks.contiguous(),
                                               made.full_kv_indices.contiguous(), BLOCK_SIZE=16, mask_mod=sliding)
    assert rebuilt.shape == (B, H, L, L)
    torch.testing.assert_close(rebuilt.q_num_blocks, made.q_num_blocks)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, L, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(flexjit.flex_attention(q, k, v, block_mask=rebuilt),
                               flexjit.flex_attention(q, k, v, block_mask=made))


def test_from_kv_blocks_without_mask_keeps_whole_blocks():
    # A top-k style selection: query block i sees kv blocks {0, i} entirely (int64 lists are accepted).
    nq = 4
    num = torch.tensor([1, 2, 2, 2]).view(1, 1, nq)
    idx = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0], [0, 3, 0, 0]]).view(1, 1, nq, nq)
    mask = flexjit.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=16)
    assert mask.shape == (1, 1, 64, 64) and mask.mask_mod is flexjit.noop_mask
    dense = mask.to_dense()[0, 0]
    assert dense.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]]

    def selected(b, h, q_idx, kv_idx):
        return (kv_idx < 16) | (q_idx // 16 == kv_idx // 16)

    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 1, 64, 8, generator=g)
    ref, _ = dense_attention(q, q, q, mask_mod=selected)
    torch.testing.assert_close(flexjit.flex_attention(q, q, q, block_mask=mask).double(), ref, atol=2e-5, rtol=1e-4)


def _score_masking(score, b, h, q_idx, kv_idx):
    return torch.where(q_idx >= kv_idx, score, -float("inf"))


@pytest.mark.parametrize("mod", [causal, sliding, head_window, _score_masking,
                                 flexjit.and_masks(causal, head_window), flexjit.or_masks(causal, head_window)],
                         ids=["causal", "sliding", "head_window", "score_mod", "and_masks", "or_masks"])
def test_create_mask_matches_torch(mod):
    ours = flexjit.create_mask(mod, 2, 3, 37, 41, device="cpu")
    theirs = tflex.create_mask(mod, 2, 3, 37, 41, device="cpu")
    assert ours.dtype == torch.bool and ours.shape == (2, 3, 37, 41)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["document", "jagged", "flamingo", "natten", "prefix_lm"])
def test_create_mask_of_seed_variants(name):
    v = make_variant(name, 2, 2, 33, 40 if name == "flamingo" else 33)
    Lkv = 40 if name == "flamingo" else 33
    assert torch.equal(flexjit.create_mask(v.mask_mod, 2, 2, 33, Lkv, device="cpu"),
                       tflex.create_mask(v.mask_mod, 2, 2, 33, Lkv, device="cpu"))


def test_noop_mask_on_real_tensors():
    assert bool(flexjit.noop_mask(torch.tensor(0), torch.tensor(0), torch.tensor(1), torch.tensor(2)))


def test_combinators_reject_non_callables():
    with pytest.raises(flexjit.FlexjitError, match="and_masks: every argument must be a mask_mod"):
        flexjit.and_masks(causal, 3)
