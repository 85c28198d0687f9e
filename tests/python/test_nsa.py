"""Native Sparse Attention (flexjit.nsa) against flexjit.nsa.nsa_reference, a plain-torch float64
implementation of the same maths written independently of the kernels' path: dense masks, explicit windows,
a Python loop for the selection. On the CPU (flexjit's reference kernels); the GPU test runs the comparison
on the device with the kernels' own selection."""
import math

import pytest
import torch

import flexjit
from flexjit.nsa import NativeSparseAttention, NSAConfig, nsa_attention, nsa_reference, nsa_select_blocks

CFG = NSAConfig(block=16, stride=8, selection_block=32, top_n=3, initial_blocks=1, local_blocks=1, window=40)


class MLPCompress(torch.nn.Module):
    """The seed's compress MLP: flatten a block, Linear, ReLU, Linear back to D."""

    def __init__(self, block, d):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(block * d, 2 * d), torch.nn.ReLU(), torch.nn.Linear(2 * d, d))

    def forward(self, blocks):
        return self.net(blocks.flatten(-2))


def _inputs(B, Hq, Hkv, L, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return mk(B, Hq, L, D), mk(B, Hkv, L, D), mk(B, Hkv, L, D), torch.sigmoid(mk(B, Hq, L, 3))


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("L", [200, 96])
def test_forward_and_backward_match_the_reference(shared, L):
    cfg = NSAConfig(**{**CFG.__dict__, "shared_selection": shared})
    B, Hq, Hkv, D = 2, 4, 2, 16
    q, k, v, gates = _inputs(B, Hq, Hkv, L, D, seed=L)
    mem_k, mem_v = torch.randn(Hkv, 2, D, dtype=torch.float64), torch.randn(Hkv, 2, D, dtype=torch.float64)
    compress = MLPCompress(cfg.block, D).double()
    leaves64 = [t.clone().requires_grad_() for t in (q, k, v, gates, mem_k, mem_v)]
    ref, selected = nsa_reference(*leaves64[:4], cfg, compress, *leaves64[4:])
    compress32 = MLPCompress(cfg.block, D)
    compress32.load_state_dict({n: p.float() for n, p in compress.state_dict().items()})
    leaves32 = [t.float().clone().requires_grad_() for t in (q, k, v, gates, mem_k, mem_v)]
    out, aux = nsa_attention(*leaves32[:4], cfg, compress=compress32, mem_k=leaves32[4], mem_v=leaves32[5],
                             return_branches=True)
    # The selection itself, block for block.
    count, indices = aux["count"], aux["indices"]
    for b in range(B):
        for hs in range(indices.shape[1]):
            for a in range(indices.shape[2]):
                got = indices[b, hs, a, :count[b, hs, a]].tolist()
                assert got == selected[b][hs][a], (b, hs, a, got, selected[b][hs][a])
    assert (out.double() - ref).abs().max().item() < 1e-4
    dout = torch.randn_like(ref)
    grads64 = torch.autograd.grad(ref, leaves64 + list(compress.parameters()), dout)
    grads32 = torch.autograd.grad(out, leaves32 + list(compress32.parameters()), dout.float())
    names = ["q", "k", "v", "gates", "mem_k", "mem_v"] + [n for n, _ in compress.named_parameters()]
    for name, a, b in zip(names, grads32, grads64):
        err = (a.double() - b).abs().max().item()
        assert err < 2e-4 * max(1.0, b.abs().max().item()), (name, err)


def test_mean_compression_and_no_memory_tokens():
    B, Hq, Hkv, L, D = 1, 8, 2, 130, 8
    q, k, v, gates = _inputs(B, Hq, Hkv, L, D, seed=3)
    ref, _ = nsa_reference(q, k, v, gates, CFG, lambda w: w.mean(-2))
    out = nsa_attention(q.float(), k.float(), v.float(), gates.float(), CFG)
    assert (out.double() - ref).abs().max().item() < 1e-4


def test_the_selection_breaks_ties_by_the_lower_block_and_keeps_the_forced_blocks():
    cfg = NSAConfig(block=16, stride=16, selection_block=32, top_n=4, initial_blocks=1, local_blocks=2, window=32)
    imp = torch.ones(1, 1, 8, 8)  # every block equally important
    count, indices = nsa_select_blocks(imp, cfg)
    assert count[0, 0].tolist() == [1, 2, 3, 4, 4, 4, 4, 4]
    # Query block 6: the initial block 0, the local blocks 5 and 6, and of the rest the lowest index, 1.
    assert indices[0, 0, 6].tolist() == [0, 1, 5, 6]
    assert indices[0, 0, 2, :3].tolist() == [0, 1, 2]
    # A higher importance beats the tie rule; future blocks never count.
    imp[0, 0, 6, 3] = 2.0
    imp[0, 0, 6, 7] = 9.0
    assert nsa_select_blocks(imp, cfg)[1][0, 0, 6].tolist() == [0, 3, 5, 6]


def test_the_module_trains_and_keeps_its_window_mask():
    torch.manual_seed(0)
    B, Hq, Hkv, L, D = 1, 4, 2, 160, 16
    attn = NativeSparseAttention(Hkv, D, CFG, num_mem=1, compress=MLPCompress(CFG.block, D))
    proj = torch.nn.Linear(32, 3 * Hq)
    x = torch.randn(B, L, 32)
    q, k, v, _ = (t.float() for t in _inputs(B, Hq, Hkv, L, D, seed=9))
    opt = torch.optim.SGD(list(attn.parameters()) + list(proj.parameters()), lr=0.5)
    losses = []
    for _ in range(4):
        gates = torch.sigmoid(proj(x)).view(B, L, Hq, 3).transpose(1, 2)
        loss = attn(q, k, v, gates).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert attn.mem_k.grad is not None and attn.mem_k.grad.abs().sum() > 0
    assert losses[-1] < losses[0]
    assert len(attn._window) == 1


@pytest.mark.parametrize("bad, says", [
    (dict(stride=40), "stride"), (dict(top_n=1), "top_n"), (dict(block=0), "block"),
])
def test_bad_configurations_are_named(bad, says):
    with pytest.raises(flexjit.FlexjitError, match=says):
        NSAConfig(**{**CFG.__dict__, **bad}).check()


def test_bad_shapes_are_named():
    q, k, v, gates = (t.float() for t in _inputs(1, 4, 2, 64, 8))
    with pytest.raises(flexjit.FlexjitError, match="gates must be"):
        nsa_attention(q, k, v, gates[..., :2], CFG)
    with pytest.raises(flexjit.FlexjitError, match="multiple of key/value heads"):
        nsa_attention(q[:, :3], k, v, gates[:, :3], CFG)
    with pytest.raises(flexjit.FlexjitError, match="one length"):
        nsa_attention(q, k[:, :, :32], v[:, :, :32], gates, CFG)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_the_reference_with_its_own_selection():
    cfg = NSAConfig(block=32, stride=16, selection_block=64, top_n=4, initial_blocks=1, local_blocks=2, window=128)
    B, Hq, Hkv, L, D = 1, 8, 2, 1000, 64
    q, k, v, gates = (t.cuda() for t in _inputs(B, Hq, Hkv, L, D, seed=5))
    leaves = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    out, aux = nsa_attention(*leaves, gates.float(), cfg, return_branches=True)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref, _ = nsa_reference(*ref_leaves, gates, cfg, selection=(aux["count"], aux["indices"]))
    assert (out.double() - ref).abs().max().item() < 2e-2
    dout = torch.randn_like(ref)
    got = torch.autograd.grad(out, leaves, dout.to(out.dtype))
    want = torch.autograd.grad(ref, ref_leaves, dout)
    for name, a, b in zip("qkv", got, want):
        assert (a.double() - b).abs().max().item() < 5e-2 * max(1.0, b.abs().max().item()), name
