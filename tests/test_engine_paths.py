"""The engine's fast paths: cached stored weights, exact threshold reads, the chunked per-step
linear, packed per-spike counts and whole-sequence projections in the recurrent models."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import spikenoise as sn
from spikenoise.models import build_model
from spikenoise.synapse import NoisyConv2d, NoisyLinear

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def shift_up(n_levels: int = 8) -> sn.MultiLevelNVM:
    """Every level but the top one is always read one level up: reads are deterministic."""
    P = np.zeros((n_levels, n_levels))
    for lvl in range(n_levels):
        P[lvl, min(lvl + 1, n_levels - 1)] = 1.0
    return sn.MultiLevelNVM.from_confusion(P)


def layer_with_all_levels(cls=NoisyLinear, *args, **kw):
    torch.manual_seed(0)
    layer = cls(*args, **kw)
    with torch.no_grad():
        layer.weight.copy_(torch.randn_like(layer.weight) * 2.0)  # every level populated
    return layer


# -- cache ---------------------------------------------------------------------------------------

def stored_after(layer, change):
    with torch.no_grad():
        before = layer(torch.ones(1, layer.in_features)).clone()
    change(layer)
    with torch.no_grad():
        after = layer(torch.ones(1, layer.in_features))
    return before, after


@pytest.mark.parametrize("how", ["sgd", "copy_", "load_state_dict", "configure", "assign_data", "data_then_new_inference",
                                 "scale"])
def test_cache_sees_every_weight_or_option_change(how):
    torch.manual_seed(0)  # not the global RNG state left by earlier tests: all-zero stored rows hide a scale change
    layer = NoisyLinear(6, 3, errors="none")
    other = NoisyLinear(6, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(18.0).view(3, 6) / 9.0 - 1.0)  # levels -4..3 of every output row

    def change(m):
        if how == "sgd":
            opt = torch.optim.SGD(m.parameters(), lr=10.0)
            m(torch.ones(2, 6)).sum().backward()
            opt.step()
        elif how == "copy_":
            with torch.no_grad():
                m.weight.copy_(other.weight)
        elif how == "load_state_dict":
            m.load_state_dict(other.state_dict())
        elif how == "configure":
            sn.configure(m, error_model=sn.MultiLevelNVM(values=[-8, -6, -4, -2, 0, 2, 4, 6]))
        elif how == "scale":
            with torch.no_grad():
                m.scale.mul_(3.0)
        elif how == "assign_data":
            m.weight.data = other.weight.detach().clone()
        else:
            m.weight.data.copy_(other.weight)  # bypasses the version counter
            sn.new_inference(m)

    before, after = stored_after(layer, change)
    assert not torch.equal(before, after)
    with torch.no_grad():
        fresh = layer.error_model.quantize(layer.weight)
        expect = torch.nn.functional.linear(torch.ones(1, 6), fresh) * layer.scale + layer.bias
    assert torch.allclose(after, expect)


def test_cached_forward_keeps_the_straight_through_gradient():
    layer = NoisyLinear(5, 4)
    with torch.no_grad():
        layer.weight.mul_(6.0)  # some hidden weights outside the STE range
    x = torch.randn(3, 5)
    with torch.no_grad():
        layer(x)  # fills the cache
    layer(x).sum().backward()
    g = layer.weight.grad.clone()
    lo, hi = layer.error_model.ste_range()
    w = layer.weight.detach().clone().requires_grad_(True)
    q = layer.error_model.quantize(w.detach())
    wc = w.clamp(lo, hi)
    y = torch.nn.functional.linear(x, wc + (q - wc).detach()) * layer.scale.detach() + layer.bias.detach()
    y.sum().backward()
    assert torch.allclose(g, w.grad)
    assert (g == 0).any() and (g != 0).any()


# -- threshold reads ----------------------------------------------------------------------------

@pytest.mark.parametrize("nvm", [sn.MultiLevelNVM.noise_level(2),
                                 sn.MultiLevelNVM(sigma=[0.2, 0.5, 0.8, 1.0, 0.3, 0.0, 0.6, 2.0]),
                                 sn.MultiLevelNVM.from_confusion([[0.5, 0.5, 0, 0], [1e-3, 1 - 2e-3, 1e-3, 0],
                                                                  [0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25]])])
def test_threshold_reads_follow_the_confusion_matrix(nvm):
    torch.manual_seed(3)
    vals = nvm.values.float()
    L = vals.numel()
    stored = vals.repeat(40).reshape(8, -1)
    reads = nvm.read(stored, 800)
    P = nvm.confusion.numpy()
    pvals = []
    for lvl in range(L):
        got = reads[:, stored == vals[lvl]].flatten()
        counts = np.array([(got == v).sum().item() for v in vals.tolist()])
        expect = P[lvl] * got.numel()
        assert counts.sum() == got.numel()
        assert counts[expect == 0].sum() == 0  # impossible reads never happen
        keep = expect > 0
        if keep.sum() > 1:
            pvals.append(chisquare(counts[keep], expect[keep]).pvalue)
    assert min(pvals) > 1e-4


def test_threshold_reads_deterministic_law_and_generator():
    nvm = shift_up()
    w = nvm.quantize(torch.randn(7, 9) * 3)
    reads = nvm.read(w, 5)
    assert torch.equal(reads, (w + 1).clamp(max=3).expand(5, 7, 9))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    n2 = sn.MultiLevelNVM.noise_level(2)
    assert torch.equal(n2.read(w, 3, g1), n2.read(w, 3, g2))


def test_per_step_linear_fast_path_is_the_read_law():
    # deterministic law: the chunked path must equal x @ read^T exactly (up to float rounding)
    layer = layer_with_all_levels(NoisyLinear, 300, 70, error_model=shift_up(), errors="dynamic", reads="step")
    x = torch.randn(50, 300)
    with torch.no_grad():
        y = layer(x)
        read = (layer.stored_weight() + 1).clamp(max=3)
        expect = layer.scale_and_bias(x @ read.T)
    assert torch.allclose(y, expect, atol=1e-4)
    # noisy law: mean and variance per output against the closed form
    nvm = sn.MultiLevelNVM.noise_level(2)
    layer.set_errors(error_model=nvm)
    x = torch.ones(4000, 300)
    with torch.no_grad():
        raw = layer.reader().linear(x)
    mean, var = nvm.read_moments(layer.stored_weight())
    z = (raw.mean(0) - mean.sum(1)) / (var.sum(1) / 4000).sqrt()
    assert z.abs().max() < 5
    assert torch.allclose(raw.var(0), var.sum(1), rtol=0.15)


def test_per_step_fast_path_gradients_match_the_drawn_path():
    layer = layer_with_all_levels(NoisyLinear, 20, 6, error_model=shift_up(), errors="dynamic", reads="step")
    x = torch.randn(4, 20, requires_grad=True)
    layer(x).sum().backward()
    gx, gw = x.grad.clone(), layer.weight.grad.clone()
    ref = copy.deepcopy(layer)
    ref.weight.grad = None
    x2 = x.detach().clone().requires_grad_(True)
    ref.drawn_forward(x2, ref.quantized_weight()).sum().backward()
    assert torch.allclose(gx, x2.grad, atol=1e-5)
    assert torch.allclose(gw, ref.weight.grad, atol=1e-5)


# -- packed per-spike counts --------------------------------------------------------------------

@pytest.mark.parametrize("counts", [1, 3, 40])
def test_exact_per_spike_counts_every_level_exactly(counts):
    # with the shift-up law every read is one level up: the output is deterministic, so any
    # miscount of a level in the packed matmuls shows
    layer = layer_with_all_levels(NoisyLinear, 64, 33, error_model=shift_up(), errors="dynamic", reads="spike",
                                  sampler="exact")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-counts, counts + 1, (9, 64), generator=g).float()
    with torch.no_grad():
        y = layer(x)
        read = (layer.stored_weight() + 1).clamp(max=3)
        expect = layer.scale_and_bias(x @ read.T)
    assert torch.allclose(y, expect, atol=1e-4)


def test_exact_per_spike_conv_counts_exactly():
    layer = layer_with_all_levels(NoisyConv2d, 3, 5, 3, padding=1, error_model=shift_up(), errors="dynamic",
                                  reads="spike", sampler="exact")
    x = torch.randint(0, 4, (2, 3, 6, 6)).float()
    with torch.no_grad():
        y = layer(x)
        read = (layer.stored_weight() + 1).clamp(max=3)
        expect = layer.scale_and_bias(layer.conv(x, read))
    assert torch.allclose(y, expect, atol=1e-4)


# -- whole-sequence projections in the recurrent models ----------------------------------------

def stepwise_rnn(model, x):
    """The old time-major forward of the RNN: every synapse called once per timestep."""
    sn.new_inference(model)
    hs = [None] * len(model.layers)
    m, total = None, 0.0
    for t in range(x.shape[1]):
        inp = x[:, t]
        for k, layer in enumerate(model.layers):
            hs[k] = inp = layer(inp, hs[k])
        m = model.readout(model.fc(inp), m)
        total = total + m
    return total / x.shape[1]


def stepwise_srnn(model, x):
    sn.new_inference(model)
    states = [None] * len(model.layers)
    m, total = None, 0.0
    for t in range(x.shape[1]):
        inp = x[:, t]
        for k, layer in enumerate(model.layers):
            inp, states[k] = layer(inp, states[k])
        m = model.readout(model.fc(inp), m)
        total = total + m
    return total / x.shape[1]


@pytest.mark.parametrize("name,stepwise", [("rnn", stepwise_rnn), ("srnn", stepwise_srnn)])
@pytest.mark.parametrize("errors", ["none", "static"])
def test_sequence_projection_equals_stepwise(name, stepwise, errors):
    torch.manual_seed(0)
    model = build_model(name, error_model=sn.MultiLevelNVM.noise_level(2), errors=errors, hidden=(24, 16),
                        input_shape=(9, 40))
    x = torch.randn(5, 9, 40) * 2
    torch.manual_seed(7)
    new = model(x)
    torch.manual_seed(7)
    old = stepwise(model, x)
    assert torch.allclose(new, old, atol=1e-5)
    # and with gradients (training): same loss, same weight gradients
    model.zero_grad()
    torch.manual_seed(7)
    model(x).square().sum().backward()
    g_new = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    torch.manual_seed(7)
    stepwise(model, x).square().sum().backward()
    g_old = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(g_new) == len(g_old)
    for a, b in zip(g_new, g_old):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


# -- CUDA ---------------------------------------------------------------------------------------

@cuda
@pytest.mark.parametrize("reads,sampler", [("step", "auto"), ("spike", "exact")])
def test_cuda_paths_match_deterministic_law(reads, sampler):
    layer = layer_with_all_levels(NoisyLinear, 64, 32, error_model=shift_up(), errors="dynamic", reads=reads,
                                  sampler=sampler).cuda()
    x = torch.randint(0, 3, (8, 64)).float().cuda()
    with torch.no_grad():
        y = layer(x)
        read = (layer.stored_weight() + 1).clamp(max=3)
        expect = layer.scale_and_bias(x @ read.T)
    assert y.is_cuda and torch.allclose(y, expect, atol=1e-4)


@cuda
def test_cuda_threshold_reads_law():
    nvm = sn.MultiLevelNVM.noise_level(2)
    stored = nvm.values.float().cuda().repeat(1000)
    reads = nvm.read(stored, 200)
    for lvl, v in enumerate(nvm.values.tolist()):
        got = reads[:, stored == v]
        freq = (got == v).float().mean().item()
        assert abs(freq - float(nvm.confusion[lvl, lvl])) < 0.01
