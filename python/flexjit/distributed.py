"""flexjit.distributed: one attention over a sequence sharded across processes (context parallelism).

Every rank holds a shard of the sequence of q, k and v (the layouts: _ring.Sharding). ``ring_flex_attention``
passes the K/V shards around the ring of the process group (rank r sends to r + 1 and receives from r - 1):
at step t rank r attends its queries to the keys of rank (r - t) mod W, with the next transfer already in
flight, and merges the step's (out, LSE) into its running result exactly. The user's score_mod and mask_mod
see global q / kv indices: they are wrapped to offset the local ones, with the offsets in a captured int32
tensor, so all steps and ranks share one traced graph and one compiled kernel. Each step has its own block
mask, made from the global mask_mod for that shard pair (``create_ring_block_mask``); a step whose mask keeps
nothing (a causal mask's future shards) runs no kernel.

The backward is a second ring: K/V travel as in the forward together with the dK/dV accumulated for them,
each rank adds its share and the accumulators end on the rank the shard belongs to; dQ stays local. See
docs/distributed.md.
"""
import numbers

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import _ring
from ._cache import resolve
from ._errors import FlexjitError
from ._ring import CONTIGUOUS, KV_OFFSETS, LAYOUTS, Q_OFFSETS, ZIGZAG, Sharding, global_index
from ._trace import MASK_MOD, SCORE_MOD, _check_arity, mod_name
from .attention import _NOOP_SCORE, _Call, _forward, _last_dim_contiguous, _scale
from .block_mask import _DEFAULT_BLOCK_SIZE, _default_device, _size, create_block_mask, noop_mask

__all__ = ["ring_flex_attention", "create_ring_block_mask", "RingBlockMask", "shard_sequence", "shard_positions",
           "LAYOUTS", "CONTIGUOUS", "ZIGZAG"]

_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Tags of the two rings of the backward, which are in flight at the same time (gloo matches by tag).
_KV_TAG, _DKV_TAG = 0, 2


# ---- layouts -------------------------------------------------------------------------------------------

def _rank_and_world(group, rank, world_size, what):
    if (rank is None) != (world_size is None):
        raise FlexjitError(f"{what}: give both rank and world_size, or neither (then the process group's are used)")
    if rank is None:
        _, rank, world_size = _ring.group_info(group, what)
    for value, name in ((rank, "rank"), (world_size, "world_size")):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise FlexjitError(f"{what}: {name} must be an int, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise FlexjitError(f"{what}: rank {rank} is not in a world of {world_size}")
    return int(rank), int(world_size)


def shard_positions(seq_len, layout, rank=None, world_size=None, group=None, device=None):
    """The global positions (int64, in local order) that `rank` of `world_size` holds of a sequence of
    `seq_len` under `layout` ('contiguous' or 'zigzag'); rank and world_size default to the process group's."""
    rank, world_size = _rank_and_world(group, rank, world_size, "shard_positions")
    seq_len = _size(seq_len, "seq_len", "shard_positions")
    return Sharding(layout, seq_len, world_size, "shard_positions").positions(rank, device)


def shard_sequence(x, layout, group=None, dim=2, *, rank=None, world_size=None):
    """This rank's shard of a whole sequence `x` (sequence along `dim`, 2 for [B, H, L, D]): a view for the
    contiguous layout, a copy for zigzag. rank and world_size default to the process group's."""
    if not isinstance(x, torch.Tensor):
        raise FlexjitError(f"shard_sequence: x must be a torch.Tensor, got {type(x).__name__}")
    rank, world_size = _rank_and_world(group, rank, world_size, "shard_sequence")
    if not -x.dim() <= dim < x.dim():
        raise FlexjitError(f"shard_sequence: dim {dim} is not a dimension of a {x.dim()}-D tensor")
    sharding = Sharding(layout, x.size(dim), world_size, "shard_sequence")
    pieces = [x.narrow(dim, start, n) for start, n in sharding.pieces(rank)]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim)


# ---- the mods on global indices ------------------------------------------------------------------------

def _checked_mod(kind, fn, what):
    if not callable(fn):
        raise FlexjitError(f"{what}: {kind} must be a callable, got {type(fn).__name__}")
    _check_arity(kind, fn, mod_name(fn))
    return fn


def _global_mask_mod(mask_mod, offsets):
    """mask_mod on global indices; local ones offset by one ring step's `offsets`."""
    def mask(b, h, q_idx, kv_idx):
        return mask_mod(b, h, global_index(q_idx, offsets, Q_OFFSETS), global_index(kv_idx, offsets, KV_OFFSETS))
    mask.__name__ = mod_name(mask_mod)
    return mask


def _global_score_mod(score_mod, offsets):
    def score(s, b, h, q_idx, kv_idx):
        return score_mod(s, b, h, global_index(q_idx, offsets, Q_OFFSETS),
                         global_index(kv_idx, offsets, KV_OFFSETS))
    score.__name__ = mod_name(score_mod)
    return score


# ---- block masks per ring step -------------------------------------------------------------------------

class _RingStep:
    """Ring step t of one rank: the rank whose K/V it attends to, the offsets tensor its mods read
    ([q split, q lo, q hi, kv split, kv lo, kv hi], int32) and its block mask (None: it keeps nothing)."""

    __slots__ = ("source", "offsets", "block_mask")

    def __init__(self, source, offsets, block_mask):
        self.source, self.offsets, self.block_mask = source, offsets, block_mask


class RingBlockMask:
    """This rank's block masks of a ring attention, one per ring step: step t pairs the local queries with the
    keys of rank (rank - t) mod world_size, its mask made from the global mask_mod for that shard pair.
    Make it with create_ring_block_mask and reuse it for every call with the same mask, lengths and layout
    (every layer of a model), like a BlockMask."""

    def __init__(self, mask_mod, shape, layout, group, rank, world_size, block_size, device, steps):
        self.mask_mod, self.shape, self.layout, self.group = mask_mod, shape, layout, group
        self.rank, self.world_size, self.BLOCK_SIZE, self.device = rank, world_size, block_size, device
        self._steps = steps
        self.q_sharding = Sharding(layout, shape[2], world_size, "RingBlockMask")
        self.kv_sharding = Sharding(layout, shape[3], world_size, "RingBlockMask")
        self._ring = _ring.Ring(group, rank, world_size) if world_size > 1 else None

    @property
    def seq_lengths(self):
        """The global (Q_LEN, KV_LEN)."""
        return self.shape[2], self.shape[3]

    @property
    def local_lengths(self):
        """This rank's (query, key) shard lengths."""
        return self.q_sharding.local_length(self.rank), self.kv_sharding.local_length(self.rank)

    @property
    def sources(self):
        """The rank whose keys each step attends to."""
        return tuple(s.source for s in self._steps)

    @property
    def block_masks(self):
        """Each step's BlockMask (local indices; None for a skipped step)."""
        return tuple(s.block_mask for s in self._steps)

    @property
    def skipped_steps(self):
        """The steps whose shard pair the mask keeps nothing of: they run no kernel."""
        return tuple(t for t, s in enumerate(self._steps) if s.block_mask is None)

    def kv_shapes(self, step, k, v):
        """The K and V shapes of the shard held at `step` (step world_size: this rank's own)."""
        n = self.kv_sharding.local_length(self._steps[step % self.world_size].source)
        return (k.size(0), k.size(1), n, k.size(3)), (v.size(0), v.size(1), n, v.size(3))

    def __repr__(self):
        return (f"RingBlockMask(shape={self.shape}, layout={self.layout!r}, rank={self.rank}/{self.world_size}, "
                f"BLOCK_SIZE={self.BLOCK_SIZE}, skipped_steps={self.skipped_steps}, "
                f"mask_mod={mod_name(self.mask_mod)})")


def _visited_blocks(block_mask):
    """The number of (b, h, q block, kv block) tiles a block mask visits (a 0-d tensor on its device)."""
    total = block_mask.kv_num_blocks.sum()
    if block_mask.full_kv_num_blocks is not None:
        total = total + block_mask.full_kv_num_blocks.sum()
    return total


def create_ring_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, *, layout, group=None, device=None,
                           BLOCK_SIZE=_DEFAULT_BLOCK_SIZE):
    """This rank's RingBlockMask for `mask_mod` (global indices; None keeps everything) over a global
    [B, H, Q_LEN, KV_LEN] sharded with `layout` ('contiguous' or 'zigzag') over `group` (None: the default
    group). B / H may be None (broadcast), as in create_block_mask; `device` defaults to CUDA when available.
    On a GPU each step's mask is decided per block from the mod's interval form, never densely."""
    what = "create_ring_block_mask"
    group, rank, world = _ring.group_info(group, what)
    Q_LEN, KV_LEN = _size(Q_LEN, "Q_LEN", what), _size(KV_LEN, "KV_LEN", what)
    q_sharding, kv_sharding = Sharding(layout, Q_LEN, world, what), Sharding(layout, KV_LEN, world, what)
    mask_mod = noop_mask if mask_mod is None else _checked_mod(MASK_MOD, mask_mod, what)
    device = _default_device(device)
    steps, masks = [], []
    for t in range(world):
        source = (rank - t) % world
        offsets = torch.tensor(q_sharding.offsets(rank) + kv_sharding.offsets(source), dtype=torch.int32,
                               device=device)
        mask = create_block_mask(_global_mask_mod(mask_mod, offsets), B, H, q_sharding.local_length(rank),
                                 kv_sharding.local_length(source), device=device, BLOCK_SIZE=BLOCK_SIZE)
        steps.append(_RingStep(source, offsets, mask))
        masks.append(mask)
    # One host read for all steps (on a GPU each mask's construction synchronises anyway).
    for step, visited in zip(steps, torch.stack([_visited_blocks(m) for m in masks]).tolist()):
        if visited == 0:
            step.block_mask = None
    shape = (masks[0].shape[0], masks[0].shape[1], Q_LEN, KV_LEN)
    return RingBlockMask(mask_mod, shape, layout, group, rank, world, masks[0].BLOCK_SIZE, device, steps)


# ---- one call ------------------------------------------------------------------------------------------

class _RingCall:
    """What the forward and the backward of one call share: the block masks, the scale and the user's
    score_mod traced once on global indices. `call(t)` binds step t's offsets tensor in place of step 0's."""

    def __init__(self, plan, score, scale):
        self.plan, self.score, self.scale = plan, score, scale
        self._placeholder = plan._steps[0].offsets

    @classmethod
    def make(cls, plan, score_mod, scale):
        if score_mod is None:
            return cls(plan, None, scale)
        score_mod = _checked_mod(SCORE_MOD, score_mod, "ring_flex_attention")
        return cls(plan, resolve(SCORE_MOD, _global_score_mod(score_mod, plan._steps[0].offsets)), scale)

    def user_tensors(self):
        """The tensors the user's score_mod captures (the offsets left out), in capture order."""
        return [] if self.score is None else [t for t in self.score.tensors if t is not self._placeholder]

    def with_user_tensors(self, tensors):
        if self.score is None:
            return self
        it = iter(tensors)
        bound = self.score.with_tensors([t if t is self._placeholder else next(it) for t in self.score.tensors])
        return _RingCall(self.plan, bound, self.scale)

    def call(self, t):
        step = self.plan._steps[t]
        if self.score is None:
            return _Call(_NOOP_SCORE, step.block_mask, self.scale)
        bound = self.score.with_tensors([step.offsets if x is self._placeholder else x for x in self.score.tensors])
        return _Call(bound, step.block_mask, self.scale)

    def gradient_tensors(self):
        return self.call(0).gradient_tensors()


def _compute(t):
    """The dtype a step computes in: the CPU reference is run in float32 (partial outputs are merged, and
    rounding each to float16 / bfloat16 would add an error the single call does not have); GPUs run the
    kernels in the inputs' dtype."""
    return t.float() if t.device.type == "cpu" else t


class _CpuSaved:
    """What the CPU path's backward needs beyond out and lse (see _ring._reference_step_backward): every
    step's partial (out, lse), None for skipped steps, and the merged output before its rounding to the
    query's dtype (Delta = rowsum(dout * out) from it, as the single call's reference takes it in float64)."""

    __slots__ = ("partials", "out")

    def __init__(self, partials, out):
        self.partials, self.out = partials, out


def _ring_forward(rc, q, k, v, training=False):
    """(out in q's dtype, lse float32, a _CpuSaved when training on the CPU, else None)."""
    plan = rc.plan
    keep_partials = training and q.device.type == "cpu"
    partials = [None] * plan.world_size
    qc = _compute(q)
    out = lse = None
    k_cur, v_cur = k, v
    for t, step in enumerate(plan._steps):
        transfer = None
        if t + 1 < plan.world_size:   # the next step's K/V travel while this step computes
            transfer = plan._ring.shift([k_cur, v_cur], plan.kv_shapes(t + 1, k, v), tag=_KV_TAG)
        if step.block_mask is not None:
            part_out, part_lse, _, _ = _forward(rc.call(t), qc, _compute(k_cur), _compute(v_cur), training=training)
            if keep_partials:
                partials[t] = (part_out, part_lse)
            out, lse = _ring.merge(out, lse, part_out, part_lse)
        if transfer is not None:
            k_cur, v_cur = transfer.wait()
    if out is None:
        # The mask keeps no key of any shard for these rows: fully masked, O = 0 and LSE = -inf.
        out = torch.zeros(q.shape[:3] + (v.size(3),), dtype=torch.float32, device=q.device)
        lse = torch.full(q.shape[:3], float("-inf"), dtype=torch.float32, device=q.device)
    return out.to(q.dtype), lse, _CpuSaved(partials, out) if keep_partials else None


def _ring_backward(rc, q, k, v, out, lse, dout, cpu_saved):
    """dq, dk, dv (float32) and the captured tensors' gradients (float32, this rank's share)."""
    plan = rc.plan
    partials = cpu_saved.partials if cpu_saved is not None else [None] * plan.world_size
    out = cpu_saved.out if cpu_saved is not None else out
    ring = plan._ring
    qc, dout = _compute(q), _compute(dout)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    grads = [torch.zeros(t.shape, dtype=torch.float32, device=q.device) for t in rc.gradient_tensors()]
    k_cur, v_cur = k, v
    dkv = None
    for t, step in enumerate(plan._steps):
        kv = None
        if t + 1 < plan.world_size:
            kv = ring.shift([k_cur, v_cur], plan.kv_shapes(t + 1, k, v), tag=_KV_TAG)
        part = None
        if step.block_mask is not None:
            part = _ring.step_backward(rc.call(t), qc, _compute(k_cur), _compute(v_cur), out, lse, dout,
                                       partials[t])
            dq += part.dq
            for g, c in zip(grads, part.captures):
                g += c
        # The dK / dV accumulated so far for the shard held now: the previous rank's, which held it a step ago.
        if dkv is None:
            dk_acc = torch.zeros(k_cur.shape, dtype=torch.float32, device=k.device)
            dv_acc = torch.zeros(v_cur.shape, dtype=torch.float32, device=v.device)
        else:
            dk_acc, dv_acc = dkv.wait()
        if part is not None:
            dk_acc += part.dk
            dv_acc += part.dv
        if kv is not None:
            k_cur, v_cur = kv.wait()
        if ring is not None:
            # On to the next rank, which holds that shard next; after the last step this brings our own home.
            dkv = ring.shift([dk_acc, dv_acc], plan.kv_shapes(t + 1, k, v), dtype=torch.float32, tag=_DKV_TAG)
    dk, dv = dkv.wait() if ring is not None else (dk_acc, dv_acc)
    return dq, dk, dv, grads


class _RingAttention(torch.autograd.Function):
    """Inputs: the local q, k, v, the _RingCall, whether to all-reduce the captured tensors' gradients, then
    the captured tensors that receive gradients. Outputs: the local out and lse (a gradient reaching the lse
    is an error in backward, as for flex_attention)."""

    @staticmethod
    def forward(ctx, q, k, v, rc, all_reduce, *grad_tensors):
        out, lse, cpu_saved = _ring_forward(rc, q, k, v, training=True)
        ctx.rc, ctx.all_reduce, ctx.cpu_saved = rc, all_reduce, cpu_saved
        ctx.save_for_backward(q, k, v, out, lse, *rc.user_tensors())
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse):
        if dlse is not None and bool((dlse != 0).any()):
            raise FlexjitError("ring_flex_attention: gradients through the returned lse are not supported; use "
                               "the lse without gradient (lse.detach()) or compute the loss from the output")
        q, k, v, out, lse, *user = ctx.saved_tensors
        rc = ctx.rc.with_user_tensors(user)
        # Every rank takes part in the backward's ring, so a rank whose output got no gradient sends zeros
        # rather than leaving its neighbours waiting.
        dout = torch.zeros_like(out) if dout is None else _last_dim_contiguous(dout.to(q.dtype))
        dq, dk, dv, grads = _ring_backward(rc, q, k, v, out, lse, dout, ctx.cpu_saved)
        ctx.cpu_saved = None
        if ctx.all_reduce:
            for g in grads:
                dist.all_reduce(g, group=rc.plan.group)
        grad_tensors = rc.gradient_tensors()
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None,
                *(g.to(t.dtype) for g, t in zip(grads, grad_tensors)))


_WHAT = "ring_flex_attention"
_LAYOUT_NAMES = {"query": "[B, Hq, L_local, D]", "key": "[B, Hkv, L_local, D]", "value": "[B, Hkv, L_local, Dv]"}


def _check_shards(q, k, v, enable_gqa):
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if not isinstance(t, torch.Tensor):
            raise FlexjitError(f"{_WHAT}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise FlexjitError(f"{_WHAT}: {name} must be this rank's 4-D shard {_LAYOUT_NAMES[name]}, got shape "
                               f"{list(t.shape)}")
        if t.dtype not in _INPUT_DTYPES:
            raise FlexjitError(f"{_WHAT}: {name} has dtype {t.dtype}; use float16 or bfloat16 (or float32 on the "
                               f"CPU)")
        if t.device != q.device:
            raise FlexjitError(f"{_WHAT}: query is on {q.device} but {name} on {t.device}")
    if k.size(2) != v.size(2):
        raise FlexjitError(f"{_WHAT}: key holds {k.size(2)} positions but value {v.size(2)}")
    if not enable_gqa and q.size(1) != k.size(1):
        raise FlexjitError(f"{_WHAT}: query has {q.size(1)} heads but key/value have {k.size(1)}; pass "
                           f"enable_gqa=True for grouped-query attention")


def _plan_for(q, k, block_mask, mask_mod, layout, group, seq_lengths):
    if block_mask is None:
        if layout is None:
            raise FlexjitError(f"{_WHAT}: say how the sequence is sharded: layout='contiguous' or layout='zigzag' "
                               f"(or pass a block_mask made with create_ring_block_mask)")
        group, _, world = _ring.group_info(group, _WHAT)
        if seq_lengths is None:
            seq_lengths = (q.size(2) * world, k.size(2) * world)
        elif not isinstance(seq_lengths, (tuple, list)) or len(seq_lengths) != 2:
            raise FlexjitError(f"{_WHAT}: seq_lengths must be the global (Q_LEN, KV_LEN), got {seq_lengths!r}")
        return create_ring_block_mask(mask_mod, q.size(0), q.size(1), *seq_lengths, layout=layout, group=group,
                                      device=q.device)
    if not isinstance(block_mask, RingBlockMask):
        raise FlexjitError(f"{_WHAT}: block_mask must be a RingBlockMask made with "
                           f"flexjit.distributed.create_ring_block_mask, got {type(block_mask).__module__}."
                           f"{type(block_mask).__name__} (a BlockMask describes one process's whole sequence)")
    if mask_mod is not None or seq_lengths is not None:
        raise FlexjitError(f"{_WHAT}: the block_mask already holds the mask_mod and the lengths; pass mask_mod= "
                           f"and seq_lengths= only without a block_mask")
    if layout is not None and layout != block_mask.layout:
        raise FlexjitError(f"{_WHAT}: layout={layout!r} but the block_mask was made for layout "
                           f"{block_mask.layout!r}")
    if group is not None and group is not block_mask.group:
        raise FlexjitError(f"{_WHAT}: the block_mask was made for another process group; make it with "
                           f"group= the group you pass here")
    return block_mask


def _device_index(device):
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _check_plan(plan, q, k):
    if _device_index(plan.device) != _device_index(q.device):
        raise FlexjitError(f"{_WHAT}: the block_mask is on {plan.device} but the inputs on {q.device}")
    lengths = plan.local_lengths
    for t, name, n, what, total in ((q, "query", lengths[0], "Q_LEN", plan.shape[2]),
                                    (k, "key", lengths[1], "KV_LEN", plan.shape[3])):
        if t.size(2) != n:
            raise FlexjitError(f"{_WHAT}: {name} holds {t.size(2)} positions on rank {plan.rank}, but layout "
                               f"{plan.layout!r} of {what} {total} over {plan.world_size} ranks gives it {n}; cut "
                               f"the sequence with flexjit.distributed.shard_sequence (and pass seq_lengths= when "
                               f"the contiguous shards are uneven)")
    _ring.check_backend(plan.group, q.device, _WHAT)


def ring_flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None, enable_gqa=False,
                        return_lse=False, *, mask_mod=None, layout=None, group=None, seq_lengths=None,
                        all_reduce_capture_grads=False):
    """flex_attention over a sequence sharded across the ranks of `group` (None: the default group).

    query [B, Hq, Lq_local, D], key [B, Hkv, Lkv_local, D], value [B, Hkv, Lkv_local, Dv]: this rank's shards,
    cut with `layout` ('contiguous' or 'zigzag', see shard_sequence). score_mod and mask_mod are the ones a
    single flex_attention over the whole sequence takes: they see global indices. Give the mask either as
    mask_mod= with layout= (seq_lengths=: the global (Q_LEN, KV_LEN), by default world_size times the local
    lengths) or as block_mask= a RingBlockMask from create_ring_block_mask (reusable across layers).

    Returns this rank's rows of the output (query's dtype), with return_lse=True also their LSE (float32,
    natural log; a fully masked row has out 0 and lse -inf). Autograd: dq, dk, dv of the local shards (dk / dv
    gathered from every rank's queries) and the gradients of captured tensors that require one: this rank's
    share (its queries' part; sum it over the group, as a data-parallel gradient reduction over the
    context-parallel ranks does), or the full gradient on every rank with all_reduce_capture_grads=True.
    Every rank of the group must make the same calls, forward and backward (they are collective)."""
    _check_shards(query, key, value, enable_gqa)
    plan = _plan_for(query, key, block_mask, mask_mod, layout, group, seq_lengths)
    _check_plan(plan, query, key)
    rc = _RingCall.make(plan, score_mod, _scale(scale))
    grad_enabled = torch.is_grad_enabled()
    grad_tensors = rc.gradient_tensors() if grad_enabled else []
    if grad_enabled and (grad_tensors or query.requires_grad or key.requires_grad or value.requires_grad):
        out, lse = _RingAttention.apply(query, key, value, rc, bool(all_reduce_capture_grads), *grad_tensors)
    else:
        out, lse, _ = _ring_forward(rc, query, key, value)
    return (out, lse) if return_lse else out
