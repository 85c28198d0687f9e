"""Jagged (nested) sequences packed into one: seq_idx is built from the offsets, queries attend causally
within their own sequence, in positions relative to its start (offsets[seq_idx[q_idx]])."""
import torch

from _common import DEVICE, inputs, run

offsets = torch.tensor([0, 130, 400, 401, 777, 1000], device=DEVICE, dtype=torch.int32)
L = int(offsets[-1])
seq_idx = torch.zeros(L, device=DEVICE, dtype=torch.int32)
seq_idx[offsets[1:-1].long()] = 1
seq_idx = seq_idx.cumsum(0).int()


def jagged_causal(b, h, q_idx, kv_idx):
    same_sequence = seq_idx[q_idx] == seq_idx[kv_idx]
    q_logical = q_idx - offsets[seq_idx[q_idx]]
    kv_logical = kv_idx - offsets[seq_idx[kv_idx]]
    return same_sequence & (q_logical >= kv_logical)


q, k, v = inputs(1, 4, L)
run("jagged sequences", q, k, v, mask_mod=jagged_causal)
