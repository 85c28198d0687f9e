"""Tanh soft-capping of the scores (Gemma 2, Grok): score_mod = cap * tanh(score / cap)."""
import torch

from _common import inputs, run

SOFT_CAP = 20.0


def tanh_softcap(score, b, h, q_idx, kv_idx):
    return SOFT_CAP * torch.tanh(score / SOFT_CAP)


q, k, v = inputs(2, 4, 777)
run("tanh soft-cap", q, k, v, score_mod=tanh_softcap)
