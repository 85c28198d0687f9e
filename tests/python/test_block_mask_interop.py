"""torch's BlockMask wherever flexjit's is accepted, and the torch BlockMask API on flexjit's: from_kv_blocks
with [B, H, n_q_blocks, k] lists, __getitem__, _adjust, sparsity, seq_lengths and mask_mod assignment. Each
compared with torch's BlockMask on the CPU (lists, and flex_attention's outputs with either mask)."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from flexjit import _block_lists
from reference import dense_attention


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx < 24)


def head_window(b, h, q_idx, kv_idx):
    return (q_idx - kv_idx).abs() <= 8 * (h + 1)


def by_batch(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) | (b == 1)


def _qkv(B, H, Lq, Lkv, D=8, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, D, generator=g).requires_grad_(grad) for n in (Lq, Lkv, Lkv)]


def _rows(num, idx):
    """Each row's listed blocks, sorted."""
    rows = num.reshape(-1).tolist()
    flat = idx.reshape(len(rows), -1)
    return [sorted(flat[r, :n].tolist()) for r, n in enumerate(rows)]


def _same_lists(ours, theirs):
    for name in ("kv", "full_kv", "q", "full_q"):
        num, idx = getattr(ours, f"{name}_num_blocks"), getattr(ours, f"{name}_indices")
        t_num, t_idx = getattr(theirs, f"{name}_num_blocks"), getattr(theirs, f"{name}_indices")
        if t_num is None:   # torch leaves out the full lists of a mask without full blocks; ours are empty
            assert name.startswith("full") and not num.any()
            continue
        assert num.shape == t_num.shape, name
        assert torch.equal(num, t_num.to(torch.int32)), name
        assert _rows(num, idx) == _rows(t_num, t_idx), name


# --- torch's BlockMask as an argument --------------------------------------------------------------------

@pytest.mark.parametrize("mask_mod,B,H", [(causal, None, None), (sliding, 2, 3), (head_window, 1, 3),
                                          (by_batch, 2, 1)], ids=["causal", "sliding", "head_window", "by_batch"])
@pytest.mark.parametrize("lengths,block", [((96, 128), 16), ((77, 130), (16, 32))], ids=["whole", "odd"])
def test_torch_block_mask_gives_the_same_outputs_and_gradients(mask_mod, B, H, lengths, block):
    Lq, Lkv = lengths
    theirs = tflex.create_block_mask(mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    ours = flexjit.create_block_mask(mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    results = []
    for mask in (theirs, ours):
        q, k, v = _qkv(2, 3, Lq, Lkv, grad=True)
        out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, return_lse=True)
        out.backward(torch.ones_like(out))
        results.append((out, lse, q.grad, k.grad, v.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    ref, _ = dense_attention(*_qkv(2, 3, Lq, Lkv), mask_mod=mask_mod)
    torch.testing.assert_close(results[0][0].double(), ref, atol=2e-5, rtol=1e-4)


def test_torch_block_mask_with_a_captured_tensor_and_a_score_mod():
    L = 70
    doc = torch.tensor([0] * 30 + [1] * 25 + [2] * 15, dtype=torch.int32)
    bias = torch.randn(3, 2 * L)

    def same_doc(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    def rel(score, b, h, q_idx, kv_idx):
        return score + bias[h, q_idx - kv_idx + L]

    theirs = tflex.create_block_mask(same_doc, 1, 1, L, L, device="cpu", BLOCK_SIZE=16)
    q, k, v = _qkv(1, 3, L, L, seed=3)
    out = flexjit.flex_attention(q, k, v, score_mod=rel, block_mask=theirs)
    ref, _ = dense_attention(q, k, v, score_mod=rel, mask_mod=same_doc)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(tflex.flex_attention(q, k, v, score_mod=rel, block_mask=theirs), out,
                               atol=2e-5, rtol=1e-4)


def test_torch_block_mask_conversion_is_cached_until_it_changes():
    theirs = tflex.create_block_mask(causal, 1, 1, 64, 64, device="cpu", BLOCK_SIZE=16)
    first = flexjit.block_mask.from_torch_block_mask(theirs)
    assert flexjit.block_mask.from_torch_block_mask(theirs) is first
    theirs.mask_mod = sliding     # torch's masks are mutable; the conversion follows
    second = flexjit.block_mask.from_torch_block_mask(theirs)
    assert second is not first and second.mask_mod is sliding
    theirs.kv_num_blocks.zero_()  # so are their lists
    assert flexjit.block_mask.from_torch_block_mask(theirs).kv_num_blocks.sum() == 0


def test_torch_sliced_block_mask_needs_a_mask_mod_like_in_torch():
    theirs = tflex.create_block_mask(causal, 2, 2, 64, 64, device="cpu", BLOCK_SIZE=16)[0]
    q, k, v = _qkv(1, 2, 64, 64)
    with pytest.raises(flexjit.FlexjitError, match="sliced .* assign block_mask.mask_mod"):
        flexjit.flex_attention(q, k, v, block_mask=theirs)
    theirs.mask_mod = causal
    torch.testing.assert_close(flexjit.flex_attention(q, k, v, block_mask=theirs),
                               flexjit.flex_attention(q, k, v, block_mask=flexjit.create_block_mask(
                                   causal, 1, 2, 64, 64, device="cpu", BLOCK_SIZE=16)), atol=0, rtol=0)


# --- from_kv_blocks ------------------------------------------------------------------------------------------

def _top_k_lists(B, H, n_q, n_kv, k, seed):
    """An NSA-style selection: each q block row picks k distinct kv blocks (in random order), k < n_kv."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(n_kv, generator=g)[:k] for _ in range(B * H * n_q)]).view(B, H, n_q, k)
    num = torch.randint(0, k + 1, (B, H, n_q), generator=g, dtype=torch.int32)
    return num, idx.to(torch.int32)


def _dense_of(num, idx, n_kv):
    dense = torch.zeros(*num.shape, n_kv, dtype=torch.int32)
    for r, (n, row) in enumerate(zip(num.reshape(-1).tolist(), idx.reshape(num.numel(), -1).tolist())):
        dense.view(-1, n_kv)[r, row[:n]] = 1
    return dense


@pytest.mark.parametrize("k", [1, 3])
def test_from_kv_blocks_with_top_k_indices(k):
    B, H, block, L = 2, 3, 16, 100
    n = (L + block - 1) // block
    num, idx = _top_k_lists(B, H, n, n, k, seed=k)
    ours = flexjit.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block, seq_lengths=(L, L))
    dense = _dense_of(num, idx, n)
    assert ours.shape == (B, H, L, L) and ours.kv_indices.shape == (B, H, n, n)
    assert torch.equal(ours.to_dense(), dense)
    columns = dense.transpose(-1, -2).reshape(-1, n)
    assert _rows(ours.q_num_blocks, ours.q_indices) == [c.nonzero().flatten().tolist() for c in columns]
    # torch takes the same lists only without q lists (its transpose needs k == n_kv); passed to flexjit, its
    # mask gives the same outputs. (torch's own eager CPU path reads such lists as k columns wide, so the
    # reference here is a dense mask of the selection.)
    theirs = tflex.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block, seq_lengths=(L, L), compute_q_blocks=False)
    q, kk, v = _qkv(B, H, L, L, seed=4)
    out = flexjit.flex_attention(q, kk, v, block_mask=ours)
    torch.testing.assert_close(flexjit.flex_attention(q, kk, v, block_mask=theirs), out, atol=0, rtol=0)
    ref, _ = dense_attention(q, kk, v, mask_mod=lambda b, h, q_idx, kv_idx: dense[b, h, q_idx // block,
                                                                                   kv_idx // block] == 1)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


def test_from_kv_blocks_defaults_and_broadcast():
    num = torch.tensor([1, 2], dtype=torch.int32)
    idx = torch.tensor([[0, 0], [0, 1]], dtype=torch.int32)
    mask = flexjit.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=32)       # leading dims left out
    theirs = tflex.BlockMask.from_kv_blocks(num.view(1, 1, 2), idx.view(1, 1, 2, 2), BLOCK_SIZE=32)
    assert mask.shape == (1, 1, 64, 64) == theirs.shape      # torch's whole-block lengths
    _same_lists(mask, theirs)
    made = flexjit.create_block_mask(causal, 4, 3, 64, 64, device="cpu", BLOCK_SIZE=16)
    again = flexjit.BlockMask.from_kv_blocks(made.kv_num_blocks, made.kv_indices, made.full_kv_num_blocks,
                                             made.full_kv_indices, BLOCK_SIZE=16, mask_mod=causal)
    assert again.shape == (4, 3, 64, 64)
    assert again._stored[0].shape[:2] == (1, 1), "broadcast views stay broadcast"
    _same_lists(again, made)


@pytest.mark.parametrize("change,message", [
    (lambda n, i: (n.fill_(5), i), r"kv_num_blocks/kv_indices count 5 at row 0 is outside \[0, 4\]"),
    (lambda n, i: (n, i.index_fill_(-1, torch.tensor([0]), 7)), r"index 7 at row 0 is outside \[0, 4\)"),
    (lambda n, i: (n.fill_(2), i.fill_(1)), r"kv block 1 is listed twice in row 0"),
], ids=["count", "index", "twice"])
def test_from_kv_blocks_rejects_bad_cpu_lists(change, message):
    num, idx = torch.ones(1, 1, 4, dtype=torch.int32), torch.arange(4, dtype=torch.int32).repeat(1, 1, 4, 1)
    num, idx = change(num, idx)
    with pytest.raises(flexjit.FlexjitError, match=message):
        flexjit.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=16)


def test_from_kv_blocks_rejects_a_block_both_partial_and_full():
    num, idx = torch.ones(1, 1, 2, dtype=torch.int32), torch.zeros(1, 1, 2, 2, dtype=torch.int32)
    with pytest.raises(flexjit.FlexjitError, match="kv block 0 is listed twice in row 0"):
        flexjit.BlockMask.from_kv_blocks(num, idx, num, idx, BLOCK_SIZE=16)


def test_device_builder_repairs_what_the_cpu_check_rejects():
    # What a GPU build does with bad lists (it cannot read them without a host round trip): entries out of
    # range or past the count are dropped, repeats are one block, and partial wins over full.
    num = torch.tensor([[[9, 2, -1]]], dtype=torch.int32)
    idx = torch.tensor([[[[2, 7, 2], [1, 1, 0], [0, 1, 2]]]], dtype=torch.int32)
    full_num = torch.tensor([[[1, 1, 1]]], dtype=torch.int32)
    full_idx = torch.tensor([[[[2, 0, 0], [0, 0, 0], [0, 0, 0]]]], dtype=torch.int32)
    classes = _block_lists.block_classes(num, idx, full_num, full_idx, n_kv=3)
    assert classes.tolist() == [[[[0, 0, 1], [2, 1, 0], [2, 0, 0]]]]
    kv_num, kv_idx, fkv_num, fkv_idx, q_num, q_idx, fq_num, fq_idx = _block_lists.lists_from_classes(classes)
    assert kv_num.tolist() == [[[1, 1, 0]]] and kv_idx[0, 0, :, 0].tolist()[:2] == [2, 1]
    assert fkv_num.tolist() == [[[0, 1, 1]]] and q_num.tolist() == [[[0, 1, 1]]] and fq_num.tolist() == [[[2, 0, 0]]]
    assert fq_idx[0, 0, 0, :2].tolist() == [1, 2]


# --- __getitem__, _adjust, sparsity, seq_lengths ----------------------------------------------------------

@pytest.mark.parametrize("index", [0, -1, (1, 2), (slice(0, 2), slice(1, 3)), (slice(None), 1),
                                   (0, slice(None), torch.tensor([1, 3])), (slice(None), torch.tensor([0, 2]))],
                         ids=["b", "b_neg", "b_h", "slices", "h", "q_blocks", "h_tensor"])
@pytest.mark.parametrize("mask_mod", [causal, head_window, by_batch], ids=["causal", "head_window", "by_batch"])
def test_getitem_matches_torch(index, mask_mod):
    B, H, L = 3, 4, 64
    ours = flexjit.create_block_mask(mask_mod, B, H, L, L, device="cpu", BLOCK_SIZE=16)
    theirs = tflex.create_block_mask(mask_mod, B, H, L, L, device="cpu", BLOCK_SIZE=16)
    sliced, t_sliced = ours[index], theirs[index]
    for name in ("kv", "full_kv", "q", "full_q") if t_sliced.q_num_blocks.shape[-1] == 4 else ("kv", "full_kv"):
        assert getattr(sliced, f"{name}_num_blocks").shape == getattr(t_sliced, f"{name}_num_blocks").shape
        assert torch.equal(getattr(sliced, f"{name}_num_blocks"), getattr(t_sliced, f"{name}_num_blocks"))
        assert _rows(getattr(sliced, f"{name}_num_blocks"), getattr(sliced, f"{name}_indices")) == \
            _rows(getattr(t_sliced, f"{name}_num_blocks"), getattr(t_sliced, f"{name}_indices"))
    assert sliced.BLOCK_SIZE == (16, 16)


def test_sliced_mask_is_used_once_its_mask_mod_is_assigned():
    B, H, L = 3, 4, 80
    mask = flexjit.create_block_mask(head_window, B, H, L, L, device="cpu", BLOCK_SIZE=16)
    sliced = mask[1:3, 2:4]
    assert sliced.shape == (2, 2, L, L)
    q, k, v = _qkv(2, 2, L, L, seed=5)
    with pytest.raises(flexjit.FlexjitError, match="sliced"):
        flexjit.flex_attention(q, k, v, block_mask=sliced)
    sliced.mask_mod = lambda b, h, q_idx, kv_idx: head_window(b + 1, h + 2, q_idx, kv_idx)
    ref, _ = dense_attention(q, k, v, mask_mod=lambda b, h, q_idx, kv_idx: head_window(b + 1, h + 2, q_idx, kv_idx))
    torch.testing.assert_close(flexjit.flex_attention(q, k, v, block_mask=sliced).double(), ref, atol=2e-5, rtol=1e-4)


def test_decoding_with_a_selected_q_block_and_new_seq_lengths():
    # gpt-fast's pattern: one mask for the whole cache, the current position's q block selected, its lengths
    # set to one query row, and a mask_mod that offsets q_idx to the position.
    S, block, pos = 256, 64, 150
    mask = flexjit.create_block_mask(causal, 1, 1, S, S, device="cpu", BLOCK_SIZE=block)
    step = mask[:, :, torch.tensor([pos // block])]
    assert step.seq_lengths == (block, S)
    step.seq_lengths = (1, S)
    step.mask_mod = lambda b, h, q_idx, kv_idx: causal(b, h, q_idx + pos, kv_idx)
    q, k, v = _qkv(1, 2, 1, S, seed=6)
    ref, _ = dense_attention(q, k, v, mask_mod=lambda b, h, q_idx, kv_idx: kv_idx <= pos)
    torch.testing.assert_close(flexjit.flex_attention(q, k, v, block_mask=step).double(), ref, atol=2e-5, rtol=1e-4)
    with pytest.raises(flexjit.FlexjitError, match=r"BlockMask.seq_lengths: \(100, 256\) needs 2 x 4 blocks"):
        step.seq_lengths = (100, S)


@pytest.mark.parametrize("mask_mod", [causal, sliding], ids=["causal", "sliding"])
def test_adjust_crops_like_torch(mask_mod):
    mask = flexjit.create_block_mask(mask_mod, 1, 2, 256, 256, device="cpu", BLOCK_SIZE=32)
    theirs = tflex.create_block_mask(mask_mod, 1, 2, 256, 256, device="cpu", BLOCK_SIZE=32)
    cropped = mask._adjust(128, 160)
    assert cropped.seq_lengths == (128, 160)
    t_cropped = theirs._adjust(128, 160)
    assert _rows(cropped.kv_num_blocks, cropped.kv_indices) == _rows(t_cropped.kv_num_blocks, t_cropped.kv_indices)
    odd = mask._adjust(100, 150)   # lengths inside blocks: usable as they are (torch's would say (128, 160))
    q, k, v = _qkv(1, 2, 100, 150, seed=7)
    torch.testing.assert_close(flexjit.flex_attention(q, k, v, block_mask=odd),
                               flexjit.flex_attention(q, k, v, block_mask=flexjit.create_block_mask(
                                   mask_mod, 1, 2, 100, 150, device="cpu", BLOCK_SIZE=32)), atol=0, rtol=0)
    with pytest.raises(flexjit.FlexjitError, match="crops to shorter lengths only"):
        mask._adjust(300, 100)


@pytest.mark.parametrize("lengths,block", [((64, 64), 16), ((100, 100), 16), ((77, 130), (16, 32)), ((5, 300), 128)])
def test_sparsity_is_torchs(lengths, block):
    ours = flexjit.create_block_mask(sliding, 2, None, *lengths, device="cpu", BLOCK_SIZE=block)
    theirs = tflex.create_block_mask(sliding, 2, None, *lengths, device="cpu", BLOCK_SIZE=block)
    assert ours.sparsity() == pytest.approx(theirs.sparsity())
    assert f"sparsity={theirs.sparsity():.2f}%" in str(ours)   # the picture's header agrees
