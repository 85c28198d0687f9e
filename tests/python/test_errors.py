"""Every user mistake raises flexjit.FlexjitError (a RuntimeError; TraceError, also a TypeError, for Python
constructs that cannot be traced) with a message that says what to do."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.attention.flex_attention as tflex

import flexjit

L = 17


def _qkv(dtype=torch.float32, B=1, H=2, Lq=L, Lkv=L, D=8, grad=False):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, n, D, generator=g).to(dtype).requires_grad_(grad) for n in (Lq, Lkv, Lkv)]


def _run_score(score_mod):
    q, k, v = _qkv()
    return flexjit.flex_attention(q, k, v, score_mod=score_mod)


def _run_mask(mask_mod):
    return flexjit.create_block_mask(mask_mod, 1, 2, L, L, device="cpu")


def test_exception_classes():
    assert issubclass(flexjit.FlexjitError, RuntimeError)
    assert issubclass(flexjit.TraceError, flexjit.FlexjitError) and issubclass(flexjit.TraceError, TypeError)
    assert flexjit.Error is flexjit.FlexjitError


# --- inputs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.int32])
def test_unsupported_input_dtype(dtype):
    q, k, v = _qkv(dtype)
    with pytest.raises(flexjit.FlexjitError, match=r"query has dtype torch\.\w+; use float16 or bfloat16"):
        flexjit.flex_attention(q, k, v)


def test_mixed_dtypes():
    q, k, v = _qkv()
    with pytest.raises(flexjit.FlexjitError, match="query, key and value must have one dtype"):
        flexjit.flex_attention(q, k.half(), v)


def test_wrong_rank():
    q, k, v = _qkv()
    with pytest.raises(flexjit.FlexjitError, match=r"query must be 4-D \[B, Hq, Q_LEN, D\], got shape \[2, 17, 8\]"):
        flexjit.flex_attention(q[0], k, v)


def test_head_dim_mismatch():
    q, k, v = _qkv()
    with pytest.raises(flexjit.FlexjitError, match="query and key head dims differ"):
        flexjit.flex_attention(q, k[..., :4], v)


def test_batch_mismatch():
    q, k, v = _qkv(B=2)
    with pytest.raises(flexjit.FlexjitError, match="batch sizes differ"):
        flexjit.flex_attention(q, k[:1], v[:1])


def test_non_contiguous_head_dim():
    q, k, v = _qkv()
    q = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    with pytest.raises(flexjit.FlexjitError, match=r"query must be contiguous in its last \(head\) dimension.*"
                                                   r"\.contiguous\(\)"):
        flexjit.flex_attention(q, k, v)


def test_gqa_needs_enable_gqa():
    q, k, v = _qkv(H=4)
    with pytest.raises(flexjit.FlexjitError, match="pass enable_gqa=True"):
        flexjit.flex_attention(q, k[:, :2], v[:, :2])
    with pytest.raises(flexjit.FlexjitError, match="must be a multiple of key/value heads"):
        flexjit.flex_attention(q, k[:, :3], v[:, :3], enable_gqa=True)


def test_unsupported_device():
    q, k, v = (t.to("meta") for t in _qkv())
    with pytest.raises(flexjit.FlexjitError, match="flexjit runs on cpu and cuda devices, got meta"):
        flexjit.flex_attention(q, k, v)


def test_captured_tensor_on_another_device():
    bias = torch.zeros(2, device="meta")
    with pytest.raises(flexjit.FlexjitError, match="flexjit runs on cpu and cuda devices"):
        _run_score(lambda s, b, h, q, kv: s + bias[h])


@pytest.mark.parametrize("scale, message", [(float("nan"), "scale must be finite, got nan"),
                                            (float("inf"), "scale must be finite, got inf"),
                                            ("0.5", "scale must be a number, got str"),
                                            (torch.ones(2), "scale must be a number, got Tensor")])
def test_bad_scale(scale, message):
    q, k, v = _qkv()
    with pytest.raises(flexjit.FlexjitError, match=message):
        flexjit.flex_attention(q, k, v, scale=scale)


@pytest.mark.parametrize("block_size, message", [
    ((16,), r"BLOCK_SIZE must be an int or a \(Q_BLOCK, KV_BLOCK\) pair of ints, got \(16,\)"),
    (16.5, r"BLOCK_SIZE must be an int or a \(Q_BLOCK, KV_BLOCK\) pair of ints, got 16.5"),
    ((16, 16, 16), r"pair of ints, got \(16, 16, 16\)"),
    ("16", r"pair of ints, got '16'"),
    (True, r"pair of ints, got True"),
    (2 ** 31, r"BLOCK_SIZE 2147483648 is outside \[1, 2147483647\]"),
    ((128, 0), r"BLOCK_SIZE 0 is outside \[1, 2147483647\]"),
])
def test_bad_block_size(block_size, message):
    with pytest.raises(flexjit.FlexjitError, match=message):
        flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 1, 32, 32, device="cpu",
                                  BLOCK_SIZE=block_size)


@pytest.mark.parametrize("args, message", [
    ((2 ** 63, 1, 32, 32), r"B 9223372036854775808 is outside \[1, 9223372036854775807\]"),
    ((1, 1.5, 32, 32), r"H must be an int or None, got 1.5"),
    ((1, 1, "32", 32), r"Q_LEN must be an int, got '32'"),
    ((1, 1, 32, -1), r"KV_LEN -1 is outside \[1, 9223372036854775807\]"),
])
def test_bad_block_mask_sizes(args, message):
    with pytest.raises(flexjit.FlexjitError, match=message):
        flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, *args, device="cpu")


def test_block_mask_for_other_lengths():
    q, k, v = _qkv()
    mask = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 1, 33, 33, device="cpu")
    with pytest.raises(flexjit.FlexjitError, match="the block mask was made for Q_LEN=33, KV_LEN=33"):
        flexjit.flex_attention(q, k, v, block_mask=mask)


def test_broadcast_block_mask_that_reads_b_or_h():
    q, k, v = _qkv(B=2)
    by_batch = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) | (b == 1), 1, 2, L, L,
                                         device="cpu", BLOCK_SIZE=16)
    with pytest.raises(flexjit.FlexjitError, match=r"made for B=1 but the query has B=2, and its mask_mod '<lambda>' "
                                                   r"reads b.*create the block mask with B=2"):
        flexjit.flex_attention(q, k, v, block_mask=by_batch)
    by_head = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx - kv_idx <= 4 * h, 2, None, L, L,
                                        device="cpu", BLOCK_SIZE=16)
    with pytest.raises(flexjit.FlexjitError, match=r"made for H=1 but the query has H=2, and its mask_mod '<lambda>' "
                                                   r"reads h"):
        flexjit.flex_attention(q, k, v, block_mask=by_head)
    causal = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, L, L, device="cpu")
    flexjit.flex_attention(q, k, v, block_mask=causal)   # ignores b and h: broadcast


def test_empty_captured_tensor_reads_zero():
    q, k, v = _qkv()
    empty = torch.zeros(0)
    mask = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) | (empty[kv_idx] != 0), 1, 2, L, L,
                                     device="cpu")
    out = flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + empty[q_idx], block_mask=mask)
    causal = flexjit.create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 2, L, L, device="cpu")
    torch.testing.assert_close(out, flexjit.flex_attention(q, k, v, block_mask=causal), atol=0, rtol=0)


_OUT_OF_MEMORY = """
import resource, torch, flexjit
q = torch.randn(1, 1, 1, 8)
k = torch.randn(1, 1, 1, 8).expand(1, 1, 2**30, 8)   # no memory, but the reference needs 8 GiB per row buffer
vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
try:
    flexjit.flex_attention(q, k, k)
except MemoryError:
    print("MemoryError")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_out_of_memory_in_the_cpu_reference_is_a_memory_error():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "MemoryError", run.stderr[-2000:]


def test_block_mask_of_another_type_is_rejected():
    q, k, v = _qkv()
    dense = tflex.create_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 1, L, L, device="cpu")
    with pytest.raises(flexjit.FlexjitError, match=r"block_mask must be a flexjit.BlockMask .* or torch's "
                                                   r"BlockMask, got torch.Tensor"):
        flexjit.flex_attention(q, k, v, block_mask=dense)


def test_max_scores_are_not_differentiable():
    q, k, v = (t.requires_grad_() for t in _qkv())
    out, aux = flexjit.flex_attention(q, k, v, return_aux=tflex.AuxRequest(lse=False, max_scores=True))
    assert aux.lse is None and not aux.max_scores.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        aux.max_scores.sum().backward()


# --- constructs that cannot be traced --------------------------------------------------------------------

_BOOL = r"used as a Python bool .* use torch\.where\(cond, a, b\)"
bias = torch.randn(2, L)


def _if_else(s, b, h, q, kv):
    if q > kv:
        return s
    return s * 0.5


UNTRACEABLE_SCORE_MODS = [
    (_if_else, _BOOL),
    (lambda s, b, h, q, kv: s if q >= kv else -math.inf, _BOOL),
    (lambda s, b, h, q, kv: s * (q >= kv and kv > 2), _BOOL + r".*`&`, `\|`, `~` instead of `and`, `or`, `not`"),
    (lambda s, b, h, q, kv: max(s, 0.0), r"torch\.maximum/torch\.minimum instead of max\(\)/min\(\)"),
    (lambda s, b, h, q, kv: s + math.exp(s), r"float\(\) and math\.\* functions cannot take it; use torch functions"),
    (lambda s, b, h, q, kv: s + float(q), r"float\(\) and math\.\* functions"),
    (lambda s, b, h, q, kv: s + int(q), r"int\(\) cannot take it; use \.int\(\)"),
    (lambda s, b, h, q, kv: s + math.floor(q / 2), r"use torch\.floor"),
    (lambda s, b, h, q, kv: s + [0.0, 1.0][h], r"cannot index a Python list .* \(torch\.tensor\(values\)\)"),
    (lambda s, b, h, q, kv: torch.softmax(s, 0), r"torch\.softmax is not supported in traced mods"),
    (lambda s, b, h, q, kv: s.softmax(0), r"'softmax' is not supported on a traced value"),
    (lambda s, b, h, q, kv: s + np.exp(q), r"numpy\.exp cannot take a traced value; use torch\.exp"),
    (lambda s, b, h, q, kv: s + bias, r"used as a whole; .* index it with the mod's indices"),
    (lambda s, b, h, q, kv: s + bias[h], r"captured tensor 'bias' has 2 dims but was indexed with 1"),
    (lambda s, b, h, q, kv: s + bias[:, q], r"slices, None and \.\.\. are not traced"),
    (lambda s, b, h, q, kv: s + bias[h, q * 0.5], r"indexed with a float expression .* use \.int\(\)"),
    (lambda s, b, h, q, kv: s + bias[h, q, kv], r"has 2 dims but was indexed with 3"),
    (lambda s, b, h, q, kv: s + bias[5, q], r"index 5 is out of range for dim 0"),
    (lambda s, b, h, q, kv: s + bias.to(torch.complex64)[h, q].real, r"has dtype torch\.complex64; a mod reads"),
    (lambda s, b, h, q, kv: s + q ** (kv % 3), r"int \*\* \(traced int\) is not traced"),
    (lambda s, b, h, q, kv: torch.div(s, 2.0, rounding_mode="round"), r"the rounding modes are None, 'trunc'"),
    (lambda s, b, h, q, kv: q >= kv, r"score_mod '<lambda>': must return float32, but returned bool"),
    (lambda s, b, h, q, kv: "text", r"must return a scalar tensor expression, got str"),
    (lambda s, b, h, q, kv: s.item(), r"has no Python value \(\.item\(\) needs one\)"),
]


@pytest.mark.parametrize("fn, message", UNTRACEABLE_SCORE_MODS)
def test_untraceable_score_mod(fn, message):
    with pytest.raises(flexjit.FlexjitError, match=message) as info:
        _run_score(fn)
    assert "score_mod '" in str(info.value)


def named_mask_mod(b, h, q_idx, kv_idx):
    return 0 <= q_idx - kv_idx < 4


UNTRACEABLE_MASK_MODS = [
    (named_mask_mod, r"mask_mod 'named_mask_mod': a traced value was used as a Python bool .* a chained comparison"),
    (lambda b, h, q, kv: not (q < kv), _BOOL),
    (lambda b, h, q, kv: (q - kv) * 1.0, r"must return bool \(true keeps the position\), but returned float32"),
    (lambda b, h, q, kv: q - kv, r"must return bool .* but returned int32"),
    (lambda b, h, q, kv: (q > 1.5) & 2.5, r"operator '&' needs bool \(logical\) or int \(bitwise\) operands"),
    (lambda b, h, q, kv: torch.where(q, True, False), r"the condition of where\(\) must be bool"),
]


@pytest.mark.parametrize("fn, message", UNTRACEABLE_MASK_MODS)
def test_untraceable_mask_mod(fn, message):
    with pytest.raises(flexjit.FlexjitError, match=message):
        _run_mask(fn)


@pytest.mark.parametrize("run, fn, message", [
    (_run_mask, lambda b, h, q: q > 0, r"mask_mod '<lambda>' cannot be called as mask_mod\(b, h, q_idx, kv_idx\)"),
    (_run_mask, lambda b, h, q, kv, extra: q > 0, r"mask_mod '<lambda>' cannot be called as mask_mod"),
    (_run_score, lambda s, b, h, q: s, r"score_mod '<lambda>' cannot be called as score_mod\(score, b, h, q_idx, "
                                       r"kv_idx\)"),
])
def test_wrong_number_of_arguments(run, fn, message):
    with pytest.raises(flexjit.TraceError, match=message):   # also a TypeError, as Python's own
        run(fn)


def test_error_inside_user_code_propagates():
    def broken(score, b, h, q_idx, kv_idx):
        raise KeyError("user bug")

    with pytest.raises(KeyError, match="user bug"):
        _run_score(broken)


def test_not_callable():
    with pytest.raises(flexjit.FlexjitError, match="score_mod must be a callable, got int"):
        _run_score(3)
