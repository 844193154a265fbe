"""The keyword-spotting model zoo: shapes, read semantics, equations and gradient flow."""
import pytest
import torch

import spikenoise as sn
from spikenoise.models import (CNN, MODEL_NAMES, RNN, SCNN, SRNN, CNNPerPixel, LightGRULayer, SpikGRULayer,
                               build_model, spike)

SMALL = {"cnn": dict(input_shape=(20, 16)), "cnn_pixel": dict(input_shape=(20, 16)),
         "scnn": dict(input_shape=(20, 16), timesteps=4), "rnn": dict(hidden=(16, 16)),
         "srnn": dict(hidden=(16, 16))}
SMALL_X = {"cnn": (2, 20, 16), "cnn_pixel": (2, 20, 16), "scnn": (2, 20, 16), "rnn": (2, 12, 40), "srnn": (2, 12, 40)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class SpyNVM(sn.MultiLevelNVM):
    """Counts the weight draws (read calls) the synapses make, and the weight matrices drawn."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draws = 0
        self.matrices = 0

    def read(self, stored, n, generator=None):
        self.draws += 1
        self.matrices += n
        return super().read(stored, n, generator)


def small(name, **kw):
    torch.manual_seed(0)
    return build_model(name, **{**SMALL[name], **kw})


def small_x(name):
    return torch.randn(*SMALL_X[name], generator=torch.Generator().manual_seed(1))


def reads_of(model):
    return {n: m.reads for n, m in model.named_modules() if isinstance(m, sn.NoisySynapse)}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_sizes_output_shape(name):
    model = build_model(name, n_classes=7)
    with torch.no_grad():
        y = model(torch.randn(2, 67, 40))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()
    assert isinstance(model, {"cnn": CNN, "rnn": RNN, "scnn": SCNN, "srnn": SRNN, "cnn_pixel": CNNPerPixel}[name])


def _noisy_linear_params(n_in, n_out):
    return n_in * n_out + n_out + 1  # weights, bias, learnable layer scale


def _noisy_conv_params(c_in, c_out, kh, kw):
    return c_out * c_in * kh * kw + c_out + 1


def _conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _expected_parameter_counts(n_classes=12, time=67, freq=40):
    """Parameter counts derived from the paper architectures (seed 000), not from the code."""
    h, w, c_in, cnn = time, freq, 1, 0
    for c_out in (16, 32, 64):  # kernel 6 x 4, stride 2, padding 2
        cnn += _noisy_conv_params(c_in, c_out, 6, 4)
        h, w, c_in = _conv_out(h, 6, 2, 2), _conv_out(w, 4, 2, 2), c_out
    cnn += _noisy_linear_params(c_in * h * w, n_classes)
    readout = n_classes  # leaky readout: one beta per class
    scnn = cnn + (16 + 32 + 64) + readout  # one LIF beta per channel
    # light GRU: [W_a; W_z] (n_in -> 2H) and [U_a; U_z] (H -> 2H) per layer, 128 + 128 units
    rnn, n_in = 0, freq
    for hidden in (128, 128):
        rnn += _noisy_linear_params(n_in, 2 * hidden) + _noisy_linear_params(hidden, 2 * hidden)
        n_in = hidden
    rnn += _noisy_linear_params(n_in, n_classes) + readout
    srnn = rnn + 2 * 128  # one alpha per hidden unit and layer
    return {"cnn": cnn, "scnn": scnn, "rnn": rnn, "srnn": srnn}


def test_parameter_counts_follow_the_architecture():
    counts = {n: sum(p.numel() for p in build_model(n).parameters()) for n in ("cnn", "rnn", "scnn", "srnn")}
    want = _expected_parameter_counts()
    assert counts == want
    assert want["cnn"] == 98816 and want["rnn"] == 111133  # the README's numbers
    assert max(counts.values()) / min(counts.values()) < 1.2, counts  # comparable sizes (paper)


def test_bad_name_and_input_shape():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lstm")
    with pytest.raises(ValueError, match="expects input"):
        build_model("cnn")(torch.randn(2, 60, 40))
    with pytest.raises(ValueError, match="expects input"):
        build_model("srnn")(torch.randn(2, 67, 39))
    with pytest.raises(ValueError, match="reads"):
        build_model("cnn", reads="sometimes")


def test_default_read_semantics():
    r = reads_of(build_model("cnn"))
    assert set(r.values()) == {"once"} and len(r) == 4
    assert set(reads_of(build_model("rnn")).values()) == {"step"}
    assert set(reads_of(build_model("cnn_pixel")).values()) == {"spike"}
    r = reads_of(build_model("scnn"))
    assert r.pop("convs.0") == "once" and set(r.values()) == {"spike"}
    r = reads_of(build_model("srnn"))
    assert r.pop("layers.0.W") == "step" and set(r.values()) == {"spike"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_configure_keeps_reads(name):
    model = small(name)
    before = reads_of(model)
    nvm = sn.MultiLevelNVM.noise_level(2)
    sn.configure(model, errors="dynamic", error_model=nvm)
    assert reads_of(model) == before
    assert all(s.errors == "dynamic" and s.error_model == nvm for s in sn.synapses(model))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_errors_deterministic_and_noise_changes_output(name):
    model, x = small(name), small_x(name)
    with torch.no_grad():
        y1, y2 = model(x), model(x)
        assert torch.equal(y1, y2)
        sn.configure(model, errors="static", error_model=sn.MultiLevelNVM.noise_level(3))
        y3, y4 = model(x), model(x)
    assert not torch.equal(y3, y1)
    assert not torch.equal(y3, y4)  # a new inference (new static draw) at every forward


@pytest.mark.parametrize("name,n_syn", [("cnn", 4), ("rnn", 5), ("scnn", 4), ("srnn", 5)])
def test_static_errors_one_draw_per_forward(name, n_syn):
    spy = SpyNVM.noise_level(2)
    model = small(name, errors="static", error_model=spy)
    x = small_x(name)
    with torch.no_grad():
        model(x)
        assert spy.draws == n_syn  # one draw per synapse for all timesteps of the forward
        model(x)
        assert spy.draws == 2 * n_syn  # every forward is a new inference


def test_rnn_dynamic_step_reads_draw_every_timestep():
    spy = SpyNVM.noise_level(2)
    model = small("rnn", errors="dynamic", error_model=spy)
    with torch.no_grad():
        model(torch.randn(2, 6, 40))
    # a fresh weight matrix per sample and timestep for each of the 5 synapses (the input
    # projections draw all timesteps in one call, the recurrent ones step by step)
    assert spy.matrices == 2 * 6 * 5


def _conv1_outputs(model, x):
    outs = []
    h = model.convs[0].register_forward_hook(lambda m, a, o: outs.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    return outs


def test_scnn_static_draw_shared_by_all_timesteps():
    x = small_x("scnn")
    model = small("scnn", errors="static", error_model=sn.MultiLevelNVM.noise_level(3), input_reads="step")
    outs = _conv1_outputs(model, x)
    assert len(outs) == 4 and all(torch.equal(o, outs[0]) for o in outs)
    sn.configure(model, errors="dynamic")  # conv1 keeps reads="step": a fresh draw per timestep
    outs = _conv1_outputs(model, x)
    assert not torch.equal(outs[0], outs[1])


def test_scnn_input_reads_once_computes_conv1_once():
    x = small_x("scnn")
    step, once = small("scnn"), small("scnn", input_reads="once")
    once.load_state_dict(step.state_dict())
    once.convs[0].set_errors(reads="once")  # in case the state dict carried the synapse options
    assert len(_conv1_outputs(once, x)) == 1
    with torch.no_grad():
        assert torch.allclose(once(x), step(x))


def test_srnn_dynamic_per_spike_errors_vary():
    model = small("srnn", errors="dynamic", error_model=sn.MultiLevelNVM.noise_level(2))
    x = small_x("srnn")
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert not torch.equal(y1, y2)
    assert model.layers[0].U.when_drawn().startswith("fresh draw at every incoming spike")


def test_cnn_pixel_from_cnn():
    cnn = small("cnn")
    x = small_x("cnn")
    pix = CNNPerPixel.from_cnn(cnn)
    assert set(reads_of(pix).values()) == {"spike"}  # not overwritten by the CNN's extra state
    with torch.no_grad():
        assert torch.allclose(pix(x), cnn(x), atol=1e-5)
        sn.configure(cnn, errors="static", error_model=sn.MultiLevelNVM.noise_level(2))
        sn.configure(pix, errors="static", error_model=sn.MultiLevelNVM.noise_level(2))
        torch.manual_seed(5)
        a = cnn(x)
        torch.manual_seed(5)
        b = pix(x)
        assert torch.allclose(a, b, atol=1e-5)  # static errors: per-pixel reads change nothing
        sn.configure(pix, errors="dynamic")
        assert not torch.equal(pix(x), pix(x))


def test_spike_counts_recorded():
    scnn, x = small("scnn"), small_x("scnn")
    with torch.no_grad():
        scnn(x)
    assert set(scnn.spike_counts) == {"lif1", "lif2", "lif3"} and scnn.timesteps == 4
    c = scnn.spike_counts["lif1"]
    assert c.shape == (2, 16, 10, 9) and torch.equal(c, c.round()) and 0 <= c.min() and c.max() <= 4
    assert c.sum() > 0
    srnn = small("srnn")
    with torch.no_grad():
        srnn(small_x("srnn"))
    assert srnn.spike_counts["layer1"].shape == (2, 16) and srnn.timesteps == 12
    cnn = small("cnn")
    cnn(small_x("cnn"))
    assert cnn.spike_counts == {}


def test_spike_surrogate_gradient():
    v = torch.tensor([0.0, 0.9, 1.0, 1.2, 3.0], requires_grad=True)
    s = spike(v)
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    assert torch.allclose(v.grad, 1.0 / (1.0 + 10.0 * (v.detach() - 1.0) ** 2))


def _affine(layer, x):
    return layer.scale * (x @ layer.quantized_weight().t()) + layer.bias


def test_light_gru_equations():
    torch.manual_seed(0)
    layer = LightGRULayer(5, 3)
    x = torch.randn(2, 4, 5)
    h, h_ref = None, torch.zeros(2, 3)
    with torch.no_grad():
        for t in range(4):
            h = layer(x[:, t], h)
            a, zbar = (_affine(layer.W, x[:, t]) + _affine(layer.U, h_ref)).chunk(2, -1)
            z = torch.sigmoid(zbar)
            h_ref = z * h_ref + (1 - z) * torch.tanh(a)
            assert torch.allclose(h, h_ref, atol=1e-6)


def test_spikgru_equations():
    torch.manual_seed(0)
    layer = SpikGRULayer(5, 4)
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.8, 1.5, -0.2, 0.5]))  # clamped to [0, 1]
    x = 3 * torch.randn(2, 6, 5)
    state = None
    i = v = s = torch.zeros(2, 4)
    n_spikes = 0
    with torch.no_grad():
        for t in range(6):
            out, state = layer(x[:, t], state)
            wz, wi = _affine(layer.W, x[:, t]).chunk(2, -1)
            uz, ui = _affine(layer.U, s).chunk(2, -1)
            z = torch.sigmoid(wz + uz)
            i = torch.tensor([0.8, 1.0, 0.0, 0.5]) * i + wi + ui
            v = z * v + (1 - z) * i - 1.0 * s
            s = (v > 1.0).float()
            assert torch.allclose(state[1], v, atol=1e-5) and torch.equal(out, s)
            n_spikes += int(s.sum())
    assert n_spikes > 0


@pytest.mark.parametrize("errors", ["none", "static"])
@pytest.mark.parametrize("name", ["cnn", "rnn", "scnn", "srnn"])
def test_gradient_flow(name, errors):
    model = small(name, errors=errors, error_model=sn.MultiLevelNVM.noise_level(1))
    model.train()
    if name == "scnn":  # at the paper's init the deep layers are nearly silent; wake them up
        with torch.no_grad():
            for conv in model.convs:
                conv.scale.mul_(3)
    y = model(small_x(name))
    if model.spiking:
        assert all(c.sum() > 0 for c in model.spike_counts.values())
    torch.nn.functional.cross_entropy(y, torch.tensor([0, 3])).backward()
    names = [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        if n.endswith(("weight", "scale", "beta", "alpha")):
            assert p.grad.abs().sum() > 0, n
    leaks = [n for n in names if n.endswith(("beta", "alpha"))]
    assert len(leaks) == {"cnn": 0, "rnn": 1, "scnn": 4, "srnn": 3}[name]
