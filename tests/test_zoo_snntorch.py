"""The zoo on snnTorch: the SCNN's LIF is an snntorch.Leaky with the same numbers as before, and
SpikGRU is an snnTorch-style neuron that plugs into user networks and converts."""
import pytest
import snntorch
import torch
import torch.nn as nn

import spikenoise as sn
from spikenoise.models import SCNN, SRNN
from spikenoise.neurons import LIF, LeakyLIF, SpikGRU


def _reference_scnn_forward(model: SCNN, x: torch.Tensor) -> torch.Tensor:
    """SCNN.forward as it was, with the explicit-state LIF sharing the model's beta."""
    model.start_inference(x, fixed_time=True)
    lifs = []
    for lif in model.lifs:
        ref = LIF(tuple(lif.beta.shape))
        ref.beta = lif.beta
        lifs.append(ref)
    img = x.unsqueeze(1)
    states, m, total = [None] * len(model.convs), None, 0.0
    cur1 = model.convs[0](img) if model.convs[0].reads == "once" else None
    for _ in range(model.n_steps):
        h = img
        for k, (conv, lif) in enumerate(zip(model.convs, lifs)):
            cur = cur1 if k == 0 and cur1 is not None else conv(h)
            h, states[k] = lif(cur, states[k])
            model.record_spikes(f"lif{k + 1}", h)
        m = model.readout(model.fc(h.flatten(1)), m)
        total = total + m
    return total / model.n_steps


@pytest.mark.parametrize("errors", ["none", "static", "dynamic"])
def test_scnn_on_snntorch_leaky_gives_the_same_outputs_and_gradients(errors):
    torch.manual_seed(0)
    model = SCNN(4, sn.MultiLevelNVM.noise_level(2), errors, timesteps=4, channels=(4, 6, 8),
                 input_shape=(20, 12), input_reads="step")
    assert all(isinstance(lif, snntorch.Leaky) for lif in model.lifs)
    with torch.no_grad():
        for lif in model.lifs:  # distinct per-channel betas, so the channel axis matters
            lif.beta.uniform_(0.5, 0.95)
        for conv in model.convs:  # enough current that every layer spikes
            conv.scale.mul_(4.0)
    x = torch.rand(3, 20, 12) * 3
    results = []
    for forward in (model, lambda v: _reference_scnn_forward(model, v)):
        model.zero_grad()
        torch.manual_seed(1)
        y = forward(x)
        (y * torch.arange(1.0, 5.0)).sum().backward()
        results.append((y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (y_new, g_new), (y_ref, g_ref) = results
    assert model.spike_counts["lif3"].sum() > 0
    assert torch.equal(y_new, y_ref)
    assert g_new.keys() == g_ref.keys() and any(n.startswith("lifs") for n in g_new)
    for n in g_new:
        assert torch.equal(g_new[n], g_ref[n]), n


def test_leaky_lif_state_dict_matches_lif_and_is_not_registered_globally():
    lif = LeakyLIF((3, 1, 1))
    assert list(lif.state_dict()) == list(LIF((3, 1, 1)).state_dict()) == ["beta"]
    assert lif not in snntorch.SpikingNeuron.instances
    lif.load_state_dict(LIF((3, 1, 1), beta_init=0.6).state_dict())
    assert torch.all(lif.beta == 0.6)


def test_spikgru_neuron_equals_the_zoo_layer():
    """The neuron with the zoo layer's recurrent synapse and surrogate, fed by the layer's W, is
    that layer: same spikes and same gradients."""
    torch.manual_seed(0)
    model = SRNN(3, sn.MultiLevelNVM.noise_level(2), "static", hidden=(5,), input_shape=(6, 4))
    layer = model.layers[0]
    neuron = SpikGRU(5, recurrent=layer.U, gamma=layer.gamma)
    neuron.alpha = layer.alpha
    x = torch.rand(2, 6, 4) * 4
    outs, grads = [], []
    for step in (lambda xt, st: layer(xt, st), lambda xt, st: neuron(layer.W(xt), st)):
        sn.new_inference(model)
        model.zero_grad()
        torch.manual_seed(2)
        state, spikes = None, []
        for t in range(6):
            s, state = step(x[:, t], state)
            spikes.append(s)
        out = torch.stack(spikes)
        (out.sum() + state[1].sum()).backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert outs[0].sum() > 0
    assert torch.equal(outs[0], outs[1])
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        assert torch.equal(grads[0][n], grads[1][n]), n


def test_spikgru_in_a_user_network_converts_fully():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.gru, self.out = nn.Linear(4, 10), SpikGRU(5), nn.Linear(5, 2)

        def forward(self, x):
            state, total = None, 0
            for t in range(x.shape[1]):
                spk, state = self.gru(self.fc(x[:, t]), state)
                total = total + self.out(spk)
            return total

    net = sn.convert(Net(), sn.MultiLevelNVM.noise_level(1))
    assert [r["path"] for r in sn.summary(net).rows] == ["fc", "gru.recurrent", "out"]
    assert net(torch.rand(2, 7, 4)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        SpikGRU(5)(torch.zeros(2, 5))
