"""Lazy Attention (../shared/seeds/lazy_attention_000.txt) built with flexjit's three hooks, trained for a few
steps on random data, checked against the seed's eager maths (plain torch) in the output and all six
gradients.

    p_ij  = exp(s_ij + bias[h, clamp(i - j)]) / (sum_j exp(...) + exp(norm_bias[h]))   score_mod + sink_mod
    p'_ij = relu(p_ij - |offset[h] + 1| / num_visible_i)                              prob_mod
    out_i = sum_j p'_ij v_j

On the CPU both run in float64-accurate arithmetic (flexjit's reference) and must agree to 1e-5; on a GPU
flexjit runs bf16 kernels and must be within twice the error of the same eager maths in bf16 (the FA3 rule)
of a float64 evaluation.
"""
import torch

import flexjit
from _common import DEVICE, DTYPE

B, H, L, D, BIAS = 2, 4, 256, 64, 128
torch.manual_seed(0)


class LazyAttention(torch.nn.Module):
    """Causal Lazy Attention over [B, H, L, D] inputs with the seed's three learned tensors."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(0.02 * torch.randn(H, BIAS, device=DEVICE))
        self.norm_bias = torch.nn.Parameter(torch.zeros(H, device=DEVICE))
        self.offset = torch.nn.Parameter(-1.0 + 0.5 * torch.randn(H, device=DEVICE))
        self.mask = flexjit.create_block_mask(lambda b, h, q, kv: q >= kv, None, None, L, L, device=DEVICE)

    def forward(self, q, k, v):
        bias, norm_bias, offset = self.bias, self.norm_bias, self.offset

        def lazy_bias(score, b, h, q_idx, kv_idx):
            return score + bias[h, (q_idx - kv_idx).clamp(0, BIAS - 1)]

        def lazy_offset(p, b, h, q_idx, kv_idx, row):
            return torch.relu(p - (offset[h] + 1).abs() / row.num_visible)

        return flexjit.flex_attention(q, k, v, score_mod=lazy_bias, block_mask=self.mask,
                                      sink_mod=lambda b, h, q_idx: norm_bias[h], prob_mod=lazy_offset)


def eager(q, k, v, bias, norm_bias, offset, dtype):
    """The seed's maths in plain torch at `dtype` (materialises the L x L scores)."""
    q, k, v = (t.to(dtype) for t in (q, k, v))
    i = torch.arange(L, device=q.device).view(L, 1)
    j = torch.arange(L, device=q.device).view(1, L)
    keep = j <= i
    s = q @ k.transpose(-1, -2) / D ** 0.5 + bias.to(dtype)[:, (i - j).clamp(0, BIAS - 1)]
    s = s.masked_fill(~keep, float("-inf"))
    sink = norm_bias.to(dtype).view(1, H, 1, 1)
    top = torch.maximum(s.amax(-1, keepdim=True), sink)
    e = torch.exp(s - top)
    p = e / (e.sum(-1, keepdim=True) + torch.exp(sink - top))
    cut = (offset.to(dtype) + 1).abs().view(1, H, 1, 1) / keep.sum(-1, keepdim=True).to(dtype)
    return torch.relu(p - cut).masked_fill(~keep, 0.0) @ v


def check(model, q, k, v):
    """Largest error of flexjit against float64 eager in out and each gradient, and whether it passes."""
    params = (model.bias, model.norm_bias, model.offset)
    leaves = (q, k, v, *params)
    w = torch.randn(B, H, L, D, device=DEVICE)
    out = model(q, k, v)
    got = torch.autograd.grad((out.float() * w).sum(), leaves)
    want = eager(q, k, v, *params, torch.float64)
    ref = torch.autograd.grad((want * w.double()).sum(), leaves)
    low = eager(q, k, v, *params, DTYPE) if DEVICE == "cuda" else None
    lp = torch.autograd.grad((low.float() * w).sum(), leaves) if low is not None else None
    names = ("out", "q", "k", "v", "bias", "norm_bias", "offset")
    ok = True
    for n, (a, r) in enumerate(zip((out, *got), (want, *ref))):
        err = (a.double() - r.double()).abs().max().item()
        if DEVICE == "cuda":
            lo = (low if n == 0 else lp[n - 1]).double()
            bound = 2 * (lo - r.double()).abs().max().item() + 1e-3 * max(1.0, r.abs().max().item())
        else:
            bound = 1e-5 * max(1.0, r.abs().max().item())
        ok &= err <= bound
        print(f"  {names[n]:<9} max error {err:.2e} (bound {bound:.2e})")
        if n == 0:
            print(f"  max |flexjit - torch| = {err:.2e}")
    return ok


model = LazyAttention()
make = lambda: torch.randn(B, H, L, D, device=DEVICE, dtype=DTYPE, requires_grad=True)  # noqa: E731
q, k, v = make(), make(), make()
target = torch.randn(B, H, L, D, device=DEVICE)
opt = torch.optim.SGD(model.parameters(), lr=5.0)
for step in range(5):
    loss = ((model(q, k, v).float() - target) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"step {step}: loss {loss.item():.5f}")
print(f"Lazy Attention on {DEVICE} ({DTYPE}) against the seed's eager maths after training:")
passed = check(model, q, k, v)
print("PASS" if passed else "FAIL")
if not passed:
    raise SystemExit(1)
