"""Block lists built with torch operations, on the lists' own device and without reading them on the host.

flexjit's kernels read eight lists (BlockMask in runtime/BlockMask.h): for every (b, h, q block) the partial
and the full kv blocks, ascending (kv_num_blocks / kv_indices [B, H, nQ, nKV], full_kv_*), and their
transposes for the backward pass (q_*, full_q_*). ``lists_from_kv`` makes all eight from kv lists in torch's
layout ([B, H, nQ, k] with any k, e.g. an NSA top-k selection): it marks each listed block in a dense
[B, H, nQ, nKV] class map (scatter), then reads the lists back out of the map (a stable descending argsort
puts each row's blocks first, in ascending order). Every step is a device operation, so on a GPU nothing
waits for the host; entries beyond a row's count or outside [0, nKV) are simply not marked, and a block
listed twice is marked once, so whatever the input the kernels get valid lists.

On the CPU, where reading the lists costs nothing, ``check_kv_lists`` first rejects counts, indices and
duplicates that a GPU call would drop silently, with the row that holds them.
"""
import torch

from ._errors import FlexjitError

EMPTY, PARTIAL, FULL = 0, 1, 2


def _marked_columns(num: torch.Tensor, idx: torch.Tensor, n_cols: int) -> torch.Tensor:
    """The column each list entry marks: its index when it is listed (position < the row's count) and in
    [0, n_cols), else the spare column n_cols (which is dropped)."""
    positions = torch.arange(idx.shape[-1], device=idx.device)
    listed = (positions < num.unsqueeze(-1)) & (idx >= 0) & (idx < n_cols)
    return torch.where(listed, idx, n_cols).long()


def block_classes(kv_num, kv_idx, full_num, full_idx, n_kv: int) -> torch.Tensor:
    """The [B, H, nQ, nKV] int8 map (EMPTY / PARTIAL / FULL) of kv lists. A block listed both as partial and
    as full is partial (its mask_mod is applied, never skipped)."""
    classes = torch.zeros((*kv_idx.shape[:-1], n_kv + 1), dtype=torch.int8, device=kv_idx.device)
    if full_num is not None:
        classes.scatter_(-1, _marked_columns(full_num, full_idx, n_kv), FULL)
    classes.scatter_(-1, _marked_columns(kv_num, kv_idx, n_kv), PARTIAL)
    return classes[..., :n_kv]


def _ordered(selected: torch.Tensor):
    """Counts and ascending column lists of a boolean [..., rows, cols] map (entries past a row's count are
    unspecified), both contiguous int32."""
    num = selected.sum(-1, dtype=torch.int32)
    order = torch.argsort(selected.to(torch.int8), dim=-1, descending=True, stable=True)
    return num.contiguous(), order.to(torch.int32).contiguous()


def lists_from_classes(classes: torch.Tensor):
    """The eight lists (kv_num, kv_idx, full_kv_num, full_kv_idx, q_num, q_idx, full_q_num, full_q_idx) of a
    class map."""
    partial, full = classes == PARTIAL, classes == FULL
    return (*_ordered(partial), *_ordered(full), *_ordered(partial.transpose(-1, -2)),
            *_ordered(full.transpose(-1, -2)))


def lists_from_kv(kv_num, kv_idx, full_num, full_idx, n_kv: int):
    """The eight lists from kv lists in torch's layout (see the module docstring)."""
    return lists_from_classes(block_classes(kv_num, kv_idx, full_num, full_idx, n_kv))


def _first_bad_row(bad: torch.Tensor) -> int:
    return int(bad.reshape(-1).nonzero()[0, 0])


def check_kv_lists(kv_num, kv_idx, full_num, full_idx, n_kv: int, what: str) -> None:
    """A FlexjitError for lists a GPU build would silently repair: a count outside [0, k], a listed index
    outside [0, n_kv), a block listed twice in a row (also as partial and full). CPU tensors only."""
    seen = torch.zeros((*kv_idx.shape[:-1], n_kv + 1), dtype=torch.int32)
    for num, idx, name in ((kv_num, kv_idx, "kv_num_blocks/kv_indices"),
                           (full_num, full_idx, "full_kv_num_blocks/full_kv_indices")):
        if num is None:
            continue
        width = idx.shape[-1]
        bad_count = (num < 0) | (num > width)
        if bool(bad_count.any()):
            row = _first_bad_row(bad_count)
            raise FlexjitError(f"{what}: {name} count {int(num.reshape(-1)[row])} at row {row} is outside "
                               f"[0, {width}] (the lists have {width} columns)")
        listed = torch.arange(width) < num.unsqueeze(-1)
        bad_index = listed & ((idx < 0) | (idx >= n_kv))
        if bool(bad_index.any()):
            flat = bad_index.reshape(-1, width)
            row = _first_bad_row(flat.any(-1))
            col = int(flat[row].nonzero()[0, 0])
            raise FlexjitError(f"{what}: {name} index {int(idx.reshape(-1, width)[row, col])} at row {row} is "
                               f"outside [0, {n_kv}) (the mask has {n_kv} kv blocks)")
        seen.scatter_add_(-1, _marked_columns(num, idx, n_kv), listed.to(torch.int32))
    twice = seen[..., :n_kv] > 1
    if bool(twice.any()):
        flat = twice.reshape(-1, n_kv)
        row = _first_bad_row(flat.any(-1))
        raise FlexjitError(f"{what}: kv block {int(flat[row].nonzero()[0, 0])} is listed twice in row {row} (a "
                           f"block is either partial or full, once)")
