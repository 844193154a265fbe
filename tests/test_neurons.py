"""Neurons (spikenoise.neurons) and the model registry (spikenoise.models.registry)."""
from __future__ import annotations

import pytest
import torch

from spikenoise.models import MODEL_NAMES, MODELS, build_model, register_model
from spikenoise.neurons import LIF, GAMMA, LeakyReadout, lif_step, spike, spikgru_step


def test_lif_closed_form_and_custom_surrogate():
    # constant input 0.6, beta 0.5: v = 0.6, 0.9, 1.05 -> spike, then 0.525 + 0.6 - 1 = 0.125
    lif = LIF((1,), beta_init=0.5)
    state, spikes, vs = None, [], []
    for _ in range(4):
        s, state = lif(torch.full((1,), 0.6), state)
        spikes.append(float(s.detach()))
        vs.append(float(state[0].detach()))
    assert spikes == [0.0, 0.0, 1.0, 0.0]
    assert vs == pytest.approx([0.6, 0.9, 1.05, 0.125])
    # the surrogate is injected: a box surrogate of zero width kills the gradient
    dead = LIF((1,), spike_grad=lambda v, th, g: (v > th).float())
    v0 = torch.full((1,), 0.3, requires_grad=True)
    s, _ = dead(v0)
    assert not s.requires_grad
    s, _ = LIF((1,))(v0)
    s.sum().backward()
    assert float(v0.grad) == pytest.approx(1 / (1 + GAMMA * 0.7 ** 2))


def test_step_functions_match_modules():
    torch.manual_seed(0)
    cur, v, s = torch.randn(3, 4), torch.randn(3, 4), (torch.rand(3, 4) > 0.5).float()
    lif = LIF((4,))
    s2, (v2, _) = lif(cur, (v, s))
    s3, v3 = lif_step(cur, v, s, lif.beta.clamp(0, 1))
    assert torch.equal(s2, s3) and torch.equal(v2, v3)
    assert torch.equal(LeakyReadout(4)(cur, v), 0.8 * v + cur)
    z = torch.zeros(3, 4)
    out, (i, v4, _) = spikgru_step(z, cur, z, z, (z, z, z), torch.full((4,), 0.8))
    assert torch.allclose(v4, 0.5 * cur) and torch.equal(out, spike(0.5 * cur))


def test_one_registry_for_every_model():
    for name in ("cnn", "srnn", "vgg11", "binary_mlp", "resilience_rnn"):
        assert name in MODELS
    assert set(MODEL_NAMES) == {"cnn", "rnn", "scnn", "srnn", "cnn_pixel"}
    m = build_model("vgg11", num_classes=3, in_channels=1, input_size=(8, 8), width=0.0625)
    assert m(torch.randn(2, 8, 8)).shape == (2, 3)
    assert build_model("resilience_mlp", input_size=16, hidden=(4,))(torch.rand(2, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn", lambda **kw: None)
    with pytest.raises(ValueError, match="unknown model 'lstm'"):
        build_model("lstm")
