"""kernel_options: torch's tile keys are accepted and ignored; flexjit's {"deterministic": True} reaches the
backward, eagerly, inside torch.compile and on the custom-op route (on the CPU, whose reference is
deterministic anyway, the gradients are the same; on a GPU, skipped here, two runs give the same bits)."""
import pytest
import torch

import flexjit


def _qkv(device="cpu", dtype=torch.float32, L=70):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 2, L, 16, generator=g).to(device, dtype).requires_grad_() for _ in range(3)]


def _grads(kernel_options, device="cpu", dtype=torch.float32, L=70):
    q, k, v = _qkv(device, dtype, L)
    bias = torch.zeros(2, device=device, requires_grad=True)
    out = flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + bias[h],
                                 kernel_options=kernel_options)
    out.float().square().sum().backward()
    return [t.grad for t in (q, k, v, bias)]


def test_deterministic_reaches_the_backward_and_torch_keys_are_ignored():
    plain = _grads(None)
    for options in ({"deterministic": True}, {"BLOCK_M": 64, "num_stages": 2}, {"deterministic": False}):
        for a, b in zip(_grads(options), plain):
            assert torch.equal(a, b), options


@pytest.mark.parametrize("route", ["compile", "op"])
def test_deterministic_reaches_the_backward_through_torch_compile_and_the_op(route, monkeypatch):
    """Inside torch.compile(fullgraph=True) and on the custom-op route the flag travels with the op to its
    backward (it was refused there before); the gradients are eager's."""
    import flexjit.attention as attention
    seen = []
    real = attention._backward

    def spy(call, *args, **kwargs):
        seen.append(call.deterministic)
        return real(call, *args, **kwargs)
    monkeypatch.setattr(attention, "_backward", spy)
    if route == "op":  # the route tensor subclasses and dispatch modes take
        monkeypatch.setattr(attention, "_runs_through_op", lambda tensors: True)
    q, k, v = _qkv()
    bias = torch.zeros(2, requires_grad=True)

    def f(q, k, v, bias):
        return flexjit.flex_attention(q, k, v, score_mod=lambda s, b, h, q_idx, kv_idx: s + bias[h],
                                      kernel_options={"deterministic": True})
    run = torch.compile(f, fullgraph=True, backend="aot_eager") if route == "compile" else f
    run(q, k, v, bias).float().square().sum().backward()
    assert seen == [True]
    for a, b in zip([t.grad for t in (q, k, v, bias)], _grads(None)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("options, says", [
    ("fast", "kernel_options must be a dict"), ({"deterministic": 1}, "must be True or False"),
])
def test_bad_kernel_options_are_named(options, says):
    with pytest.raises(flexjit.FlexjitError, match=says):
        _grads(options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_deterministic_backward_repeats_bit_for_bit_on_the_gpu():
    first = _grads({"deterministic": True}, "cuda", torch.bfloat16, L=2048)
    second = _grads({"deterministic": True}, "cuda", torch.bfloat16, L=2048)
    for a, b in zip(first[:3], second[:3]):  # dq, dk, dv (captured-tensor gradients are still atomics)
        assert torch.equal(a, b)
