"""flex_attention as torch custom ops (torch.library), for torch.compile, FakeTensor tracing and CUDA graphs.

    flexjit::flex_attention(query, key, value, captures, block_lists, hooks, mask_sizes, scale, max_scores,
                            training) -> (out, lse, max_scores, prob_delta, row_visible)
    flexjit::flex_attention_backward(query, key, value, out, lse, grad_out, grad_lse, prob_delta, row_visible,
                                     captures, block_lists, hooks, mask_sizes, scale)
        -> [dq, dk, dv, *capture gradients]

An op's arguments can only be tensors and numbers, so a call is described by:
  - hooks: the ids (_hooks.py) of the traced score_mod, sink_mod, prob_mod and the block mask's mask_mod
    (NONE where absent; a NONE score_mod is the identity);
  - captures: the tensors those mods read, in that order (each hook's captures in its C++ capture order),
    so autograd routes gradients to them and torch.compile sees them as inputs of the graph;
  - block_lists and mask_sizes: the block mask's eight lists in flexjit's layout and (B, H, Q_LEN, KV_LEN,
    Q_BLOCK, KV_BLOCK), both empty without a block mask.
The ops bind the hooks' captures to `captures` and call the C++ core on torch's current stream. Nothing in
them waits for the host (the block mask is wrapped, not copied: BlockMask::borrowLists), so they can be
captured in a CUDA graph once their kernels are compiled (a warm-up call, which torch's CUDA graph modes make).

The forward op's max_scores is empty unless asked for; prob_delta and row_visible (what a prob_mod's
backward reads, docs/dsl.md) are empty unless training with a prob_mod. The backward op takes the gradient of
the lse (None when the lse is not used by the loss) and returns the gradients of the captures that receive one
(in the C++ core's order); the autograd formula (register_autograd) puts them at their captures' positions.
"""
import functools
from typing import List, Optional

import torch
from torch import Tensor

from . import _flexjit, _hooks
from ._errors import FlexjitError
from ._trace import BoundMod

LIST_COUNT = 8


def _split(hooks, captures):
    """The BoundMods of score, sink, prob and mask hooks over `captures` (None where absent)."""
    bound, at = [], 0
    for i in hooks:
        traced = _hooks.traced_hook(i)
        if traced is None:
            bound.append(None)
            continue
        n = len(traced.captures)
        bound.append(BoundMod(traced, captures[at:at + n]))
        at += n
    if at != len(captures):
        raise FlexjitError(f"flexjit::flex_attention: the hooks read {at} captured tensors, {len(captures)} given")
    return bound


def op_call(hooks, captures, block_lists, mask_sizes, scale):
    """The _Call an op's arguments describe."""
    from .attention import NOOP_SCORE, _Call
    from .block_mask import BlockMask
    score, sink, prob, mask = _split(hooks, list(captures))
    block_mask = None
    if block_lists:
        if len(block_lists) != LIST_COUNT or len(mask_sizes) != 6:
            raise FlexjitError("flexjit::flex_attention: a block mask is its eight lists and (B, H, Q_LEN, KV_LEN, "
                               f"Q_BLOCK, KV_BLOCK), got {len(block_lists)} lists and {list(mask_sizes)}")
        block_mask = BlockMask(block_lists, mask_sizes, mask, None)
    return _Call(score if score is not None else NOOP_SCORE, block_mask, scale, sink, prob)


@functools.lru_cache(maxsize=4096)
def _gradient_positions(hooks: tuple) -> tuple:
    """Where, in an op's captures, each capture gradient of the backward op belongs."""
    position, at = {}, 0
    traced = [_hooks.traced_hook(i) for i in hooks]
    for t in traced:
        if t is None:
            continue
        for cap in t.captures:
            position[cap.id] = at
            at += 1
    score, sink, prob = (t.mod if t is not None else None for t in traced[:3])
    score = score if score is not None else _flexjit.ScoreMod.noop()
    return tuple(position[i] for i in _flexjit.gradient_capture_ids(score, sink_mod=sink, prob_mod=prob))


def _saves_prob_state(hooks, training) -> bool:
    return training and hooks[2] != _hooks.NONE


@torch.library.custom_op("flexjit::flex_attention", mutates_args=())
def flex_attention_op(query: Tensor, key: Tensor, value: Tensor, captures: List[Tensor], block_lists: List[Tensor],
                      hooks: List[int], mask_sizes: List[int], scale: Optional[float], max_scores: bool,
                      training: bool, deterministic: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    # `deterministic` is the backward's (kernel_options): the forward only hands it to _setup_context.
    from .attention import _forward
    call = op_call(hooks, captures, block_lists, mask_sizes, scale)
    out, lse, row_max, (prob_delta, row_visible) = _forward(call, query, key, value, training=training,
                                                            max_scores=max_scores)
    if row_max is None:
        row_max = lse.new_empty(0)
    if prob_delta is None:   # outputs may not alias each other: each its own empty tensor
        prob_delta, row_visible = out.new_empty(0), lse.new_empty(0, dtype=torch.int32)
    return out, lse, row_max, prob_delta, row_visible


@flex_attention_op.register_fake
def _(query, key, value, captures, block_lists, hooks, mask_sizes, scale, max_scores, training, deterministic):
    rows = (query.size(0), query.size(1), query.size(2))
    out = query.new_empty((*rows, value.size(3)))
    lse = query.new_empty(rows, dtype=torch.float32)
    prob = _saves_prob_state(hooks, training)
    return (out, lse, query.new_empty(rows if max_scores else (0,), dtype=torch.float32),
            query.new_empty(out.shape if prob else (0,)), query.new_empty(rows if prob else (0,), dtype=torch.int32))


@torch.library.custom_op("flexjit::flex_attention_backward", mutates_args=())
def flex_attention_backward_op(query: Tensor, key: Tensor, value: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
                               grad_lse: Optional[Tensor], prob_delta: Tensor, row_visible: Tensor,
                               captures: List[Tensor], block_lists: List[Tensor], hooks: List[int],
                               mask_sizes: List[int], scale: Optional[float], deterministic: bool) -> List[Tensor]:
    from .attention import _backward
    call = op_call(hooks, captures, block_lists, mask_sizes, scale)
    call.deterministic = deterministic
    prob_state = (prob_delta, row_visible) if prob_delta.numel() or row_visible.numel() else (None, None)
    dq, dk, dv, capture_grads = _backward(call, query, key, value, out, lse, grad_out, grad_lse, prob_state)
    return [dq, dk, dv, *capture_grads]


@flex_attention_backward_op.register_fake
def _(query, key, value, out, lse, grad_out, grad_lse, prob_delta, row_visible, captures, block_lists, hooks,
      mask_sizes, scale, deterministic):
    call = op_call(hooks, captures, block_lists, mask_sizes, scale)
    grads = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in (query, key, value)]
    return grads + [t.new_empty(t.shape) for t in call.gradient_tensors()]


def _setup_context(ctx, inputs, output):
    query, key, value, captures, block_lists, hooks, mask_sizes, scale, max_scores, training, deterministic = inputs
    out, lse, row_max, prob_delta, row_visible = output
    ctx.save_for_backward(query, key, value, out, lse, prob_delta, row_visible, *captures, *block_lists)
    ctx.num_captures, ctx.num_lists = len(captures), len(block_lists)
    ctx.hooks, ctx.mask_sizes, ctx.scale, ctx.deterministic = tuple(hooks), list(mask_sizes), scale, deterministic
    ctx.mark_non_differentiable(row_max, prob_delta, row_visible)
    ctx.set_materialize_grads(False)


def _backward_formula(ctx, grad_out, grad_lse, _grad_max, _grad_delta, _grad_visible):
    query, key, value, out, lse, prob_delta, row_visible, *rest = ctx.saved_tensors
    captures, block_lists = rest[:ctx.num_captures], rest[ctx.num_captures:]
    # Gradients of: query, key, value, captures, block_lists, then six arguments that are not tensors (torch
    # matches the structure: an empty list, mask_sizes without a block mask, takes an empty list).
    no_grads = ([None] * ctx.num_lists, None, [] if not ctx.mask_sizes else None) + (None,) * 4
    if grad_out is None and grad_lse is None:
        return (None,) * 3 + ([None] * ctx.num_captures,) + no_grads
    if grad_out is None:   # a loss of the LSE alone
        grad_out = torch.zeros_like(out)
    grads = flex_attention_backward_op(query, key, value, out, lse, grad_out, grad_lse, prob_delta, row_visible,
                                       list(captures), list(block_lists), list(ctx.hooks), ctx.mask_sizes, ctx.scale,
                                       ctx.deterministic)
    capture_grads = [None] * ctx.num_captures
    for position, g in zip(_gradient_positions(ctx.hooks), grads[3:]):
        capture_grads[position] = g
    return (grads[0], grads[1], grads[2], capture_grads) + no_grads


flex_attention_op.register_autograd(_backward_formula, setup_context=_setup_context)
