"""Native Sparse Attention (NSA; ../shared/seeds/native_sparse_attention_004.txt, Yuan et al. 2025) on
flexjit's kernels: three attention branches over one q, k, v, combined by learned per-head gates.

    out = g_cmp * compressed + g_slc * selected + g_win * sliding_window

1. **compressed**: attention over block-compressed keys and values (mean pooling over `block` consecutive
   positions every `stride` positions by default, or a user `compress` function such as the seed's MLP),
   optionally after learned memory tokens that every query sees. Causal at block granularity: query i sees
   compressed block j when its last position (j * stride + block - 1) is before i.
2. **selected**: each query block (of `selection_block` queries) attends to its top-n key blocks of
   `selection_block` keys, chosen from the compressed branch's attention probabilities (summed over the
   queries of the block and, with `shared_selection`, over the query heads of a GQA group, as the paper
   does), plus `initial_blocks` blocks at the start and `local_blocks` blocks ending at the query's own
   block (always selected; the query's own block causally). Ties go to the lower block index. The choice is
   made with torch operations on the tensors' device (no host round trip) and becomes a BlockMask through
   BlockMask.from_kv_blocks; it is not differentiated (as in the paper).
3. **sliding window**: each query attends to the `window` keys ending at itself.

Every branch is a flexjit flex_attention call (forward and backward, GQA); gradients flow into q, k, v,
the gates, the memory tokens and the compress function's parameters. `nsa_attention` is the function,
`NativeSparseAttention` the module holding the configuration and the memory tokens. docs/nsa.md has the
exact maths, the differences from the seed's reference and the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ._errors import FlexjitError
from ._fused import GpuCompiled
from .attention import flex_attention
from .block_mask import BlockMask, create_block_mask

__all__ = ["NSAConfig", "nsa_attention", "nsa_select_blocks", "nsa_window_mask", "compress_mean", "NativeSparseAttention",
           "nsa_reference"]


@dataclass(frozen=True)
class NSAConfig:
    """The sizes of NSA's three branches (the paper's defaults at D128: l = 32, d = 16, l' = 64, n = 16, w = 512).

    block / stride: compression block length and stride (stride < block overlaps the blocks).
    selection_block: key block and query block of the selected branch (32-128).
    top_n: key blocks each query block attends to in the selected branch, the forced ones included.
    initial_blocks / local_blocks: always selected: the first blocks, and the blocks ending at the query's own.
    window: keys of the sliding window, the query's own included.
    shared_selection: one selection per GQA group (the importance summed over its query heads, the seed's
        query_heads_share_selected_kv) instead of one per query head.
    """
    block: int = 32
    stride: int = 16
    selection_block: int = 64
    top_n: int = 16
    initial_blocks: int = 1
    local_blocks: int = 2
    window: int = 512
    shared_selection: bool = True

    def check(self):
        for name in ("block", "stride", "selection_block", "window"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise FlexjitError(f"NSAConfig: {name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("top_n", "initial_blocks", "local_blocks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise FlexjitError(f"NSAConfig: {name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.stride > self.block:
            raise FlexjitError(f"NSAConfig: stride ({self.stride}) must not exceed block ({self.block}): "
                               "positions between blocks would be compressed into none")
        if self.initial_blocks + self.local_blocks > self.top_n:
            raise FlexjitError(f"NSAConfig: top_n ({self.top_n}) must cover the initial_blocks "
                               f"({self.initial_blocks}) and local_blocks ({self.local_blocks}) that are always "
                               "selected")


def compress_mean(blocks: torch.Tensor) -> torch.Tensor:
    """The default compression: the mean of each block, [B, H, N, block, D] -> [B, H, N, D]."""
    return blocks.mean(dim=-2)


def _compress_blocks(x: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """[B, H, L, D] -> the [B, H, N, block, D] windows x[..., j * stride : j * stride + block, :] that fit."""
    L = x.shape[-2]
    n = 0 if L < cfg.block else (L - cfg.block) // cfg.stride + 1
    return x.unfold(-2, cfg.block, cfg.stride).transpose(-1, -2)[..., :n, :, :]


def _compressed_mask(num_mem: int, cfg: NSAConfig):
    block, stride = cfg.block, cfg.stride

    def compressed_causal(b, h, q_idx, kv_idx):
        # Memory tokens (kv < num_mem) are seen by every query; compressed block j = kv - num_mem ends at
        # j * stride + block - 1, which must come before the query.
        return (kv_idx < num_mem) | ((kv_idx - num_mem) * stride + block <= q_idx)

    return compressed_causal


def _window_mask(window: int):
    def sliding_window(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

    return sliding_window


def _causal(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


def _overlap_matrix(num_cmp: int, num_sel: int, cfg: NSAConfig, device) -> torch.Tensor:
    """[num_cmp, num_sel]: the fraction of compressed block j's positions that lie in selection block m (the
    paper's eq. 9 for any block, stride and selection sizes)."""
    start = torch.arange(num_cmp, device=device, dtype=torch.float64).view(-1, 1) * cfg.stride
    lo = torch.arange(num_sel, device=device, dtype=torch.float64).view(1, -1) * cfg.selection_block
    overlap = (torch.minimum(start + cfg.block, lo + cfg.selection_block) - torch.maximum(start, lo)).clamp(min=0)
    return (overlap / cfg.block).to(torch.float32)


def _block_sums(s, lse_c, row0, ends, scale: float, sel: int):
    """sum over the `sel` queries of each query block of exp(s * scale - LSE), where visible and the row has a
    softmax: s [B, Hkv, group, R, nc] (R a multiple of sel) scores of rows row0 .. row0 + R - 1 against the
    compressed blocks ending at `ends` [nc]; lse_c [B, Hkv, group, R, 1] float32. Compiled with dynamic
    shapes, so R, nc and row0 (an int) vary without recompiling.
    Returns [B, Hkv, group, R / sel, nc] float32. Written as one expression so that torch.compile fuses it
    into a single pass over s (_fused_block_sums)."""
    B, H, g, R, nc = s.shape
    rows = torch.arange(R, device=s.device) + row0
    # A row without a softmax (LSE = -inf: nothing visible yet) contributes nothing; `where` drops its
    # exp(s + inf) = inf instead of multiplying it by 0.
    keep = (ends.view(1, 1, 1, 1, -1) <= rows.view(1, 1, 1, -1, 1)) & torch.isfinite(lse_c)
    p = torch.where(keep, torch.exp(s.float() * scale - lse_c), 0.0)
    return p.view(B, H, g, R // sel, sel, nc).sum(dim=4)


# On a GPU one fused kernel that reads the scores once instead of the six passes of eager float32 ops, which
# took about 200 ms of the 226 ms NSA forward at 64k tokens on the H200 (docs/performance.md, 2026-12-02).
_fused_block_sums = GpuCompiled(_block_sums, "flexjit.nsa: the selection scores")


@torch.no_grad()
def _importance(q, ck, lse, num_mem, cfg: NSAConfig, scale: float, num_sel: int, group: int,
                chunk_rows: int = 4096) -> torch.Tensor:
    """The selection score of every (query block, key block): the compressed branch's probabilities
    p_ij = exp(q_i . ck_j * scale - LSE_i) over the compressed blocks (memory tokens left out), carried onto
    the selection blocks by their overlap and summed over the queries of the block (and over the query heads
    of a GQA group when the selection is shared). [B, H_sel, num_q_blocks, num_sel], float32. Computed in
    chunks of query rows so that the probabilities never exist for the whole sequence at once."""
    B, Hq, L, D = q.shape
    Hkv = ck.shape[1]
    sel = cfg.selection_block
    num_qb = -(-L // sel)
    ckc = ck[:, :, num_mem:, :].to(q.dtype)  # [B, Hkv, Nc, D]
    Nc = ckc.shape[2]
    overlap = _overlap_matrix(Nc, num_sel, cfg, q.device)  # [Nc, num_sel]
    Hs = Hkv if cfg.shared_selection else Hq
    out = torch.zeros(B, Hs, num_qb, num_sel, device=q.device, dtype=torch.float32)
    if Nc == 0:
        return out
    ends = torch.arange(Nc, device=q.device) * cfg.stride + cfg.block  # block j is visible to queries >= end
    rows = max(sel, chunk_rows // sel * sel)
    for r0 in range(0, L, rows):
        r1 = min(L, r0 + rows)
        # Causal: the chunk's queries see only the compressed blocks that end at or before its last row.
        nc = int(min(Nc, max(0, (r1 - cfg.block) // cfg.stride + 1)))
        if nc == 0:
            continue
        # The scores in the inputs' precision (tensor cores on a GPU; the ranking needs no more), the rest in
        # float32 inside _block_sums (the chunk's scores are the largest tensor here).
        qc = q[:, :, r0:r1, :].reshape(B, Hkv, group, r1 - r0, D)
        sc = torch.einsum("bhgid,bhjd->bhgij", qc, ckc[:, :, :nc])
        lse_c = lse[:, :, r0:r1].float().view(B, Hkv, group, r1 - r0, 1)
        if (r1 - r0) % sel:  # pad the last query block with rows that have no softmax (LSE = -inf)
            pad = sel - (r1 - r0) % sel
            sc = torch.nn.functional.pad(sc, (0, 0, 0, pad))
            lse_c = torch.nn.functional.pad(lse_c, (0, 0, 0, pad), value=float("-inf"))
        # Summed over the queries of each block (and the heads of a shared group) before the overlap
        # product, which then multiplies one row per query block instead of one per query.
        p = _fused_block_sums(sc, lse_c, r0, ends[:nc], scale, sel)
        p = p.sum(dim=2) if cfg.shared_selection else p.reshape(B, Hq, -1, nc)
        p = p @ overlap[:nc]
        out[:, :, r0 // sel: r0 // sel + p.shape[2]] = p
    return out


@torch.no_grad()
def nsa_select_blocks(importance: torch.Tensor, cfg: NSAConfig):
    """The selected branch's key blocks from the importance [B, H, num_q_blocks, num_sel] (query block i and
    key blocks of cfg.selection_block): (count [B, H, nqb], indices [B, H, nqb, top_n], ascending, the first
    count valid). Causal: only blocks that start at or before the query block's end. The initial and local
    blocks are always taken; the rest by importance, ties to the lower index (a stable sort)."""
    B, H, nqb, nsel = importance.shape
    dev = importance.device
    qb = torch.arange(nqb, device=dev).view(-1, 1)
    kb = torch.arange(nsel, device=dev).view(1, -1)
    # With query and key blocks of one size, the query block's own key block is qb: blocks after it hold
    # only future keys.
    allowed = kb <= qb
    forced = allowed & ((kb < cfg.initial_blocks) | (kb > qb - cfg.local_blocks))
    score = importance.float().masked_fill(~allowed, float("-inf")).masked_fill(forced, float("inf"))
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices  # ties: lower index first
    n = min(cfg.top_n, nsel)
    top = order[..., :n]
    count = allowed.sum(-1).clamp(max=n).to(torch.int32).view(1, 1, nqb).expand(B, H, nqb)
    # Past each row's count the sort put blocks with score -inf.
    valid = torch.arange(n, device=dev).view(1, 1, 1, -1) < count.unsqueeze(-1)
    return count.contiguous(), _kept_ascending(top, valid).to(torch.int32).contiguous()


def _kept_ascending(indices, kept):
    """Each row's kept indices in ascending order, first, then zeros (the padding of a block list)."""
    past = torch.iinfo(indices.dtype).max
    ordered = torch.where(kept, indices, torch.full_like(indices, past)).sort(dim=-1).values
    return torch.where(ordered == past, torch.zeros_like(ordered), ordered)


def _selection_mask(count, indices, cfg: NSAConfig, L: int, Hq: int, group: int) -> BlockMask:
    """The selected branch's BlockMask: each query block's own key block as a partial block (causal inside),
    every other selected block full (no mask_mod evaluated)."""
    B, Hs, nqb, n = indices.shape
    if Hs != Hq:  # one selection per GQA group: every query head of the group reads it
        count = count.repeat_interleave(group, dim=1)
        indices = indices.repeat_interleave(group, dim=1)
    qb = torch.arange(nqb, device=indices.device, dtype=torch.int32).view(1, 1, -1, 1)
    valid = torch.arange(n, device=indices.device).view(1, 1, 1, -1) < count.unsqueeze(-1)
    diagonal = valid & (indices == qb)
    full = valid & ~diagonal
    has_diag = diagonal.any(-1)
    part_num = has_diag.to(torch.int32)
    part_idx = qb[..., :1].expand(B, Hq, nqb, 1).contiguous()
    full_idx = _kept_ascending(indices, full)
    full_num = full.sum(-1).to(torch.int32)
    return BlockMask.from_kv_blocks(part_num.contiguous(), part_idx, full_num.contiguous(), full_idx.contiguous(),
                                    BLOCK_SIZE=cfg.selection_block, mask_mod=_causal, seq_lengths=(L, L))


def nsa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gates: torch.Tensor,
                  config: Optional[NSAConfig] = None, *, compress: Optional[Callable] = None,
                  compress_v: Optional[Callable] = None, mem_k: Optional[torch.Tensor] = None,
                  mem_v: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                  window_mask: Optional[BlockMask] = None, return_branches: bool = False):
    """Native Sparse Attention over q [B, Hq, L, D], k [B, Hkv, L, D], v [B, Hkv, L, Dv] (causal, L the same
    for all three; Hq a multiple of Hkv), gates [B, Hq, L, 3] (the weights of the compressed, selected and
    sliding-window branches: the paper's sigmoid outputs, computed by the caller). Returns out [B, Hq, L, Dv]
    in q's dtype, and with return_branches also the three branch outputs and the selection (count, indices).

    compress / compress_v: [B, Hkv, N, block, D] -> [B, Hkv, N, D] for the keys / values (default: the mean;
    compress_v defaults to compress). mem_k / mem_v: learned memory tokens [Hkv, M, D] / [Hkv, M, Dv] that
    every query sees in the compressed branch. window_mask: a prebuilt sliding-window BlockMask for this L
    (built here when not given; build it once with nsa_window_mask to keep it out of the step).
    """
    cfg = config or NSAConfig()
    cfg.check()
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise FlexjitError("nsa_attention: q, k and v must be [B, H, L, D]")
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    if k.shape[2] != L or v.shape[2] != L:
        raise FlexjitError(f"nsa_attention: q, k and v must have one length (causal self-attention), got "
                           f"{L}, {k.shape[2]}, {v.shape[2]}")
    if Hkv < 1 or Hq % Hkv:
        raise FlexjitError(f"nsa_attention: query heads ({Hq}) must be a multiple of key/value heads ({Hkv})")
    if tuple(gates.shape) != (B, Hq, L, 3):
        raise FlexjitError(f"nsa_attention: gates must be [B, Hq, L, 3] = {[B, Hq, L, 3]}, got {list(gates.shape)}")
    if (mem_k is None) != (mem_v is None):
        raise FlexjitError("nsa_attention: give both mem_k and mem_v, or neither")
    group = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    compress = compress or compress_mean
    compress_v = compress_v or compress

    # 1. Compressed keys and values, after the memory tokens.
    ck = compress(_compress_blocks(k, cfg)).to(q.dtype).contiguous()
    cv = compress_v(_compress_blocks(v, cfg)).to(q.dtype).contiguous()
    num_mem = 0
    if mem_k is not None:
        num_mem = mem_k.shape[-2]
        ck = torch.cat([mem_k.to(ck.dtype).unsqueeze(0).expand(B, -1, -1, -1), ck], dim=2)
        cv = torch.cat([mem_v.to(cv.dtype).unsqueeze(0).expand(B, -1, -1, -1), cv], dim=2)
    num_cmp = ck.shape[2]
    num_sel = -(-L // cfg.selection_block)
    if num_cmp > 0:
        cmask = create_block_mask(_compressed_mask(num_mem, cfg), 1, 1, L, num_cmp, device=q.device)
        o_cmp, lse_cmp = flex_attention(q, ck, cv, block_mask=cmask, scale=scale,
                                        enable_gqa=group > 1, return_lse=True)
    else:  # a sequence shorter than one block and no memory: the branch has no keys (O = 0)
        o_cmp = q.new_zeros(B, Hq, L, v.shape[-1])
        lse_cmp = torch.full((B, Hq, L), float("-inf"), device=q.device)

    # 2. The selection from the compressed probabilities, then the selected blocks.
    importance = _importance(q.detach(), ck.detach(), lse_cmp.detach(), num_mem, cfg, scale, num_sel, group)
    count, indices = nsa_select_blocks(importance, cfg)
    smask = _selection_mask(count, indices, cfg, L, Hq, group)
    o_slc = flex_attention(q, k, v, block_mask=smask, scale=scale, enable_gqa=group > 1)

    # 3. The sliding window.
    wmask = window_mask if window_mask is not None else nsa_window_mask(L, cfg, q.device)
    o_win = flex_attention(q, k, v, block_mask=wmask, scale=scale, enable_gqa=group > 1)

    g = gates.to(torch.float32)
    out = (g[..., 0:1] * o_cmp.float() + g[..., 1:2] * o_slc.float() + g[..., 2:3] * o_win.float()).to(q.dtype)
    if return_branches:
        return out, {"compressed": o_cmp, "selected": o_slc, "window": o_win, "count": count, "indices": indices}
    return out


def nsa_window_mask(seq_len: int, config: Optional[NSAConfig] = None, device=None) -> BlockMask:
    """The sliding-window branch's BlockMask for sequences of seq_len (reusable across steps)."""
    cfg = config or NSAConfig()
    cfg.check()
    return create_block_mask(_window_mask(cfg.window), 1, 1, seq_len, seq_len, device=device)


class NativeSparseAttention(torch.nn.Module):
    """NSA's attention core as a module: the configuration, optional learned memory tokens (num_mem) and an
    optional compress module ([B, Hkv, N, block, D] -> [B, Hkv, N, D], e.g. the seed's MLP, used for keys;
    compress_v for values, default the same). forward(q, k, v, gates) as nsa_attention; the projections,
    rotary embedding and the gate MLP stay the caller's (they differ between models)."""

    def __init__(self, kv_heads: int, head_dim: int, config: Optional[NSAConfig] = None, num_mem: int = 0,
                 compress: Optional[torch.nn.Module] = None, compress_v: Optional[torch.nn.Module] = None,
                 head_dim_v: Optional[int] = None):
        super().__init__()
        self.config = config or NSAConfig()
        self.config.check()
        self.compress = compress
        self.compress_v = compress_v
        dv = head_dim_v or head_dim
        if num_mem > 0:
            self.mem_k = torch.nn.Parameter(torch.zeros(kv_heads, num_mem, head_dim))
            self.mem_v = torch.nn.Parameter(torch.zeros(kv_heads, num_mem, dv))
        else:
            self.mem_k = self.mem_v = None
        self._window = {}

    def forward(self, q, k, v, gates, return_branches: bool = False):
        key = (q.shape[2], q.device)
        if key not in self._window:  # one sliding-window mask per length and device
            self._window = {key: nsa_window_mask(q.shape[2], self.config, q.device)}
        return nsa_attention(q, k, v, gates, self.config, compress=self.compress, compress_v=self.compress_v,
                             mem_k=self.mem_k, mem_v=self.mem_v, window_mask=self._window[key],
                             return_branches=return_branches)


# --- the dense reference ---------------------------------------------------------------------------------

def _reference_windows(x, cfg):
    L = x.shape[-2]
    starts = range(0, L - cfg.block + 1, cfg.stride) if L >= cfg.block else []
    return torch.stack([x[..., s:s + cfg.block, :] for s in starts], dim=-3) if starts else x[..., :0, None, :]


def _reference_softmax(s, keep):
    s = s.masked_fill(~keep, float("-inf"))
    top = s.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(s - top) * keep
    total = e.sum(-1, keepdim=True)
    return torch.where(total > 0, e / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(e))


def nsa_reference(q, k, v, gates, cfg, compress=None, mem_k=None, mem_v=None, selection=None):
    """NSA in plain dense torch (every mask materialised, O(L^2) memory; run it in float64 at small sizes):
    the check of nsa_attention, written independently of it. Returns (out, selected), selected[b][hs][qb]
    the sorted key blocks of query block qb; `selection` (nsa_attention's (count, indices)) replaces the
    reference's own choice (a low-precision run may break near-ties differently)."""
    compress = compress or compress_mean
    B, Hq, L, D = q.shape
    dev = q.device
    Hkv = k.shape[1]
    g = Hq // Hkv
    scale = 1 / math.sqrt(D)
    rep = lambda t: t.repeat_interleave(g, 1)  # noqa: E731
    ck, cv = compress(_reference_windows(k, cfg)), compress(_reference_windows(v, cfg))
    M = 0
    if mem_k is not None:
        M = mem_k.shape[1]
        ck = torch.cat([mem_k.unsqueeze(0).expand(B, -1, -1, -1), ck], 2)
        cv = torch.cat([mem_v.unsqueeze(0).expand(B, -1, -1, -1), cv], 2)
    N = ck.shape[2]
    i = torch.arange(L, device=dev).view(-1, 1)
    j = torch.arange(N, device=dev).view(1, -1)
    cmask = (j < M) | ((j - M) * cfg.stride + cfg.block <= i)
    p_cmp = _reference_softmax(q @ rep(ck).transpose(-1, -2) * scale, cmask)
    o_cmp = p_cmp @ rep(cv)
    # Importance of selection block m for query block a: the probabilities of the compressed blocks carried
    # by the fraction of their positions inside m, summed over the block's queries (and the group's heads).
    sel = cfg.selection_block
    nqb = nsel = -(-L // sel)
    frac = torch.zeros(N - M, nsel, dtype=torch.float64, device=dev)
    for c in range(N - M):
        for t in range(c * cfg.stride, c * cfg.stride + cfg.block):
            frac[c, t // sel] += 1 / cfg.block
    pos = p_cmp[..., M:].detach().double() @ frac  # [B, Hq, L, nsel]
    Hs = Hkv if cfg.shared_selection else Hq
    imp = torch.zeros(B, Hs, nqb, nsel, dtype=torch.float64, device=dev)
    for b in range(B):
        for h in range(Hq):
            hs = h // g if cfg.shared_selection else h
            for a in range(nqb):
                imp[b, hs, a] += pos[b, h, a * sel:(a + 1) * sel].sum(0)
    selected = [[[None] * nqb for _ in range(Hs)] for _ in range(B)]
    keep = torch.zeros(B, Hq, L, L, dtype=torch.bool, device=dev)
    for b in range(B):
        for hs in range(Hs):
            for a in range(nqb):
                allowed = list(range(a + 1))
                forced = [m for m in allowed if m < cfg.initial_blocks or m > a - cfg.local_blocks]
                rest = sorted((m for m in allowed if m not in forced), key=lambda m: (-imp[b, hs, a, m].item(), m))
                chosen = sorted((forced + rest)[:cfg.top_n])
                if selection is not None:
                    count, indices = selection
                    chosen = indices[b, hs, a, :count[b, hs, a]].tolist()
                selected[b][hs][a] = chosen
                heads = range(hs * g, hs * g + g) if cfg.shared_selection else [hs]
                for h in heads:
                    for m in chosen:
                        keep[b, h, a * sel:(a + 1) * sel, m * sel:(m + 1) * sel] = True
    causal = torch.arange(L, device=dev).view(-1, 1) >= torch.arange(L, device=dev).view(1, -1)
    s_full = q @ rep(k).transpose(-1, -2) * scale
    o_slc = _reference_softmax(s_full, keep & causal) @ rep(v)
    window = causal & (torch.arange(L, device=dev).view(-1, 1) - torch.arange(L, device=dev).view(1, -1) < cfg.window)
    o_win = _reference_softmax(s_full, window) @ rep(v)
    out = gates[..., 0:1] * o_cmp + gates[..., 1:2] * o_slc + gates[..., 2:3] * o_win
    return out, selected
