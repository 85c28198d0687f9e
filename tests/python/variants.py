"""The seed attention variants as plain torch FlexAttention functions (the ones from torch's FlexAttention
examples), with the data they capture. The same functions run through torch and through flexjit.

make_variant(name, B, H, Lq, Lkv, device, grad=False) -> Variant(score_mod, mask_mod, captures): captured
tensors are random but deterministic; with grad=True learnable ones require a gradient.
"""
from dataclasses import dataclass, field

import torch


@dataclass
class Variant:
    name: str
    score_mod: object = None
    mask_mod: object = None
    captures: list = field(default_factory=list)   # tensors that may receive gradients
    cross: bool = False                             # needs Lq != Lkv
    mask_reads_batch: bool = False                  # the mask_mod reads b


def _gen(device, seed=0):
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def noop(B, H, Lq, Lkv, device, grad):
    return Variant("noop")


def causal_variant(B, H, Lq, Lkv, device, grad):
    return Variant("causal", mask_mod=causal)


def sliding_window(B, H, Lq, Lkv, device, grad, window=7):
    def sliding_window_causal(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx <= window)
    return Variant("sliding_window", mask_mod=sliding_window_causal)


def prefix_lm(B, H, Lq, Lkv, device, grad):
    prefix_lengths = torch.randint(1, Lkv, (B,), generator=_gen(device, 1)).to(device)

    def prefix_lm_mask(b, h, q_idx, kv_idx):
        return (kv_idx < prefix_lengths[b]) | (q_idx >= kv_idx)
    return Variant("prefix_lm", mask_mod=prefix_lm_mask, mask_reads_batch=True)


def document(B, H, Lq, Lkv, device, grad):
    # Sorted document ids per batch (int64, as torch code usually makes them).
    lengths = torch.randint(1, 9, (B, Lkv), generator=_gen(device, 2))
    document_id = (torch.cumsum(lengths, 1) // 9).to(device)

    def document_causal(b, h, q_idx, kv_idx):
        same_doc = document_id[b, q_idx] == document_id[b, kv_idx]
        return same_doc & (q_idx >= kv_idx)
    return Variant("document", mask_mod=document_causal, mask_reads_batch=True)


def _image_side(L):
    for w in range(int(L ** 0.5), 0, -1):
        if L % w == 0:
            return w
    return 1


def natten(B, H, Lq, Lkv, device, grad, kernel=3):
    W = _image_side(Lq)
    Hi = Lq // W

    def natten_mask(b, h, q_idx, kv_idx):
        qx, qy = q_idx // W, q_idx % W
        kx, ky = kv_idx // W, kv_idx % W
        cx = qx.clamp(kernel // 2, (Hi - 1) - kernel // 2)
        cy = qy.clamp(kernel // 2, (W - 1) - kernel // 2)
        return ((cx - kx).abs() <= kernel // 2) & ((cy - ky).abs() <= kernel // 2)
    return Variant("natten", mask_mod=natten_mask)


def sasa(B, H, Lq, Lkv, device, grad, kernel=3):
    W = _image_side(Lq)

    def sasa_mask(b, h, q_idx, kv_idx):
        qx, qy = q_idx // W, q_idx % W
        kx, ky = kv_idx // W, kv_idx % W
        return ((qx - kx).abs() <= kernel // 2) & ((qy - ky).abs() <= kernel // 2)
    return Variant("sasa", mask_mod=sasa_mask)


def alibi(B, H, Lq, Lkv, device, grad):
    slopes = torch.exp2(-8.0 * torch.arange(1, H + 1, dtype=torch.float32) / H).to(device)

    def alibi_bias(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)
    return Variant("alibi", score_mod=alibi_bias, mask_mod=causal)


def alibi_functional(B, H, Lq, Lkv, device, grad):
    def alibi_functional_bias(score, b, h, q_idx, kv_idx):
        slope = torch.exp2(-((h + 1) * 8.0 / H))
        return score + slope * (kv_idx - q_idx)
    return Variant("alibi_functional", score_mod=alibi_functional_bias, mask_mod=causal)


def softcap(B, H, Lq, Lkv, device, grad, cap=20.0):
    def tanh_softcap(score, b, h, q_idx, kv_idx):
        return cap * torch.tanh(score / cap)
    return Variant("softcap", score_mod=tanh_softcap)


def jagged(B, H, Lq, Lkv, device, grad):
    # Nested sequences packed into one: offsets of each sequence, seq_idx built from them.
    cuts = torch.sort(torch.randperm(Lkv - 1, generator=_gen(device, 3))[:4] + 1).values
    offsets = torch.cat([torch.tensor([0]), cuts, torch.tensor([Lkv])]).to(torch.int32)
    seq_idx = torch.zeros(Lkv, dtype=torch.int32)
    seq_idx[offsets[1:-1].long()] = 1
    seq_idx = torch.cumsum(seq_idx, 0).to(torch.int32).to(device)
    offsets = offsets.to(device)

    def jagged_causal(b, h, q_idx, kv_idx):
        same_seq = seq_idx[q_idx] == seq_idx[kv_idx]
        q_logical = q_idx - offsets[seq_idx[q_idx]]
        kv_logical = kv_idx - offsets[seq_idx[kv_idx]]
        return same_seq & (q_logical >= kv_logical)
    return Variant("jagged", mask_mod=jagged_causal)


def flamingo(B, H, Lq, Lkv, device, grad, tokens_per_image=8):
    # Text tokens (queries) attend to the image tokens (keys) of the latest image before them.
    num_images = (Lkv + tokens_per_image - 1) // tokens_per_image
    starts = torch.sort(torch.randperm(Lq, generator=_gen(device, 4))[:num_images]).values
    starts[0] = 1                          # text tokens before the first image see nothing: masked rows
    ends = torch.cat([starts[1:], torch.tensor([Lq])])
    intervals = torch.stack([starts, ends], 1).to(device)   # [num_images, 2] int64

    def flamingo_cross(b, h, q_idx, kv_idx):
        image = kv_idx // tokens_per_image
        return (q_idx >= intervals[image][0]) & (q_idx < intervals[image][1])
    return Variant("flamingo", mask_mod=flamingo_cross, cross=True)


def relative_bias(B, H, Lq, Lkv, device, grad):
    L = max(Lq, Lkv)
    bias = (0.5 * torch.randn(H, L, generator=_gen(device, 5))).to(device).requires_grad_(grad)

    def learned_relative_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(0, L - 1)]
    return Variant("relative_bias", score_mod=learned_relative_bias, mask_mod=causal, captures=[bias])


def gated_decay(B, H, Lq, Lkv, device, grad):
    L = max(Lq, Lkv)
    G = torch.cumsum(-0.1 * torch.rand(B, H, L, generator=_gen(device, 6)), -1).to(device).requires_grad_(grad)

    def gated_decay_bias(score, b, h, q_idx, kv_idx):
        return score + G[b, h, q_idx] - G[b, h, kv_idx]
    return Variant("gated_decay", score_mod=gated_decay_bias, mask_mod=causal, captures=[G])


VARIANTS = {
    "noop": noop, "causal": causal_variant, "sliding_window": sliding_window, "prefix_lm": prefix_lm,
    "document": document, "natten": natten, "sasa": sasa, "alibi": alibi, "alibi_functional": alibi_functional,
    "softcap": softcap, "jagged": jagged, "flamingo": flamingo, "relative_bias": relative_bias,
    "gated_decay": gated_decay,
}


def make_variant(name, B, H, Lq, Lkv, device="cpu", grad=False) -> Variant:
    return VARIANTS[name](B, H, Lq, Lkv, device, grad)
