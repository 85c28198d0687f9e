"""Block masks and mask helpers with torch's names and semantics.

``create_block_mask`` traces the mask_mod and builds the block lists in C++ (on a GPU a generated kernel
decides every block pair from the mod's interval form: the dense mask is never materialised). The lists
are exposed as torch tensors over flexjit's memory, broadcast to [B, H, ...] like torch's.
"""
import inspect
import numbers

import torch

from . import _flexjit
from ._cache import resolve
from ._errors import FlexjitError
from ._sym import SymValue, constant
from ._tensors import flexjit_device, from_owned, optional_view, torch_device
from ._trace import MASK_MOD, SCORE_AS_MASK

_DEFAULT_BLOCK_SIZE = 128
_LIST_NAMES = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks",
               "q_indices", "full_q_num_blocks", "full_q_indices")


def noop_mask(b, h, q_idx, kv_idx):
    """Keeps every position (torch.nn.attention.flex_attention.noop_mask)."""
    if isinstance(b, SymValue):
        return SymValue(constant(True))
    return torch.ones((), dtype=torch.bool, device=b.device)


def and_masks(*mask_mods):
    """A mask_mod keeping the positions every one of `mask_mods` keeps."""
    _check_callables("and_masks", mask_mods)

    def and_mask(b, h, q_idx, kv_idx):
        kept = noop_mask(b, h, q_idx, kv_idx)
        for m in mask_mods:
            kept = kept & m(b, h, q_idx, kv_idx)
        return kept

    return and_mask


def or_masks(*mask_mods):
    """A mask_mod keeping the positions any of `mask_mods` keeps."""
    _check_callables("or_masks", mask_mods)

    def or_mask(b, h, q_idx, kv_idx):
        kept = ~noop_mask(b, h, q_idx, kv_idx)
        for m in mask_mods:
            kept = kept | m(b, h, q_idx, kv_idx)
        return kept

    return or_mask


def _check_callables(what, mods):
    if not all(callable(m) for m in mods):
        raise FlexjitError(f"{what}: every argument must be a mask_mod function, got "
                           f"{[type(m).__name__ for m in mods]}")


_INT32_MAX, _INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _size(value, name: str, what: str, maximum=_INT64_MAX) -> int:
    """A size argument as an int in [1, maximum]: a FlexjitError naming it otherwise, before it reaches the
    C++ binding (whose TypeError would list signatures instead)."""
    if not _is_int(value):
        raise FlexjitError(f"{what}: {name} must be an int, got {value!r}")
    if not 1 <= value <= maximum:
        raise FlexjitError(f"{what}: {name} {value} is outside [1, {maximum}]")
    return int(value)


def _batch_or_heads(value, name: str, what: str) -> int:
    """B or H: an int, or None for 1 (broadcast)."""
    if value is None:
        return 1
    if not _is_int(value):
        raise FlexjitError(f"{what}: {name} must be an int or None, got {value!r}")
    return _size(value, name, what)


def _block_sizes(BLOCK_SIZE, what="create_block_mask"):
    """(Q_BLOCK, KV_BLOCK) from an int or a pair of ints."""
    if _is_int(BLOCK_SIZE):
        pair = (BLOCK_SIZE, BLOCK_SIZE)
    elif isinstance(BLOCK_SIZE, (tuple, list)) and len(BLOCK_SIZE) == 2 and all(_is_int(b) for b in BLOCK_SIZE):
        pair = tuple(BLOCK_SIZE)
    else:
        raise FlexjitError(f"{what}: BLOCK_SIZE must be an int or a (Q_BLOCK, KV_BLOCK) pair of ints, got "
                           f"{BLOCK_SIZE!r}")
    return tuple(_size(b, "BLOCK_SIZE", what, _INT32_MAX) for b in pair)


def _pair(value, name: str):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise FlexjitError(f"BlockMask.from_kv_blocks: {name} must be a (Q_LEN, KV_LEN) pair, got {value!r}")
    return value


def _default_device(device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class BlockMask:
    """Which (q block, kv block) tiles attention visits: partial blocks (kv_num_blocks / kv_indices, where
    mask_mod is evaluated per element), full blocks (full_kv_*: every position kept) and the transposed
    lists q_* for the backward pass, as in torch. Make one with create_block_mask or from_kv_blocks."""

    def __init__(self, cpp, mask, mask_mod):
        self._cpp = cpp           # _flexjit.BlockMask
        self._mask = mask         # BoundMod of the mask_mod (its tensors), or None
        self.mask_mod = mask_mod if mask_mod is not None else noop_mask
        self._lists = {}

    # torch's attributes.
    @property
    def shape(self):
        c = self._cpp
        return (c.batch, c.heads, c.len_q, c.len_kv)

    @property
    def seq_lengths(self):
        return (self._cpp.len_q, self._cpp.len_kv)

    @property
    def BLOCK_SIZE(self):
        return (self._cpp.block_q, self._cpp.block_kv)

    @property
    def device(self) -> torch.device:
        return torch_device(self._cpp.device)

    def _list(self, name):
        if name not in self._lists:
            t = from_owned(getattr(self._cpp, name))
            if t is not None:
                t = t.expand(self._cpp.batch, self._cpp.heads, *t.shape[2:])
            self._lists[name] = t
        return self._lists[name]

    kv_num_blocks = property(lambda self: self._list("kv_num_blocks"))
    kv_indices = property(lambda self: self._list("kv_indices"))
    full_kv_num_blocks = property(lambda self: self._list("full_kv_num_blocks"))
    full_kv_indices = property(lambda self: self._list("full_kv_indices"))
    q_num_blocks = property(lambda self: self._list("q_num_blocks"))
    q_indices = property(lambda self: self._list("q_indices"))
    full_q_num_blocks = property(lambda self: self._list("full_q_num_blocks"))
    full_q_indices = property(lambda self: self._list("full_q_indices"))

    def numel(self) -> int:
        b, h, q, kv = self.shape
        return b * h * q * kv

    def sparsity(self) -> float:
        """Percentage of blocks skipped, over all (b, h)."""
        return self._cpp.sparsity()

    def to_dense(self) -> torch.Tensor:
        """The block-level mask [B, H, num_q_blocks, num_kv_blocks] (int32, 1 where a block is visited), like
        torch's BlockMask.to_dense(); create_mask gives the element-level mask."""
        dense = _ordered_to_dense(self.kv_num_blocks, self.kv_indices)
        if self.full_kv_num_blocks is not None:
            dense = dense | _ordered_to_dense(self.full_kv_num_blocks, self.full_kv_indices)
        return dense

    def to_string(self, max_width: int = 64, max_heads: int = 4) -> str:
        """A picture of each (b, h) mask: full blocks, partial blocks, empty."""
        return self._cpp.to_string(max_width, max_heads)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return (f"BlockMask(shape={self.shape}, BLOCK_SIZE={self.BLOCK_SIZE}, sparsity={self.sparsity():.2f}%, "
                f"device={self.device}, mask_mod={getattr(self.mask_mod, '__name__', self.mask_mod)})")

    def to(self, device) -> "BlockMask":
        """A copy of the block lists on `device` (tensors the mask_mod captured are not moved)."""
        return BlockMask(self._cpp.to(flexjit_device(device)), self._mask, self.mask_mod)

    def as_tuple(self):
        return (*self.seq_lengths, *(self._list(n) for n in _LIST_NAMES), *self.BLOCK_SIZE, self.mask_mod)

    def _bound(self):
        """The C++ block mask with its mask_mod's captures pointed at this mask's tensors."""
        if self._mask is not None:
            self._mask.bind()
        return self._cpp

    @classmethod
    def from_kv_blocks(cls, kv_num_blocks, kv_indices, full_kv_num_blocks=None, full_kv_indices=None,
                       BLOCK_SIZE=_DEFAULT_BLOCK_SIZE, mask_mod=None, seq_lengths=None, compute_q_blocks=True):
        """A block mask from chosen kv blocks (e.g. a top-k selection), torch's BlockMask.from_kv_blocks.
        The q_* lists are always computed (compute_q_blocks is accepted for compatibility)."""
        if (full_kv_num_blocks is None) != (full_kv_indices is None):
            raise FlexjitError("BlockMask.from_kv_blocks: give both full_kv_num_blocks and full_kv_indices, or "
                               "neither")
        block_q, block_kv = _block_sizes(BLOCK_SIZE, "BlockMask.from_kv_blocks")
        len_q, len_kv = (-1, -1) if seq_lengths is None else (
            _size(n, "seq_lengths", "BlockMask.from_kv_blocks") for n in _pair(seq_lengths, "seq_lengths"))
        lists = [None if t is None else t.to(torch.int32).contiguous()
                 for t in (kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices)]
        bound = resolve(MASK_MOD, mask_mod).bind() if mask_mod is not None else None
        cpp = _flexjit.block_mask_from_kv_blocks(
            *(optional_view(t, name) for t, name in zip(lists, _LIST_NAMES)), block_q, block_kv, len_q, len_kv,
            bound.mod if bound is not None else None)
        return cls(cpp, bound, mask_mod)


def _ordered_to_dense(num_blocks, indices):
    """[B, H, rows] counts and [B, H, rows, cols] ascending column lists -> a [B, H, rows, cols] 0/1 mask."""
    cols = indices.shape[-1]
    listed = torch.arange(cols, device=indices.device) < num_blocks.unsqueeze(-1)
    dense = torch.zeros(indices.shape, dtype=torch.int32, device=indices.device)
    dense.scatter_add_(-1, indices.long().clamp(0, max(cols - 1, 0)), listed.to(torch.int32))
    return (dense > 0).to(torch.int32)


def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, device=None, BLOCK_SIZE=_DEFAULT_BLOCK_SIZE, _compile=False):
    """A BlockMask for `mask_mod` over [B, H, Q_LEN, KV_LEN] (B or H None: 1, broadcast), like torch's.
    `device` defaults to cuda when available, else cpu; tensors the mask_mod captures must be there."""
    device = _default_device(device)
    block_q, block_kv = _block_sizes(BLOCK_SIZE)
    B, H = _batch_or_heads(B, "B", "create_block_mask"), _batch_or_heads(H, "H", "create_block_mask")
    Q_LEN, KV_LEN = _size(Q_LEN, "Q_LEN", "create_block_mask"), _size(KV_LEN, "KV_LEN", "create_block_mask")
    bound = resolve(MASK_MOD, mask_mod).bind()
    cpp = _flexjit.create_block_mask(bound.mod, B, H, Q_LEN, KV_LEN, flexjit_device(device), block_q, block_kv)
    return BlockMask(cpp, bound, mask_mod)


def _is_score_mod(fn) -> bool:
    """torch's rule: a score_mod takes 5 arguments, a mask_mod 4."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 5


def create_mask(mod_fn, B, H, Q_LEN, KV_LEN, device=None):
    """The dense bool mask [B, H, Q_LEN, KV_LEN] of a mask_mod, or of a score_mod (kept where it is not -inf
    at score 0), like torch's create_mask. Evaluated on the CPU by flexjit's interpreter: small sizes."""
    device = _default_device(device)
    B, H = _batch_or_heads(B, "B", "create_mask"), _batch_or_heads(H, "H", "create_mask")
    Q_LEN, KV_LEN = _size(Q_LEN, "Q_LEN", "create_mask"), _size(KV_LEN, "KV_LEN", "create_mask")
    bound = resolve(SCORE_AS_MASK if _is_score_mod(mod_fn) else MASK_MOD, mod_fn)
    bound = bound.with_tensors([t.detach().cpu() for t in bound.tensors]).bind()
    cpp = _flexjit.create_block_mask_reference(bound.mod, B, H, Q_LEN, KV_LEN, _DEFAULT_BLOCK_SIZE,
                                               _DEFAULT_BLOCK_SIZE)
    dense = from_owned(cpp.to_dense())
    return dense.expand(B, H, Q_LEN, KV_LEN).to(device).contiguous()


def block_mask_view(block_mask, what="block_mask"):
    """The C++ block mask of a flexjit BlockMask (bound), None for None; an error for torch's BlockMask."""
    if block_mask is None:
        return None
    if not isinstance(block_mask, BlockMask):
        raise FlexjitError(f"{what} must be a flexjit.BlockMask (made with flexjit.create_block_mask or "
                           f"flexjit.BlockMask.from_kv_blocks), got {type(block_mask).__module__}."
                           f"{type(block_mask).__name__}")
    return block_mask._bound()


__all__ = ["BlockMask", "create_block_mask", "create_mask", "and_masks", "or_masks", "noop_mask"]
