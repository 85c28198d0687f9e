"""The machinery of context parallelism (flexjit.distributed): how a sequence is cut over ranks, the ring of
shards over torch.distributed point-to-point ops, the exact merge of partial attention results and one ring
step's backward.

A rank's local rows are global rows at known offsets. Every layout here gives a rank at most two contiguous
pieces of the sequence, so a local index i maps to the global one as

    global(i) = i + (lo if i < split else hi)

with three integers per sequence. The ring's mods read them from a small int32 tensor (captured, not Python
constants), so every ring step and every rank runs the same traced graph and the same compiled kernel.
"""
import math

import torch
import torch.distributed as dist

from . import _flexjit
from ._cache import resolve
from ._errors import FlexjitError
from ._sym import SymValue, index_tensor
from ._tensors import stream_handle, view
from ._trace import SINK_MOD
from .attention import _Call
from .block_mask import block_mask_view

CONTIGUOUS, ZIGZAG = "contiguous", "zigzag"
LAYOUTS = (CONTIGUOUS, ZIGZAG)

# Where a sequence's (split, lo, hi) sit in a ring step's offsets tensor: the query's, then the key's.
Q_OFFSETS, KV_OFFSETS = 0, 3
OFFSETS_LEN = 6
_INT32_MAX = 2 ** 31 - 1


class Sharding:
    """How one sequence of `length` positions is cut over `world` ranks.

    contiguous: rank r holds one piece, torch.tensor_split's: the first `length % world` ranks hold one
    position more than the others. zigzag (torchtitan's load balancing for causal masks): the sequence is cut
    into 2 * world chunks of equal length C and rank r holds chunk r followed by chunk 2 * world - 1 - r, so
    every rank has one early and one late chunk and a causal mask gives every rank the same work."""

    __slots__ = ("layout", "length", "world")

    def __init__(self, layout, length, world, what):
        if layout not in LAYOUTS:
            raise FlexjitError(f"{what}: layout must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")
        if length > _INT32_MAX:
            raise FlexjitError(f"{what}: the sequence has {length} positions; mods compute indices in int32, so "
                               f"at most {_INT32_MAX}")
        if layout == ZIGZAG and (length == 0 or length % (2 * world) != 0):
            raise FlexjitError(f"{what}: layout 'zigzag' cuts the sequence into 2 * world_size = {2 * world} "
                               f"equal chunks, but it has {length} positions; pad it to a multiple of {2 * world} "
                               f"or use layout='contiguous'")
        if layout == CONTIGUOUS and length < world:
            raise FlexjitError(f"{what}: {length} positions cannot be cut over {world} ranks (every rank needs at "
                               f"least one)")
        self.layout, self.length, self.world = layout, length, world

    def pieces(self, rank):
        """The (global start, length) pieces rank `rank` holds, in local order."""
        if self.layout == ZIGZAG:
            chunk = self.length // (2 * self.world)
            return [(rank * chunk, chunk), ((2 * self.world - 1 - rank) * chunk, chunk)]
        base, extra = divmod(self.length, self.world)
        return [(rank * base + min(rank, extra), base + (rank < extra))]

    def local_length(self, rank):
        return sum(n for _, n in self.pieces(rank))

    def positions(self, rank, device=None):
        """The global positions rank `rank` holds, in local order (int64)."""
        return torch.cat([torch.arange(start, start + n, device=device) for start, n in self.pieces(rank)])

    def offsets(self, rank):
        """(split, lo, hi): local index i of rank `rank` is global i + (lo if i < split else hi)."""
        pieces = self.pieces(rank)
        (first, n_first), (second, _) = pieces[0], pieces[-1]
        return [n_first, first, second - n_first] if len(pieces) == 2 else [n_first, first, first]


def global_index(idx, offsets, at):
    """The global index of a local index (`at`: Q_OFFSETS or KV_OFFSETS in `offsets`). While tracing, the
    offsets are read as loads of the captured tensor: `offsets[at]` with a Python int would run eagerly and
    bake this step's values into the trace as constants (a new graph, and kernel, per step)."""
    if isinstance(idx, SymValue):
        def read(i):
            return index_tensor(offsets, i)
    else:
        read = offsets.__getitem__
    return idx + torch.where(idx < read(at), read(at + 1), read(at + 2))


def group_info(group, what):
    """(group, rank, world size) of a process group (None: the default one); FlexjitError when there is none."""
    if not dist.is_available() or not dist.is_initialized():
        raise FlexjitError(f"{what}: torch.distributed is not initialized; call torch.distributed."
                           f"init_process_group first (backend 'nccl' for CUDA tensors, 'gloo' for CPU ones)")
    group = dist.group.WORLD if group is None else group
    rank = dist.get_rank(group)
    if rank < 0:
        raise FlexjitError(f"{what}: this process (global rank {dist.get_rank()}) is not a member of the process "
                           f"group it was given")
    return group, rank, dist.get_world_size(group)


def check_backend(group, device, what):
    """A FlexjitError when the group's backend cannot move tensors of `device`: NCCL only moves CUDA tensors,
    and gloo's point-to-point ops only CPU ones."""
    backend = str(dist.get_backend(group)).lower()
    if device.type == "cuda" and backend == "gloo":
        raise FlexjitError(f"{what}: the tensors are on {device} but the process group's backend is gloo; use a "
                           f"'nccl' process group for CUDA tensors")
    if device.type == "cpu" and backend == "nccl":
        raise FlexjitError(f"{what}: the tensors are on the CPU but the process group's backend is nccl; use a "
                           f"'gloo' process group for CPU tensors (or move the tensors to their GPUs)")


class _Transfer:
    """Point-to-point work in flight: wait() gives the received tensors. The sent ones are held until then
    (the transport may still be reading them)."""

    __slots__ = ("works", "received", "sent")

    def __init__(self, works, received, sent):
        self.works, self.received, self.sent = works, received, sent

    def wait(self):
        for w in self.works:
            w.wait()
        self.sent = None
        return self.received


class Ring:
    """The ring of a process group: rank r sends to r + 1 and receives from r - 1. With NCCL the transfers run
    on NCCL's own streams (ordered after the work queued on the current stream when they are started, and
    wait() orders the current stream after them), so a transfer started before a step's kernels overlaps them.
    With gloo they run on gloo's threads."""

    def __init__(self, group, rank, world):
        self.group = group
        self.next = dist.get_global_rank(group, (rank + 1) % world)
        self.prev = dist.get_global_rank(group, (rank - 1) % world)

    def shift(self, tensors, shapes, dtype=None, tag=0):
        """Sends `tensors` to the next rank and receives tensors of `shapes` (their dtypes, or `dtype`) from
        the previous one. `tag` keeps concurrent shifts apart (gloo matches messages by tag)."""
        sent = [t.contiguous() for t in tensors]
        received = [torch.empty(s, dtype=dtype or t.dtype, device=t.device) for t, s in zip(sent, shapes)]
        ops = [dist.P2POp(dist.isend, t, self.next, self.group, tag + i) for i, t in enumerate(sent)]
        ops += [dist.P2POp(dist.irecv, r, self.prev, self.group, tag + i) for i, r in enumerate(received)]
        return _Transfer(dist.batch_isend_irecv(ops), received, sent)


def merge(out, lse, part_out, part_lse):
    """Adds one partial result to the running (out, lse) (float32; None before the first part).

    With L = logaddexp(lse, part_lse), the merged output is exp(lse - L) * out + exp(part_lse - L) * part_out:
    the two softmaxes reweighted to the common denominator, exact in exact arithmetic. A row no part has kept
    a key of so far has lse = part_lse = L = -inf: its weights are taken against 0 instead of L (exp(-inf) =
    0, where -inf - -inf would be NaN), so it stays O = 0, LSE = -inf. A NaN row stays NaN."""
    part_out = part_out.float()
    if out is None:
        return part_out, part_lse.clone()
    new = torch.logaddexp(lse, part_lse)
    ref = torch.where(new == -math.inf, torch.zeros_like(new), new)
    out = out * torch.exp(lse - ref).unsqueeze(-1) + part_out * torch.exp(part_lse - ref).unsqueeze(-1)
    return out, new


class StepGradients:
    __slots__ = ("dq", "dk", "dv", "captures")

    def __init__(self, dq, dk, dv, captures):
        self.dq, self.dk, self.dv, self.captures = dq, dk, dv, captures


def step_backward(call, q, k, v, out, lse, dout, partial):
    """The gradients one ring step contributes: its shard pair's part of dQ, dK, dV and of the captured
    tensors, under the *final* softmax (out, lse: the merged ones). `partial` is the step's own (out, lse),
    which the CPU path needs."""
    grad_tensors = call.gradient_tensors()
    captures = [torch.zeros(t.shape if t.dim() > 0 else (1,), dtype=torch.float32, device=q.device)
                for t in grad_tensors]
    if q.device.type == "cuda":
        dq, dk, dv = _backward_into(call, q, k, v, out, lse, dout, captures)
    else:
        dq, dk, dv = _reference_step_backward(call, q, k, v, out, lse, dout, partial, captures)
    return StepGradients(dq, dk, dv, [g.reshape(t.shape) for g, t in zip(captures, grad_tensors)])


def _backward_into(call, q, k, v, out, lse, dout, captures):
    """flexjit's backward entry. The GPU kernels take P = exp(S - lse) and Delta = rowsum(dout * out) from the
    given out and lse, so with the merged ones they give exactly the step's share of the global gradients
    (the standard ring-attention backward)."""
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    mask = block_mask_view(call.block_mask)
    call.bind()
    _flexjit.flex_attention_backward_into(
        view(q, "query"), view(k, "key"), view(v, "value"), view(out, "out"), view(lse, "lse"),
        view(dout, "grad_out"), call.score.mod, mask, view(dq, "dq"), view(dk, "dk"), view(dv, "dv"),
        [view(g, "capture gradient") for g in captures], call.scale, stream_handle(q.device), **call.extra())
    return dq, dk, dv


def _reference_step_backward(call, q, k, v, out, lse, dout, partial, captures):
    """The CPU float64 reference recomputes each row's softmax over the keys it is given and ignores out and
    lse, so the final softmax is rebuilt from what it does take:

    - a sink logit per row, log(exp(L) - exp(L_t)) (L the merged LSE, L_t this step's): the mass of every
      other shard's keys. The step's softmax then has the global denominator, P_ij = exp(s_ij - L).
    - the reference's Delta is rowsum(dout' * O') of its own output O' = w O_t (w = exp(L_t - L), O_t the
      step's output), not the global rowsum(dout * O). A column of ones appended to V and a column gamma
      appended to dout shift it: that column adds gamma to every dP_ij and gamma * w to Delta, so dS_ij =
      P_ij (dout . v_j - w dout . O_t - gamma (1 - w)) + P_ij gamma, and
      gamma = (w dout . O_t - Delta) / (1 - w) gives P_ij (dout . v_j - Delta), the global dS.

    Rows this step holds all the mass of (w = 1) get no sink and gamma = 0 (then O = O_t and the local Delta
    is the global one); rows masked everywhere (L = -inf) keep no key here either and contribute nothing."""
    part_out, part_lse = partial
    dout64, lse64, step_lse = dout.double(), lse.double(), part_lse.double()
    delta = (dout64 * out.double()).sum(-1)
    live = lse64 > -math.inf
    shift = torch.where(live, step_lse - lse64, torch.full_like(lse64, -math.inf))
    w = torch.exp(shift)
    rest = -torch.expm1(shift)   # 1 - w, exact near w = 1
    has_rest = live & (rest > 0)
    sink = torch.where(has_rest, lse64 + torch.log(rest.clamp_min(1e-300)), torch.full_like(lse64, -math.inf))
    step_delta = (dout64 * part_out.double()).sum(-1)
    gamma = torch.where(has_rest, (w * step_delta - delta) / rest.clamp_min(1e-300), torch.zeros_like(lse64))
    sink = sink.float().contiguous()
    ones = torch.ones(v.shape[:-1] + (1,), dtype=v.dtype)
    v_aug = torch.cat([v, ones], -1)
    dout_aug = torch.cat([dout, gamma.unsqueeze(-1).to(dout.dtype)], -1).contiguous()
    sink_mod = resolve(SINK_MOD, lambda b, h, q_idx: sink[b, h, q_idx])
    with_sink = _Call(call.score, call.block_mask, call.scale, sink_mod)
    # The reference reads neither out nor lse (it recomputes both): dout_aug and sink only fill their shapes.
    dq, dk, dv = _backward_into(with_sink, q, k, v_aug, dout_aug, sink, dout_aug, captures)
    return dq, dk, dv[..., :-1]
