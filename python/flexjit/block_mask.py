"""Block masks and mask helpers with torch's names and semantics.

``create_block_mask`` traces the mask_mod and builds the block lists in C++ (on a GPU a generated kernel
decides every block pair from the mod's interval form: the dense mask is never materialised); the lists are
exposed as torch tensors over flexjit's memory. Every other mask (from_kv_blocks, slices, crops, torch's
own BlockMask) is built by torch operations on its device (_block_lists.py) and handed to C++ without a
copy (BlockMask::borrowLists). Either way the attributes are broadcast to [B, H, ...] like torch's.
"""
import inspect
import numbers
import weakref

import torch

from . import _flexjit, _hooks
from ._cache import resolve
from ._errors import FlexjitError
from ._sym import SymValue, constant
from ._block_lists import check_kv_lists, lists_from_kv
from ._tensors import contiguous_view, flexjit_device, from_owned, stream_handle
from ._trace import MASK_MOD, SCORE_AS_MASK

try:
    from torch.nn.attention.flex_attention import BlockMask as _TorchBlockMask
except ImportError:   # torch without FlexAttention
    _TorchBlockMask = None
try:
    from torch.nn.attention.flex_attention import _sliced_mask_mod_error as _torch_sliced_mask_mod
except ImportError:   # torch before 2.10 kept a sliced mask's mask_mod
    _torch_sliced_mask_mod = None

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


def _pair(value, name: str, what: str = "BlockMask.from_kv_blocks"):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise FlexjitError(f"{what}: {name} must be a (Q_LEN, KV_LEN) pair, got {value!r}")
    return value


def _default_device(device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class BlockMask:
    """Which (q block, kv block) tiles attention visits: partial blocks (kv_num_blocks / kv_indices, where
    mask_mod is evaluated per element), full blocks (full_kv_*: every position kept) and the transposed
    lists q_* for the backward pass, as in torch. Make one with create_block_mask or from_kv_blocks, or pass
    torch's BlockMask (converted on use).

    The lists are torch tensors in flexjit's layout (int32, [B, H, ...], a stored B or H of 1 broadcast);
    the attributes of the same names are views broadcast to [B, H, ...] like torch's. ``mask_mod`` and
    ``seq_lengths`` may be assigned, as with torch's BlockMask."""

    def __init__(self, lists, sizes, mask, mask_mod, cpp=None):
        self._stored = tuple(lists)   # the eight lists, in _LIST_NAMES order
        self._sizes = tuple(int(n) for n in sizes)   # (B, H, Q_LEN, KV_LEN, Q_BLOCK, KV_BLOCK)
        self._cpp = cpp               # the C++ mask over the same memory (made lazily from the lists)
        self._set_mask(mask, mask_mod)

    def _set_mask(self, mask, mask_mod):
        self._mask = mask             # BoundMod of the mask_mod (its tensors), or None: partial blocks kept
        self._mask_mod = mask_mod if mask_mod is not None else noop_mask
        # Plain attributes, read by the torch.compile path (flexjit's custom op takes ids and tensors).
        self._mask_hook = _hooks.optional_id(mask.traced if mask is not None else None)
        self._mask_tensors = list(mask.tensors) if mask is not None else []

    # torch's attributes.
    @property
    def mask_mod(self):
        return self._mask_mod

    @mask_mod.setter
    def mask_mod(self, mask_mod):
        if mask_mod is _sliced_mask_mod:
            bound = None
        else:
            bound = resolve(MASK_MOD, mask_mod if mask_mod is not None else noop_mask)
        self._set_mask(bound, mask_mod)
        self._cpp = None

    @property
    def shape(self):
        return self._sizes[:4]

    @property
    def seq_lengths(self):
        return self._sizes[2:4]

    @seq_lengths.setter
    def seq_lengths(self, lengths):
        len_q, len_kv = (_size(n, "seq_lengths", "BlockMask.seq_lengths") for n in _pair(lengths, "seq_lengths", "BlockMask.seq_lengths"))
        block_q, block_kv = self.BLOCK_SIZE
        if _blocks(len_q, block_q) != self._stored[0].shape[2] or _blocks(len_kv, block_kv) != self._stored[4].shape[2]:
            raise FlexjitError(f"BlockMask.seq_lengths: ({len_q}, {len_kv}) needs {_blocks(len_q, block_q)} x "
                               f"{_blocks(len_kv, block_kv)} blocks of {block_q} x {block_kv}, the lists have "
                               f"{self._stored[0].shape[2]} x {self._stored[4].shape[2]}; use _adjust(q_len, "
                               f"kv_len) to crop a mask to shorter lengths")
        self._sizes = (*self._sizes[:2], len_q, len_kv, *self._sizes[4:])
        self._cpp = None

    @property
    def BLOCK_SIZE(self):
        return self._sizes[4:6]

    @property
    def device(self) -> torch.device:
        return self._stored[0].device

    def _list(self, name):
        t = self._stored[_LIST_NAMES.index(name)]
        return t.expand(*self._sizes[:2], *t.shape[2:])

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
        """Percentage of the [B, H, Q_LEN, KV_LEN] positions outside the visited blocks, torch's formula: 100 *
        (1 - visited blocks * Q_BLOCK * KV_BLOCK / numel()). A block that overhangs the sequence end counts
        whole, so with lengths that are not multiples of the block size this can be negative, as in torch."""
        b, h = self._sizes[:2]
        visited = 0
        for counts in (self._stored[0], self._stored[2]):
            visited += int(counts.sum()) * (b // counts.shape[0]) * (h // counts.shape[1])
        block_q, block_kv = self.BLOCK_SIZE
        return 100.0 * (1.0 - visited * block_q * block_kv / self.numel())

    def to_dense(self) -> torch.Tensor:
        """The block-level mask [B, H, num_q_blocks, num_kv_blocks] (int32, 1 where a block is visited), like
        torch's BlockMask.to_dense(); create_mask gives the element-level mask."""
        dense = _ordered_to_dense(self.kv_num_blocks, self.kv_indices)
        return dense | _ordered_to_dense(self.full_kv_num_blocks, self.full_kv_indices)

    def to_string(self, max_width: int = 64, max_heads: int = 4) -> str:
        """A picture of each (b, h) mask: full blocks, partial blocks, empty."""
        return self._bound().to_string(max_width, max_heads)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return (f"BlockMask(shape={self.shape}, BLOCK_SIZE={self.BLOCK_SIZE}, sparsity={self.sparsity():.2f}%, "
                f"device={self.device}, mask_mod={getattr(self.mask_mod, '__name__', self.mask_mod)})")

    def to(self, device) -> "BlockMask":
        """A copy of the block lists on `device` (tensors the mask_mod captured are not moved)."""
        device = torch.device(device)
        flexjit_device(device)   # cpu or cuda
        return BlockMask([t.to(device) for t in self._stored], self._sizes, self._mask, self._mask_mod)

    def as_tuple(self):
        return (*self.seq_lengths, *(self._list(n) for n in _LIST_NAMES), *self.BLOCK_SIZE, self.mask_mod)

    def __getitem__(self, index) -> "BlockMask":
        """The mask of some batches, heads and q blocks, torch's BlockMask.__getitem__: ``mask[0]``,
        ``mask[:, 1:3]``, ``mask[0, 1, torch.tensor([2])]``. An int keeps its dimension (of size 1). As in torch
        the result's mask_mod is reset (its b, h and q_idx no longer mean the original ones): assign one,
        e.g. from the original mask's mask_mod with your offsets, before using partial blocks. Selecting q
        blocks makes Q_LEN the selected blocks' length; assign seq_lengths to change it (decoding: (1, KV_LEN))."""
        items = index if isinstance(index, tuple) else (index,)
        if len(items) > 3:
            raise FlexjitError(f"BlockMask[...]: index batches, heads and q blocks (at most 3 indices), got "
                               f"{len(items)}")
        items = (*items, slice(None), slice(None), slice(None))[:3]
        logical = (*self._sizes[:2], self._stored[0].shape[2])
        new_sizes, kv = [], [self._stored[i] for i in range(4)]
        for dim, (item, size) in enumerate(zip(items, logical)):
            picked = _picked(item, size, dim)
            new_sizes.append(size if picked is None else len(picked))
            # A stored dim of 1 is the same for every batch (head): it stays 1, broadcast to the new size.
            if picked is not None and (dim == 2 or kv[0].shape[dim] != 1):
                kv = [t.index_select(dim, picked.to(t.device)) for t in kv]
        if 0 in new_sizes:
            raise FlexjitError(f"BlockMask[{index!r}]: the selection is empty")
        len_q = self._sizes[2] if _whole(items[2]) else new_sizes[2] * self.BLOCK_SIZE[0]
        return _from_kv(*kv, self.BLOCK_SIZE, (len_q, self._sizes[3]), None, _sliced_mask_mod,
                        batch_heads=new_sizes[:2], what="BlockMask[...]")

    def _adjust(self, new_q_len: int, new_kv_len: int) -> "BlockMask":
        """The mask cropped to its upper-left [new_q_len, new_kv_len] corner, torch's BlockMask._adjust (for a
        mask made for longer sequences). Unlike torch's, the result's seq_lengths are exactly the new lengths
        (torch rounds them up to whole blocks, which its flex_attention then refuses)."""
        len_q, len_kv = (_size(n, name, "BlockMask._adjust") for n, name in ((new_q_len, "new_q_len"),
                                                                            (new_kv_len, "new_kv_len")))
        if len_q > self._sizes[2] or len_kv > self._sizes[3]:
            raise FlexjitError(f"BlockMask._adjust: crops to shorter lengths only; the mask is for "
                               f"{self.seq_lengths}, got ({len_q}, {len_kv}): create a new mask instead")
        rows = _blocks(len_q, self.BLOCK_SIZE[0])
        kv = [t[:, :, :rows] for t in self._stored[:4]]
        return _from_kv(*kv, self.BLOCK_SIZE, (len_q, len_kv), self._mask, self._mask_mod,
                        batch_heads=self._sizes[:2], what="BlockMask._adjust", check=False)

    def _bound(self):
        """The C++ block mask with its mask_mod's captures pointed at this mask's tensors."""
        check_not_sliced(self._mask_mod)
        if self._cpp is None:
            self._cpp = borrow_lists(self._stored, self._sizes, self._mask.mod if self._mask is not None else None)
        if self._mask is not None:
            self._mask.bind()
        return self._cpp

    @classmethod
    def from_kv_blocks(cls, kv_num_blocks, kv_indices, full_kv_num_blocks=None, full_kv_indices=None,
                       BLOCK_SIZE=_DEFAULT_BLOCK_SIZE, mask_mod=None, seq_lengths=None, compute_q_blocks=True):
        """A block mask from chosen kv blocks (e.g. a top-k selection), torch's BlockMask.from_kv_blocks.
        kv_indices is [B, H, num_q_blocks, k] for any k (k < num_kv_blocks: the NSA top-k layout); leading
        dims may be left out. Lengths default to torch's (whole blocks: k * KV_BLOCK for the kv length). The
        q_* lists are always computed (compute_q_blocks is accepted for compatibility). Built with torch
        operations on the lists' device: on a GPU nothing waits for the host, and entries outside the mask
        (indices out of range, past a row's count, repeated) are ignored; on the CPU they are errors."""
        what = "BlockMask.from_kv_blocks"
        if (full_kv_num_blocks is None) != (full_kv_indices is None):
            raise FlexjitError(f"{what}: give both full_kv_num_blocks and full_kv_indices, or neither")
        block_q, block_kv = _block_sizes(BLOCK_SIZE, what)
        if seq_lengths is not None:
            seq_lengths = tuple(_size(n, "seq_lengths", what) for n in _pair(seq_lengths, "seq_lengths"))
        bound = resolve(MASK_MOD, mask_mod) if mask_mod is not None else None
        return _from_kv(kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices, (block_q, block_kv),
                        seq_lengths, bound, mask_mod, what=what)


def _blocks(length: int, block: int) -> int:
    return (length + block - 1) // block


def _sliced_mask_mod(b, h, q_idx, kv_idx):
    """The mask_mod of a sliced BlockMask (reset, as in torch): calling it is an error."""
    raise FlexjitError("the mask_mod of a sliced BlockMask (block_mask[...]) is reset, as in torch: assign "
                       "block_mask.mask_mod from the original mask's mask_mod, with your offsets")


def _whole(item) -> bool:
    return isinstance(item, slice) and item == slice(None)


def _picked(item, size: int, dim: int):
    """The original positions an index selects in a dimension of `size`, as an int64 tensor; None for the
    whole dimension."""
    if _whole(item):
        return None
    if _is_int(item):
        if not -size <= item < size:
            raise FlexjitError(f"BlockMask[...]: index {item} is out of range for dim {dim} of size {size}")
        return torch.tensor([item % size])
    if isinstance(item, slice):
        return torch.arange(size)[item]
    try:
        picked = torch.arange(size)[torch.as_tensor(item).cpu()]
    except (IndexError, TypeError, RuntimeError, ValueError) as e:
        raise FlexjitError(f"BlockMask[...]: cannot index dim {dim} (size {size}) with {item!r}: {e}") from None
    return picked.reshape(-1)


def _as_lists(t, name: str, what: str, rank: int):
    """A user list as int32 of `rank` dims (missing leading dims added)."""
    if not isinstance(t, torch.Tensor):
        raise FlexjitError(f"{what}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise FlexjitError(f"{what}: {name} must hold integers, got {t.dtype}")
    if not rank - 2 <= t.dim() <= rank:
        raise FlexjitError(f"{what}: {name} must have {rank} dims [B, H, ...] (or fewer leading ones), got shape "
                           f"{list(t.shape)}")
    while t.dim() < rank:
        t = t.unsqueeze(0)
    return t.to(torch.int32)


def _from_kv(kv_num, kv_idx, full_num, full_idx, block, seq_lengths, mask, mask_mod, batch_heads=None,
             what="BlockMask.from_kv_blocks", check=True) -> BlockMask:
    """A BlockMask from kv lists in torch's layout (see _block_lists.lists_from_kv). `seq_lengths` None:
    torch's whole-block default. `batch_heads`: the B and H the mask describes when the lists broadcast (a
    stored dim of 1), else the lists' own. `check`: validate CPU lists (internal crops pass False: they drop
    blocks past the new end on purpose)."""
    kv_num, kv_idx = _as_lists(kv_num, "kv_num_blocks", what, 3), _as_lists(kv_idx, "kv_indices", what, 4)
    if full_num is not None:
        full_num = _as_lists(full_num, "full_kv_num_blocks", what, 3)
        full_idx = _as_lists(full_idx, "full_kv_indices", what, 4)
    for num, idx, name in ((kv_num, kv_idx, "kv"), (full_num, full_idx, "full_kv")):
        if num is not None and (idx.shape[:3] != num.shape or idx.device != kv_num.device or
                                num.shape != kv_num.shape):
            raise FlexjitError(f"{what}: {name}_indices {list(idx.shape)} must be [*{name}_num_blocks.shape, k] with "
                               f"{name}_num_blocks {list(num.shape)} of kv_num_blocks' shape {list(kv_num.shape)}, "
                               f"all on one device")
    block_q, block_kv = block
    rows = kv_num.shape[2]
    if seq_lengths is None:
        seq_lengths = (rows * block_q, kv_idx.shape[3] * block_kv)
    len_q, len_kv = seq_lengths
    if _blocks(len_q, block_q) != rows:
        raise FlexjitError(f"{what}: Q_LEN={len_q} with Q_BLOCK={block_q} needs {_blocks(len_q, block_q)} q-block rows, "
                           f"the lists have {rows}")
    n_kv = _blocks(len_kv, block_kv)
    if check and kv_num.device.type == "cpu":
        check_kv_lists(kv_num, kv_idx, full_num, full_idx, n_kv, what)
    batch, heads = batch_heads if batch_heads is not None else kv_num.shape[:2]
    kv_num, kv_idx, full_num, full_idx = _unbroadcast([kv_num, kv_idx, full_num, full_idx])
    lists = lists_from_kv(kv_num, kv_idx, full_num, full_idx, n_kv)
    return BlockMask(lists, (batch, heads, len_q, len_kv, block_q, block_kv), mask, mask_mod)


def _unbroadcast(lists):
    """A batch or head dim that every list repeats (stride 0: an expanded view, e.g. our own broadcast
    attributes) is kept once, so the new mask stays broadcast instead of materialising copies."""
    for dim in (0, 1):
        if lists[0].shape[dim] > 1 and all(t is None or t.stride(dim) == 0 for t in lists):
            lists = [None if t is None else t.narrow(dim, 0, 1) for t in lists]
    return lists


def borrow_lists(lists, sizes, mask_mod_cpp):
    """A C++ BlockMask over torch tensors (kept alive with it), neither copied nor read."""
    lists = tuple(t.contiguous() for t in lists)
    views = [contiguous_view(t, name) for t, name in zip(lists, _LIST_NAMES)]
    return _flexjit.block_mask_borrow_lists(views, lists, *sizes, mask_mod_cpp)


def _ordered_to_dense(num_blocks, indices):
    """[B, H, rows] counts and [B, H, rows, cols] ascending column lists -> a [B, H, rows, cols] 0/1 mask."""
    cols = indices.shape[-1]
    listed = torch.arange(cols, device=indices.device) < num_blocks.unsqueeze(-1)
    dense = torch.zeros(indices.shape, dtype=torch.int32, device=indices.device)
    dense.scatter_add_(-1, indices.long().clamp(0, max(cols - 1, 0)), listed.to(torch.int32))
    return (dense > 0).to(torch.int32)


def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, device=None, BLOCK_SIZE=_DEFAULT_BLOCK_SIZE, _compile=False):
    """A BlockMask for `mask_mod` over [B, H, Q_LEN, KV_LEN] (B or H None: 1, broadcast), like torch's.
    `device` defaults to cuda when available, else cpu; tensors the mask_mod captures must be there. On a
    GPU the lists are built on torch's current stream and the call does not wait for them (as torch's),
    so work enqueued after it on that stream sees the finished mask."""
    device = _default_device(device)
    block_q, block_kv = _block_sizes(BLOCK_SIZE)
    B, H = _batch_or_heads(B, "B", "create_block_mask"), _batch_or_heads(H, "H", "create_block_mask")
    Q_LEN, KV_LEN = _size(Q_LEN, "Q_LEN", "create_block_mask"), _size(KV_LEN, "KV_LEN", "create_block_mask")
    bound = resolve(MASK_MOD, mask_mod).bind()
    cpp = _flexjit.create_block_mask(bound.mod, B, H, Q_LEN, KV_LEN, flexjit_device(device), block_q, block_kv,
                                     stream=stream_handle(device), wait=False)
    lists = [from_owned(getattr(cpp, name)) for name in _LIST_NAMES]
    return BlockMask(lists, (B, H, Q_LEN, KV_LEN, block_q, block_kv), bound, mask_mod, cpp)


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


def is_torch_block_mask(block_mask) -> bool:
    return _TorchBlockMask is not None and isinstance(block_mask, _TorchBlockMask)


def check_block_mask_type(block_mask, what="block_mask"):
    if block_mask is not None and not isinstance(block_mask, BlockMask) and not is_torch_block_mask(block_mask):
        raise FlexjitError(f"{what} must be a flexjit.BlockMask (flexjit.create_block_mask, "
                           f"flexjit.BlockMask.from_kv_blocks) or torch's BlockMask, got "
                           f"{type(block_mask).__module__}.{type(block_mask).__name__}")


def torch_mask_kv_lists(block_mask):
    """The kv lists of torch's BlockMask as from_kv_blocks takes them, and its block sizes and lengths."""
    return ((block_mask.kv_num_blocks, block_mask.kv_indices, block_mask.full_kv_num_blocks,
             block_mask.full_kv_indices), tuple(block_mask.BLOCK_SIZE), tuple(block_mask.seq_lengths))


_WHAT_TORCH = "block_mask (torch's BlockMask)"
# torch's BlockMask -> (what it was converted from, flexjit's BlockMask): converted once per state.
_converted = weakref.WeakKeyDictionary()


def _torch_mask_state(block_mask) -> tuple:
    lists, block, lengths = torch_mask_kv_lists(block_mask)
    return (tuple(None if t is None else (id(t), t._version) for t in lists), block, lengths,
            id(block_mask.mask_mod))


def from_torch_block_mask(block_mask) -> BlockMask:
    """flexjit's BlockMask of torch's: its kv lists converted (the q lists recomputed), its BLOCK_SIZE,
    seq_lengths and mask_mod kept. Cached on the torch mask until its lists or attributes change."""
    try:
        state = _torch_mask_state(block_mask)
    except RuntimeError:   # inference tensors have no version counter: converted on every use
        state = None
    cached = _converted.get(block_mask)
    if state is not None and cached is not None and cached[0] == state:
        return cached[1]
    (kv_num, kv_idx, full_num, full_idx), block, lengths = torch_mask_kv_lists(block_mask)
    mask_mod = block_mask.mask_mod
    if mask_mod is _torch_sliced_mask_mod:
        mask_mod, bound = _sliced_mask_mod, None
    else:
        bound = resolve(MASK_MOD, mask_mod)
    ours = _from_kv(kv_num, kv_idx, full_num, full_idx, _block_sizes(block, _WHAT_TORCH),
                    tuple(_size(n, "seq_lengths", _WHAT_TORCH) for n in lengths), bound, mask_mod, what=_WHAT_TORCH)
    if state is not None:
        _converted[block_mask] = (state, ours)
    return ours


def as_flexjit_mask(block_mask, what="block_mask"):
    """flexjit's BlockMask for a block_mask argument: ours as it is, torch's converted, None for None."""
    check_block_mask_type(block_mask, what)
    return from_torch_block_mask(block_mask) if is_torch_block_mask(block_mask) else block_mask


def check_not_sliced(mask_mod):
    if mask_mod is _sliced_mask_mod or (_torch_sliced_mask_mod is not None and mask_mod is _torch_sliced_mask_mod):
        raise FlexjitError("block_mask: this mask was sliced (block_mask[...]), which resets its mask_mod as in "
                           "torch; assign block_mask.mask_mod (e.g. the original mask's mask_mod, with your "
                           "offsets) before using it")


def op_mask_arguments(block_mask):
    """A flexjit BlockMask (or None) as the custom op takes it: (lists, sizes, mask_mod hook id, the tensors
    the mask_mod reads). Plain attribute reads only, so that torch.compile traces it too."""
    if block_mask is None:
        return [], [], _hooks.NONE, []
    check_not_sliced(block_mask._mask_mod)
    return list(block_mask._stored), list(block_mask._sizes), block_mask._mask_hook, list(block_mask._mask_tensors)


def block_mask_view(block_mask, what="block_mask"):
    """The C++ block mask (bound) of flexjit's or torch's BlockMask, None for None."""
    block_mask = as_flexjit_mask(block_mask, what)
    return None if block_mask is None else block_mask._bound()


__all__ = ["BlockMask", "create_block_mask", "create_mask", "and_masks", "or_masks", "noop_mask"]
