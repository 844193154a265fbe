"""convert covers torch, snnTorch and Norse layers; no weight stays error-free silently."""
import warnings

import pytest
import torch
import torch.nn as nn

import spikenoise as sn
from spikenoise.synapse.convert import safe_deepcopy
from spikenoise.synapse.inventory import unmapped_parameters

snn = pytest.importorskip("snntorch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    norse = pytest.importorskip("norse.torch")

T, B = 6, 3
WEIGHT_NAMES = ("weight", "V", "input_weights", "recurrent_weights")


def _steps(model, xs, step):
    """Run a step-wise model over xs (T, B, ...) and stack what ``step`` returns."""
    outs, state = [], None
    for x in xs:
        out, state = step(model, x, state)
        outs.append(out)
    return torch.stack(outs)


def _snntorch(model, xs):
    model.reset_mem() if hasattr(model, "reset_mem") else None
    outs = []
    for x in xs:
        r = model(x)
        outs.append(r[-1])  # membrane: graded, so every read weight shows
    return torch.stack(outs)


def _norse_cell(model, xs):
    return _steps(model, xs, lambda m, x, s: (lambda z, s2: (torch.cat([z, s2.v], -1), s2))(*m(x, s)))


def _norse_li(model, xs):
    return _steps(model, xs, lambda m, x, s: m(x, s))


def _norse_seq(model, xs):
    z, s = model(xs)
    return torch.cat([z, s.v.unsqueeze(0)], 0)


def _rnn(model, xs):
    out, h = model(xs)
    return torch.cat([out.flatten(), (h[0] if isinstance(h, tuple) else h).flatten()])


def _torch_cell(model, xs):
    def step(m, x, s):
        s = m(x, s)
        return (torch.cat(s, -1) if isinstance(s, tuple) else s), s
    return _steps(model, xs, step)


def _slstm(model, xs):
    syn, mem = model.reset_mem()
    outs = []
    for x in xs:
        spk, syn, mem = model(x, syn, mem)
        outs.append(mem)
    return torch.stack(outs)


def _call(model, xs):
    return model(xs)


def _spikes(*shape):
    return (torch.rand(*shape) < 0.5).float() * 2


# name -> (builder, input, runner); inputs are spikes (0/2, counts) or graded values
CASES = {
    "Linear": (lambda: nn.Linear(6, 4), lambda: _spikes(B, 6), _call),
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), lambda: _spikes(B, 3, 8), _call),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), lambda: _spikes(B, 2, 5, 5), _call),
    "Conv3d": (lambda: nn.Conv3d(2, 3, 2, padding=1), lambda: _spikes(B, 2, 3, 4, 4), _call),
    "RNN": (lambda: nn.RNN(5, 4, num_layers=2, bidirectional=True), lambda: torch.randn(T, B, 5), _rnn),
    "GRU": (lambda: nn.GRU(5, 4, batch_first=True), lambda: torch.randn(B, T, 5), _rnn),
    "LSTM": (lambda: nn.LSTM(5, 4, num_layers=2), lambda: _spikes(T, B, 5), _rnn),
    "GRUCell": (lambda: nn.GRUCell(5, 4), lambda: _spikes(T, B, 5), _torch_cell),
    "LSTMCell": (lambda: nn.LSTMCell(5, 4), lambda: torch.randn(T, B, 5), _torch_cell),
    "RNNCell": (lambda: nn.RNNCell(5, 4, nonlinearity="relu"), lambda: torch.randn(T, B, 5), _torch_cell),
    # snnTorch SLSTM zeroes its state whenever input and hidden sizes differ: keep them equal
    "SLSTM": (lambda: snn.SLSTM(4, 4, threshold=0.1), lambda: torch.rand(T, B, 4) * 2, _slstm),
    "RLeaky-all": (lambda: snn.RLeaky(beta=0.8, linear_features=5, threshold=0.3),
                   lambda: torch.rand(T, B, 5), _snntorch),
    "RLeaky-one": (lambda: snn.RLeaky(beta=0.8, all_to_all=False, V=torch.rand(5), threshold=0.3),
                   lambda: torch.rand(T, B, 5), _snntorch),
    "RLeaky-one-conv": (lambda: snn.RLeaky(beta=0.8, all_to_all=False, V=torch.rand(2, 1, 1), threshold=0.3),
                        lambda: torch.rand(T, B, 2, 3, 3), _snntorch),
    "RSynaptic-conv": (lambda: snn.RSynaptic(alpha=0.5, beta=0.8, conv2d_channels=2, kernel_size=3, threshold=0.3),
                       lambda: torch.rand(T, B, 2, 4, 4), _snntorch),
    "RSynaptic-one": (lambda: snn.RSynaptic(alpha=0.5, beta=0.8, all_to_all=False, V=0.5, threshold=0.3),
                      lambda: torch.rand(T, B, 5), _snntorch),
    "LIFRecurrentCell": (lambda: norse.LIFRecurrentCell(5, 4, p=norse.LIFParameters(v_th=torch.tensor(0.05))),
                         lambda: _spikes(T, B, 5), _norse_cell),
    "LSNNRecurrent": (lambda: norse.LSNNRecurrent(5, 4, p=norse.LSNNParameters(v_th=torch.tensor(0.05))),
                      lambda: _spikes(T, B, 5), _norse_seq),
    "LIFAdExRecurrentCell": (lambda: norse.LIFAdExRecurrentCell(5, 4, p=norse.LIFAdExParameters(
        v_th=torch.tensor(0.05))), lambda: _spikes(T, B, 5), _norse_cell),
    "SequentialState-LIFRecurrent": (lambda: norse.SequentialState(
        nn.Linear(5, 6), norse.LIFRecurrent(6, 4, p=norse.LIFParameters(v_th=torch.tensor(0.05))), nn.Linear(4, 3)),
        lambda: _spikes(T, B, 5), lambda m, xs: m(xs)[0]),
    "LILinearCell": (lambda: norse.LILinearCell(5, 4), lambda: _spikes(T, B, 5), _norse_li),
}


def _quantized_reference(model, em):
    """The float model with every weight replaced by what the converted synapse stores."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith(WEIGHT_NAMES) and p.is_floating_point():
                s = em.fit_scale(p)
                p.copy_(em.quantize(p / s) * s)
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_weight_is_noisy(case):
    build, make_input, run = CASES[case]
    torch.manual_seed(0)
    model = build()
    x = make_input()
    em0 = sn.MultiLevelNVM.noise_level(0)
    net = sn.convert(model, em0, errors="static")
    assert unmapped_parameters(net) == []
    # noise level 0 equals the network with quantized weights
    ref = _quantized_reference(safe_deepcopy(model), em0)
    with torch.no_grad():
        clean = run(net, x)
        torch.testing.assert_close(clean, run(ref, x), rtol=1e-5, atol=1e-5)
    # and each synapse on its own changes the output under errors
    em = sn.MultiLevelNVM.noise_level(3)
    syn = list(sn.synapses(net))
    assert syn
    for k, s in enumerate(syn):
        sn.configure(net, errors="none")
        s.set_errors(errors="dynamic", error_model=em)
        with torch.no_grad():
            noisy = [run(net, x) for _ in range(3)]
        assert any(not torch.allclose(y, clean) for y in noisy), f"synapse {k} ({type(s).__name__}) never noisy"


def test_unknown_weight_module_raises_and_names_it():
    model = nn.Sequential(nn.Linear(3, 4), nn.Embedding(4, 3), nn.Sequential(nn.ConvTranspose2d(2, 2, 1)))
    with pytest.raises(ValueError) as err:
        sn.convert(model)
    msg = str(err.value)
    assert "1.weight" in msg and "Embedding" in msg and "2.0.weight" in msg and "keep_clean" in msg
    net = sn.convert(model, keep_clean=["1", "2"])
    assert isinstance(net[0], sn.NoisyLinear) and type(net[1]) is nn.Embedding
    assert type(net[2][0]) is nn.ConvTranspose2d
    with pytest.raises(ValueError, match="keep_clean"):
        sn.convert(model, keep_clean=["nope"])


def test_keep_clean_leaves_a_supported_layer_clean():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net = sn.convert(model, keep_clean=["1"])
    assert isinstance(net[0], sn.NoisyLinear) and type(net[1]) is nn.Linear


def test_coba_cell_is_reported_not_skipped():
    with pytest.raises(ValueError, match="CobaLIFCell"):
        sn.convert(nn.Sequential(nn.Linear(3, 4), norse.CobaLIFCell(4, 2)))


def test_norse_weight_used_outside_linear_raises():
    net = sn.convert(norse.LIFRecurrentCell(3, 2))
    with pytest.raises(TypeError, match="functional.linear"):
        torch.matmul(torch.ones(1, 3), net.input_weights)


def test_rleaky_one_to_one_keeps_no_stale_V():
    net = sn.convert(snn.RLeaky(beta=0.9, all_to_all=False, V=torch.rand(4)))
    assert "V" not in dict(net.named_parameters()) and "V" not in dict(net.named_buffers())


def test_summary_lists_every_synapse_with_levels():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(18, 4))
    net = sn.convert(model, sn.MultiLevelNVM.noise_level(2), errors="dynamic", reads="step")
    table = sn.summary(net)
    assert [r["path"] for r in table.rows] == ["0", "2"]
    row = table.rows[1]
    assert (row["type"], row["fan_in"], row["fan_out"], row["errors"], row["reads"]) == (
        "NoisyLinear", 18, 4, "dynamic", "step")
    counts = sum(int(part.split(":")[1]) for part in row["levels_used"].split())
    assert counts == 18 * 4
    assert "NoisyConv1d" in str(table) and "levels_used" in str(table)


def test_noisy_gru_static_draw_is_frozen_over_time_and_dynamic_is_not():
    """errors='static': one draw per inference, so a constant input gives the same gate
    pre-activations every step; 'dynamic' with reads='step' redraws every step."""
    torch.manual_seed(1)
    em = sn.MultiLevelNVM.noise_level(3)
    net = sn.convert(nn.GRU(4, 3), em, errors="static", reads="step")
    x = torch.ones(5, 2, 4)
    ih = net.ih[0]
    seen = []
    ih.register_forward_hook(lambda m, a, y: seen.append(y.detach()))
    net(x)
    assert all(torch.equal(seen[0], y) for y in seen[1:])
    sn.configure(net, errors="dynamic")
    seen.clear()
    net(x)
    assert not all(torch.equal(seen[0], y) for y in seen[1:])


def test_counters_count_conv1d_and_integer_spikes():
    from spikenoise.counters import count_operations
    net = sn.convert(nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(24, 2)))
    x = torch.zeros(1, 2, 8, dtype=torch.uint8)
    x[0, 0, 4] = 2  # two spikes into the middle of the signal: 3 taps x 3 output channels each
    report = count_operations(net, x)
    assert report["layers"]["0"]["synops"] == 2 * 3 * 3


def test_norse_autapse_free_cell_keeps_zero_diagonal_through_training():
    torch.manual_seed(0)
    cell = norse.LIFRecurrentCell(3, 4, p=norse.LIFParameters(v_th=torch.tensor(0.05)))
    assert not cell.autapses
    net = sn.convert(cell, sn.MultiLevelNVM.noise_level(2), errors="static", inference="manual")
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    state, loss = None, 0
    for _ in range(8):
        z, state = net(torch.full((2, 3), 20.0), state)
        loss = loss + state.v.sum() + state.i.sum()
    loss.backward()
    assert net.recurrent_weights.weight.grad.diagonal().abs().sum() > 0  # the diagonal would move
    opt.step()
    sn.new_inference(net)
    net(torch.ones(2, 3))
    assert torch.all(net.recurrent_weights.weight.diagonal() == 0)


def test_conv3d_per_spike_reads_are_exact_or_refused():
    """Dynamic per-spike Conv3d: the exact sampler's per-output variance matches n reads of each
    stored level; cases that would need the (2-d only) brute sampler raise."""
    from spikenoise.synapse import NoisyConv3d
    torch.manual_seed(0)
    em = sn.MultiLevelNVM.noise_level(2)
    conv = NoisyConv3d(1, 1, 1, bias=False, error_model=em, errors="dynamic", reads="spike", learn_scale=False)
    with torch.no_grad():
        conv.weight.fill_(-1.0)
        conv.scale.fill_(1.0)
    v = float(em.read_moments(torch.tensor([-1.0]))[1])
    x = torch.full((4000, 1, 1, 1, 1), 3.0)  # three spikes on one cell: three independent reads
    with torch.no_grad():
        y = conv(x)
    assert float(y.var()) == pytest.approx(3 * v, rel=0.08)
    with pytest.raises(ValueError, match="brute"):
        conv(x * 0.5)  # graded input


@pytest.mark.parametrize("make", [lambda: snn.LeakyParallel(4, 3)])
def test_snntorch_neurons_with_unmappable_weights_are_reported(make):
    with pytest.raises(ValueError, match="weight_ih"):
        sn.convert(nn.Sequential(nn.Linear(2, 4), make()))


@pytest.mark.parametrize("batched", [True, False])
def test_noisy_lstm_takes_initial_state_and_unbatched_input_like_torch(batched):
    torch.manual_seed(0)
    em = sn.MultiLevelNVM.noise_level(0)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    ref = _quantized_reference(safe_deepcopy(lstm), em)
    net = sn.convert(lstm, em, errors="none")
    x = torch.randn(2, 5, 3) if batched else torch.randn(5, 3)
    shape = (4, 2, 4) if batched else (4, 4)
    hx = (torch.randn(shape), torch.randn(shape))
    with torch.no_grad():
        out, (h, c) = net(x, hx)
        out_r, (h_r, c_r) = ref(x, hx)
    for a, b in ((out, out_r), (h, h_r), (c, c_r)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="hx"):
        net(x, (hx[0][:2], hx[1][:2]))


def test_frozen_weights_stay_frozen():
    net = sn.convert(snn.RLeaky(beta=0.9, linear_features=4, learn_recurrent=False))
    assert not net.recurrent.weight.requires_grad and not net.recurrent.bias.requires_grad
    one = sn.convert(snn.RLeaky(beta=0.9, all_to_all=False, V=torch.rand(4), learn_recurrent=False))
    assert not one.recurrent.weight.requires_grad
    lin = nn.Linear(2, 2)
    assert sn.convert(lin).weight.requires_grad
