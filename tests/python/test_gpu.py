"""The seed variants through flexjit's generated kernels on a GPU, against torch's compiled flex_attention
and a dense float64 reference. Skipped without CUDA.

Accuracy rule (FlashAttention-3's): flexjit's error against the float64 reference must be at most twice
torch's own low-precision error plus a small atol, for the outputs, the LSE and every gradient (captured
tensors included).
"""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit
from reference import dense_attention
from variants import VARIANTS, make_variant

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICE = "cuda"
# (B, Hq, Hkv, Lq, Lkv, D); the last one runs the decode family (3 query rows, GQA groups of 5 packed per CTA).
SHAPES = [(2, 4, 4, 257, 257, 64), (1, 8, 2, 1000, 1000, 128), (2, 10, 2, 3, 3000, 128)]
CROSS_SHAPES = [(2, 4, 4, 129, 300, 64)]
ATOL = 1e-3

_compiled_flex = None


def _torch_flex(*args, **kwargs):
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(tflex.flex_attention, dynamic=False)
    return _compiled_flex(*args, **kwargs)


def _cases():
    for name in VARIANTS:
        cross = make_variant(name, 1, 1, 17, 33).cross
        for shape in CROSS_SHAPES if cross else SHAPES:
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")


def _inputs(shape, dtype, grad=False):
    B, Hq, Hkv, Lq, Lkv, D = shape
    g = torch.Generator(device=DEVICE).manual_seed(0)
    make = lambda H, L: torch.randn(B, H, L, D, device=DEVICE, generator=g, dtype=dtype)  # noqa: E731
    return [t.requires_grad_(grad) for t in (make(Hq, Lq), make(Hkv, Lkv), make(Hkv, Lkv))]


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, shape", list(_cases()))
def test_forward_matches_reference(name, shape, dtype, monkeypatch):
    B, Hq, Hkv, Lq, Lkv, D = shape
    if Lq <= 16:  # the decode family (opt-in until it has passed these tests on a device)
        monkeypatch.setenv("FLEXJIT_FWD_CONFIG", "decode=1")
    variant = make_variant(name, B, Hq, Lq, Lkv, device=DEVICE)
    q, k, v = _inputs(shape, dtype)
    gqa = Hq != Hkv
    ours_mask = theirs_mask = None
    if variant.mask_mod is not None:
        ours_mask = flexjit.create_block_mask(variant.mask_mod, B, Hq, Lq, Lkv, device=DEVICE)
        theirs_mask = tflex.create_block_mask(variant.mask_mod, B, Hq, Lq, Lkv, device=DEVICE)
    out, lse = flexjit.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=ours_mask,
                                      enable_gqa=gqa, return_lse=True)
    torch_out, torch_lse = _torch_flex(q, k, v, score_mod=variant.score_mod, block_mask=theirs_mask,
                                       enable_gqa=gqa, return_lse=True)
    ref_out, ref_lse = dense_attention(q, k, v, variant.score_mod, variant.mask_mod)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert _max_err(out, ref_out) <= 2 * _max_err(torch_out, ref_out) + ATOL
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite)
    assert _max_err(lse[finite], ref_lse[finite]) <= 2 * _max_err(torch_lse[finite], ref_lse[finite]) + ATOL


def test_runs_on_torchs_current_stream():
    q, k, v = _inputs(SHAPES[0], torch.bfloat16)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = flexjit.flex_attention(q, k, v)
    stream.synchronize()
    ref, _ = dense_attention(q, k, v)
    assert _max_err(out, ref) < 2e-2


def test_block_mask_lists_on_the_gpu_match_cpu():
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    on_gpu = flexjit.create_block_mask(causal, 2, 2, 1000, 1000, device=DEVICE)
    on_cpu = flexjit.create_block_mask(causal, 2, 2, 1000, 1000, device="cpu")
    assert on_gpu.kv_num_blocks.device.type == "cuda"
    torch.testing.assert_close(on_gpu.kv_num_blocks.cpu(), on_cpu.kv_num_blocks)
    torch.testing.assert_close(on_gpu.to_dense().cpu(), on_cpu.to_dense())
    torch.testing.assert_close(on_gpu.to("cpu").full_kv_num_blocks, on_cpu.full_kv_num_blocks)


def test_create_block_mask_does_not_wait_and_follows_the_current_stream():
    """Built on a side stream behind half a second of GPU work, the mask call returns while that work still
    runs (no host synchronisation), and the lists are right once the stream has run (stream order); a host
    read of the lists (sparsity) waits for the build by itself."""
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    want = flexjit.create_block_mask(causal, 1, 1, 3000, 3000, device="cpu")
    flexjit.create_block_mask(causal, 1, 1, 3000, 3000, device=DEVICE)  # compiled and loaded beforehand
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(1_000_000_000)  # about half a second of cycles at the H200's clocks
        mask = flexjit.create_block_mask(causal, 1, 1, 3000, 3000, device=DEVICE)
        assert not stream.query(), "create_block_mask waited for the stream"
        assert mask.sparsity() == want.sparsity()  # waits for the build, not for later work
        kv = mask.kv_num_blocks.clone()  # enqueued on the same stream, after the build
    stream.synchronize()
    torch.testing.assert_close(kv.cpu(), want.kv_num_blocks)
    torch.testing.assert_close(mask.full_kv_indices.cpu(), want.full_kv_indices)


def test_float32_inputs_are_refused_on_the_gpu():
    q, k, v = _inputs(SHAPES[0], torch.float32)
    with pytest.raises(flexjit.FlexjitError, match="use float16 or bfloat16"):
        flexjit.flex_attention(q, k, v)


def test_captured_tensor_on_the_cpu_is_refused():
    bias = torch.zeros(4)
    q, k, v = _inputs(SHAPES[0], torch.bfloat16)
    with pytest.raises(flexjit.FlexjitError, match="captured tensor 'bias'.*move it to cuda"):
        flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, qi, kv: s + bias[h])


@pytest.mark.parametrize("name, shape", list(_cases()))
def test_backward_matches_reference(name, shape):
    dtype = torch.bfloat16
    B, Hq, Hkv, Lq, Lkv, D = shape
    variant = make_variant(name, B, Hq, Lq, Lkv, device=DEVICE, grad=True)
    q, k, v = _inputs(shape, dtype, grad=True)
    mask = None
    if variant.mask_mod is not None:
        mask = flexjit.create_block_mask(variant.mask_mod, B, Hq, Lq, Lkv, device=DEVICE)
    leaves = [q, k, v, *variant.captures]
    out = flexjit.flex_attention(q, k, v, score_mod=variant.score_mod, block_mask=mask, enable_gqa=Hq != Hkv)
    grad_out = torch.randn_like(out)
    ours = torch.autograd.grad(out, leaves, grad_out)
    ref_out, _ = dense_attention(q, k, v, variant.score_mod, variant.mask_mod)
    theirs = torch.autograd.grad(ref_out, leaves, grad_out.double())
    low_out, _ = dense_attention(q, k, v, variant.score_mod, variant.mask_mod, dtype=dtype)
    low = torch.autograd.grad(low_out, leaves, grad_out)
    for got, want, lowp in zip(ours, theirs, low):
        assert got.dtype == want.dtype or got.dtype == dtype
        assert _max_err(got, want) <= 2 * _max_err(lowp, want) + ATOL


def _check_against_dense(q, k, v, score_mod=None, mask_mod=None, scale=None, dtype=torch.bfloat16):
    """Forward and backward of flexjit's kernels against the dense float64 reference, with the rule above
    (the low-precision reference is the dense one run in `dtype`)."""
    mask = None if mask_mod is None else flexjit.create_block_mask(mask_mod, q.size(0), q.size(1), q.size(2),
                                                                   k.size(2), device=DEVICE)
    out, lse = flexjit.flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, scale=scale, return_lse=True)
    ref_out, ref_lse = dense_attention(q, k, v, score_mod, mask_mod, scale=scale)
    low_out, _ = dense_attention(q, k, v, score_mod, mask_mod, scale=scale, dtype=dtype)
    assert _max_err(out, ref_out) <= 2 * _max_err(low_out, ref_out) + ATOL
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite)
    assert _max_err(lse[finite], ref_lse[finite]) <= 2e-3
    grad_out = torch.randn_like(out)
    for got, want, lowp in zip(torch.autograd.grad(out, [q, k, v], grad_out),
                               torch.autograd.grad(ref_out, [q, k, v], grad_out.double()),
                               torch.autograd.grad(low_out, [q, k, v], grad_out)):
        assert _max_err(got, want) <= 2 * _max_err(lowp, want) + ATOL


@pytest.mark.parametrize("scale", [0.0, -0.125, -1.0])
@pytest.mark.parametrize("with_mods", [False, True], ids=["no_mods", "mods"])
def test_zero_and_negative_scales(scale, with_mods):
    # Without a score_mod the kernels fold the scale into exp2 (valid for scale > 0 only): such calls run
    # the score_mod path; with a score_mod the scale is applied before it in any case.
    q, k, v = _inputs((2, 4, 4, 257, 257, 64), torch.bfloat16, grad=True)
    score_mod = (lambda s, b, h, q_idx, kv_idx: s + (q_idx - kv_idx) * 0.01) if with_mods else None
    mask_mod = (lambda b, h, q_idx, kv_idx: q_idx >= kv_idx) if with_mods else None
    _check_against_dense(q, k, v, score_mod, mask_mod, scale=scale)


@pytest.mark.parametrize("shape", [(1, 2, 2, 0, 129, 64), (0, 2, 2, 129, 129, 64), (1, 2, 2, 129, 0, 64)],
                         ids=["no_queries", "no_batch", "no_keys"])
def test_empty_problems(shape):
    q, k, v = _inputs(shape, torch.bfloat16, grad=True)
    out, lse = flexjit.flex_attention(q, k, v, return_lse=True)
    assert out.shape == (shape[0], shape[1], shape[3], shape[5])
    assert torch.equal(out, torch.zeros_like(out)) and bool((lse == float("-inf")).all())   # no keys: masked
    out.sum().backward()
    for t in (q, k, v):
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_empty_captured_tensor_reads_zero():
    empty = torch.zeros(0, device=DEVICE)
    q, k, v = _inputs(SHAPES[0], torch.bfloat16)
    B, Hq, _, Lq, Lkv, _ = SHAPES[0]
    mask = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) | (empty[kv_idx] != 0), B, Hq,
                                     Lq, Lkv, device=DEVICE)
    out = flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + empty[q_idx], block_mask=mask)
    # The same mods over a tensor of real zeros: the same kernel arithmetic, so the same bits. (Plain causal
    # attention is not bit-equal: without a score_mod the kernels fold the scale into exp2's factor.)
    zeros = torch.zeros(max(Lq, Lkv), device=DEVICE)
    same = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) | (zeros[kv_idx] != 0), B, Hq,
                                     Lq, Lkv, device=DEVICE)
    want = flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + zeros[q_idx], block_mask=same)
    assert torch.equal(out, want)


def test_int64_values_outside_int32_are_refused():
    doc = (torch.arange(SHAPES[0][3], device=DEVICE) // 50) * 2 ** 32
    q, k, v = _inputs(SHAPES[0], torch.bfloat16)
    with pytest.raises(flexjit.FlexjitError, match=r"captured tensor 'doc' \(int64\) holds 21474836480"):
        flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + doc[q_idx] * 0)
    doc.copy_(torch.arange(SHAPES[0][3], device=DEVICE) // 50 - 2 ** 31)   # in range: read exactly
    _check_against_dense(*_inputs(SHAPES[0], torch.bfloat16, grad=True),
                         mask_mod=lambda b, h, q_idx, kv_idx: doc[q_idx] == doc[kv_idx])


def test_a_decode_step_replays_in_a_cuda_graph(monkeypatch):
    """The decode family under CUDA-graph capture: one step captured after a warm-up call (which compiles
    and sizes the workspace), then replayed for new queries and a growing position held in a captured int32
    tensor (no host synchronisation on the path), each replay against a dense torch reference."""
    monkeypatch.setenv("FLEXJIT_FWD_CONFIG", "decode=1")
    B, Hq, Hkv, L, D = 2, 8, 2, 2048, 128
    g = torch.Generator(device=DEVICE).manual_seed(0)
    k = torch.randn(B, Hkv, L, D, device=DEVICE, dtype=torch.bfloat16, generator=g)
    v = torch.randn(B, Hkv, L, D, device=DEVICE, dtype=torch.bfloat16, generator=g)
    q = torch.randn(B, Hq, 1, D, device=DEVICE, dtype=torch.bfloat16, generator=g)
    pos = torch.zeros(1, device=DEVICE, dtype=torch.int32)
    slopes = torch.linspace(0.01, 0.1, Hq, device=DEVICE)

    def step_mod(score, b, h, q_idx, kv_idx):  # ALiBi from the current position, the future masked
        return torch.where(kv_idx <= pos[0], score - slopes[h] * (pos[0] - kv_idx), float("-inf"))

    flexjit.flex_attention(q, k, v, score_mod=step_mod, enable_gqa=True)  # warm-up: compile, workspace
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = flexjit.flex_attention(q, k, v, score_mod=step_mod, enable_gqa=True)
    for p in (0, 5, 700, L - 1):
        pos.fill_(p)
        q.copy_(torch.randn(B, Hq, 1, D, device=DEVICE, dtype=torch.bfloat16, generator=g))
        graph.replay()
        s = (q.float() @ k.float().repeat_interleave(Hq // Hkv, 1).transpose(-1, -2)) / D ** 0.5
        j = torch.arange(L, device=DEVICE)
        s = torch.where(j <= p, s - slopes.view(1, -1, 1, 1) * (p - j), float("-inf"))
        want = torch.softmax(s, -1) @ v.float().repeat_interleave(Hq // Hkv, 1)
        assert _max_err(out, want) < 2e-2, p
