"""The synapse engine: when errors are drawn, for whom, exactness of the samplers, gradients."""
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import chisquare

import spikenoise as sn
from spikenoise import MultiLevelNVM, NoisyConv2d, NoisyLinear

NVM2 = MultiLevelNVM.noise_level(2)


def _set_levels(layer, levels):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(levels, dtype=torch.float32).view_as(layer.weight))
        layer.scale.fill_(1.0)
        if layer.bias is not None:
            layer.bias.zero_()


def _value_pmf(nvm, value):
    lvl = int(value - nvm.values[0])
    return nvm.confusion.numpy()[lvl]  # over values v0..v_{L-1}


def _reference_pmf(nvm, terms):
    """Exact pmf of sum_k c_k * read(level_k) for integer spike counts c_k, as (offset, pmf)."""
    v0 = int(nvm.values[0])
    pmf, off = np.ones(1), 0
    for value, count in terms:
        p = _value_pmf(nvm, value)
        for _ in range(abs(int(count))):
            if count > 0:
                pmf, off = np.convolve(pmf, p), off + v0
            else:
                pmf, off = np.convolve(pmf, p[::-1]), off - (v0 + p.size - 1)
    return off, pmf


def _chi2(samples, off, pmf, min_expected=5.0):
    samples = np.rint(samples).astype(np.int64)
    counts = np.bincount(samples - off, minlength=pmf.size)
    assert counts.size == pmf.size
    obs, exp, ao, ae = [], [], 0.0, 0.0
    for o, e in zip(counts, pmf * samples.size):
        ao, ae = ao + o, ae + e
        if ae >= min_expected:
            obs.append(ao), exp.append(ae)
            ao = ae = 0.0
    obs[-1] += ao
    exp[-1] += ae
    return chisquare(obs, exp).pvalue


# --------------------------------------------------------------------------------------------
# exactness of per-spike dynamic reads

@pytest.mark.parametrize("sampler", ["exact", "brute"])
def test_linear_per_spike_sum_has_the_exact_distribution(sampler):
    layer = NoisyLinear(5, 2, error_model=NVM2, errors="dynamic", reads="spike", sampler=sampler)
    levels = [[-4, 3, 0, -1, 2], [1, 1, -2, 3, -3]]
    _set_levels(layer, levels)
    x_row = torch.tensor([1.0, 2.0, 0.0, -1.0, 1.0])  # 2 spikes = 2 reads, -1 = a negative read
    torch.manual_seed(0)
    with torch.no_grad():
        y = layer(x_row.expand(30_000, 5).contiguous()).numpy()
    for j in range(2):
        off, pmf = _reference_pmf(NVM2, [(levels[j][i], x_row[i]) for i in range(5)])
        assert _chi2(y[:, j], off, pmf) > 1e-3


@pytest.mark.parametrize("sampler", ["exact", "brute"])
def test_conv_per_spike_reads_per_tap_and_position_are_exact(sampler):
    conv = NoisyConv2d(1, 1, 2, padding=1, bias=False, error_model=NVM2, errors="dynamic", reads="spike",
                       sampler=sampler)
    k = [[2, -1], [3, 0]]
    _set_levels(conv, k)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    torch.manual_seed(1)
    with torch.no_grad():
        y = conv(x.expand(20_000, 1, 3, 3).contiguous())  # (N, 1, 4, 4)
    # output (1, 1) sees input (0..1, 0..1) under taps (0..1, 0..1) with padding 1
    for (oi, oj) in [(1, 1), (2, 2), (0, 0)]:
        terms = []
        for di in range(2):
            for dj in range(2):
                ii, jj = oi - 1 + di, oj - 1 + dj
                if 0 <= ii < 3 and 0 <= jj < 3 and x[0, 0, ii, jj] != 0:
                    terms.append((k[di][dj], 1))
        off, pmf = _reference_pmf(NVM2, terms)
        assert _chi2(y[:, 0, oi, oj].numpy(), off, pmf) > 1e-3
    # positions sharing a weight are independent reads: no correlation
    a, b = y[:, 0, 1, 1].numpy(), y[:, 0, 2, 2].numpy()
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)


def test_static_and_step_reads_share_one_draw_across_positions():
    conv = NoisyConv2d(1, 1, 2, padding=1, bias=False, error_model=NVM2, errors="static", reads="spike")
    _set_levels(conv, [[2, -1], [3, 1]])
    x = torch.ones(20_000, 1, 3, 3)
    torch.manual_seed(2)
    for errors, reads in [("static", "spike"), ("dynamic", "step")]:
        conv.set_errors(errors=errors, reads=reads)
        with torch.no_grad():
            y = conv(x)
        a, b = y[:, 0, 1, 1].numpy(), y[:, 0, 2, 2].numpy()  # same four taps, same draw
        assert np.corrcoef(a, b)[0, 1] > 0.99


def test_gaussian_sampler_matches_exact_moments():
    layer = NoisyLinear(40, 3, error_model=MultiLevelNVM.noise_level(3), errors="dynamic", reads="spike")
    torch.manual_seed(3)
    x = (torch.rand(1, 40) < 0.5).float().expand(40_000, 40).contiguous()
    out = {}
    with torch.no_grad():
        for s in ("exact", "gaussian"):
            layer.sampler = s
            out[s] = layer(x)
    m_e, m_g = out["exact"].mean(0), out["gaussian"].mean(0)
    sd = out["exact"].std(0)
    assert torch.all((m_e - m_g).abs() < 5 * sd * (2 / 40_000) ** 0.5)
    assert torch.allclose(out["exact"].var(0), out["gaussian"].var(0), rtol=0.05)


def test_zero_input_is_no_read():
    for sampler in ("exact", "brute", "gaussian"):
        layer = NoisyLinear(8, 4, error_model=NVM2, errors="dynamic", reads="spike", sampler=sampler)
        with torch.no_grad():
            y = layer(torch.zeros(3, 8))
        assert torch.equal(y, layer.bias.detach().expand(3, 4))


def test_exact_sampler_refuses_graded_input():
    layer = NoisyLinear(4, 2, error_model=NVM2, errors="dynamic", reads="spike", sampler="exact")
    with pytest.raises(ValueError, match="integer"):
        layer(torch.full((2, 4), 0.5))


def test_auto_sampler_uses_brute_when_gradients_are_needed():
    layer = NoisyLinear(4, 2, error_model=NVM2, errors="dynamic", reads="spike")
    x = torch.ones(2, 4)
    assert layer.resolve_sampler(x) == "brute"
    with torch.no_grad():
        assert layer.resolve_sampler(x) == "exact"
    assert layer.resolve_sampler(torch.full((2, 4), 0.3)) == "brute"


# --------------------------------------------------------------------------------------------
# static vs dynamic: when errors are drawn, and for whom

def test_static_draw_is_frozen_within_an_inference_and_fresh_after_reset():
    layer = NoisyLinear(32, 16, error_model=NVM2, errors="static", reads="spike")
    x = (torch.rand(1, 32) < 0.5).float().expand(4, 32).contiguous()
    torch.manual_seed(0)
    with torch.no_grad():
        y1, y2 = layer(x), layer(x)
        assert torch.equal(y1, y2)  # every read of the inference sees the same draw
        assert not torch.equal(y1[0], y1[1])  # each batch row (input sample) has its own draw
        layer.new_inference()
        assert not torch.equal(layer(x), y1)
        with pytest.raises(ValueError, match="new_inference"):
            layer(x[:3])  # a different batch size without a new inference


def test_dynamic_reads_once_equals_static_and_step_is_fresh_each_call():
    torch.manual_seed(0)
    x = torch.ones(2, 16)
    once = NoisyLinear(16, 8, error_model=NVM2, errors="dynamic", reads="once")
    step = NoisyLinear(16, 8, error_model=NVM2, errors="dynamic", reads="step")
    with torch.no_grad():
        assert torch.equal(once(x), once(x))
        assert not torch.equal(step(x), step(x))


def test_errors_none_and_level_0_are_deterministic_quantized_layers():
    layer = NoisyLinear(16, 8, error_model=MultiLevelNVM.noise_level(0), errors="dynamic")
    x = torch.randn(3, 16)
    want = torch.nn.functional.linear(x, layer.error_model.quantize(layer.weight)) * layer.scale + layer.bias
    assert torch.allclose(layer(x), want)
    layer.set_errors(errors="none", error_model=NVM2)
    assert torch.allclose(layer(x), want)


class _TimeLoopNet(nn.Module):
    """A small snnTorch network that loops over time inside forward (the snnTorch tutorial shape)."""

    def __init__(self):
        super().__init__()
        import snntorch as snn

        self.fc1 = nn.Linear(10, 8)
        self.lif1 = snn.Leaky(beta=0.8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x, steps=5):
        mem = self.lif1.reset_mem()
        out = 0
        for _ in range(steps):
            spk, mem = self.lif1(self.fc1(x), mem)
            out = out + self.fc2(spk)
        return out


def test_convert_wraps_an_snntorch_network_and_keeps_it_exact_at_level_0():
    torch.manual_seed(0)
    net = _TimeLoopNet()
    with torch.no_grad():  # weights on a grid of the 8 levels, so quantization loses nothing
        for fc in (net.fc1, net.fc2):
            fc.weight.copy_(torch.randint(-4, 4, fc.weight.shape) * 0.1)
            fc.weight[0, 0] = 0.3  # pin the largest positive level so fit_scale gives 0.1
            fc.weight[0, 1] = -0.4
    x = torch.randn(4, 10)
    noisy = sn.convert(net, MultiLevelNVM.noise_level(0))
    assert isinstance(noisy.fc1, NoisyLinear) and isinstance(net.fc1, nn.Linear)  # a copy by default
    assert noisy.fc1.scale.item() == pytest.approx(0.1)
    assert torch.allclose(noisy(x), net(x), atol=1e-5)
    sn.configure(noisy, errors="static", error_model=NVM2)
    with torch.no_grad():
        a, b = noisy(x), noisy(x)
    assert not torch.equal(a, b)  # each call of the converted model is a new inference
    manual = sn.convert(net, NVM2, errors="static", inference="manual")
    with torch.no_grad():
        a, b = manual(x), manual(x)
        assert torch.equal(a, b)  # same inference until new_inference(model)
        sn.new_inference(manual)
        assert not torch.equal(manual(x), a)


def test_new_inference_is_scoped_to_the_model():
    a = sn.convert(nn.Sequential(nn.Linear(6, 4)), NVM2, errors="static", inference="manual")
    b = sn.convert(nn.Sequential(nn.Linear(6, 4)), NVM2, errors="static", inference="manual")
    x = torch.ones(2, 6)
    with torch.no_grad():
        a(x), b(x)
    sn.new_inference(a)
    assert a[0].draw is None and b[0].draw is not None


# --------------------------------------------------------------------------------------------
# error-aware training: the backward pass sees the weights the forward pass read

def test_static_backward_uses_the_drawn_weights_and_updates_hidden_weights():
    torch.manual_seed(0)
    layer = NoisyLinear(6, 3, error_model=NVM2, errors="static", reads="step")
    with torch.no_grad():
        layer.weight[0, 0] = 9.0  # outside the STE range: gets no gradient
    x = torch.randn(4, 6, requires_grad=True)
    g = torch.randn(4, 3)
    y = layer(x)
    (y * g).sum().backward()
    W = layer.draw  # (4, 3, 6): the draw of this inference
    s = layer.scale.detach()
    assert torch.allclose(y.detach(), s * torch.einsum("bi,boi->bo", x.detach(), W) + layer.bias.detach(),
                          atol=1e-5)
    assert torch.allclose(x.grad, s * torch.einsum("bo,boi->bi", g, W), atol=1e-5)
    want_w = s * g.t() @ x.detach()
    want_w[0, 0] = 0.0
    assert torch.allclose(layer.weight.grad, want_w, atol=1e-5)
    assert layer.scale.grad is not None and layer.bias.grad is not None


def test_conv_static_backward_uses_the_drawn_kernels():
    torch.manual_seed(0)
    conv = NoisyConv2d(2, 3, 3, padding=1, error_model=NVM2, errors="static")
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    conv(x).sum().backward()
    W = conv.draw
    for b in range(2):
        xb = x.detach()[b:b + 1].clone().requires_grad_()
        yb = torch.nn.functional.conv2d(xb, W[b], padding=1) * conv.scale.detach()
        yb.sum().backward()
        assert torch.allclose(x.grad[b], xb.grad[0], atol=1e-5)


# --------------------------------------------------------------------------------------------
# configuration, persistence and bad input

def test_state_dict_roundtrips_weights_scale_and_error_configuration():
    a = NoisyLinear(5, 4, error_model=MultiLevelNVM(sigma=[0.1, 0.2, 0.3, 0.4]), values=None) \
        if False else NoisyLinear(5, 4, error_model=MultiLevelNVM.noise_level(3), errors="dynamic", reads="step",
                                  sampler="gaussian")
    with torch.no_grad():
        a.scale.fill_(0.123)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = NoisyLinear(5, 4)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and b.scale.item() == pytest.approx(0.123)
    assert (b.errors, b.reads, b.sampler) == ("dynamic", "step", "gaussian")
    assert b.error_model == MultiLevelNVM.noise_level(3)


def test_repr_says_when_noise_is_drawn():
    r = repr(NoisyLinear(3, 2, error_model=NVM2, errors="dynamic", reads="spike"))
    assert "every incoming spike" in r and "sigma=0.741" in r
    assert "frozen until new_inference" in repr(NoisyConv2d(1, 1, 3, error_model=NVM2, errors="static"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(errors="sometimes"), "sometimes"),
    (dict(reads="always"), "always"),
    (dict(sampler="fast"), "fast"),
    (dict(error_model="nvm"), "ErrorModel"),
])
def test_unknown_options_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoisyLinear(3, 2, **kwargs)


def test_shape_mismatch_and_unconvertible_models_raise():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        NoisyLinear(3, 2)(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        NoisyConv2d(2, 2, 3)(torch.ones(1, 3, 5, 5))
    with pytest.raises(ValueError, match="no nn.Linear"):
        sn.convert(nn.ReLU())
    with pytest.raises(ValueError, match="no noisy synapses"):
        sn.configure(nn.ReLU(), errors="static")
    with pytest.raises(ValueError, match="inference"):
        sn.convert(nn.Linear(2, 2), inference="sometimes")


def test_paper_initialisation():
    torch.manual_seed(0)
    layer = NoisyLinear(400, 300)
    assert layer.weight.min() >= -1 and layer.weight.max() <= 1 and layer.weight.abs().mean() > 0.45
    assert layer.scale.item() == pytest.approx(400 ** -0.5)
    assert layer.bias.abs().max() <= 400 ** -0.5


def test_gaussian_step_reads_match_exact_step_moments():
    torch.manual_seed(4)
    layer = NoisyLinear(30, 2, error_model=MultiLevelNVM.noise_level(2), errors="dynamic", reads="step")
    x = torch.randn(1, 30).expand(40_000, 30).contiguous()  # graded input, one read per weight
    with torch.no_grad():
        exact = layer(x)
        layer.sampler = "gaussian"
        approx = layer(x)
    assert torch.allclose(exact.mean(0), approx.mean(0), atol=5 * float(exact.std(0).max()) * (2 / 40_000) ** 0.5)
    assert torch.allclose(exact.var(0), approx.var(0), rtol=0.05)
    assert "gaussian approximation" in repr(layer)
