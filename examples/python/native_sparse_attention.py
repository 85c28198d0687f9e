"""Native Sparse Attention (../shared/seeds/native_sparse_attention_004.txt) as a small layer: projections
to q, k, v and to the three branch gates, flexjit.nsa's attention core with an MLP compress and a learned
memory token, an output projection. Trains a few SGD steps on random data, then checks the layer's output
and every parameter's gradient against nsa_reference, the same maths in dense plain torch (float64, on the
kernels' selection)."""
import torch

from _common import DEVICE
from flexjit.nsa import NativeSparseAttention, NSAConfig, nsa_reference

DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32
B, L, DIM, HQ, HKV, D = 1, 256, 64, 4, 2, 16
CFG = NSAConfig(block=16, stride=8, selection_block=32, top_n=3, initial_blocks=1, local_blocks=1, window=64)


class Compress(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(CFG.block * D, 2 * D), torch.nn.ReLU(), torch.nn.Linear(2 * D, D))

    def forward(self, blocks):  # [B, Hkv, N, block, D] -> [B, Hkv, N, D]
        return self.net(blocks.flatten(-2))


class NSALayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(DIM, (HQ + 2 * HKV) * D, bias=False)
        self.gate = torch.nn.Linear(DIM, 3 * HQ)
        self.attn = NativeSparseAttention(HKV, D, CFG, num_mem=1, compress=Compress())
        self.out = torch.nn.Linear(HQ * D, DIM, bias=False)

    def heads(self, x):
        q, k, v = self.qkv(x).split([HQ * D, HKV * D, HKV * D], -1)
        split = lambda t, h: t.view(B, L, h, D).transpose(1, 2)  # noqa: E731
        gates = torch.sigmoid(self.gate(x)).view(B, L, HQ, 3).transpose(1, 2)
        return split(q, HQ), split(k, HKV), split(v, HKV), gates

    def forward(self, x, reference=False, selection=None):
        q, k, v, gates = self.heads(x)
        if reference:
            o, _ = nsa_reference(q, k, v, gates, CFG, self.attn.compress, self.attn.mem_k, self.attn.mem_v, selection)
            aux = None
        else:
            o, aux = self.attn(q.to(DTYPE), k.to(DTYPE), v.to(DTYPE), gates, return_branches=True)
        return self.out(o.to(x.dtype).transpose(1, 2).reshape(B, L, HQ * D)), aux


torch.manual_seed(0)
layer = NSALayer().to(DEVICE)
x, target = torch.randn(B, L, DIM, device=DEVICE), torch.randn(B, L, DIM, device=DEVICE)
opt = torch.optim.SGD(layer.parameters(), lr=0.2)
for step in range(5):
    y, aux = layer(x)
    loss = (y - target).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"step {step}: loss {loss.item():.5f}")

# The trained layer against the dense float64 reference, on the kernels' selection.
layer.zero_grad()
y, aux = layer(x)
(y - target).square().mean().backward()
grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
layer64 = NSALayer().to(DEVICE).double()
layer64.load_state_dict({n: p.double() for n, p in layer.state_dict().items()})
y64, _ = layer64(x.double(), reference=True, selection=(aux["count"], aux["indices"]))
(y64 - target.double()).square().mean().backward()
print(f"output: max |flexjit - torch| = {(y.double() - y64).abs().max().item():.2e} (torch: the dense float64 reference)")
worst = max((((grads[n].double() - p.grad).abs().max() / p.grad.abs().max().clamp(min=1e-12)).item(), n)
            for n, p in layer64.named_parameters())
print(f"gradients: worst relative error {worst[0]:.2e} ({worst[1]}) over {len(grads)} parameters")
tolerance = 5e-2 if DTYPE == torch.bfloat16 else 1e-4
assert (y.double() - y64).abs().max().item() < tolerance and worst[0] < tolerance, "NSA layer differs from the reference"
