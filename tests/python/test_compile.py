"""flexjit.flex_attention inside torch.compile(fullgraph=True): one graph, no break, the mods traced by flexjit
and run by the flexjit::flex_attention custom op; outputs and gradients (inputs, parameters the mods read)
equal eager mode's. Also the custom op outside dynamo (make_fx, FakeTensorMode) and the eager op route."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from flexjit import attention
from reference import dense_attention


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class CountingBackend:
    """aot_eager (autograd through AOT, graphs run eagerly) that counts the graphs dynamo hands it."""

    def __init__(self):
        self.graphs = 0
        self.code = []

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        self.code.append(gm.code)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


class Block(torch.nn.Module):
    """A transformer block: qkv projection, flexjit attention with a learned relative bias (a closure made in
    forward that reads self.bias) and a causal block mask, output projection, MLP."""

    def __init__(self, dim=16, heads=2, length=40):
        super().__init__()
        self.heads, self.length = heads, length
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.bias = torch.nn.Parameter(torch.randn(heads, 2 * length) * 0.5)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))

    def forward(self, x, block_mask):
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)

        def relative_bias(score, b, h, q_idx, kv_idx):
            return score + self.bias[h, q_idx - kv_idx + self.length]

        a = flexjit.flex_attention(q, k, v, score_mod=relative_bias, block_mask=block_mask)
        x = x + self.proj(a.transpose(1, 2).reshape(B, S, D))
        return x + self.mlp(x)


def _run(model, inputs, **kwargs):
    """Output and the gradients of every parameter and input that requires one, for loss = sum(out * w)."""
    for p in model.parameters():
        p.grad = None
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    for t in leaves:
        t.grad = None
    out = model(*inputs, **kwargs)
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=out.dtype).view(out.shape)
    (out * weight).sum().backward()
    grads = [p.grad for p in model.parameters()] + [t.grad for t in leaves]
    return out.detach(), [None if g is None else g.clone() for g in grads]


def _assert_same(a, b, atol=1e-5, rtol=1e-4):
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=rtol)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b):
        assert (ga is None) == (gb is None)
        if ga is not None:
            torch.testing.assert_close(ga, gb, atol=atol, rtol=rtol)


def _block_inputs():
    torch.manual_seed(0)
    model = Block()
    mask = flexjit.create_block_mask(causal, None, None, 40, 40, device="cpu", BLOCK_SIZE=16)
    x = torch.randn(2, 40, 16, requires_grad=True)
    return model, (x, mask)


def test_transformer_block_compiles_in_one_graph_and_matches_eager():
    model, inputs = _block_inputs()
    eager = _run(model, inputs)
    backend = CountingBackend()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    _assert_same(_run(compiled, inputs), eager, atol=0, rtol=0)
    _assert_same(_run(compiled, inputs), eager, atol=0, rtol=0)   # a second step reuses the graph
    assert backend.graphs == 1
    assert "torch.ops.flexjit.flex_attention" in backend.code[0]
    explanation = torch._dynamo.explain(model)(*inputs)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0


def test_transformer_block_with_inductor():
    model, inputs = _block_inputs()
    eager = _run(model, inputs)
    compiled = torch.compile(model, fullgraph=True)   # inductor: the op is called from the generated code
    _assert_same(_run(compiled, inputs), eager)


def test_torch_block_mask_inside_the_compiled_graph():
    torch.manual_seed(1)
    model = Block(length=48)
    doc = torch.tensor([0] * 20 + [1] * 28, dtype=torch.int32)

    def same_doc_causal(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    mask = tflex.create_block_mask(same_doc_causal, 1, 1, 48, 48, device="cpu", BLOCK_SIZE=16)
    x = torch.randn(1, 48, 16, requires_grad=True)
    eager = _run(model, (x, mask))
    backend = CountingBackend()
    _assert_same(_run(torch.compile(model, fullgraph=True, backend=backend), (x, mask)), eager, atol=0, rtol=0)
    assert backend.graphs == 1


# --- mods of every shape, one compiled call each ----------------------------------------------------------

_g = torch.Generator().manual_seed(2)
GLOBAL_BIAS = torch.randn(3, 64, generator=_g).requires_grad_()
WINDOW = 8


def global_bias(score, b, h, q_idx, kv_idx):
    return score + GLOBAL_BIAS[h, (q_idx - kv_idx).abs().clamp(max=63)]


def windowed(b, h, q_idx, kv_idx):
    return (q_idx - kv_idx).abs() <= WINDOW


class Attention(torch.nn.Module):
    """flexjit attention over given q, k, v with mods chosen by `variant`, as a model would write them."""

    def __init__(self, variant, block_mask=None):
        super().__init__()
        self.variant, self.block_mask = variant, block_mask
        g = torch.Generator().manual_seed(3)
        self.bias = torch.nn.Parameter(torch.randn(3, 2, 64, generator=g) * 0.5)
        self.temperature = torch.nn.Parameter(torch.tensor(1.5))
        self.sinks = torch.nn.Parameter(torch.randn(3, generator=g))
        self.offset = torch.nn.Parameter(torch.full((3,), 0.2))
        self.register_buffer("doc", torch.tensor([0] * 10 + [1] * 13 + [2] * 10, dtype=torch.int32))
        self.bias64 = torch.nn.Parameter(torch.randn(3, 64, generator=g, dtype=torch.float64))
        self.register_buffer("doc8", torch.tensor([0] * 10 + [1] * 13 + [2] * 10, dtype=torch.int8))

    def forward(self, q, k, v):
        kwargs = {"block_mask": self.block_mask}
        variant = self.variant
        if variant == "global":
            kwargs["score_mod"] = global_bias
        elif variant == "closure_over_local":
            bias = self.bias[:, 0]

            def mod(score, b, h, q_idx, kv_idx):
                return score + bias[h, (q_idx - kv_idx).abs()]
            kwargs["score_mod"] = mod
        elif variant == "derived_tensor":
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: score + (self.bias * 2).tanh()[h, 1, q_idx]
        elif variant == "temperature":
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: score / self.temperature
        elif variant == "constants":
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: torch.where(
                (q_idx - kv_idx) % 3 == 0, torch.tensor(float("-inf")), score * 0.5 + 1)
        elif variant == "other_dtypes":   # read through float32 / int32 copies made in the graph
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: torch.where(
                self.doc8[q_idx] == self.doc8[kv_idx], score + self.bias64[h, kv_idx], score - 1)
        elif variant == "new_ops":
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: torch.sin(score) * self.temperature ** 1.5 + \
                torch.fmod(q_idx - kv_idx, 3) + torch.nn.functional.gelu(score) + ((q_idx >> 2) << 1) * 0.01
        elif variant == "softcap":
            kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: 20 * torch.tanh(score / 20)
        elif variant == "sink":
            kwargs["sink_mod"] = lambda b, h, q_idx: self.sinks[h]
        elif variant == "prob":
            kwargs["prob_mod"] = lambda p, b, h, q_idx, kv_idx, row: torch.relu(
                p - (self.offset[h] + 1).abs() / row.num_visible)
        elif variant == "lse":
            out, lse = flexjit.flex_attention(q, k, v, return_lse=True, **kwargs)
            return out + lse.unsqueeze(-1)   # a gradient flows through the lse
        elif variant == "aux":
            out, aux = flexjit.flex_attention(q, k, v, return_aux=tflex.AuxRequest(lse=True, max_scores=True),
                                              **kwargs)
            return out + aux.lse.unsqueeze(-1) * 0.5 + aux.max_scores.unsqueeze(-1)
        elif variant == "lse_only":   # a loss of the lse alone (the output's gradient is None), with a sink
            _, lse = flexjit.flex_attention(q, k, v, return_lse=True, sink_mod=lambda b, h, q_idx: self.sinks[h],
                                            **kwargs)
            return lse
        return flexjit.flex_attention(q, k, v, **kwargs)


_VARIANTS = ["global", "closure_over_local", "derived_tensor", "temperature", "constants", "other_dtypes", "new_ops",
             "softcap", "sink",
             "prob", "lse", "aux", "lse_only"]


def _qkv(B=1, H=3, L=33, D=8, seed=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("variant", _VARIANTS)
def test_mods_under_compile_match_eager(variant):
    model = Attention(variant)
    inputs = _qkv()
    eager = _run(model, inputs)
    if variant == "global":
        eager[1].append(GLOBAL_BIAS.grad.clone())
        GLOBAL_BIAS.grad = None
    backend = CountingBackend()
    compiled = _run(torch.compile(model, fullgraph=True, backend=backend), inputs)
    if variant == "global":
        compiled[1].append(GLOBAL_BIAS.grad.clone())
        GLOBAL_BIAS.grad = None
    _assert_same(compiled, eager, atol=0, rtol=0)
    assert backend.graphs == 1


def test_learned_parameters_receive_their_gradients_under_compile():
    for variant, name in (("closure_over_local", "bias"), ("derived_tensor", "bias"), ("temperature", "temperature"),
                          ("sink", "sinks"), ("prob", "offset"), ("other_dtypes", "bias64")):
        model = Attention(variant)
        _run(torch.compile(model, fullgraph=True, backend="aot_eager"), _qkv())
        grad = getattr(model, name).grad
        assert grad is not None and grad.abs().sum() > 0, variant
        torch._dynamo.reset()


@pytest.mark.parametrize("mask_kind", ["ours", "torch"])
def test_block_masks_reading_tensors_under_compile(mask_kind):
    doc = torch.tensor([0] * 10 + [1] * 13 + [2] * 10, dtype=torch.int32)

    def same_doc(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    make = flexjit.create_block_mask if mask_kind == "ours" else tflex.create_block_mask
    mask = make(flexjit.and_masks(same_doc, windowed) if mask_kind == "ours" else tflex.and_masks(same_doc, causal),
                1, 3, 33, 33, device="cpu", BLOCK_SIZE=16)
    model = Attention("global", mask)
    inputs = _qkv()
    eager = _run(model, inputs)
    GLOBAL_BIAS.grad = None
    compiled = _run(torch.compile(model, fullgraph=True, backend="aot_eager"), inputs)
    GLOBAL_BIAS.grad = None
    _assert_same(compiled, eager, atol=0, rtol=0)


def test_python_numbers_in_mods_under_compile():
    global WINDOW
    mask = flexjit.create_block_mask(causal, 1, 1, 33, 33, device="cpu", BLOCK_SIZE=16)

    def attend(q, k, v, window):
        return flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: torch.where(
            q_idx - kv_idx <= window, s, -float("inf")), block_mask=mask)

    backend = CountingBackend()
    compiled = torch.compile(attend, fullgraph=True, backend=backend)
    q, k, v = (t.detach() for t in _qkv(H=1))
    for window in (4, 4, 9, 2):
        ref, _ = dense_attention(q, k, v, mask_mod=lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) &
                                 (q_idx - kv_idx <= window))
        torch.testing.assert_close(compiled(q, k, v, window).double(), ref, atol=2e-5, rtol=1e-4)
    # dynamo specialises the first value, then makes the int symbolic (automatic dynamic): the mod reads it as a
    # captured 0-d tensor from then on, so 2 reuses the second graph
    assert backend.graphs == 2
    old = WINDOW
    try:
        windowed_mask = flexjit.create_block_mask(windowed, 1, 1, 33, 33, device="cpu", BLOCK_SIZE=16)
        WINDOW = 3   # the block mask was made with 8; its mask_mod's trace keeps the 8 it was made with
        out = torch.compile(lambda q, k, v: flexjit.flex_attention(q, k, v, block_mask=windowed_mask),
                            fullgraph=True, backend="aot_eager")(q, k, v)
        torch.testing.assert_close(out, flexjit.flex_attention(q, k, v, block_mask=windowed_mask), atol=0, rtol=0)
    finally:
        WINDOW = old


def test_layers_sharing_mod_code_read_their_own_tensors():
    class Layer(torch.nn.Module):
        def __init__(self, seed):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.randn(3, 64, generator=torch.Generator().manual_seed(seed)))

        def forward(self, q):
            return flexjit.flex_attention(q, q, q, score_mod=lambda s, b, h, q_idx, kv_idx: s + self.bias[h, kv_idx])

    model = torch.nn.Sequential(Layer(5), Layer(6))
    q = _qkv()[0]
    eager = _run(model, (q,))
    backend = CountingBackend()
    _assert_same(_run(torch.compile(model, fullgraph=True, backend=backend), (q,)), eager, atol=0, rtol=0)
    assert backend.graphs == 1


# --- errors while dynamo traces a mod -------------------------------------------------------------------

def _compile_error(score_mod):
    q, k, v = (t.detach() for t in _qkv())
    with pytest.raises(Exception) as info:
        torch.compile(lambda q, k, v: flexjit.flex_attention(q, k, v, score_mod=score_mod), fullgraph=True,
                      backend="aot_eager")(q, k, v)
    return str(info.value)


def test_untraceable_function_under_compile_names_the_mod():
    message = _compile_error(lambda score, b, h, q_idx, kv_idx: torch.special.erfcx(score))
    assert "score_mod '<lambda>'" in message and "is not supported in traced mods" in message


def test_negative_constant_index_under_compile_is_refused():
    message = _compile_error(lambda score, b, h, q_idx, kv_idx: score + GLOBAL_BIAS[h, -1])
    assert "negative constant -1" in message and "index with size - 1" in message


# --- the custom op outside dynamo -----------------------------------------------------------------------

def test_make_fx_records_the_custom_op():
    from torch.fx.experimental.proxy_tensor import make_fx
    mask = flexjit.create_block_mask(causal, 1, 1, 33, 33, device="cpu", BLOCK_SIZE=16)
    q = torch.randn(1, 3, 33, 8)
    gm = make_fx(lambda q: flexjit.flex_attention(q, q, q, score_mod=global_bias, block_mask=mask))(q)
    assert "torch.ops.flexjit.flex_attention.default" in gm.code
    torch.testing.assert_close(gm(q), flexjit.flex_attention(q, q, q, score_mod=global_bias, block_mask=mask),
                               atol=0, rtol=0)


def test_fake_tensors_give_the_output_shapes():
    from torch._subclasses import FakeTensorMode
    with FakeTensorMode():
        q, k, v = torch.randn(2, 4, 17, 8), torch.randn(2, 2, 23, 8), torch.randn(2, 2, 23, 5)
        out, aux = flexjit.flex_attention(q, k, v, enable_gqa=True,
                                          return_aux=tflex.AuxRequest(lse=True, max_scores=True))
    assert out.shape == (2, 4, 17, 5) and out.dtype == torch.float32
    assert aux.lse.shape == aux.max_scores.shape == (2, 4, 17)


@pytest.mark.parametrize("variant", ["closure_over_local", "sink", "prob", "lse", "aux", "lse_only"])
def test_eager_custom_op_route_equals_the_direct_route(variant, monkeypatch):
    model = Attention(variant, flexjit.create_block_mask(windowed, 1, 3, 33, 33, device="cpu", BLOCK_SIZE=16))
    inputs = _qkv()
    direct = _run(model, inputs)
    monkeypatch.setattr(attention, "_runs_through_op", lambda tensors: True)
    _assert_same(_run(model, inputs), direct, atol=0, rtol=0)


# --- on a GPU: CUDA graphs ------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_transformer_block_under_cuda_graphs_matches_eager():
    # mode="reduce-overhead": inductor's graph, replayed as CUDA graphs (torch warms up before recording, which
    # compiles flexjit's kernels; the ops never wait for the host). Several steps replay the recorded graphs;
    # outputs and every gradient (the bias the score_mod reads included) equal eager mode's, bf16 tolerances.
    torch.manual_seed(0)
    model = Block(dim=64, heads=2, length=257).cuda().to(torch.bfloat16)
    mask = flexjit.create_block_mask(causal, None, None, 257, 257, device="cuda", BLOCK_SIZE=128)
    x = torch.randn(2, 257, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    eager = _run(model, (x, mask))
    compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    for _ in range(4):
        got = _run(compiled, (x.detach().clone().requires_grad_(), mask))
    (out_c, grads_c), (out_e, grads_e) = got, eager
    torch.testing.assert_close(out_c, out_e, atol=2e-2, rtol=2e-2)
    for gc, ge in zip(grads_c[:-1], grads_e[:-1]):   # the last is x's: a new leaf each step
        torch.testing.assert_close(gc, ge, atol=5e-2, rtol=5e-2)
