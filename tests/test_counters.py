"""Parameter, operation and spike-rate counters: exact on hand-computable cases."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import spikenoise as sn
from spikenoise.counters import conv_fanout, count_operations, count_parameters, spike_rates
from spikenoise.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Repeat(nn.Module):
    """Calls one synapse ``T`` times (timesteps), input ``(B, T, in)``."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.stack([self.layer(x[:, t]) for t in range(x.shape[1])], 1)


def test_linear_spike_hand_count():
    layer = sn.NoisyLinear(4, 3, reads="spike")
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 2.0, 0.0]])  # 2 spikes; a count of 2 = 2 spikes
    r = count_operations(layer, x)["layers"]["model"]
    assert r["calls"] == 1
    assert r["synops"] == (2 + 2) * 3 / 2  # per inference = per sample
    assert r["macs"] == 4 * 3
    assert r["ops"] == r["synops"] == r["weight_reads"]


def test_linear_graded_events_and_read_modes():
    x = torch.tensor([[0.5, 0.0, 0.0, -0.3], [0.0, 0.0, 0.0, 0.0]])  # graded: one event per non-zero
    counts = {}
    for reads in ("once", "step", "spike"):
        layer = sn.NoisyLinear(4, 3, reads=reads)
        counts[reads] = count_operations(Repeat(layer), torch.stack([x, x, x], 1))["layers"]["layer"]
    for r in counts.values():
        assert r["calls"] == 3 and r["macs"] == 3 * 12 and r["synops"] == 3 * 2 * 3 / 2
    assert counts["once"]["weight_reads"] == 12 and counts["once"]["ops"] == 36
    assert counts["step"]["weight_reads"] == 3 * 12 / 2  # the all-zero row reads nothing
    assert counts["spike"]["weight_reads"] == counts["spike"]["ops"] == 9


def test_conv_hand_count_with_padding():
    conv = sn.NoisyConv2d(1, 2, 3, stride=1, padding=1, reads="spike")
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1  # a corner spike reaches 4 output positions (one tap each)
    r = count_operations(conv, x)["layers"]["model"]
    assert r["synops"] == 4 * 2
    # dense: 4 corners x 4 valid taps + 4 edges x 6 + centre x 9 = 49 (padding taps are no operation)
    assert r["macs"] == 49 * 2
    x[0, 0, 1, 1] = 1  # the centre reaches all 9 positions
    assert count_operations(conv, x)["total"]["synops"] == (4 + 9) * 2


@pytest.mark.parametrize("kw", [dict(kernel_size=(6, 4), stride=2, padding=2),
                                dict(kernel_size=3, stride=(2, 1), padding=(0, 2), dilation=2, groups=3)])
def test_conv_counts_match_brute_unfold(kw):
    g = torch.Generator().manual_seed(0)
    conv = sn.NoisyConv2d(3, 6, reads="spike", **kw)
    x = (torch.rand(2, 3, 11, 9, generator=g) < 0.3).float()
    x[0, 1, 4, 4] = 3.0  # a count of 3 spikes
    r = count_operations(conv, x)["layers"]["model"]
    geo = dict(kernel_size=conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    fan = conv.out_channels // conv.groups
    brute_syn = F.unfold(x, **geo).sum() * fan / 2  # every (input event, tap, output position)
    brute_mac = F.unfold(torch.ones_like(x), **geo).sum() * fan / 2
    assert r["synops"] == pytest.approx(float(brute_syn))
    assert r["macs"] == pytest.approx(float(brute_mac))
    # every output position uses each weight at most once, and padding taps are no operation
    out_positions = F.unfold(torch.ones(1, 3, 11, 9), **geo).shape[-1]
    assert float(brute_mac) < conv.weight.numel() * out_positions
    assert float(conv_fanout(conv, x).sum()) * fan / 2 == pytest.approx(float(brute_syn))


def test_cnn_macs_at_paper_sizes():
    c = count_operations(build_model("cnn"), torch.randn(2, 67, 40))
    conv1 = c["layers"]["convs.0"]
    geo = dict(kernel_size=(6, 4), stride=2, padding=2)
    assert conv1["macs"] == F.unfold(torch.ones(1, 1, 67, 40), **geo).sum() * 16
    assert c["layers"]["fc"]["macs"] == 64 * 8 * 6 * 12
    assert c["total"]["ops"] == c["total"]["macs"] == sum(r["macs"] for r in c["layers"].values())
    # reads="once": every weight read once; weights of conv 6 x 4 (1-16-32-64 channels) and fc 64*8*6 -> 12
    assert c["total"]["weight_reads"] == 16 * 24 + 32 * 16 * 24 + 64 * 32 * 24 + 64 * 8 * 6 * 12 == 98688


def test_timesteps_add_and_batch_size_divides():
    layer = sn.NoisyLinear(2, 5, reads="spike")
    x = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])  # B=1, T=3: 3 spikes
    r = count_operations(Repeat(layer), x)["layers"]["layer"]
    assert r["calls"] == 3 and r["synops"] == 3 * 5

    class TimeMajor(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = sn.NoisyLinear(2, 5, reads="spike")

        def forward(self, x):  # (T, B, in)
            return [self.fc(x[t]) for t in range(x.shape[0])]

    x = torch.ones(4, 2, 2)  # T=4, B=2: every input a spike
    r = count_operations(TimeMajor(), x, batch_size=2)["layers"]["fc"]
    assert r["synops"] == 4 * 2 * 5


def test_count_parameters():
    layer = sn.NoisyLinear(4, 3)
    assert count_parameters(layer) == {"total": 12 + 3 + 1, "nvm_weights": 12, "layers": {"model": 16}}
    model = build_model("srnn")
    p = count_parameters(model)
    weights = 40 * 256 + 3 * 128 * 256 + 128 * 12  # [W; U] of two 128-unit layers, readout fc
    biases_scales = 4 * (256 + 1) + (12 + 1)
    neurons = 2 * 128 + 12  # alpha per hidden unit, beta per readout neuron
    assert p["total"] == sum(q.numel() for q in model.parameters()) == weights + biases_scales + neurons
    assert p["layers"]["layers.0"] == 128  # alpha
    assert p["nvm_weights"] == weights
    model.readout.beta.requires_grad_(False)
    assert count_parameters(model, trainable_only=True)["total"] == weights + biases_scales + neurons - 12


def test_spike_rates_hand_case():
    model = nn.Sequential(sn.NoisyLinear(4, 2), nn.ReLU(), sn.NoisyLinear(2, 1))
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])  # 3 of 8 inputs spike
    rates = spike_rates(model, x)
    assert rates.get("0") == 3 / 8
    with torch.no_grad():
        model[0].bias.fill_(0.123)  # graded hidden layer
    assert "2" not in spike_rates(model, x)
    assert "2" in spike_rates(model, x, spiking_only=False)


def test_model_counts_agree_with_spike_counts():
    model = build_model("scnn", input_shape=(20, 16), timesteps=3, input_reads="step")
    x = 2 * torch.randn(2, 20, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
    s1 = model.spike_counts["lif1"]
    rates = spike_rates(model, x)
    assert "convs.0" not in rates  # graded input
    assert rates["convs.1"] == pytest.approx(float(s1.mean()) / 3)
    c = count_operations(model, x)["layers"]
    # the synaptic operations are linear in the spikes: conv of the summed spike map
    assert c["convs.1"]["synops"] == pytest.approx(float(conv_fanout(model.convs[1], s1).sum()) * 32 / 2)
    assert c["convs.1"]["ops"] == c["convs.1"]["synops"] < c["convs.1"]["macs"]
    assert c["convs.0"]["ops"] == c["convs.0"]["macs"] and c["convs.0"]["calls"] == 3


def test_converted_snntorch_network():
    snn = pytest.importorskip("snntorch")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(6, 8), snn.Leaky(beta=0.9)
            self.fc2, self.lif2 = nn.Linear(8, 3), snn.Leaky(beta=0.9)

        def forward(self, x):  # (B, T, 6)
            mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
            out, self.spk1 = [], 0.0
            for t in range(x.shape[1]):
                s1, mem1 = self.lif1(self.fc1(x[:, t]), mem1)
                self.spk1 = self.spk1 + s1.sum()
                s2, mem2 = self.lif2(self.fc2(s1), mem2)
                out.append(s2)
            return torch.stack(out, 1)

    torch.manual_seed(0)
    net = sn.convert(Net(), errors="none", reads="spike")
    x = 3 * torch.rand(2, 5, 6)
    c = count_operations(net, x)["layers"]
    assert c["fc1"]["calls"] == 5 and c["fc1"]["synops"] == 5 * 6 * 8  # graded input: every non-zero
    assert c["fc2"]["synops"] == pytest.approx(float(net.spk1) * 3 / 2)
    assert "fc2" in spike_rates(net, x) and "fc1" not in spike_rates(net, x)


def test_needs_synapses_and_removes_hooks():
    with pytest.raises(ValueError, match="no noisy synapses"):
        count_operations(nn.Linear(2, 2), torch.ones(1, 2))
    layer = sn.NoisyLinear(2, 2)
    count_operations(layer, torch.ones(1, 2))
    spike_rates(layer, torch.ones(1, 2))
    assert len(layer._forward_hooks) == 0
