"""flex_attention with torch's signature: torch tensors in and out without copies, autograd with flexjit's
backward (dq, dk, dv and the gradients of captured tensors that require one, derived from the score_mod by
the compiler).

A call takes one of three routes to the same forward and backward (_forward, _backward):
  - eager, on real tensors: the mods are traced (or found in the trace cache) and a torch.autograd.Function
    runs the call (the cheapest route);
  - inside torch.compile (dynamo): _compile.py records the mods in the graph and calls the custom op of
    _ops.py, so the model compiles without a graph break;
  - eager under a torch dispatch mode or on tensor subclasses (FakeTensor, make_fx, non-strict export):
    the custom op, whose fake implementation gives the output shapes.

CPU tensors run through the C++ float64 reference (correct, not fast), forward and backward; CUDA tensors
run the generated kernels on torch's current stream.
"""
import atexit
import numbers

import torch
from torch.autograd.function import once_differentiable

from . import _flexjit, _hooks, _ops  # noqa: F401 (_ops registers the custom ops)
from ._cache import resolve
from ._errors import FlexjitError
from ._tensors import stream_handle, view
from ._trace import PROB_MOD, SCORE_MOD, SINK_MOD, BoundMod, TracedMod
from .block_mask import as_flexjit_mask, block_mask_view, op_mask_arguments

try:
    from torch.nn.attention.flex_attention import AuxOutput
except ImportError:  # torch before 2.9
    AuxOutput = None

# A training forward compiles the backward on C++ threads; exiting under one (the script failed right
# after its first forward) would crash in NVRTC's destroyed statics, so the interpreter waits at exit.
atexit.register(_flexjit.wait_for_background_compiles)

NOOP_SCORE = BoundMod(TracedMod(_flexjit.ScoreMod.noop(), []), [])
_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LAYOUTS = {"query": "[B, Hq, Q_LEN, D]", "key": "[B, Hkv, KV_LEN, D]", "value": "[B, Hkv, KV_LEN, Dv]"}


class _Call:
    """What forward and backward share: the bound score_mod, the block mask, the scale, the optional bound
    sink_mod and prob_mod, and whether the backward must be deterministic (kernel_options)."""

    __slots__ = ("score", "block_mask", "scale", "sink", "prob", "deterministic")

    def __init__(self, score, block_mask, scale, sink=None, prob=None, deterministic=False):
        self.score, self.block_mask, self.scale, self.sink, self.prob = score, block_mask, scale, sink, prob
        self.deterministic = deterministic

    def hooks(self):
        """The bound mods in capture order (score_mod, then sink_mod, then prob_mod; absent ones left out)."""
        return [m for m in (self.score, self.sink, self.prob) if m is not None]

    def bind(self):
        for m in self.hooks():
            m.bind()

    def extra(self):
        """The C++ sink_mod and prob_mod (None where absent), as the bindings take them."""
        return {"sink_mod": self.sink.mod if self.sink else None, "prob_mod": self.prob.mod if self.prob else None}

    def tensors(self):
        """Every hook's captured tensors, in hooks() order."""
        return [t for m in self.hooks() for t in m.tensors]

    def with_tensors(self, tensors):
        """The same call with the hooks reading `tensors` (as returned by tensors())."""
        bound, at = [], 0
        for m in self.hooks():
            bound.append(m.with_tensors(tensors[at:at + len(m.tensors)]))
            at += len(m.tensors)
        score, rest = bound[0], bound[1:]
        sink = rest.pop(0) if self.sink is not None else None
        prob = rest.pop(0) if self.prob is not None else None
        return _Call(score, self.block_mask, self.scale, sink, prob, self.deterministic)

    def gradient_tensors(self):
        """The captured tensors that receive gradients, in the order the C++ backward fills them."""
        by_id = {cap.id: t for m in self.hooks() for cap, t in zip(m.traced.captures, m.tensors)}
        return [by_id[i] for i in _flexjit.gradient_capture_ids(self.score.mod, **self.extra())]


def _make_call(score_mod, block_mask, scale, sink_mod, prob_mod):
    """The traced (or cached) mods, the block mask and the scale of one eager call."""
    score = resolve(SCORE_MOD, score_mod) if score_mod is not None else NOOP_SCORE
    return _Call(score, as_flexjit_mask(block_mask), checked_scale(scale),
                 resolve(SINK_MOD, sink_mod) if sink_mod is not None else None,
                 resolve(PROB_MOD, prob_mod) if prob_mod is not None else None)


def _deterministic(kernel_options) -> bool:
    """kernel_options: torch's tile keys are accepted and ignored (flexjit chooses its own tiles); flexjit's
    "deterministic": True gives a backward whose dQ, dK and dV do not depend on the order CTAs finish in."""
    if kernel_options is None:
        return False
    if not isinstance(kernel_options, dict):
        raise FlexjitError(f"flex_attention: kernel_options must be a dict, got {type(kernel_options).__name__}")
    value = kernel_options.get("deterministic", False)
    if not isinstance(value, bool):
        raise FlexjitError(f"flex_attention: kernel_options['deterministic'] must be True or False, got {value!r}")
    return value


def check_inputs(q, k, v, enable_gqa):
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if not isinstance(t, torch.Tensor):
            raise FlexjitError(f"flex_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise FlexjitError(f"flex_attention: {name} must be 4-D {_LAYOUTS[name]}, got shape {list(t.shape)}")
        if t.dtype not in _INPUT_DTYPES:
            raise FlexjitError(f"flex_attention: {name} has dtype {t.dtype}; use float16 or bfloat16 (or float32 "
                               f"on the CPU)")
    if not enable_gqa and q.size(1) != k.size(1):
        raise FlexjitError(f"flex_attention: query has {q.size(1)} heads but key/value have {k.size(1)}; pass "
                           f"enable_gqa=True for grouped-query attention")


def checked_scale(scale):
    """None (1/sqrt(D)) or a float; any finite value, 0 and negative ones included (checked in C++)."""
    if scale is None:
        return None
    if isinstance(scale, numbers.Real) or (isinstance(scale, torch.Tensor) and scale.numel() == 1):
        return float(scale)
    raise FlexjitError(f"flex_attention: scale must be a number, got {type(scale).__name__}")


def _forward(call: _Call, q, k, v, training=False, max_scores=False, inference=None):
    """out, lse, (with max_scores) each row's max score or None, and, training with a prob_mod, what its
    backward reads (the delta weights and the rows' num_visible; docs/dsl.md) or (None, None). `inference`:
    the bindings' page_table / page_size / kv_lengths keywords (_inference_layouts)."""
    out = torch.empty((q.size(0), q.size(1), q.size(2), v.size(3)), dtype=q.dtype, device=q.device)
    lse = torch.empty((q.size(0), q.size(1), q.size(2)), dtype=torch.float32, device=q.device)
    row_max = torch.empty_like(lse) if max_scores else None
    save_prob = training and call.prob is not None
    prob_delta = torch.empty_like(out) if save_prob else None
    row_visible = torch.empty(lse.shape, dtype=torch.int32, device=q.device) if save_prob else None
    mask = block_mask_view(call.block_mask)
    call.bind()
    _flexjit.flex_attention_into(view(q, "query"), view(k, "key"), view(v, "value"), call.score.mod, mask,
                                 view(out, "out"), view(lse, "lse"), call.scale, stream_handle(q.device),
                                 compile_backward_ahead=training,
                                 max_scores=view(row_max, "max_scores") if max_scores else None,
                                 **call.extra(), **_prob_state(prob_delta, row_visible), **(inference or {}))
    return out, lse, row_max, (prob_delta, row_visible)


def _inference_layouts(query, key, page_table, page_size, kv_lengths):
    """(the bindings' keywords for a paged KV cache and per-sequence lengths, the int32 tensors their views
    point into, which the caller keeps alive over the call), checked (the C++ core checks shapes, dtypes and
    devices and names what is wrong)."""
    what = "flex_attention"
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        raise FlexjitError(f"{what}: page_table / kv_lengths are for inference (forward only); run it under "
                           "torch.no_grad(), or give contiguous K and V with the lengths in the mask_mod to train")
    if torch.compiler.is_compiling():
        raise FlexjitError(f"{what}: page_table / kv_lengths are not supported inside torch.compile yet; call "
                           "flex_attention eagerly for the decode step (it has no host synchronisation, so it can "
                           "be captured in a CUDA graph)")
    out, owners = {}, []
    if page_table is not None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise FlexjitError(f"{what}: page_table needs page_size, a positive int (keys per page), got "
                               f"{page_size!r}")
        if not isinstance(page_table, torch.Tensor) or page_table.dtype not in (torch.int32, torch.int64):
            raise FlexjitError(f"{what}: page_table must be an int32 tensor [B, pages per sequence]")
        table = page_table.to(torch.int32)
        out.update(page_table=view(table, "page_table"), page_size=page_size)
        owners.append(table)
    elif page_size is not None:
        raise FlexjitError(f"{what}: page_size without page_table; give both for a paged KV cache")
    if kv_lengths is not None:
        if not isinstance(kv_lengths, torch.Tensor) or kv_lengths.dtype not in (torch.int32, torch.int64):
            raise FlexjitError(f"{what}: kv_lengths must be an int32 tensor [B]")
        lengths = kv_lengths.to(torch.int32)
        out["kv_lengths"] = view(lengths, "kv_lengths")
        owners.append(lengths)
    return out, owners


def _prob_state(prob_delta, row_visible):
    """The bindings' prob_delta / row_visible keywords (absent when there is no prob_mod state)."""
    if prob_delta is None:
        return {}
    return {"prob_delta": view(prob_delta, "prob_delta"), "row_visible": view(row_visible, "row_visible")}


def _last_dim_contiguous(t):
    return t if t.size(-1) <= 1 or t.stride(-1) == 1 else t.contiguous()


def _backward(call: _Call, q, k, v, out, lse, dout, dlse=None, prob_state=(None, None)):
    """dq, dk, dv and the gradients of call.gradient_tensors() (in that order, each in its tensor's dtype), for
    the gradients dout of out (None: a loss of the LSE alone) and dlse of lse (None: none). prob_state is what
    _forward saved for a prob_mod's backward, or (None, None) (the core recomputes it)."""
    grad_tensors = call.gradient_tensors()
    dout = torch.zeros_like(out) if dout is None else _last_dim_contiguous(dout.to(q.dtype))
    grad_lse = dlse.float() if dlse is not None else None  # held here: the binding keeps only a view
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    capture_grads = [torch.zeros(t.shape if t.dim() > 0 else (1,), dtype=torch.float32, device=q.device)
                     for t in grad_tensors]
    mask = block_mask_view(call.block_mask)
    call.bind()
    _flexjit.flex_attention_backward_into(
        view(q, "query"), view(k, "key"), view(v, "value"), view(out, "out"), view(lse, "lse"),
        view(dout, "grad_out"), call.score.mod, mask, view(dq, "dq"), view(dk, "dk"), view(dv, "dv"),
        [view(g, "capture gradient") for g in capture_grads], call.scale, stream_handle(q.device),
        deterministic=call.deterministic, **call.extra(), **_prob_state(*prob_state),
        grad_lse=view(grad_lse, "grad_lse") if grad_lse is not None else None)
    return dq, dk, dv, [g.reshape(t.shape).to(t.dtype) for g, t in zip(capture_grads, grad_tensors)]


class _FlexAttentionFunction(torch.autograd.Function):
    """The eager route. Inputs: q, k, v, the call, whether max scores are wanted, then the captured tensors
    that receive gradients (so autograd routes their gradients to .grad). Outputs: out, lse and the max scores
    (an empty tensor when not asked for; never differentiable)."""

    @staticmethod
    def forward(ctx, q, k, v, call, max_scores, *grad_tensors):
        # A backward will follow: its kernels compile in the background while the forward runs.
        out, lse, row_max, prob_state = _forward(call, q, k, v, training=True, max_scores=max_scores)
        row_max = row_max if row_max is not None else lse.new_empty(0)
        ctx.call = call
        ctx.num_grad_tensors = len(grad_tensors)
        ctx.has_prob_state = prob_state[0] is not None
        saved_prob = prob_state if ctx.has_prob_state else ()
        ctx.save_for_backward(q, k, v, out, lse, *saved_prob, *call.tensors())
        ctx.mark_non_differentiable(row_max)
        ctx.set_materialize_grads(False)
        return out, lse, row_max

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse, _dmax):
        none_grads = (None,) * (5 + ctx.num_grad_tensors)
        if dout is None and dlse is None:
            return none_grads
        q, k, v, out, lse, *rest = ctx.saved_tensors
        prob_state = (rest[0], rest[1]) if ctx.has_prob_state else (None, None)
        hook_tensors = rest[2:] if ctx.has_prob_state else rest
        dq, dk, dv, grads = _backward(ctx.call.with_tensors(hook_tensors), q, k, v, out, lse, dout, dlse, prob_state)
        return (dq, dk, dv, None, None, *grads)


def _runs_through_op(tensors) -> bool:
    """Whether an eager call must take the custom op: under a torch dispatch mode (FakeTensorMode, make_fx)
    or with tensor subclasses, which only the op's registrations (fake implementation, autograd) handle."""
    return torch._C._len_torch_dispatch_stack() > 0 or \
        any(type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter for t in tensors)


def _call_op(call: _Call, q, k, v, max_scores, training):
    lists, sizes, mask_hook, mask_tensors = op_mask_arguments(call.block_mask)
    hooks = [_hooks.hook_id(call.score.traced), _hooks.optional_id(call.sink.traced if call.sink else None),
             _hooks.optional_id(call.prob.traced if call.prob else None), mask_hook]
    out, lse, row_max, _, _ = torch.ops.flexjit.flex_attention(q, k, v, call.tensors() + mask_tensors, lists, hooks,
                                                               sizes, call.scale, max_scores, training,
                                                               call.deterministic)
    return out, lse, row_max


def wants_max_scores(return_aux) -> bool:
    return return_aux is not None and bool(getattr(return_aux, "max_scores", False))


def outputs(out, lse, row_max, return_lse, return_aux):
    """What flex_attention returns: out, (out, lse) or (out, AuxOutput)."""
    if return_aux is not None:
        if AuxOutput is None:
            raise FlexjitError("flex_attention: return_aux needs torch >= 2.9; use return_lse=True")
        return out, AuxOutput(lse=lse if getattr(return_aux, "lse", False) else None,
                              max_scores=row_max if wants_max_scores(return_aux) else None)
    return (out, lse) if return_lse else out


def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None, enable_gqa=False,
                   return_lse=False, kernel_options=None, *, return_aux=None, sink_mod=None, prob_mod=None,
                   page_table=None, page_size=None, kv_lengths=None):
    """Attention with a score_mod and a block mask, torch.nn.attention.flex_attention's signature.

    query [B, Hq, Q_LEN, D], key [B, Hkv, KV_LEN, D], value [B, Hkv, KV_LEN, Dv]: float16 / bfloat16 on a
    GPU, float16 / bfloat16 / float32 on the CPU. Returns out [B, Hq, Q_LEN, Dv] (query's dtype), with
    return_lse=True also the log-sum-exp [B, Hq, Q_LEN] (float32, natural log; -inf for fully masked rows,
    whose output is 0). return_aux=AuxRequest(lse=..., max_scores=...) returns (out, AuxOutput) like torch;
    max_scores is each row's max score after score_mod (-inf where every key is masked). block_mask is
    flexjit's BlockMask or torch's. kernel_options: torch's tile keys are accepted and ignored (flexjit
    chooses its own tiles); {"deterministic": True} makes the backward's dQ, dK and dV deterministic.
    Nested jagged q, k, v [B, H, j, D] run as one packed attention (packing.py; block_mask from
    create_nested_block_mask, or the document mask when None).
    Works inside torch.compile (fullgraph, CUDA graphs) through a custom op: see docs/python.md.

    Beyond torch (docs/python.md): sink_mod(b, h, q_idx) -> a logit whose exp joins each row's softmax
    denominator (attention sinks; gradients flow into the tensors it reads); prob_mod(p, b, h, q_idx, kv_idx,
    row) -> rewrites each kept probability before P @ V (row.num_visible: the row's number of kept keys).
    Inference (forward only, the decode family on a GPU): page_table [B, pages] with page_size for a paged
    KV cache (key / value [1, Hkv, pages * page_size, D]), kv_lengths [B] for sequences of different lengths.
    """
    if page_table is not None or page_size is not None or kv_lengths is not None:
        inference, owners = _inference_layouts(query, key, page_table, page_size, kv_lengths)
        check_inputs(query, key, value, enable_gqa)
        call = _make_call(score_mod, block_mask, scale, sink_mod, prob_mod)
        want_max = wants_max_scores(return_aux)
        out, lse, row_max, _ = _forward(call, query, key, value, max_scores=want_max, inference=inference)
        del owners  # the kernels were enqueued on torch's stream, which orders any reuse of this memory
        return outputs(out, lse, row_max, return_lse, return_aux)
    if getattr(query, "is_nested", False):
        from .packing import nested_flex_attention
        return nested_flex_attention(flex_attention, query, key, value, score_mod, block_mask, scale, enable_gqa,
                                     return_lse, kernel_options, return_aux, sink_mod, prob_mod)
    deterministic = _deterministic(kernel_options)
    if torch.compiler.is_compiling():
        from ._compile import flex_attention_compiled
        return flex_attention_compiled(query, key, value, score_mod, block_mask, scale, enable_gqa, return_lse,
                                       return_aux, sink_mod, prob_mod, deterministic)
    check_inputs(query, key, value, enable_gqa)
    want_max = wants_max_scores(return_aux)
    call = _make_call(score_mod, block_mask, scale, sink_mod, prob_mod)
    call.deterministic = deterministic
    grad_tensors = call.gradient_tensors() if torch.is_grad_enabled() else []
    training = torch.is_grad_enabled() and bool(grad_tensors or query.requires_grad or key.requires_grad or
                                                value.requires_grad)
    if _runs_through_op((query, key, value, *call.tensors())):
        out, lse, row_max = _call_op(call, query, key, value, want_max, training)
    elif training:
        out, lse, row_max = _FlexAttentionFunction.apply(query, key, value, call, want_max, *grad_tensors)
    else:
        out, lse, row_max, _ = _forward(call, query, key, value, max_scores=want_max)
    return outputs(out, lse, row_max, return_lse, return_aux)
