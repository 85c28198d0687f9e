"""Packed sequences: create_document_block_mask (the document mask from sequence lengths in one call) against
torch's block mask of the same document ids, and nested jagged q, k, v (create_nested_block_mask, torch's
signature) against a dense reference run on each sequence alone, outputs, LSE and gradients."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from reference import dense_attention

H, D = 2, 8
LENGTHS = [5, 17, 1, 9]
ATOL, RTOL = 2e-5, 1e-4


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _doc_ids(lengths):
    return torch.cat([torch.full((n,), i, dtype=torch.int32) for i, n in enumerate(lengths)])


@pytest.mark.parametrize("inner", [None, causal], ids=["document", "document_causal"])
def test_document_block_mask_from_lengths_matches_torch(inner):
    total = sum(LENGTHS)
    doc = _doc_ids(LENGTHS)
    start = torch.tensor([0] + LENGTHS).cumsum(0).to(torch.int32)

    def torch_mask(b, h, q_idx, kv_idx):   # what a user writes by hand: ids, then local positions
        same = doc[q_idx] == doc[kv_idx]
        if inner is None:
            return same
        return same & inner(doc[q_idx], h, q_idx - start[doc[q_idx]], kv_idx - start[doc[kv_idx]])

    ours = flexjit.create_document_block_mask(LENGTHS, inner, device="cpu", BLOCK_SIZE=4)
    theirs = tflex.create_block_mask(torch_mask, 1, 1, total, total, device="cpu", BLOCK_SIZE=4)
    torch.testing.assert_close(ours.to_dense(), theirs.to_dense())
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, total, D, generator=g) for _ in range(3))
    out = flexjit.flex_attention(q, k, v, block_mask=ours)
    ref = tflex.flex_attention(q.double(), k.double(), v.double(), block_mask=theirs)
    torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)


def test_cross_attention_lengths():
    kv_lengths = [3, 4, 11, 2]
    mask = flexjit.create_document_block_mask(LENGTHS, device="cpu", BLOCK_SIZE=4, kv_seq_lengths=kv_lengths)
    assert mask.shape == (1, 1, sum(LENGTHS), sum(kv_lengths))
    dense = flexjit.create_mask(mask.mask_mod, 1, 1, sum(LENGTHS), sum(kv_lengths), device="cpu")[0, 0]
    want = _doc_ids(LENGTHS)[:, None] == _doc_ids(kv_lengths)[None, :]
    assert torch.equal(dense, want)
    with pytest.raises(flexjit.FlexjitError, match="4 sequences but kv_seq_lengths 2"):
        flexjit.create_document_block_mask(LENGTHS, device="cpu", kv_seq_lengths=[1, 2])


def _nested(seed, grad=True):
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(n, H, D, generator=g) for n in LENGTHS]
    nt = torch.nested.nested_tensor(parts, layout=torch.jagged, requires_grad=grad)
    return nt, parts


@pytest.mark.parametrize("with_mask", [True, False], ids=["nested_block_mask", "default_document_mask"])
def test_nested_jagged_inputs_match_each_sequence_alone(with_mask):
    (q, qs), (k, ks), (v, vs) = _nested(0), _nested(1), _nested(2)
    bias = torch.randn(H, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)

    def relative(score, b, h, q_idx, kv_idx):   # b is the sequence, the indices are local, as in torch
        return score + bias[h, q_idx - kv_idx + 20] + b * 0.1

    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    mask = flexjit.create_nested_block_mask(causal, 1, 1, qt, BLOCK_SIZE=4) if with_mask else None
    mask_mod = causal if with_mask else None
    out, lse = flexjit.flex_attention(qt, kt, vt, score_mod=relative, block_mask=mask, return_lse=True)
    assert out.is_nested and out.shape[:2] == (len(LENGTHS), H) and lse.is_nested
    weights = [torch.randn(n, H, D, generator=torch.Generator().manual_seed(10 + i)) for i, n in enumerate(LENGTHS)]
    loss = sum((o.transpose(0, 1) * w).sum() + 0.1 * l.sum() for o, l, w in zip(out.unbind(), lse.unbind(), weights))
    loss.backward()

    ref_loss = 0
    ref_bias = bias.detach().double().requires_grad_()
    leaves = []
    for i, w in enumerate(weights):
        qi, ki, vi = (p[i].transpose(0, 1).unsqueeze(0).double().requires_grad_() for p in (qs, ks, vs))
        leaves.append((qi, ki, vi))
        ro, rl = dense_attention(qi, ki, vi, lambda s, b, h, a, c, i=i: s + ref_bias[h, a - c + 20] + i * 0.1, mask_mod)
        torch.testing.assert_close(out.unbind()[i].double(), ro[0], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(lse.unbind()[i].double(), rl[0], atol=ATOL, rtol=RTOL)
        ref_loss = ref_loss + (ro[0].transpose(0, 1) * w).sum() + 0.1 * rl.sum()
    ref_loss.backward()
    for nt, name, j in ((q, "dq", 0), (k, "dk", 1), (v, "dv", 2)):
        for i, got in enumerate(nt.grad.unbind()):
            torch.testing.assert_close(got.double(), leaves[i][j].grad[0].transpose(0, 1), atol=1e-4, rtol=1e-4,
                                       msg=lambda m: f"{name} of sequence {i}: {m}")
    torch.testing.assert_close(bias.grad.double(), ref_bias.grad, atol=1e-4, rtol=1e-4)


def test_nested_inputs_must_be_jagged_and_heads_first():
    q, _ = _nested(0, grad=False)
    with pytest.raises(flexjit.FlexjitError, match=r"\[B, H, j, D\] \(ragged in dim 2"):
        flexjit.flex_attention(q, q, q)   # [B, j, H, D]: not transposed
    qt = q.transpose(1, 2)
    with pytest.raises(flexjit.FlexjitError, match="sink_mod and prob_mod are not adapted to nested"):
        flexjit.flex_attention(qt, qt, qt, sink_mod=lambda b, h, q_idx: b * 0.0)


def test_nested_inputs_under_compile():
    torch._dynamo.reset()
    q, _ = _nested(0, grad=False)
    qt = q.transpose(1, 2)
    mask = flexjit.create_nested_block_mask(causal, 1, 1, qt, BLOCK_SIZE=4)

    def attend(q):
        return flexjit.flex_attention(q, q, q, block_mask=mask, score_mod=lambda s, b, h, q_idx, kv_idx: s + b * 0.1)

    eager = attend(qt)
    compiled = torch.compile(attend, fullgraph=True, backend="aot_eager")(qt)
    torch.testing.assert_close(compiled.values(), eager.values(), atol=0, rtol=0)
    torch._dynamo.reset()
