"""Neighbourhood attention over an image (NATTEN: a KERNEL x KERNEL window clamped to stay inside the
image) and stand-alone self-attention (SASA: the window centred on the query, cut at the borders)."""
from _common import inputs, run

H_IMG, W_IMG, KERNEL = 24, 32, 7


def natten(b, h, q_idx, kv_idx):
    qx, qy = q_idx // W_IMG, q_idx % W_IMG
    kx, ky = kv_idx // W_IMG, kv_idx % W_IMG
    cx = qx.clamp(KERNEL // 2, (H_IMG - 1) - KERNEL // 2)
    cy = qy.clamp(KERNEL // 2, (W_IMG - 1) - KERNEL // 2)
    return ((cx - kx).abs() <= KERNEL // 2) & ((cy - ky).abs() <= KERNEL // 2)


def sasa(b, h, q_idx, kv_idx):
    qx, qy = q_idx // W_IMG, q_idx % W_IMG
    kx, ky = kv_idx // W_IMG, kv_idx % W_IMG
    return ((qx - kx).abs() <= KERNEL // 2) & ((qy - ky).abs() <= KERNEL // 2)


q, k, v = inputs(1, 4, H_IMG * W_IMG)
run("NATTEN", q, k, v, mask_mod=natten)
run("SASA", q, k, v, mask_mod=sasa, show_mask=False)
