"""Sliding-window causal attention (each query sees the previous WINDOW keys), and the same with grouped
queries (8 query heads sharing 2 key/value heads)."""
from _common import inputs, run

WINDOW = 256


def sliding_window_causal(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx <= WINDOW)


q, k, v = inputs(1, 4, 1000)
run("sliding window", q, k, v, mask_mod=sliding_window_causal)
q, k, v = inputs(1, 8, 1000, Hkv=2)
run("sliding window, GQA 8/2", q, k, v, mask_mod=sliding_window_causal, enable_gqa=True, show_mask=False)
