"""GatedFWA's gate preprocessing (../shared/seeds/gatedfwa_abstract_002.txt): a per-token, per-head gate
turned into the decay bias that gated sliding-window attention adds to its logits,

    g_t = logsigmoid(a_t) <= 0,   G_t = sum_{s <= t} g_s,   score(q, kv) = q.k * scale + G_q - G_kv   (kv <= q)

so that a key's weight decays by the gates of every token after it (a learnable contraction of the memory).

G itself grows without bound (about -0.7 per token at a = 0: -45000 at 64k tokens), and a float32 G_q - G_kv of
two such values keeps only ~4e-3 of absolute precision, so flexjit never stores G. With blocks of W >= the
window, it stores the within-block prefix r_t = sum of g_s from the start of t's block to t (|r| <= W |g|)
and the block sums D_j = sum of g_s over block j - 1 (D_0 = 0): for kv <= q < kv + W, q and kv lie in the
same block or in adjacent ones, and

    G_q - G_kv = r_q - r_kv + (D_{blk(q)} if blk(q) != blk(kv) else 0)

in terms of magnitude W |g| at most: exact to float32 rounding at any sequence length. r and D come from one
block-wise cumulative sum in float32 (torch operations on the gates' device; on a GPU one torch.compile'd
pass, the paper's "fused one-pass gate preprocessing"); their gradients (flexjit's captured-tensor
gradients) flow back to the gate logits through that sum by autograd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._errors import FlexjitError
from ._fused import GpuCompiled

__all__ = ["GatedDecay", "gated_decay_bias"]


@dataclass
class GatedDecay:
    """The decay bias of one call: score_mod and mask_mod for flex_attention (the mask is the sliding window
    the bias was built for), and the float32 tensors they read: prefix [B, H, L] and block_sums [B, H, nblocks]
    (differentiable in the gate logits)."""
    prefix: torch.Tensor
    block_sums: torch.Tensor
    block: int
    window: int

    @property
    def score_mod(self):
        r, d, W = self.prefix, self.block_sums, self.block

        def gated_decay(score, b, h, q_idx, kv_idx):
            # Same block: r_q - r_kv; the block before: plus the sum of q's preceding block.
            cross = torch.where(q_idx // W == kv_idx // W, 0.0, d[b, h, q_idx // W])
            return score + r[b, h, q_idx] - r[b, h, kv_idx] + cross

        return gated_decay

    @property
    def mask_mod(self):
        window = self.window

        def sliding_window(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

        return sliding_window


def gated_decay_bias(gate_logits: torch.Tensor, window: int, block: int | None = None) -> GatedDecay:
    """GatedFWA's gate preprocessing: gate_logits a [B, H, L] (any float dtype, may require grad) ->
    the decay bias of the sliding window of `window` keys (kv <= q, q - kv < window). `block` (default: the
    window) is the length of the blocks the cumulative sum restarts in; it must be at least the window."""
    if gate_logits.dim() != 3:
        raise FlexjitError(f"gated_decay_bias: gate_logits must be [B, H, L], got shape {list(gate_logits.shape)}")
    if not isinstance(window, int) or window < 1:
        raise FlexjitError(f"gated_decay_bias: window must be a positive int, got {window!r}")
    block = window if block is None else block
    if not isinstance(block, int) or block < window:
        raise FlexjitError(f"gated_decay_bias: block ({block!r}) must be an int >= window ({window}): the bias "
                           "is exact only between keys of the same or adjacent blocks")
    prefix, block_sums = _preprocess(gate_logits, block)
    return GatedDecay(prefix=prefix, block_sums=block_sums, block=block, window=window)


def _gate_prefix_sums(gate_logits: torch.Tensor, block: int):
    """(prefix [B, H, L], block_sums [B, H, nblocks]) of the gate logits, in float32 (see the module text)."""
    B, H, L = gate_logits.shape
    nblocks = max(1, -(-L // block))
    g = F.logsigmoid(gate_logits.float())  # log of the gate, <= 0, in float32
    g = F.pad(g, (0, nblocks * block - L)).view(B, H, nblocks, block)
    r = torch.cumsum(g, dim=-1)  # within-block prefix
    # D_j = the whole of block j - 1 (the last prefix of that block); D_0 = 0.
    d = F.pad(r[..., :-1, -1], (1, 0))
    return r.reshape(B, H, -1)[..., :L].contiguous(), d.contiguous()


# On a GPU logsigmoid, the block-wise scan and the block sums as one fused pass (and the backward likewise).
_preprocess = GpuCompiled(_gate_prefix_sums, "flexjit.gated: the gate preprocessing")
