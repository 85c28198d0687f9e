"""Document masking: several documents packed into one sequence attend only within themselves (causally).
document_id is a captured tensor; a new tensor of the same shape is used on the next call without
re-tracing or recompiling."""
import torch

from _common import DEVICE, inputs, run

L = 1024
document_id = (torch.arange(L, device=DEVICE) // 200).int()


def document_causal(b, h, q_idx, kv_idx):
    return (document_id[q_idx] == document_id[kv_idx]) & (q_idx >= kv_idx)


q, k, v = inputs(1, 4, L)
run("document mask", q, k, v, mask_mod=document_causal)
document_id = (torch.arange(L, device=DEVICE) // 333).int()   # the next batch's documents
run("document mask, new ids", q, k, v, mask_mod=document_causal, show_mask=False)
