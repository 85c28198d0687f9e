"""Packed (variable-length) sequences: several sequences laid end to end in one, each attending only within
itself (the document mask), and torch's nested jagged tensors (NJT) as flex_attention inputs.

A packed problem is one attention over the total length (B = 1); what tells the sequences apart are two
int32 tensors on the device: `seq[i]`, the sequence of packed position i, and `offsets[s]`, where sequence s
starts. A mod written for one sequence (local indices, b = the sequence) becomes a mod over the packed
positions by reading them (`adapt_mask_mod`, `adapt_score_mod`): flexjit traces the adapted mod like any
other, so its block mask skips every block pair of two different sequences and the kernels never see them.
Nothing here waits for the host when the offsets are a device tensor (the sequence index comes from
torch.searchsorted, the total length from the packed tensor's shape).
"""
import numbers

import torch

from ._errors import FlexjitError
from .block_mask import create_block_mask


class PackedIndex:
    """Where each packed position belongs: `seq` [total] (int32: its sequence) and `offsets` [n + 1] (int32:
    where each sequence starts, offsets[-1] == total)."""

    __slots__ = ("seq", "offsets", "total")

    def __init__(self, offsets: torch.Tensor, total: int):
        self.offsets = offsets.to(torch.int32)
        self.total = int(total)
        positions = torch.arange(self.total, device=offsets.device, dtype=torch.int32)
        # seq[i] = the s with offsets[s] <= i < offsets[s + 1]: how many sequence ends are <= i.
        self.seq = torch.searchsorted(self.offsets[1:].contiguous(), positions, right=True).to(torch.int32)

    @classmethod
    def from_lengths(cls, seq_lengths, device=None) -> "PackedIndex":
        """From the sequences' lengths: a list of ints, or a 1-D integer tensor (whose sum is read on the host)."""
        if isinstance(seq_lengths, torch.Tensor):
            if seq_lengths.dim() != 1 or seq_lengths.is_floating_point() or seq_lengths.dtype == torch.bool:
                raise FlexjitError(f"seq_lengths must be a 1-D integer tensor, got {seq_lengths.dtype} of shape "
                                   f"{list(seq_lengths.shape)}")
            lengths = seq_lengths.to(device if device is not None else seq_lengths.device, torch.int64)
        else:
            if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in seq_lengths):
                raise FlexjitError(f"seq_lengths must be ints, got {list(seq_lengths)!r}")
            lengths = torch.tensor(list(seq_lengths), dtype=torch.int64, device=device)
        if lengths.numel() == 0:
            raise FlexjitError("seq_lengths is empty: pack at least one sequence")
        if bool((lengths < 0).any()):
            raise FlexjitError(f"seq_lengths must be >= 0, got {lengths.tolist()}")
        offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        return cls(offsets, int(offsets[-1]))


def adapt_mask_mod(mask_mod, q: PackedIndex, kv: PackedIndex = None):
    """A mask_mod over packed positions from one over a sequence's own: mask_mod(seq, h, local q, local kv)
    where both positions are in the same sequence, False elsewhere (mask_mod None: the document mask)."""
    kv = q if kv is None else kv
    q_seq, q_off, kv_seq, kv_off = q.seq, q.offsets, kv.seq, kv.offsets

    def packed_mask_mod(b, h, q_idx, kv_idx):
        same = q_seq[q_idx] == kv_seq[kv_idx]
        if mask_mod is None:
            return same
        s = q_seq[q_idx]
        return same & mask_mod(s, h, q_idx - q_off[s], kv_idx - kv_off[kv_seq[kv_idx]])

    packed_mask_mod.__name__ = f"packed_{getattr(mask_mod, '__name__', 'document')}"
    return packed_mask_mod


def adapt_score_mod(score_mod, q: PackedIndex, kv: PackedIndex = None):
    """A score_mod over packed positions from one over a sequence's own (local indices, b = the sequence);
    -inf between two sequences, so it is right even without a block mask."""
    kv = q if kv is None else kv
    q_seq, q_off, kv_seq, kv_off = q.seq, q.offsets, kv.seq, kv.offsets

    def packed_score_mod(score, b, h, q_idx, kv_idx):
        s = q_seq[q_idx]
        local_kv = kv_idx - kv_off[kv_seq[kv_idx]]
        inner = score if score_mod is None else score_mod(score, s, h, q_idx - q_off[s], local_kv)
        return torch.where(s == kv_seq[kv_idx], inner, -float("inf"))

    packed_score_mod.__name__ = f"packed_{getattr(score_mod, '__name__', 'score')}"
    return packed_score_mod


def create_document_block_mask(seq_lengths, mask_mod=None, H=None, device=None, BLOCK_SIZE=128,
                               kv_seq_lengths=None):
    """The block mask of sequences packed end to end, in one call: position pairs of the same sequence, and
    there mask_mod(seq, h, local q_idx, local kv_idx) when given (causal inside each document, a window ...).
    `seq_lengths` (and `kv_seq_lengths` for cross attention, default the same) are lists of ints or 1-D
    integer tensors; the mask is for q [1, H, sum(seq_lengths), D]."""
    if device is None and isinstance(seq_lengths, torch.Tensor):
        device = seq_lengths.device
    q = PackedIndex.from_lengths(seq_lengths, device)
    kv = q if kv_seq_lengths is None else PackedIndex.from_lengths(kv_seq_lengths, q.offsets.device)
    if kv.offsets.numel() != q.offsets.numel():
        raise FlexjitError(f"seq_lengths has {q.offsets.numel() - 1} sequences but kv_seq_lengths "
                           f"{kv.offsets.numel() - 1}; each query sequence attends to its own key sequence")
    return create_block_mask(adapt_mask_mod(mask_mod, q, kv), 1, H, q.total, kv.total, device=q.offsets.device,
                             BLOCK_SIZE=BLOCK_SIZE)


def _check_njt(t, name):
    if not getattr(t, "is_nested", False) or t.layout != torch.jagged:
        raise FlexjitError(f"{name} must be a nested tensor with layout=torch.jagged, got {type(t).__name__}")
    if t.dim() != 4 or t._ragged_idx != 2:
        raise FlexjitError(f"{name} must be a nested jagged tensor [B, H, j, D] (ragged in dim 2: a [B, j, H, D] "
                           f"one transposed with .transpose(1, 2)), got ragged dim {t._ragged_idx} of {t.dim()}")


def _packed_index(t) -> PackedIndex:
    return PackedIndex(t.offsets(), t.values().shape[1])


def create_nested_block_mask(mask_mod, B, H, q_nt, kv_nt=None, BLOCK_SIZE=128, _compile=False):
    """torch's create_nested_block_mask: the block mask for nested jagged q [B, H, j, D] (and kv_nt, default
    q_nt), mask_mod(b, h, q_idx, kv_idx) seeing each sequence's own b and local indices. `B` is ignored (the
    mask is over the packed sequences, B = 1), as in torch."""
    _check_njt(q_nt, "q_nt")
    q = _packed_index(q_nt)
    kv = q
    if kv_nt is not None:
        _check_njt(kv_nt, "kv_nt")
        kv = _packed_index(kv_nt)
    return create_block_mask(adapt_mask_mod(mask_mod, q, kv), 1, H, q.total, kv.total, device=q_nt.device,
                             BLOCK_SIZE=BLOCK_SIZE)


def nested_flex_attention(flex_attention, query, key, value, score_mod, block_mask, scale, enable_gqa, return_lse,
                          kernel_options, return_aux, sink_mod, prob_mod):
    """flex_attention of nested jagged q, k, v [B, H, j, D]: one packed attention ([1, H, total, D] views of
    their values, no copy), the mods adapted to local indices, outputs nested like query."""
    for t, name in ((query, "query"), (key, "key"), (value, "value")):
        _check_njt(t, name)
    if sink_mod is not None or prob_mod is not None:
        raise FlexjitError("flex_attention: sink_mod and prob_mod are not adapted to nested jagged inputs yet; pack "
                           "the sequences into one and use create_document_block_mask")
    q_index, kv_index = _packed_index(query), _packed_index(key)
    if block_mask is None:   # the document mask: every pair of two sequences is skipped
        block_mask = create_block_mask(adapt_mask_mod(None, q_index, kv_index), 1, None, q_index.total,
                                       kv_index.total, device=query.device)
    score = adapt_score_mod(score_mod, q_index, kv_index) if score_mod is not None else None
    result = flex_attention(query.values().unsqueeze(0), key.values().unsqueeze(0), value.values().unsqueeze(0),
                            score_mod=score, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa,
                            return_lse=return_lse, kernel_options=kernel_options, return_aux=return_aux)
    offsets = query.offsets()

    def nested(t):   # [1, H, total, ...] -> [B, H, j, ...]
        return None if t is None else torch.nested.nested_tensor_from_jagged(t[0], offsets, jagged_dim=2)

    if return_aux is not None:
        out, aux = result
        return nested(out), type(aux)(lse=nested(aux.lse), max_scores=nested(aux.max_scores))
    if return_lse:
        out, lse = result
        return nested(out), nested(lse)
    return nested(result)
