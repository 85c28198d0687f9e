"""Shared by the examples: the device, random inputs, and running a variant through flexjit next to
torch's own flex_attention (the same Python functions go to both)."""
import warnings

import torch
import torch.nn.attention.flex_attention as tflex

import flexjit

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32   # the GPU kernels take fp16 / bf16
warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")


def inputs(B, H, Lq, Lkv=None, D=64, Hkv=None, requires_grad=False):
    """Random q [B, H, Lq, D], k and v [B, Hkv, Lkv, D] on DEVICE."""
    torch.manual_seed(0)
    Lkv, Hkv = Lkv or Lq, Hkv or H
    shapes = [(B, H, Lq, D), (B, Hkv, Lkv, D), (B, Hkv, Lkv, D)]
    return [torch.randn(s, device=DEVICE, dtype=DTYPE, requires_grad=requires_grad) for s in shapes]


def run(name, q, k, v, score_mod=None, mask_mod=None, enable_gqa=False, show_mask=True):
    """flexjit's output, after printing its largest difference from torch's flex_attention (eager)."""
    B, H, Lq, Lkv = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    block_mask = torch_mask = None
    if mask_mod is not None:
        block_mask = flexjit.create_block_mask(mask_mod, B, H, Lq, Lkv, device=DEVICE)
        torch_mask = tflex.create_block_mask(mask_mod, B, H, Lq, Lkv, device=DEVICE)
        if show_mask:
            print(block_mask)
    out = flexjit.flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, enable_gqa=enable_gqa)
    with torch.no_grad():
        ref = tflex.flex_attention(q.detach(), k.detach(), v.detach(), score_mod=score_mod, block_mask=torch_mask,
                                   enable_gqa=enable_gqa)
    diff = (out.detach().float() - ref.float()).abs().max().item()
    print(f"{name}: out {tuple(out.shape)} {out.dtype} on {DEVICE}; max |flexjit - torch| = {diff:.2e}")
    return out


def backward(out, *tensors):
    """out.sum().backward(), reporting the gradients' norms (or flexjit's error, e.g. before the GPU backward
    kernels exist)."""
    try:
        out.float().sum().backward()
    except flexjit.FlexjitError as e:
        print(f"backward: {e}")
        return
    for name, t in tensors:
        print(f"  {name}.grad: shape {tuple(t.grad.shape)}, norm {t.grad.float().norm():.4f}")
