"""The seed variants through flexjit's CPU path, against torch's eager flex_attention (forward: outputs and
LSE) and against a dense torch reference with autograd (gradients of q, k, v and captured tensors: torch's
CPU flex_attention has no backward)."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from reference import dense_attention
from variants import VARIANTS, make_variant

# (B, Hq, Hkv, Lq, Lkv, D): odd sizes, GQA, one cross-attention shape (Q_LEN != KV_LEN).
SHAPES = [(2, 2, 2, 17, 17, 16), (1, 4, 2, 33, 33, 8), (1, 2, 1, 127, 127, 32)]
CROSS_SHAPES = [(2, 2, 2, 17, 33, 16), (1, 4, 2, 33, 127, 8)]
ATOL, RTOL = 2e-5, 1e-4


def _inputs(B, Hq, Hkv, Lq, Lkv, D, grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, Lq, D, generator=g)
    k = torch.randn(B, Hkv, Lkv, D, generator=g)
    v = torch.randn(B, Hkv, Lkv, D, generator=g)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _shapes(variant_name):
    return CROSS_SHAPES if make_variant(variant_name, 1, 1, 17, 33).cross else SHAPES + CROSS_SHAPES[:1]


def _cases():
    for name in VARIANTS:
        for shape in _shapes(name):
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")


def _block_masks(variant, B, H, Lq, Lkv, block):
    if variant.mask_mod is None:
        return None, None
    ours = flexjit.create_block_mask(variant.mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    theirs = tflex.create_block_mask(variant.mask_mod, B, H, Lq, Lkv, device="cpu", BLOCK_SIZE=block)
    return ours, theirs


@pytest.mark.parametrize("block", [128, 16])
@pytest.mark.parametrize("name, shape", list(_cases()))
def test_forward_matches_torch_eager(name, shape, block):
    B, Hq, Hkv, Lq, Lkv, D = shape
    variant = make_variant(name, B, Hq, Lq, Lkv)
    q, k, v = _inputs(*shape)
    ours_mask, torch_mask = _block_masks(variant, B, Hq, Lq, Lkv, block)
    out, lse = flexjit.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=ours_mask,
                                      enable_gqa=Hq != Hkv, return_lse=True)
    ref_out, ref_lse = tflex.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=torch_mask,
                                            enable_gqa=Hq != Hkv, return_lse=True)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(lse, ref_lse, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name, shape", list(_cases()))
def test_backward_matches_dense_reference(name, shape):
    B, Hq, Hkv, Lq, Lkv, D = shape
    variant = make_variant(name, B, Hq, Lq, Lkv, grad=True)
    q, k, v = _inputs(*shape, grad=True)
    mask = None
    if variant.mask_mod is not None:
        mask = flexjit.create_block_mask(variant.mask_mod, B, Hq, Lq, Lkv, device="cpu", BLOCK_SIZE=16)
    out, lse = flexjit.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=mask,
                                      enable_gqa=Hq != Hkv, return_lse=True)
    ref_out, ref_lse = dense_attention(q, k, v, variant.score_mod, variant.mask_mod)
    torch.testing.assert_close(out.double(), ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(lse.double(), ref_lse, atol=ATOL, rtol=RTOL)

    leaves = [q, k, v, *variant.captures]
    grad_out = torch.randn_like(out)
    ours = torch.autograd.grad(out, leaves, grad_out)
    theirs = torch.autograd.grad(ref_out, leaves, grad_out.double())
    for got, want, what in zip(ours, theirs, ["dq", "dk", "dv"] + ["capture"] * len(variant.captures)):
        assert got.dtype == want.dtype or got.dtype == torch.float32, what
        torch.testing.assert_close(got.double(), want.double(), atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}")


def test_fully_masked_rows_give_zero_output_and_minus_inf_lse():
    q, k, v = _inputs(1, 2, 2, 33, 33, 8, grad=True)

    def late_causal(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx >= 5)   # rows 0..4 keep nothing

    mask = flexjit.create_block_mask(late_causal, None, None, 33, 33, device="cpu")
    out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, return_lse=True)
    assert torch.all(out[:, :, :5] == 0)
    assert torch.all(torch.isneginf(lse[:, :, :5]))
    assert torch.isfinite(lse[:, :, 5:]).all()
    out.sum().backward()
    assert torch.all(q.grad[:, :, :5] == 0)
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_on_cpu(dtype):
    variant = make_variant("alibi", 1, 2, 33, 33)
    q, k, v = (t.to(dtype) for t in _inputs(1, 2, 2, 33, 33, 16))
    mask = flexjit.create_block_mask(variant.mask_mod, 1, 2, 33, 33, device="cpu")
    out = flexjit.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=mask)
    ref, _ = dense_attention(q, k, v, variant.score_mod, variant.mask_mod)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=1e-2, rtol=1e-2)


def test_scale_and_return_aux():
    q, k, v = _inputs(1, 2, 2, 17, 17, 8)
    out, aux = flexjit.flex_attention(q, k, v, scale=0.3, return_aux=tflex.AuxRequest(lse=True))
    ref_out, ref_lse = dense_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out.double(), ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(aux.lse.double(), ref_lse, atol=ATOL, rtol=RTOL)
    assert aux.max_scores is None


@pytest.mark.parametrize("scale", [0.0, -0.4, -3.0])
def test_zero_and_negative_scales_match_torch(scale):
    # torch accepts them: 0 weighs every kept position equally, a negative scale prefers opposed keys.
    q, k, v = _inputs(1, 2, 2, 33, 33, 8, grad=True)
    mask = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 2, 33, 33, device="cpu",
                                     BLOCK_SIZE=16)
    torch_mask = tflex.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 2, 33, 33, device="cpu",
                                         BLOCK_SIZE=16)
    out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, scale=scale, return_lse=True)
    ref_out, ref_lse = tflex.flex_attention(q.detach(), k.detach(), v.detach(), block_mask=torch_mask, scale=scale,
                                            return_lse=True)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(lse, ref_lse, atol=ATOL, rtol=RTOL)
    dense_out, _ = dense_attention(q, k, v, mask_mod=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, scale=scale)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, [q, k, v], g)
    theirs = torch.autograd.grad(dense_out, [q, k, v], g.double())
    for got, want in zip(ours, theirs):
        torch.testing.assert_close(got.double(), want.double(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(1, 2, 2, 0, 5, 8), (0, 2, 2, 4, 5, 8), (1, 2, 2, 4, 0, 8)],
                         ids=["no_queries", "no_batch", "no_keys"])
def test_empty_problems_have_outputs_and_gradients(shape):
    q, k, v = _inputs(*shape, grad=True)
    out, lse = flexjit.flex_attention(q, k, v, return_lse=True)
    assert torch.equal(out, torch.zeros_like(out)) and bool((lse == float("-inf")).all())   # no keys: masked
    assert out.shape == (shape[0], shape[1], shape[3], shape[5])
    out.sum().backward()   # the gradient of an empty output: a zero-size tensor with stride 0
    for t in (q, k, v):
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_scalar_tensor_capture_receives_gradient():
    temperature = torch.tensor(0.7, requires_grad=True)
    q, k, v = _inputs(1, 2, 2, 17, 17, 8)

    def tempered(score, b, h, q_idx, kv_idx):
        return score * temperature

    out = flexjit.flex_attention(q, k, v, score_mod=tempered)
    ref, _ = dense_attention(q, k, v, tempered)
    g = torch.randn_like(out)
    (ours,) = torch.autograd.grad(out, [temperature], g)
    (theirs,) = torch.autograd.grad(ref, [temperature], g.double())
    assert ours.shape == () and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), theirs.double(), atol=1e-4, rtol=1e-4)


def test_non_contiguous_batch_and_head_strides():
    base = torch.randn(17, 2, 3, 8)            # [L, H, B, D]: strided in B, H and L
    q = base.permute(2, 1, 0, 3)
    out = flexjit.flex_attention(q, q, q)
    ref, _ = dense_attention(q, q, q)
    torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)


def test_grad_out_with_zero_strides():
    q, k, v = _inputs(1, 2, 2, 17, 17, 8, grad=True)
    flexjit.flex_attention(q, k, v).sum().backward()  # grad_out is an expanded scalar (stride 0)
    ref, _ = dense_attention(q, k, v)
    want = torch.autograd.grad(ref.sum(), [q])[0]
    torch.testing.assert_close(q.grad.double(), want.double(), atol=1e-4, rtol=1e-4)
