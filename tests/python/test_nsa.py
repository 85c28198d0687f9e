"""Native Sparse Attention (flexjit.nsa) against a plain-torch float64 reference of the same maths, written
independently of the implementation: dense masks, explicit windows, a Python loop for the selection. On
the CPU (flexjit's reference kernels); the GPU test runs the same comparison on the device."""
import math

import pytest
import torch

import flexjit
from flexjit.nsa import NativeSparseAttention, NSAConfig, nsa_attention, nsa_select_blocks

CFG = NSAConfig(block=16, stride=8, selection_block=32, top_n=3, initial_blocks=1, local_blocks=1, window=40)


def _windows(x, cfg):
    L = x.shape[-2]
    starts = range(0, L - cfg.block + 1, cfg.stride) if L >= cfg.block else []
    return torch.stack([x[..., s:s + cfg.block, :] for s in starts], dim=-3) if starts else x[..., :0, None, :]


def _softmax_rows(s, keep):
    s = s.masked_fill(~keep, float("-inf"))
    top = s.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(s - top) * keep
    total = e.sum(-1, keepdim=True)
    return torch.where(total > 0, e / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(e))


def reference_nsa(q, k, v, gates, cfg, compress, mem_k=None, mem_v=None):
    """Returns (out, selected) with selected[b][hs][qb] = sorted list of key blocks."""
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    g = Hq // Hkv
    scale = 1 / math.sqrt(D)
    rep = lambda t: t.repeat_interleave(g, 1)  # noqa: E731
    ck, cv = compress(_windows(k, cfg)), compress(_windows(v, cfg))
    M = 0
    if mem_k is not None:
        M = mem_k.shape[1]
        ck = torch.cat([mem_k.unsqueeze(0).expand(B, -1, -1, -1), ck], 2)
        cv = torch.cat([mem_v.unsqueeze(0).expand(B, -1, -1, -1), cv], 2)
    N = ck.shape[2]
    i = torch.arange(L).view(-1, 1)
    j = torch.arange(N).view(1, -1)
    cmask = (j < M) | ((j - M) * cfg.stride + cfg.block <= i)
    p_cmp = _softmax_rows(q @ rep(ck).transpose(-1, -2) * scale, cmask)
    o_cmp = p_cmp @ rep(cv)
    # Importance of selection block m for query block a: the probabilities of the compressed blocks carried
    # by the fraction of their positions inside m, summed over the block's queries (and the group's heads).
    sel = cfg.selection_block
    nqb = nsel = -(-L // sel)
    frac = torch.zeros(N - M, nsel, dtype=torch.float64)
    for c in range(N - M):
        for t in range(c * cfg.stride, c * cfg.stride + cfg.block):
            frac[c, t // sel] += 1 / cfg.block
    pos = p_cmp[..., M:].detach() @ frac  # [B, Hq, L, nsel]
    Hs = Hkv if cfg.shared_selection else Hq
    imp = torch.zeros(B, Hs, nqb, nsel, dtype=torch.float64)
    for b in range(B):
        for h in range(Hq):
            hs = h // g if cfg.shared_selection else h
            for a in range(nqb):
                imp[b, hs, a] += pos[b, h, a * sel:(a + 1) * sel].sum(0)
    selected = [[[None] * nqb for _ in range(Hs)] for _ in range(B)]
    keep = torch.zeros(B, Hq, L, L, dtype=torch.bool)
    for b in range(B):
        for hs in range(Hs):
            for a in range(nqb):
                allowed = list(range(a + 1))
                forced = [m for m in allowed if m < cfg.initial_blocks or m > a - cfg.local_blocks]
                rest = sorted((m for m in allowed if m not in forced), key=lambda m: (-imp[b, hs, a, m].item(), m))
                chosen = sorted((forced + rest)[:cfg.top_n])
                selected[b][hs][a] = chosen
                heads = range(hs * g, hs * g + g) if cfg.shared_selection else [hs]
                for h in heads:
                    for m in chosen:
                        keep[b, h, a * sel:(a + 1) * sel, m * sel:(m + 1) * sel] = True
    causal = torch.arange(L).view(-1, 1) >= torch.arange(L).view(1, -1)
    s_full = q @ rep(k).transpose(-1, -2) * scale
    o_slc = _softmax_rows(s_full, keep & causal) @ rep(v)
    window = causal & (torch.arange(L).view(-1, 1) - torch.arange(L).view(1, -1) < cfg.window)
    o_win = _softmax_rows(s_full, window) @ rep(v)
    out = gates[..., 0:1] * o_cmp + gates[..., 1:2] * o_slc + gates[..., 2:3] * o_win
    return out, selected


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
    ref, selected = reference_nsa(*leaves64[:4], cfg, compress, *leaves64[4:])
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
    ref, _ = reference_nsa(q, k, v, gates, CFG, lambda w: w.mean(-2))
    out = nsa_attention(q.float(), k.float(), v.float(), gates.float(), CFG)
    assert (out.double() - ref).abs().max().item() < 1e-4


def test_the_selection_breaks_ties_by_the_lower_block_and_keeps_the_forced_blocks():
    cfg = NSAConfig(block=16, stride=16, selection_block=32, top_n=4, initial_blocks=1, local_blocks=2, window=32)
    imp = torch.ones(1, 1, 8, 8)  # every block equally important
    count, indices = nsa_select_blocks(imp, cfg, 256)
    assert count[0, 0].tolist() == [1, 2, 3, 4, 4, 4, 4, 4]
    # Query block 6: the initial block 0, the local blocks 5 and 6, and of the rest the lowest index, 1.
    assert indices[0, 0, 6].tolist() == [0, 1, 5, 6]
    assert indices[0, 0, 2, :3].tolist() == [0, 1, 2]
    # A higher importance beats the tie rule; future blocks never count.
    imp[0, 0, 6, 3] = 2.0
    imp[0, 0, 6, 7] = 9.0
    assert nsa_select_blocks(imp, cfg, 256)[1][0, 0, 6].tolist() == [0, 3, 5, 6]


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
