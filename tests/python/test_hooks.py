"""Hooks beyond score_mod and mask_mod from Python (CPU, the float64 reference): attention sinks (sink_mod),
post-softmax probability mods (prob_mod) and max scores (return_aux), against plain torch written out in
float64, outputs and gradients (torch.autograd on the plain version is the oracle)."""
import pytest
import torch

import flexjit
from torch.nn.attention.flex_attention import AuxRequest

B, H, L, D, BIAS = 2, 3, 37, 16, 8


def _inputs(seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=torch.float32).requires_grad_(requires_grad) for _ in range(3)]


def _mask():
    """Causal; row 0 keeps no key."""
    def causal_late(b, h, q_idx, kv_idx):
        return (q_idx >= 1) & (kv_idx <= q_idx)
    return causal_late, flexjit.create_block_mask(causal_late, None, None, L, L, device="cpu", BLOCK_SIZE=16)


def _plain_attention(q, k, v, bias=None, sink=None, offset=None, dtype=torch.float64):
    """The attention the hooks express, in plain torch (float64 by default): causal (row 0 empty), an optional
    relative bias bias[h, clamp(i - j)], an optional per-head sink in the denominator and an optional Lazy
    Attention offset relu(p - |offset[h] + 1| / num_visible_i)."""
    q, k, v = (t.to(dtype) for t in (q, k, v))
    H, L, D = q.size(1), q.size(2), q.size(3)
    i = torch.arange(L, device=q.device).view(L, 1)
    j = torch.arange(L, device=q.device).view(1, L)
    keep = (i >= 1) & (j <= i)
    s = q @ k.transpose(-1, -2) / D ** 0.5
    if bias is not None:
        s = s + bias.to(dtype)[:, (i - j).clamp(0, bias.size(1) - 1)]
    s = s.masked_fill(~keep, float("-inf"))
    top = s.amax(-1, keepdim=True)
    if sink is not None:
        top = torch.maximum(top, sink.to(dtype).view(1, H, 1, 1))
    top = top.masked_fill(torch.isinf(top), 0.0)
    e = torch.exp(s - top)
    denom = e.sum(-1, keepdim=True)
    if sink is not None:
        denom = denom + torch.exp(sink.to(dtype).view(1, H, 1, 1) - top)
    p = torch.where(denom > 0, e / denom.clamp_min(1e-30), torch.zeros_like(e))
    if offset is not None:
        visible = keep.sum(-1, keepdim=True).to(dtype).clamp_min(1)
        cut = (offset.to(dtype) + 1).abs().view(1, H, 1, 1) / visible
        p = torch.where(keep, torch.relu(p - cut), torch.zeros_like(p))
    return p.to(v.dtype) @ v


def test_sinks_forward_lse_and_gradients_match_plain_torch():
    mask_fn, mask = _mask()
    sinks = torch.tensor([0.5, -1.0, 1.5], requires_grad=True)
    q, k, v = _inputs(1)
    out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, return_lse=True,
                                      sink_mod=lambda b, h, q_idx: sinks[h])
    want = _plain_attention(q, k, v, sink=sinks)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    # Row 0 keeps no key: O = 0 and LSE is the sink.
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))
    torch.testing.assert_close(lse[:, :, 0], sinks.detach().expand(B, H), atol=1e-6, rtol=0)
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), (q, k, v, sinks))
    ref = torch.autograd.grad((want * w.double()).sum(), (q, k, v, sinks))
    for g, r, name in zip(got, ref, "qkvs"):
        torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-4, msg=f"d loss / d {name}")


def test_lazy_attention_forward_and_all_six_gradients_match_plain_torch():
    # ../shared/seeds/lazy_attention_000.txt: bias + norm_bias (a sink) + offset / ReLU (a prob_mod).
    mask_fn, mask = _mask()
    g = torch.Generator().manual_seed(7)
    bias = (0.3 * torch.randn(H, BIAS, generator=g)).requires_grad_()
    norm_bias = torch.tensor([0.2, -0.5, 0.9], requires_grad=True)
    offset = torch.tensor([-0.7, 0.1, -1.3], requires_grad=True)

    def lazy_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(0, BIAS - 1)]

    def lazy_offset(p, b, h, q_idx, kv_idx, row):
        return torch.relu(p - (offset[h] + 1).abs() / row.num_visible)

    q, k, v = _inputs(2)
    out = flexjit.flex_attention(q, k, v, score_mod=lazy_bias, block_mask=mask,
                                 sink_mod=lambda b, h, q_idx: norm_bias[h], prob_mod=lazy_offset)
    want = _plain_attention(q, k, v, bias=bias, sink=norm_bias, offset=offset)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(out)
    leaves = (q, k, v, bias, norm_bias, offset)
    got = torch.autograd.grad((out * w).sum(), leaves)
    ref = torch.autograd.grad((want * w.double()).sum(), leaves)
    for gg, r, name in zip(got, ref, ("q", "k", "v", "bias", "norm_bias", "offset")):
        torch.testing.assert_close(gg.double(), r.double(), atol=1e-4, rtol=1e-4, msg=f"d loss / d {name}")


def _plain_lse(q, k, v, sink=None):
    """The LSE of _plain_attention's softmax (causal, row 0 empty: -inf, or the sink), float64."""
    q, k, v = (t.double() for t in (q, k, v))
    Lq = q.size(2)
    i, j = torch.arange(Lq).view(Lq, 1), torch.arange(Lq).view(1, Lq)
    s = (q @ k.transpose(-1, -2) / q.size(-1) ** 0.5).masked_fill(~((i >= 1) & (j <= i)), float("-inf"))
    if sink is not None:
        s = torch.cat([s, sink.double().view(1, -1, 1, 1).expand(*s.shape[:3], 1)], dim=-1)
    return torch.logsumexp(s, dim=-1)


@pytest.mark.parametrize("with_sink", [False, True])
def test_gradients_through_the_returned_lse(with_sink):
    """A loss of out and of lse (z-loss style): the LSE's gradient enters the backward; rows 1.. only (row 0's
    LSE is -inf without a sink, whose gradient torch also leaves NaN-free only by masking)."""
    mask_fn, mask = _mask()
    sinks = torch.tensor([0.5, -1.0, 1.5], requires_grad=True)
    q, k, v = _inputs(5)
    kw = {"sink_mod": lambda b, h, q_idx: sinks[h]} if with_sink else {}
    out, lse = flexjit.flex_attention(q, k, v, block_mask=mask, return_lse=True, **kw)
    want_out = _plain_attention(q, k, v, sink=sinks if with_sink else None)
    want_lse = _plain_lse(q, k, v, sinks if with_sink else None)
    torch.testing.assert_close(lse.double()[:, :, 1:], want_lse[:, :, 1:], atol=1e-5, rtol=1e-5)
    w = torch.randn_like(out)
    leaves = (q, k, v, sinks) if with_sink else (q, k, v)
    got = torch.autograd.grad((out * w).sum() + (lse[:, :, 1:] ** 2).sum(), leaves, retain_graph=True)
    ref = torch.autograd.grad((want_out * w.double()).sum() + (want_lse[:, :, 1:] ** 2).sum(), leaves,
                              retain_graph=True)
    for g, r, name in zip(got, ref, "qkvs"):
        torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-4, msg=f"d loss / d {name}")
    # The LSE alone (no gradient reaches out).
    (gq,) = torch.autograd.grad(lse[:, :, 1:].sum(), (q,))
    (rq,) = torch.autograd.grad(want_lse[:, :, 1:].sum(), (q,))
    torch.testing.assert_close(gq.double(), rq.double(), atol=1e-4, rtol=1e-4)


def test_max_scores_through_return_aux():
    mask_fn, mask = _mask()
    q, k, v = _inputs(3, requires_grad=False)

    def softcap(score, b, h, q_idx, kv_idx):
        return 10.0 * torch.tanh(score / 10.0)

    out, aux = flexjit.flex_attention(q, k, v, score_mod=softcap, block_mask=mask,
                                      return_aux=AuxRequest(lse=True, max_scores=True))
    s = 10.0 * torch.tanh((q.double() @ k.double().transpose(-1, -2) / D ** 0.5) / 10.0)
    i, j = torch.arange(L).view(L, 1), torch.arange(L).view(1, L)
    s = s.masked_fill(~((i >= 1) & (j <= i)), float("-inf"))
    torch.testing.assert_close(aux.max_scores.double(), s.amax(-1), atol=1e-5, rtol=1e-5)
    assert aux.lse is not None and torch.isinf(aux.max_scores[:, :, 0]).all()


def test_hook_arity_errors_name_the_hook():
    q, k, v = _inputs(4, requires_grad=False)
    with pytest.raises(flexjit.FlexjitError, match="sink_mod.*cannot be called as sink_mod\\(b, h, q_idx\\)"):
        flexjit.flex_attention(q, k, v, sink_mod=lambda b, h, q_idx, kv_idx: 0.0)
    with pytest.raises(flexjit.FlexjitError, match="prob_mod.*cannot be called as prob_mod"):
        flexjit.flex_attention(q, k, v, prob_mod=lambda p, b, h: p)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("family", ["planned", "sm80"])
def test_lazy_attention_on_the_gpu_meets_the_fa3_rule(family, monkeypatch):
    """Lazy Attention in bf16 through the GPU kernels (the planner's family and the sm80 one): outputs and all
    six gradients within twice the error of the same math run in bf16 plain torch, plus a small atol, both
    against float64."""
    if family == "sm80":
        monkeypatch.setenv("FLEXJIT_FWD_CONFIG", "family=80")
    Bg, Hg, Lg, Dg, bias_len = 2, 4, 300, 64, 64
    g = torch.Generator(device="cuda").manual_seed(11)
    make = lambda *shape, scale=1.0: (scale * torch.randn(*shape, generator=g, device="cuda")).requires_grad_()  # noqa: E731
    q, k, v = (make(Bg, Hg, Lg, Dg).to(torch.bfloat16).detach().requires_grad_() for _ in range(3))
    bias, norm_bias, offset = make(Hg, bias_len, scale=0.3), make(Hg), make(Hg)

    def lazy_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(0, bias_len - 1)]

    def lazy_offset(p, b, h, q_idx, kv_idx, row):
        return torch.relu(p - (offset[h] + 1).abs() / row.num_visible)

    def causal_late(b, h, q_idx, kv_idx):
        return (q_idx >= 1) & (kv_idx <= q_idx)

    mask = flexjit.create_block_mask(causal_late, None, None, Lg, Lg, device="cuda")
    out = flexjit.flex_attention(q, k, v, score_mod=lazy_bias, block_mask=mask,
                                 sink_mod=lambda b, h, q_idx: norm_bias[h], prob_mod=lazy_offset)
    want = _plain_attention(q, k, v, bias=bias, sink=norm_bias, offset=offset)
    low = _plain_attention(q, k, v, bias=bias, sink=norm_bias, offset=offset, dtype=torch.bfloat16)
    w = torch.randn_like(out)
    leaves = (q, k, v, bias, norm_bias, offset)
    got = torch.autograd.grad((out * w).sum(), leaves)
    ref = torch.autograd.grad((want * w.double()).sum(), leaves)
    lp = torch.autograd.grad((low.float() * w.float()).sum(), leaves)

    def err(a, b):
        return (a.double() - b.double()).abs().max().item()

    assert err(out, want) <= 2 * err(low, want) + 1e-3, "out"
    for name, a, r, l in zip(("q", "k", "v", "bias", "norm_bias", "offset"), got, ref, lp):
        scale = max(r.abs().max().item(), 1.0)
        assert err(a, r) <= 2 * err(l, r) + 1e-3 * scale, f"d loss / d {name}: {err(a, r)} vs bf16 torch {err(l, r)}"
