"""The fused whole-sequence recurrences (spikenoise/neurons/fused.py) against the step-by-step path.

Same outputs and the same gradients (inputs, hidden weights, scales, biases, leaks) as the
per-timestep autograd path the zoo layers take when ``FUSED_RECURRENCE`` is off, in float64 so
that rounding cannot flip a spike; static draws are the same draws (same random stream).
"""
import pytest
import torch

import spikenoise as sn
import spikenoise.models.base as zoo_base
from spikenoise.models import build_model
from spikenoise.neurons import LeakyReadout, spikgru_step
from spikenoise.neurons.fused import spikgru_sequence


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(name, errors, fused, monkeypatch, draws="row", seed=0):
    """Output, input gradient and parameter gradients of one training forward/backward."""
    monkeypatch.setattr(zoo_base, "FUSED_RECURRENCE", fused)
    torch.manual_seed(seed)
    model = build_model(name, n_classes=5, hidden=(12, 10), error_model=sn.MultiLevelNVM.noise_level(3),
                        errors=errors).double()
    if draws != "row":
        sn.configure(model, draws=draws)
    g = torch.Generator().manual_seed(1)
    x = (2.0 * torch.randn(3, 20, 40, generator=g, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.manual_seed(seed + 1)  # the draws
    out = model(x)
    (out * weights).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return out.detach(), x.grad, grads, model


@pytest.mark.parametrize("name", ["rnn", "srnn"])
@pytest.mark.parametrize("errors,draws", [("none", "row"), ("static", "row"), ("static", "batch"),
                                          ("dynamic", "row")])
def test_fused_path_equals_step_path(name, errors, draws, monkeypatch):
    calls = []
    seq = "light_gru_sequence" if name == "rnn" else "spikgru_sequence"
    module = __import__(f"spikenoise.models.{name}", fromlist=[seq])
    real = getattr(module, seq)
    monkeypatch.setattr(module, seq, lambda *a, **k: calls.append(1) or real(*a, **k))
    out, gx, grads, model = run(name, errors, True, monkeypatch, draws)
    # fused for every layer where the reads are the same at every step; dynamic reads step
    assert len(calls) == (0 if errors == "dynamic" else 2)
    ref_out, ref_gx, ref_grads, _ = run(name, errors, False, monkeypatch, draws)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-10, atol=1e-12)
    assert gx.abs().sum() > 0
    assert set(grads) == set(ref_grads)
    for n in ref_grads:
        assert ref_grads[n] is not None, n
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-10, atol=1e-12, msg=lambda m: f"{n}: {m}")
        if ".U." in n or "alpha" in n:
            assert grads[n].abs().sum() > 0, n  # the recurrence's own parameters do get a gradient
    if name == "srnn":
        counts = model.spike_counts["layer1"]
        assert 0 < counts.mean() < 19  # spikes fire, and not at every step: the surrogate matters


def fast_sigmoid_spike(v, threshold, gamma):
    """A different surrogate (fast sigmoid, slope 5) to inject: s = H(v - th), ds/dv = 1 / (1 + 5|x|)^2."""
    class FastSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad / (1.0 + 5.0 * x.abs()) ** 2

    return FastSigmoid.apply(v - threshold)


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("per_row", [False, True])
def test_spikgru_sequence_uses_the_injected_surrogate(per_row, detach_reset):
    """Gradients of the fused SpikGRU equal the stepped spikgru_step's with a custom spike_grad,
    for a shared recurrent matrix and for per-row reads (straight-through weight gradient), with
    and without a gradient through the reset term."""
    g = torch.Generator().manual_seed(0)
    B, T, H = 4, 15, 6
    dt = torch.float64
    wx = (1.5 * torch.randn(B, T, 2 * H, generator=g, dtype=dt)).requires_grad_(True)
    weight = torch.randn(2 * H, H, generator=g, dtype=dt).requires_grad_(True)
    scale = torch.tensor(0.7, dtype=dt, requires_grad=True)
    bias = (0.3 * torch.randn(2 * H, generator=g, dtype=dt)).requires_grad_(True)
    alpha = torch.rand(H, generator=g, dtype=dt).requires_grad_(True)
    reads = (weight.detach() + 0.2 * torch.randn(B, 2 * H, H, generator=g, dtype=dt)) if per_row else None
    dout = torch.randn(B, T, H, generator=g, dtype=dt)
    params = [wx, weight, scale, bias, alpha]

    out = spikgru_sequence(wx, weight, scale, bias, reads, alpha, 1.0, 30.0, fast_sigmoid_spike,
                           detach_reset=detach_reset)
    got = torch.autograd.grad((out * dout).sum(), params)

    z0 = wx.new_zeros(B, H)
    state, spikes = (z0, z0, z0), []
    for t in range(T):
        prev = state[2]
        if reads is None:
            u = prev @ weight.t()
        else:  # read weights in the value, straight-through gradient to the stored weights
            u = torch.bmm(reads, prev.unsqueeze(-1)).squeeze(-1) + prev @ (weight - weight.detach()).t()
        uz, ui = (u * scale + bias).chunk(2, -1)
        wz, wi = wx[:, t].chunk(2, -1)
        s, state = spikgru_step(wz, wi, uz, ui, state, alpha, 1.0, 30.0, fast_sigmoid_spike,
                                detach_reset=detach_reset)
        spikes.append(s)
    ref = torch.stack(spikes, 1)
    want = torch.autograd.grad((ref * dout).sum(), params)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert 0 < ref.mean() < 1
    for name, a, b in zip(["wx", "weight", "scale", "bias", "alpha"], got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
    # and the default surrogate (gamma 30) gives a different gradient: the injection is used
    other = torch.autograd.grad((spikgru_sequence(wx, weight, scale, bias, reads, alpha, 1.0, 30.0,
                                                  detach_reset=detach_reset) * dout).sum(), [wx])[0]
    assert (other - got[0]).abs().max() > 1e-3
    # and the reset's gradient path is used: the other setting gives a different gradient
    flipped = torch.autograd.grad((spikgru_sequence(wx, weight, scale, bias, reads, alpha, 1.0, 30.0, fast_sigmoid_spike,
                                                    detach_reset=not detach_reset) * dout).sum(), [wx])[0]
    assert (flipped - got[0]).abs().max() > 1e-3


def test_closed_form_readout_equals_stepping():
    g = torch.Generator().manual_seed(0)
    readout = LeakyReadout(5).double()
    with torch.no_grad():
        readout.beta.copy_(torch.tensor([0.8, 0.0, 1.0, 1.3, -0.2]))  # clamped to [0, 1] both ways
    cur = torch.randn(3, 30, 5, generator=g, dtype=torch.float64, requires_grad=True)
    got = readout.mean_over_time(cur)
    m, total = None, 0.0
    for c in cur.unbind(1):
        m = readout(c, m)
        total = total + m
    ref = total / cur.shape[1]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got.sum(), [cur, readout.beta]),
                    torch.autograd.grad(ref.sum(), [cur, readout.beta])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
