"""flex_attention inside torch.compile: the mods recorded by dynamo, traced by flexjit, run by the custom op.

Dynamo cannot trace flexjit's tracer (it walks Python objects by id() and calls into C++), and the mods are
often closures made inside the compiled forward, which exist only as dynamo's variables: there is no Python
function to hand to flexjit while the graph is built. So, while dynamo traces the model, each mod is called
(and traced by dynamo like any user code) on probe tensors that stand for its arguments, under a
TorchFunctionMode that writes a tape: every torch call computed from the arguments, every 0-d constant
made from Python numbers, and the tensors from outside the mod that those calls read (a captured bias
parameter, a document-id buffer, or a value computed from them such as bias.float()). Reading those
tensors in dynamo makes them graph inputs, which the custom op receives, so autograd and the compiled
graph see them; and whatever dynamo read to get there (closure cells, module attributes, globals) is
guarded by dynamo as usual, so changing a window size recompiles.

Once per compile, ``_register`` (a function dynamo calls with the tape as a constant:
assume_constant_result) replays each tape through flexjit's ordinary tracer, with SymValues for the
arguments and meta tensors for the captured tensors, and returns the hook ids (_hooks.py) and the order in
which the op takes the captured tensors. The graph holds a call to flexjit::flex_attention with those
constants; at run time the op binds the hooks' captures to the tensors the graph passes.

The probes are empty 1-D tensors on the query's device: a 0-d tensor index would make dynamo read its value,
and an empty one reads no element, so the operations on them, which stay in dynamo's graph unused (AOT
autograd and inductor remove them as dead code; backend="eager" runs them), cannot index out of range.
"""
import torch
from torch.fx.experimental.symbolic_shapes import has_static_value
from torch.overrides import TorchFunctionMode

from . import _hooks
from ._errors import trace_error
from ._tensors import capture_tensor
from ._torch_ops import dispatch
from ._sym import PartialIndex, SymValue
from ._trace import MASK_MOD, PROB_MOD, SCORE_MOD, SINK_MOD, RowStats, mod_name, trace
from .attention import check_inputs, checked_scale, outputs, wants_max_scores
from .block_mask import (_as_lists, _blocks, _unbroadcast, check_block_mask_type, check_not_sliced,
                         is_torch_block_mask, lists_from_kv, op_mask_arguments, torch_mask_kv_lists)

_ARG, _NODE, _CAPTURE, _VALUE, _TUPLE, _LIST = "arg", "node", "capture", "value", "tuple", "list"
_OUTSIDE, _CONSTANT, _SYMBOLIC = 0, 1, 2


def _number_dtype(x):
    return torch.bool if isinstance(x, bool) else torch.int64 if isinstance(x, int) else torch.float32


class _Tape:
    """What a mod did to its probe arguments (see the module docstring). Plain Python that dynamo traces."""

    def __init__(self, args):
        self.args = list(args)
        self.nodes = []       # results of the recorded calls
        self.symbolic = []    # per node: computed from the arguments (else: a constant)
        self.entries = []     # per node: (torch function, args reference, kwargs reference)
        self.captured = []    # tensors from outside the mod that recorded calls read
        self.unsupported = None

    def _find(self, items, x):
        for i in range(len(items)):
            if items[i] is x:
                return i
        return -1

    def _origin(self, x) -> int:
        if self._find(self.args, x) >= 0:
            return _SYMBOLIC
        i = self._find(self.nodes, x)
        if i >= 0:
            return _SYMBOLIC if self.symbolic[i] else _CONSTANT
        return _OUTSIDE

    def _tensors(self, x, found):
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (tuple, list)):
            for y in x:
                self._tensors(y, found)
        elif isinstance(x, dict):
            for y in x.values():
                self._tensors(y, found)
        return found

    def ref(self, x):
        """A constant description of an argument: the mod's argument i, recorded node i, captured tensor i, a
        tuple or list of those, or a Python value."""
        if isinstance(x, torch.Tensor):
            i = self._find(self.args, x)
            if i >= 0:
                return (_ARG, i)
            i = self._find(self.nodes, x)
            if i >= 0:
                return (_NODE, i)
            i = self._find(self.captured, x)
            if i < 0:
                self.captured.append(x)
                i = len(self.captured) - 1
            return (_CAPTURE, i)
        if isinstance(x, (bool, int, float)) and not has_static_value(x):
            # A Python number dynamo made symbolic (an argument whose value changed between calls; dynamo says
            # isinstance(x, int) of it): read as a captured 0-d tensor, so a new value reuses the graph.
            return self.ref(torch.scalar_tensor(x, dtype=_number_dtype(x)))
        if isinstance(x, tuple):
            return (_TUPLE, tuple(self.ref(y) for y in x))
        if isinstance(x, list):
            return (_LIST, tuple(self.ref(y) for y in x))
        return (_VALUE, x)

    def record(self, func, args, kwargs):
        result = func(*args, **kwargs)
        origins = [self._origin(t) for t in self._tensors((args, kwargs), [])]
        symbolic = _SYMBOLIC in origins
        constant = not symbolic and _OUTSIDE not in origins and isinstance(result, torch.Tensor) and result.dim() == 0
        if not symbolic and not constant:
            return result     # computed from outside tensors only: read as a captured tensor if used
        if not isinstance(result, torch.Tensor):
            if self.unsupported is None:
                self.unsupported = getattr(func, "__name__", repr(func))
            return result
        self.entries.append((func, self.ref(tuple(args)), tuple((k, self.ref(v)) for k, v in kwargs.items())))
        self.nodes.append(result)
        self.symbolic.append(symbolic)
        return result


class _TapeMode(TorchFunctionMode):
    def __init__(self, tape):
        super().__init__()
        self.tape = tape

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.tape.record(func, args, kwargs or {})


def _probes(device):
    """Stand-ins for score (float32) and b, h, q_idx, kv_idx, num_visible (int32)."""
    score = torch.zeros(0, dtype=torch.float32, device=device)
    return score, [torch.zeros(0, dtype=torch.int32, device=device) for _ in range(5)]


def _record(kind, fn, device):
    """(the tape's constant description, its captured tensors) of a mod, called on probes."""
    score, ints = _probes(device)
    args = {SCORE_MOD: [score] + ints[:4], MASK_MOD: ints[:4], SINK_MOD: ints[:3],
            PROB_MOD: [score] + ints[:4] + [ints[4]]}[kind]
    tape = _Tape(args)
    with _TapeMode(tape):
        result = fn(*args[:5], RowStats(args[5])) if kind == PROB_MOD else fn(*args)
    out = tape.ref(result)
    captured = []
    for t in tape.captured:
        # A 0-d CPU tensor read by a GPU attention (a scale in a global) goes to the device in the graph.
        # float64 / int8 / uint8 / int16 tensors are read through a float32 / int32 copy, made in the graph.
        t = capture_tensor(t)
        captured.append(t.to(device) if t.dim() == 0 and t.device != device else t)
    meta = tuple((t.dtype, t.dim(), t.requires_grad) for t in captured)
    return (kind, mod_name(fn), tuple(tape.entries), out, meta, tape.unsupported), captured


def _has_traced(x) -> bool:
    if isinstance(x, (SymValue, PartialIndex)):
        return True
    if isinstance(x, (tuple, list)):
        return any(_has_traced(y) for y in x)
    return False


def _apply(func, args, kwargs):
    """One tape entry on traced values: what __torch_function__ would do with them in an eager trace."""
    if not _has_traced((args, tuple(kwargs.values()))):
        return func(*args, **kwargs)
    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", "") or ""
    if args and isinstance(args[0], (SymValue, PartialIndex)) and name and \
            qualname.startswith(("TensorBase.", "Tensor.", "_TensorBase.")):
        return getattr(args[0], name)(*args[1:], **kwargs)   # a method, or an operator, of a traced value
    return dispatch(func, args, kwargs)


def _replayer(name, entries, out, arguments_of):
    """A Python function that redoes a tape on the arguments flexjit's tracer gives it."""

    def replayed(*args):
        args = arguments_of(args)
        nodes = []

        def value(r):
            tag, payload = r
            if tag == _ARG:
                return args[payload]
            if tag == _NODE:
                return nodes[payload]
            if tag == _CAPTURE:
                return captures[payload]
            if tag == _TUPLE:
                return tuple(value(x) for x in payload)
            if tag == _LIST:
                return [value(x) for x in payload]
            return payload

        for func, a, kw in entries:
            nodes.append(_apply(func, value(a), {k: value(v) for k, v in kw}))
        return value(out)

    captures = []
    replayed.__name__ = name
    return replayed, captures


def _stand_in(dtype, rank, requires_grad):
    """A meta tensor for a captured tensor: its dtype, rank and requires_grad, sizes unknown."""
    t = torch.empty((1,) * rank, dtype=dtype, device="meta")
    return t.requires_grad_(True) if requires_grad and (t.is_floating_point() or t.is_complex()) else t


def _trace_tape(spec):
    """(hook id, the captured tensors' order in the op) of a recorded mod."""
    kind, name, entries, out, meta, unsupported = spec
    if unsupported is not None:
        raise trace_error(f"{kind} '{name}': torch.{unsupported} returns a value that is not a tensor; it is "
                          f"not traced in mods")
    if kind == PROB_MOD:
        def arguments_of(args):   # the replay calls num_visible's probe as an argument, flexjit passes a RowStats
            return list(args[:5]) + [args[5].num_visible]
    else:
        def arguments_of(args):
            return list(args)
    replayed, captures = _replayer(name, entries, out, arguments_of)
    captures.extend(_stand_in(*m) for m in meta)
    names = {id(t): f"captured tensor {i}" for i, t in enumerate(captures)}
    traced, tensors = trace(kind, replayed, names, unsized={id(t) for t in captures})
    order = []
    for t in tensors:
        order.append(next(i for i, c in enumerate(captures) if c is t))
    return _hooks.hook_id(traced), tuple(order)


@torch._dynamo.assume_constant_result
def _register(specs):
    """Hook ids and capture orders for (score, sink, prob, mask) specs: None, a recorded tape, or an id."""
    hooks, orders = [], []
    for spec in specs:
        if spec is None:
            hooks.append(_hooks.NONE)
            orders.append(())
        elif isinstance(spec, int):
            hooks.append(spec)
            orders.append(None)
        else:
            hook, order = _trace_tape(spec)
            hooks.append(hook)
            orders.append(order)
    return tuple(hooks), tuple(orders)


def _torch_mask(block_mask, device):
    """torch's BlockMask inside the graph: its lists converted by torch operations, its mask_mod recorded."""
    (kv_num, kv_idx, full_num, full_idx), (block_q, block_kv), (len_q, len_kv) = torch_mask_kv_lists(block_mask)
    what = "block_mask (torch's BlockMask)"
    check_not_sliced(block_mask.mask_mod)
    kv_num, kv_idx = _as_lists(kv_num, "kv_num_blocks", what, 3), _as_lists(kv_idx, "kv_indices", what, 4)
    if full_num is not None:
        full_num = _as_lists(full_num, "full_kv_num_blocks", what, 3)
        full_idx = _as_lists(full_idx, "full_kv_indices", what, 4)
    batch, heads = kv_num.shape[0], kv_num.shape[1]
    kv_num, kv_idx, full_num, full_idx = _unbroadcast([kv_num, kv_idx, full_num, full_idx])
    lists = list(lists_from_kv(kv_num, kv_idx, full_num, full_idx, _blocks(len_kv, block_kv)))
    spec, captured = _record(MASK_MOD, block_mask.mask_mod, device)
    return lists, [batch, heads, len_q, len_kv, block_q, block_kv], spec, captured


def flex_attention_compiled(query, key, value, score_mod, block_mask, scale, enable_gqa, return_lse, return_aux,
                            sink_mod, prob_mod, deterministic=False):
    """flexjit.flex_attention as dynamo traces it (see the module docstring)."""
    check_inputs(query, key, value, enable_gqa)
    check_block_mask_type(block_mask)
    want_max = wants_max_scores(return_aux)
    device = query.device
    specs, captured = [], []
    for kind, fn in ((SCORE_MOD, score_mod), (SINK_MOD, sink_mod), (PROB_MOD, prob_mod)):
        if fn is None:
            specs.append(None)
            captured.append([])
        else:
            spec, tensors = _record(kind, fn, device)
            specs.append(spec)
            captured.append(tensors)
    if is_torch_block_mask(block_mask):
        lists, sizes, mask_spec, mask_tensors = _torch_mask(block_mask, device)
    else:
        lists, sizes, mask_spec, mask_tensors = op_mask_arguments(block_mask)
    specs.append(mask_spec)
    captured.append(mask_tensors)
    hooks, orders = _register(tuple(specs))
    captures = []
    for order, tensors in zip(orders, captured):
        captures.extend(tensors if order is None else [tensors[i] for i in order])
    training = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad or
                                            any(t.requires_grad for t in captures))
    out, lse, row_max, _, _ = torch.ops.flexjit.flex_attention(query, key, value, captures, lists, list(hooks), sizes,
                                                               checked_scale(scale), want_max, training,
                                                               deterministic)
    return outputs(out, lse, row_max, return_lse, return_aux)
