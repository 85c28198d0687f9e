"""The torch functions added for issue 14 (sin, cos, tan, atan, erf, log1p, expm1, pow with a traced or
fractional exponent, round, trunc, sign, softplus, gelu, reciprocal, nan_to_num, fmod, shifts,
div(rounding_mode="trunc")) and captures of float64 / int8 / uint8 / int16 tensors: flexjit's CPU path against
torch's eager flex_attention in float64 (outputs, LSE), gradients against a dense float64 torch reference with
autograd (torch's CPU flex_attention has no backward), block masks against torch's."""
import pytest
import torch
import torch.nn.attention.flex_attention as tflex
import torch.nn.functional as F

import flexjit
from reference import dense_attention

B, H, L, D = 1, 2, 17, 8
ATOL, RTOL = 2e-5, 1e-4

_g = torch.Generator().manual_seed(14)
W = (torch.rand(H, L, generator=_g) + 0.25).requires_grad_()   # a learned, positive per-(head, key) weight


def _qkv(grad=False):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, L, D, generator=g).requires_grad_(grad) for _ in range(3)]


def score_mods(W):
    """The mods, reading a [H, >= L] weight W (a CPU or a GPU tensor)."""
    return {
        "trig": lambda s, b, h, q, kv: torch.sin(s * W[h, kv]) + torch.cos(s) + torch.tan(s * 0.3) + torch.atan(3 * s),
        "methods": lambda s, b, h, q, kv: s.sin() + (s * W[h, q]).cos() + s.atan() + s.erf() + s.abs().log1p()
        + s.expm1() * 0.1,
        "erf_log1p_expm1": lambda s, b, h, q, kv: torch.erf(s * W[h, q]) + torch.log1p(s.abs() * W[h, kv])
        + torch.special.expm1(s * 0.5),
        "pow_traced_exponent": lambda s, b, h, q, kv: (s.abs() + 0.5) ** W[h, kv]
        + torch.pow(s.abs() + W[h, q], s * 0.2),
        "pow_fractional": lambda s, b, h, q, kv: (s.abs() + 1) ** 1.5 + torch.pow(W[h, kv], 0.3) - s.abs() ** 2.5,
        "pow_constant_base": lambda s, b, h, q, kv: s * torch.pow(-2.0, q % 3) + 0.5 ** (s * W[h, kv]),
        "round_trunc_sign": lambda s, b, h, q, kv: s * W[h, kv] + torch.round(s * 3) / 3 + torch.trunc(s * 2)
        + torch.round(s, decimals=1) + torch.round(s * 40, decimals=-1) * 0.01 + torch.sign(s)
        + torch.sign(q - kv) * 0.1
        + s.fix() * 0.1,
        "softplus_gelu": lambda s, b, h, q, kv: F.softplus(s * W[h, kv]) + F.softplus(s * 10, beta=2, threshold=5)
        + F.gelu(s) + F.gelu(s * W[h, q], approximate="tanh"),
        "reciprocal_nan_to_num": lambda s, b, h, q, kv: torch.reciprocal(s.abs() + W[h, kv])
        + torch.nan_to_num(torch.log(s * W[h, q]), nan=-1.0, neginf=-5.0).clamp(-5, 5),
        "fmod": lambda s, b, h, q, kv: torch.fmod(s * 3, W[h, kv] + 0.5) + torch.fmod(q - kv, 3) * 0.1
        + torch.fmod(-s, 0.7),
        "div_trunc": lambda s, b, h, q, kv: torch.div(s, W[h, kv] + 0.3, rounding_mode="trunc") * 0.1
        + torch.div(q - kv, 3, rounding_mode="trunc") * 0.1 + (q - kv).div(-4, rounding_mode="trunc") * 0.1,
        "shifts": lambda s, b, h, q, kv: s + ((q << (kv % 4)) >> 2) * 0.01 + (q >> 1) * 0.1
        + torch.bitwise_left_shift(kv, 1) * 0.01 + torch.bitwise_right_shift(q - kv, kv % 3) * 0.1
        + (1 << (kv % 5)) * 0.01,
        "where_method": lambda s, b, h, q, kv: s.where(q >= kv, s.sin()),
    }


SCORE_MODS = score_mods(W)


@pytest.mark.parametrize("name", SCORE_MODS)
def test_forward_matches_torch_eager_in_float64(name):
    q, k, v = _qkv()
    mod = SCORE_MODS[name]
    out, lse = flexjit.flex_attention(q, k, v, score_mod=mod, return_lse=True)
    with torch.no_grad():
        ref_out, ref_lse = tflex.flex_attention(q.double(), k.double(), v.double(), score_mod=mod, return_lse=True)
    torch.testing.assert_close(out.double(), ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(lse.double(), ref_lse, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", [n for n in SCORE_MODS if n not in ("shifts", "where_method")])
def test_gradients_match_the_float64_reference(name):
    q, k, v = _qkv(grad=True)
    mod = SCORE_MODS[name]
    out = flexjit.flex_attention(q, k, v, score_mod=mod)
    ref_out, _ = dense_attention(q, k, v, mod)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    leaves = [q, k, v, W]
    ours = torch.autograd.grad(out, leaves, grad_out)
    theirs = torch.autograd.grad(ref_out, leaves, grad_out.double())
    for got, want, what in zip(ours, theirs, ["dq", "dk", "dv", "dW"]):
        torch.testing.assert_close(got.double(), want.double(), atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}")


MASK_MODS = {
    "shift_blocks": lambda b, h, q, kv: (q >> 3) == (kv >> 3),
    "fmod_stride": lambda b, h, q, kv: (torch.fmod(q - kv, 4) == 0) & (q >= kv),
    "shifted_window": lambda b, h, q, kv: ((kv << 1) <= q + 6) & (q - kv).div(5, rounding_mode="trunc").eq(0),
    "trig_threshold": lambda b, h, q, kv: torch.cos((q - kv) * 0.2) > 0,
}


@pytest.mark.parametrize("name", MASK_MODS)
def test_mask_mods_match_torch_block_masks(name):
    # torch's masks work on the vmapped int32 indices (no float64 inside); BLOCK_SIZE 4 gives many partial and
    # full blocks, which the interval forms must classify soundly.
    q, k, v = _qkv()
    mod = MASK_MODS[name]
    ours = flexjit.create_block_mask(mod, B, H, L, L, device="cpu", BLOCK_SIZE=4)
    theirs = tflex.create_block_mask(mod, B, H, L, L, device="cpu", BLOCK_SIZE=4)
    out = flexjit.flex_attention(q, k, v, block_mask=ours)
    with torch.no_grad():
        ref = tflex.flex_attention(q.double(), k.double(), v.double(), block_mask=theirs)
    torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours.to_dense(), theirs.to_dense())


@pytest.mark.parametrize("dtype", [torch.float64, torch.int8, torch.uint8, torch.int16])
def test_captures_of_other_dtypes_are_read_converted(dtype):
    table = (torch.arange(L) % 7 - (0 if dtype == torch.uint8 else 3)).to(dtype)

    def bias(score, b, h, q_idx, kv_idx):
        return score + table[kv_idx] * 0.25 - table[q_idx]

    q, k, v = _qkv()
    out = flexjit.flex_attention(q, k, v, score_mod=bias)
    with torch.no_grad():
        ref = tflex.flex_attention(q.double(), k.double(), v.double(), score_mod=bias)
    torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)


def test_float64_parameter_receives_a_float64_gradient():
    bias = torch.randn(H, L, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)

    def mod(score, b, h, q_idx, kv_idx):
        return score + bias[h, kv_idx]

    q, k, v = _qkv(grad=True)
    out = flexjit.flex_attention(q, k, v, score_mod=mod)
    out.sum().backward()
    ref_out, _ = dense_attention(q, k, v, mod)
    (want,) = torch.autograd.grad(ref_out.sum(), [bias])
    assert bias.grad.dtype == torch.float64
    torch.testing.assert_close(bias.grad, want, atol=1e-4, rtol=1e-4)


def test_int_power_with_a_traced_int_exponent_is_refused():
    q, k, v = _qkv()
    with pytest.raises(flexjit.TraceError, match=r"int \*\* \(traced int\) is not traced"):
        flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + q_idx ** (kv_idx % 3))



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", SCORE_MODS)
def test_gpu_kernels_match_the_float64_reference(name):
    # FlashAttention-3's rule (test_gpu.py): flexjit's bf16 error against float64 at most twice the error of the
    # same attention computed by torch in bf16, plus an atol; outputs and gradients (the weight's included).
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, H, 257, 64, device="cuda", generator=g, dtype=torch.bfloat16).requires_grad_()
               for _ in range(3))
    weight = (torch.rand(H, 257, device="cuda", generator=g) + 0.25).requires_grad_()
    mod = score_mods(weight)[name]
    leaves = [q, k, v, weight]
    out = flexjit.flex_attention(q, k, v, score_mod=mod)
    ref_out, _ = dense_attention(q, k, v, mod)
    low_out, _ = dense_attention(q, k, v, mod, dtype=torch.bfloat16)
    grad_out = torch.randn_like(out)
    ours = torch.autograd.grad(out, leaves, grad_out, allow_unused=True)
    ref = torch.autograd.grad(ref_out, leaves, grad_out.double(), allow_unused=True)
    low = torch.autograd.grad(low_out, leaves, grad_out, allow_unused=True)
    for got, want, base, what in zip((out, *ours), (ref_out, *ref), (low_out, *low), ["out", "dq", "dk", "dv", "dW"]):
        if want is None:
            continue
        err = (got.double() - want.double()).abs().max().item()
        base_err = (base.double() - want.double()).abs().max().item()
        assert err <= 2 * base_err + 1e-3 * max(1.0, want.abs().max().item()), f"{name} {what}: {err} vs {base_err}"
