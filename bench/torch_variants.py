"""The seed variants as torch FlexAttention users write them (the peers' side of the benchmark).

Each builder returns (score_mod, mask_mod) for given sizes, mirroring examples/SeedVariants.cpp so both
sides compute the same attention.
"""
import torch

WINDOW = 1024
PREFIX = 2048
IMAGE_W = 128
NATTEN_K = 7
SASA_W = 8
SOFT_CAP = 30.0
REL_LEN = 1024
IMAGE_TOKENS = 64


def causal(b, h, q, kv):
    return q >= kv


def sliding_window(b, h, q, kv):
    return (q >= kv) & (q - kv <= WINDOW)


def build(name, B, H, S, device="cuda", requires_grad=False):
    """Returns (score_mod or None, mask_mod or None, captured tensors needing grads)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    if name == "noop":
        return None, None, []
    if name == "causal":
        return None, causal, []
    if name == "sliding_window":
        return None, sliding_window, []
    if name == "prefix_lm":
        prefix = min(PREFIX, S)
        return None, (lambda b, h, q, kv: (kv < prefix) | (q >= kv)), []
    if name == "document":
        doc = (torch.arange(S) * 2 // S).to(torch.int32).to(device)
        return None, (lambda b, h, q, kv: (q >= kv) & (doc[q] == doc[kv])), []
    if name == "packed_documents":
        # Documents of random lengths in [64, 4096] packed back to back (the last one cut at S), causal within
        # each: hundreds of document boundaries at long S, most 128 x 128 blocks near the diagonal partial.
        lengths = torch.randint(64, 4097, (S // 64 + 1,), generator=g)
        ids = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)[:S]
        doc = ids.to(torch.int32).to(device)
        return None, (lambda b, h, q, kv: (q >= kv) & (doc[q] == doc[kv])), []
    if name == "natten":
        half = NATTEN_K // 2

        def natten(b, h, q, kv):
            qx, qy, kx, ky = q // IMAGE_W, q % IMAGE_W, kv // IMAGE_W, kv % IMAGE_W
            cx = qx.clamp(half, (IMAGE_W - 1) - half)
            cy = qy.clamp(half, (IMAGE_W - 1) - half)
            return ((cx - kx).abs() <= half) & ((cy - ky).abs() <= half)
        return None, natten, []
    if name == "sasa":
        def sasa(b, h, q, kv):
            qx, qy, kx, ky = q // IMAGE_W, q % IMAGE_W, kv // IMAGE_W, kv % IMAGE_W
            return ((qx - kx).abs() <= SASA_W) & ((qy - ky).abs() <= SASA_W)
        return None, sasa, []
    if name == "alibi":
        slopes = torch.exp2(-((torch.arange(H) + 1) * 8.0 / H)).to(device)
        return (lambda s, b, h, q, kv: s + slopes[h] * (q - kv)), causal, []
    if name == "softcap":
        return (lambda s, b, h, q, kv: SOFT_CAP * torch.tanh(s / SOFT_CAP)), causal, []
    if name == "relative_bias":
        bias = (torch.rand(H, REL_LEN, generator=g) * 2 - 1).to(device).requires_grad_(requires_grad)
        return (lambda s, b, h, q, kv: s + bias[h, (q - kv).clamp(0, REL_LEN - 1)]), causal, [bias]
    if name == "gated_decay":
        steps = -0.05 * torch.rand(B, H, S, generator=g)
        gate = steps.cumsum(-1).to(device).requires_grad_(requires_grad)
        return (lambda s, b, h, q, kv: s + gate[b, h, q] - gate[b, h, kv]), sliding_window, [gate]
    if name == "cross_attention":
        images = max(1, S // IMAGE_TOKENS)
        boundaries = torch.clamp(torch.arange(S) // IMAGE_TOKENS, max=images - 1).to(device)
        starts = torch.arange(images) * S // images // 2
        ends = torch.clamp((torch.arange(images) + 2) * S // images, max=S)
        intervals = torch.stack([starts, ends], 1).to(device)

        def vision(b, h, q, kv):
            image = boundaries[kv]
            return (q >= intervals[image][0]) & (q < intervals[image][1])
        return None, vision, []
    raise ValueError(f"unknown variant {name}")


NAMES = ["noop", "causal", "sliding_window", "prefix_lm", "document", "natten", "sasa", "alibi", "softcap",
         "relative_bias", "gated_decay", "cross_attention"]
