"""GatedFWA's gate preprocessing (flexjit.gated) against float64 references: the bias itself at a long
length (where a float32 cumulative gate loses its precision), and gated sliding-window attention forward
and backward through flexjit, the gate logits' gradient included."""
import math

import pytest
import torch
import torch.nn.functional as F

import flexjit
from flexjit.gated import gated_decay_bias


def _dense_reference(q, k, v, a, window):
    """Plain torch, float64: G = cumsum(logsigmoid(a)), scores + G_q - G_kv under the window."""
    L, D = q.shape[-2], q.shape[-1]
    G = torch.cumsum(F.logsigmoid(a.double()), -1)
    s = q.double() @ k.double().transpose(-1, -2) / math.sqrt(D) + G.unsqueeze(-1) - G.unsqueeze(-2)
    i, j = torch.arange(L).view(-1, 1), torch.arange(L).view(1, -1)
    keep = (j <= i) & (i - j < window)
    return torch.softmax(s.masked_fill(~keep, float("-inf")), -1) @ v.double()


def test_the_bias_stays_exact_at_long_lengths():
    # 65536 tokens of gate 0 (logsigmoid = -0.693): G reaches -45426, where float32 steps by 0.004.
    B, H, L, W = 1, 2, 65536, 512
    a = torch.zeros(B, H, L)
    a[0, 1] = torch.linspace(-3, 3, L)
    bias = gated_decay_bias(a, W)
    G = torch.cumsum(F.logsigmoid(a.double()), -1)
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, L, (20000,), generator=gen)
    kv = (q - torch.randint(0, W, (20000,), generator=gen)).clamp(min=0)
    h = torch.randint(0, H, (20000,), generator=gen)
    b = torch.zeros_like(h)
    got = bias.score_mod(torch.zeros(20000), b, h, q, kv).double()
    want = G[b, h, q] - G[b, h, kv]
    assert (got - want).abs().max().item() < 2e-4
    naive = G.float()[b, h, q] - G.float()[b, h, kv]
    assert (naive.double() - want).abs().max().item() > 1e-3  # what the block form avoids


@pytest.mark.parametrize("L, window, block", [(200, 48, None), (257, 32, 64)])
def test_gated_window_attention_matches_the_reference(L, window, block):
    B, H, D = 2, 3, 16
    gen = torch.Generator().manual_seed(L)
    q, k, v = (torch.randn(B, H, L, D, generator=gen, dtype=torch.float64) for _ in range(3))
    a = (torch.randn(B, H, L, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    ref = _dense_reference(q, k, v, a, window)
    a32 = a.detach().float().requires_grad_()
    q32, k32, v32 = (t.float().requires_grad_() for t in (q, k, v))
    bias = gated_decay_bias(a32, window, block)
    mask = flexjit.create_block_mask(bias.mask_mod, B, H, L, L, device="cpu", BLOCK_SIZE=32)
    out = flexjit.flex_attention(q32, k32, v32, score_mod=bias.score_mod, block_mask=mask)
    assert (out.double() - ref).abs().max().item() < 1e-4
    dout = torch.randn(B, H, L, D, generator=gen, dtype=torch.float64)
    (da,) = torch.autograd.grad(ref, [a], dout)
    da32, dq32 = torch.autograd.grad(out, [a32, q32], dout.float())
    assert (da32.double() - da).abs().max().item() < 1e-4 * max(1.0, da.abs().max().item())
    (dq,) = torch.autograd.grad(_dense_reference(q.requires_grad_(), k, v, a.detach(), window), [q], dout)
    assert (dq32.double() - dq).abs().max().item() < 1e-4 * max(1.0, dq.abs().max().item())


def test_bad_arguments_are_named():
    a = torch.zeros(1, 2, 64)
    with pytest.raises(flexjit.FlexjitError, match="must be \\[B, H, L\\]"):
        gated_decay_bias(a[0], 16)
    with pytest.raises(flexjit.FlexjitError, match="block \\(8\\) must be an int >= window \\(16\\)"):
        gated_decay_bias(a, 16, 8)
    with pytest.raises(flexjit.FlexjitError, match="window must be a positive int"):
        gated_decay_bias(a, 0)
