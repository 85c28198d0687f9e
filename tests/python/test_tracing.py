"""Tracing: every supported construct gives what torch computes (checked against the dense torch reference),
and the trace cache re-traces only when something the function reads changed, rebinding tensors otherwise."""
import os
import types

import pytest
import torch

import flexjit
import flexjit._cache as trace_cache
from reference import dense_attention

B, H, L, D = 2, 2, 17, 8
ATOL, RTOL = 2e-5, 1e-4


def _qkv(grad=False, seed=0, Lq=L, Lkv=L):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, D, generator=g).requires_grad_(grad) for n in (Lq, Lkv, Lkv)]


def _check(score_mod=None, mask_mod=None, qkv=None):
    q, k, v = qkv or _qkv()
    mask = flexjit.create_block_mask(mask_mod, B, H, q.shape[2], k.shape[2], device="cpu") if mask_mod else None
    out, lse = flexjit.flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, return_lse=True)
    ref_out, ref_lse = dense_attention(q, k, v, score_mod, mask_mod)
    torch.testing.assert_close(out.double(), ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(lse.double(), ref_lse, atol=ATOL, rtol=RTOL)


bias = torch.randn(H, L)
table = torch.randint(-3, 4, (L,), dtype=torch.int32)

SCORE_MODS = {
    "python_floordiv_mod": lambda s, b, h, q, kv: s + ((q - kv) // 3) * 0.25 - ((q - kv) % 4) * 0.5,
    "xor_and_bits": lambda s, b, h, q, kv: torch.where(((q ^ kv) & 1) == 0, s, s * 0.5),
    "or_not": lambda s, b, h, q, kv: torch.where(~((q < 3) | (kv > 12)), s, s - 1.0),
    "abs_clamp": lambda s, b, h, q, kv: s + abs(q - kv).clamp(0, 5) * 0.1 - s.abs().clamp(max=1.0),
    "floor_ceil": lambda s, b, h, q, kv: torch.floor(s * 3) / 3 + torch.ceil(s * 0.5) * 0.1,
    "conversions": lambda s, b, h, q, kv: s + (q - kv).float() / 7 + (s * 2).int().to(torch.float32) * 0.1
    + (kv > 5).long() * 0.2 + (q % 2).bool().float(),
    "transcendentals": lambda s, b, h, q, kv: torch.sigmoid(s) + torch.log(torch.exp(s) + 1) + torch.sqrt(s.abs() + 1)
    + torch.rsqrt(s.abs() + 1) + torch.log2(s.abs() + 2) + torch.exp2(-s.abs()) + torch.tanh(s),
    "methods": lambda s, b, h, q, kv: s.sigmoid().exp().log() + s.tanh() + s.clamp(-1, 1).exp2(),
    "min_max": lambda s, b, h, q, kv: torch.minimum(s, torch.tensor(1.0)) + torch.maximum(s, q * 0.1),
    "neg_pow": lambda s, b, h, q, kv: -s + s ** 2 * 0.1 + 2.0 ** (-(h + 1) * 0.5) * q - (kv * 0.5) ** 0.5,
    "where_scalar_tensor": lambda s, b, h, q, kv: torch.where(q >= kv, s, torch.tensor(-float("inf"))),
    # Tensor.where(condition, other) is where(condition, self, other).
    "where_method": lambda s, b, h, q, kv: s.where(q >= kv, s * 0.5 - 1.0),
    "where_method_of_constant": lambda s, b, h, q, kv: torch.tensor(-2.0).where(kv > 3, s),
    "full_like": lambda s, b, h, q, kv: torch.where(q >= kv, s, torch.full_like(s, -float("inf"))),
    "new_ones": lambda s, b, h, q, kv: s * s.new_ones(()) + q.new_zeros(()),
    "index_tuple": lambda s, b, h, q, kv: s + bias[h, q],
    "index_chain": lambda s, b, h, q, kv: s + bias[h][kv],
    "index_int_and_sym": lambda s, b, h, q, kv: s + bias[1, q] - bias[-1][kv],
    "nested_index": lambda s, b, h, q, kv: s + bias[h, (table[q] + 3).clamp(0, L - 1)],
    "builtin_torch_ops": lambda s, b, h, q, kv: torch.add(s, q, alpha=0.1) - torch.mul(kv, 0.2) + torch.div(q, 3)
    + torch.div(q - kv, 3, rounding_mode="floor") + torch.remainder(q, 3),
}


@pytest.mark.parametrize("name", SCORE_MODS)
def test_score_mod_construct(name):
    _check(score_mod=SCORE_MODS[name])


MASK_MODS = {
    "comparisons": lambda b, h, q, kv: (q >= kv) & (q != 3) | (kv == 0),
    "not": lambda b, h, q, kv: ~(q < kv),
    "logical": lambda b, h, q, kv: torch.logical_and(q >= kv, torch.logical_not(kv == 2)),
    "reflected_int": lambda b, h, q, kv: (5 <= q) & (3 > kv) | (q >= kv),
    "torch_noop": __import__("torch.nn.attention.flex_attention", fromlist=["noop_mask"]).noop_mask,
    "flexjit_noop": flexjit.noop_mask,
    "flexjit_and": flexjit.and_masks(lambda b, h, q, kv: q >= kv, lambda b, h, q, kv: q - kv < 4),
    "flexjit_or": flexjit.or_masks(lambda b, h, q, kv: q == kv, lambda b, h, q, kv: kv < 2),
    "torch_and": __import__("torch.nn.attention.flex_attention", fromlist=["and_masks"]).and_masks(
        lambda b, h, q, kv: q >= kv, lambda b, h, q, kv: (q % 3) == (kv % 3)),
    "head_dependent": lambda b, h, q, kv: (q - kv <= 2 + 4 * h) & (q >= kv),
    "where_method": lambda b, h, q, kv: (q >= kv).where(kv > 2, q == kv + 1),
}


@pytest.mark.parametrize("name", MASK_MODS)
def test_mask_mod_construct(name):
    _check(mask_mod=MASK_MODS[name])


def test_int64_tensors_are_read_exactly_or_refused():
    # A mod computes in int32: int64 values must fit (checked once per tensor version), strided views too.
    doc = (torch.arange(L) // 5) * 2 ** 32 + 7   # wrapped to int32 every id would be 7: one document

    def document(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    with pytest.raises(flexjit.FlexjitError, match=r"mask_mod 'document': captured tensor 'doc' \(int64\) holds "
                                                   r"12884901895; a mod computes integers in int32"):
        _check(mask_mod=document)
    doc.copy_(torch.arange(L) // 5 - 2 ** 31 + 3)   # in place: checked again
    _check(mask_mod=document)
    doc = (torch.arange(2 * L) % 7 + 2 ** 31 - 8)[::2]
    _check(mask_mod=document, score_mod=lambda s, b, h, q, kv: s + (doc[kv] - doc[q]) * 0.25)


# --- the trace cache -------------------------------------------------------------------------------------

@pytest.fixture
def trace_counter(monkeypatch):
    calls = []
    real = trace_cache.trace

    def counting(kind, fn, *args):
        calls.append(getattr(fn, "__name__", fn))
        return real(kind, fn, *args)

    monkeypatch.setattr(trace_cache, "trace", counting)
    trace_cache.clear_cache()
    return calls


def test_second_call_does_not_retrace(trace_counter):
    q, k, v = _qkv()
    slopes = torch.rand(H)

    def alibi(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)

    first = flexjit.flex_attention(q, k, v, score_mod=alibi)
    second = flexjit.flex_attention(q, k, v, score_mod=alibi)
    assert trace_counter == ["alibi"]
    torch.testing.assert_close(first, second)


def test_recreated_closures_share_the_trace(trace_counter):
    q, k, v = _qkv()
    for window in (3, 3, 3):
        flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, qi, kv: s - (qi - kv).abs() / window)
    assert len(trace_counter) == 1


def test_changed_closure_constant_retraces(trace_counter):
    def make(window):
        def sliding(b, h, q_idx, kv_idx):
            return (q_idx - kv_idx).abs() <= window
        return sliding

    for window in (2, 5, 2):
        _check(mask_mod=make(window))
    assert len(trace_counter) == 2


def test_new_tensor_in_same_place_is_rebound(trace_counter):
    state = {"document_id": torch.arange(L) // 5}

    def document(b, h, q_idx, kv_idx):
        return state["document_id"][q_idx] == state["document_id"][kv_idx]

    _check(mask_mod=document)
    state["document_id"] = torch.arange(L) // 3   # same dtype and shape, new data
    _check(mask_mod=document)
    assert len(trace_counter) == 1


def test_in_place_update_is_seen():
    scale_by = torch.ones(H)

    def scaled(score, b, h, q_idx, kv_idx):
        return score * scale_by[h]

    _check(score_mod=scaled)
    scale_by.mul_(3.0)
    _check(score_mod=scaled)


def test_block_masks_sharing_a_trace_keep_their_own_tensors(trace_counter):
    def make_document_mask(document_id):
        def document(b, h, q_idx, kv_idx):
            return document_id[q_idx] == document_id[kv_idx]
        return document

    first, second = make_document_mask(torch.arange(L) // 4), make_document_mask(torch.arange(L) % 3)
    mask_first = flexjit.create_block_mask(first, 1, 1, L, L, device="cpu")
    mask_second = flexjit.create_block_mask(second, 1, 1, L, L, device="cpu")
    assert len(trace_counter) == 1
    q, k, v = _qkv()
    for mask, fn in ((mask_first, first), (mask_second, second), (mask_first, first)):
        out = flexjit.flex_attention(q, k, v, block_mask=mask)
        ref, _ = dense_attention(q, k, v, mask_mod=fn)
        torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)


def test_backward_uses_the_forwards_tensors(trace_counter):
    # Two "layers" with one score_mod code and different biases: layer 2's forward must not leak into
    # layer 1's backward.
    def make_layer(bias_):
        def rel(score, b, h, q_idx, kv_idx):
            return score + bias_[h, (q_idx - kv_idx).clamp(0, L - 1)]
        return rel

    biases = [torch.randn(H, L, requires_grad=True) for _ in range(2)]
    q, k, v = _qkv(grad=True)
    outs = [flexjit.flex_attention(q, k, v, score_mod=make_layer(b_)) for b_ in biases]
    ours = torch.autograd.grad(outs[0].sum() + 2 * outs[1].sum(), biases)
    refs = [dense_attention(q, k, v, make_layer(b_))[0] for b_ in biases]
    theirs = torch.autograd.grad(refs[0].sum() + 2 * refs[1].sum(), biases)
    assert len(trace_counter) == 1
    for got, want in zip(ours, theirs):
        torch.testing.assert_close(got.double(), want.double(), atol=1e-4, rtol=1e-4)


def test_tensor_made_inside_the_mod_is_traced_every_call(trace_counter):
    def made_inside(score, b, h, q_idx, kv_idx):
        offsets = torch.arange(H, dtype=torch.float32) * 0.5
        return score + offsets[h]

    _check(score_mod=made_inside)
    _check(score_mod=made_inside)
    assert len(trace_counter) == 2


# --- everything a trace read is in the key, or the mod is traced again --------------------------------

def test_eager_values_of_captured_tensors_are_not_reused(trace_counter):
    # t[0], w.sum() and float(...) run eagerly on real tensors: their values are baked into the trace.
    t, w = torch.tensor([1.5, 2.0]), torch.ones(3)
    mods = [lambda s, b, h, q, kv: s * t[0], lambda s, b, h, q, kv: s + w.sum() * 0.1,
            lambda s, b, h, q, kv: s * float(t[1]), lambda s, b, h, q, kv: torch.where(t.sum() > 5, s, -s)]
    for mod in mods:
        _check(score_mod=mod)
    t.mul_(2.0)   # in place
    w = torch.full((3,), -4.0)   # rebound (the lambdas read the cell)
    for mod in mods:
        _check(score_mod=mod)
    assert len(trace_counter) == 8


def test_constants_made_in_the_mod_stay_cached(trace_counter):
    temperature = torch.tensor(0.5)   # 0-d: keyed by value

    def scaled(score, b, h, q_idx, kv_idx):
        return score * temperature + torch.tensor(2.0).log() + bias[h, (q_idx - kv_idx).clamp(0, bias.shape[1] - 1)]

    for _ in range(3):
        _check(score_mod=scaled)
    assert len(trace_counter) == 1
    temperature = torch.tensor(2.0)
    _check(score_mod=scaled)
    assert len(trace_counter) == 2


class _Cfg:
    scale = 2.0

    def __init__(self):
        self.offset = 0.25

    def score_mod(self, score, b, h, q_idx, kv_idx):
        return score * self.scale + self.offset   # scale: a class attribute read through self

    def __call__(self, score, b, h, q_idx, kv_idx):
        return score * _GLOBAL_SCALE


_GLOBAL_SCALE = 1.0


def test_class_attributes_are_read_each_call(trace_counter, monkeypatch):
    by_class = lambda s, b, h, q, kv: s * _Cfg.scale   # noqa: E731
    cfg = _Cfg()
    _check(score_mod=by_class)
    _check(score_mod=cfg.score_mod)
    monkeypatch.setattr(_Cfg, "scale", -3.0)
    _check(score_mod=by_class)
    _check(score_mod=cfg.score_mod)
    assert len(trace_counter) == 4
    _check(score_mod=by_class)
    assert len(trace_counter) == 4


def test_a_callable_objects_call_method_is_walked(trace_counter, monkeypatch):
    cfg = _Cfg()
    _check(score_mod=cfg)
    monkeypatch.setattr(__import__(__name__), "_GLOBAL_SCALE", 3.0)
    _check(score_mod=cfg)
    assert len(trace_counter) == 2


def test_module_attributes_are_read_each_call(trace_counter):
    settings = types.ModuleType("settings")
    settings.window = 3

    def sliding(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() <= settings.window

    _check(mask_mod=sliding)
    settings.window = 6
    _check(mask_mod=sliding)
    _check(mask_mod=sliding)
    assert len(trace_counter) == 2


def test_globals_lookups_are_traced_every_call(trace_counter, monkeypatch):
    def by_globals(score, b, h, q_idx, kv_idx):
        return score * globals()["_GLOBAL_SCALE"]

    _check(score_mod=by_globals)
    monkeypatch.setitem(globals(), "_GLOBAL_SCALE", -2.0)
    _check(score_mod=by_globals)
    assert len(trace_counter) == 2


def test_environment_variables_are_read_each_call(trace_counter, monkeypatch):
    def from_env(score, b, h, q_idx, kv_idx):
        return score * float(os.environ.get("FLEXJIT_TEST_SCALE", "1"))

    monkeypatch.setenv("FLEXJIT_TEST_SCALE", "0.5")
    _check(score_mod=from_env)
    _check(score_mod=from_env)
    monkeypatch.setenv("FLEXJIT_TEST_SCALE", "-2")
    _check(score_mod=from_env)
    assert len(trace_counter) == 2


def test_composed_masks_stay_cached(trace_counter):
    from torch.nn.attention.flex_attention import and_masks as torch_and_masks

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    def near(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx) < 5

    for _ in range(2):
        _check(mask_mod=flexjit.and_masks(causal, near))
        _check(mask_mod=flexjit.or_masks(causal, flexjit.noop_mask))
        _check(mask_mod=torch_and_masks(causal, near))
    assert len(trace_counter) == 3


def test_method_of_a_module_as_score_mod(trace_counter):
    class RelBias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.randn(H, L))

        def score_mod(self, score, b, h, q_idx, kv_idx):
            return score + self.bias[h, (q_idx - kv_idx).abs()]

    layer = RelBias()
    q, k, v = _qkv()
    flexjit.flex_attention(q, k, v, score_mod=layer.score_mod).sum().backward()
    ref, _ = dense_attention(q, k, v, layer.score_mod)
    want = torch.autograd.grad(ref.sum(), [layer.bias])[0]
    torch.testing.assert_close(layer.bias.grad.double(), want.double(), atol=1e-4, rtol=1e-4)
    flexjit.flex_attention(q, k, v, score_mod=layer.score_mod)
    assert len(trace_counter) == 1
