"""Tiled arrays + ADC as a synapse layer type: exact arithmetic, draws, programming runs, SNN use."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import spikenoise as sn
from spikenoise.noise.analog import DifferentialCells, GaussianVariation
from spikenoise.evaluate import programming_accuracies
from spikenoise.synapse import (ARRAY, InputNoise, TiledConv2d, TiledLinear, adc, array_count, box_stats,
                                calibrate_adc_ranges, calibrate_input_ranges, dac, fill_range, level_settings,
                                programmed, set_analog, tile, tiled_matmul)

IDEAL = dict(array=None, adc_bits=None, input_bits=None, input_range=None)


# ---------------------------------------------------------------------------------------------
# converters, by hand

def test_adc_clipping_and_lsb_rounding():
    # 2 bits over [0, 3]: LSB = 3 / (2**2 - 1) = 1, codes 0..3, round half up
    i = torch.tensor([-0.5, 0.49, 0.5, 1.49, 1.5, 2.5, 2.9, 7.0], requires_grad=True)
    q = adc(i, 2, 3.0)
    assert q.tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    q.sum().backward()
    # straight-through inside [0, 3], no gradient where the ADC clips
    assert i.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    # 8 bits over [0, 15]: LSB 15/255
    lsb = 15 / 255
    assert float(adc(torch.tensor(10.4 * lsb), 8, 15.0)) == pytest.approx(10 * lsb)
    assert float(adc(torch.tensor(10.6 * lsb), 8, 15.0)) == pytest.approx(11 * lsb)
    assert torch.equal(adc(i, None, 3.0), i)  # ideal ADC


def test_dac_signed_clipping_and_quantization():
    # 2 bits over +-3: |x| in steps of 1, sign kept, round half away from zero
    x = torch.tensor([-3.7, -1.5, -0.4, 0.4, 0.5, 2.5, 9.0])
    assert dac(x, 2, 3.0).tolist() == [-3.0, -2.0, -0.0, 0.0, 1.0, 3.0, 3.0]
    assert dac(x, None, 3.0).tolist() == pytest.approx(x.clamp(-3, 3).tolist())
    assert torch.equal(dac(x, 4, None), x)


def test_tiled_matmul_tile_boundaries_clipping_and_multipliers():
    # K = 5 inputs on arrays of 2 rows: 3 row tiles (the last one padded)
    x = torch.ones(1, 1, 5)
    gp = torch.ones(1, 1, 5)
    gm = torch.zeros(1, 1, 5)
    kw = dict(dg=1.0, rows=2, adc_range=1.5, input_range=1.0)
    # ideal ADC: tiling is exact
    assert float(tiled_matmul(x, gp, gm, adc_bits=None, **kw)) == pytest.approx(5.0)
    # 2-bit ADC over [0, 1.5] (LSB 0.5): tile currents 2, 2, 1 -> 1.5 (clipped), 1.5, 1.0
    assert float(tiled_matmul(x, gp, gm, adc_bits=2, **kw)) == pytest.approx(4.0)
    # one array over all rows: current 5 clips to 1.5
    assert float(tiled_matmul(x, gp, gm, adc_bits=2, **{**kw, "rows": None})) == pytest.approx(1.5)
    # per-array multipliers scale each tile's digitized partial sum
    m = torch.tensor([[1.0], [2.0], [3.0]])
    assert float(tiled_matmul(x, gp, gm, adc_bits=2, multipliers=m, **kw)) == pytest.approx(1.5 + 3.0 + 3.0)
    # LSB rounding: I = 0.3 + 0.3 = 0.6 on a 3-bit ADC over [0, 7] (LSB 1) -> 1
    y = tiled_matmul(torch.full((1, 1, 2), 0.3), torch.ones(1, 1, 2), torch.zeros(1, 1, 2), dg=1.0, rows=None,
                     adc_bits=3, adc_range=7.0, input_range=1.0)
    assert float(y) == pytest.approx(1.0)


def test_two_columns_digitized_separately_with_on_off_floor():
    """Hand-computed: on/off 4 (G_min 0.25, dG 0.75), weights (1, -1, 0), x = (1, 0.5, 0)."""
    em = DifferentialCells(0.0, on_off=4, bits=None, mapping="offset")
    layer = TiledLinear(3, 1, bias=False, error_model=em, array=None, adc_bits=3, adc_range=1.75,
                        input_bits=None, input_range=1.0, learn_multipliers=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 0.0]]))
        layer.scale.fill_(1.0)
    x = torch.tensor([[1.0, 0.5, 0.0]])
    # G+ = (1, .25, .25), G- = (.25, 1, .25): I+ = 1.125 -> 4.5 LSB -> 5 -> 1.25; I- = 0.75 -> 3 -> 0.75
    # partial sum = (1.25 - 0.75) * input_range / dG = 0.5 / 0.75; the ideal result would be 0.5
    assert float(layer(x).detach()) == pytest.approx(0.5 / 0.75, abs=1e-6)
    layer.set_analog(adc_bits=None)
    assert float(layer(x).detach()) == pytest.approx(0.5, abs=1e-6)  # G_min cancels without an ADC
    # with the floor, the same inputs on all-zero weights give equal column currents -> exactly 0
    with torch.no_grad():
        layer.weight.zero_()
    layer.set_analog(adc_bits=3)
    assert float(layer(x).detach()) == 0.0


def test_seed003_array_counts():
    """Seed 003 Table 1 (VGG block): 78 arrays of 256 x 64, two columns per weight."""
    layers = [(27, 32), (288, 32), (288, 64), (576, 64), (576, 128), (1152, 128), (2048, 128), (128, 10)]
    counts = [array_count(k, o, ARRAY) for k, o in layers]
    assert counts == [(1, 1), (2, 1), (2, 2), (3, 2), (3, 4), (5, 4), (8, 4), (1, 1)]
    assert sum(r * c for r, c in counts) == 78
    layer = TiledLinear(2048, 128)
    assert tuple(layer.multipliers.shape) == (8, 4) and layer.multipliers.requires_grad


# ---------------------------------------------------------------------------------------------
# layers against references

def _set(layer, w, scale=0.7):
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.scale.fill_(scale)
    return layer


def test_tiles_without_adc_equal_the_ideal_layer():
    torch.manual_seed(0)
    em = DifferentialCells(0.0, on_off=10, bits=None)
    w = torch.rand(7, 13) * 2 - 1
    x = torch.randn(4, 13)
    ref = _set(TiledLinear(13, 7, error_model=em, **IDEAL), w)
    tiled = _set(TiledLinear(13, 7, error_model=em, array=(4, 6), adc_bits=None, input_bits=None, input_range=5.0), w)
    tiled.bias.data.copy_(ref.bias.data)
    want = F.linear(x, em.quantize(w)) * 0.7 + ref.bias
    assert torch.allclose(ref(x), want, atol=1e-5)
    assert torch.allclose(tiled(x), want, atol=1e-5)  # signed inputs in two phases, 4 row tiles


def test_tiled_conv_matches_unfold_reference_with_adc():
    """The masked per-tile convolution equals unfold + tiled_matmul (tiles split channels: 3x3, 7 rows)."""
    torch.manual_seed(1)
    em = DifferentialCells(0.0, on_off=10, bits=8)
    conv = TiledConv2d(3, 5, 3, stride=1, padding=1, error_model=em, array=(7, 4), adc_bits=6, adc_range=2.0,
                       input_bits=None, input_range=1.0)
    with torch.no_grad():
        conv.multipliers.copy_(torch.rand_like(conv.multipliers) + 0.5)
    x = torch.rand(2, 3, 6, 5) * 2 - 1
    y = conv(x)
    wq = em.quantize(conv.weight).reshape(5, -1)
    gp, gm = em.cells(wq)
    cols = F.unfold(x, 3, padding=1).transpose(1, 2)  # (B, P, 27)
    mult = conv.multipliers.repeat_interleave(2, dim=1)[:, :5]
    kw = dict(dg=em.dg, rows=7, adc_bits=6, adc_range=2.0, input_range=1.0, multipliers=mult)
    ref = tiled_matmul(cols.clamp_min(0), gp[None], gm[None], **kw) - tiled_matmul((-cols).clamp_min(0), gp[None], gm[None], **kw)
    ref = ref.transpose(1, 2).reshape(2, 5, 6, 5) * conv.scale + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, ref, atol=1e-5)
    # and without ADC it is the plain convolution of the stored weights
    conv.set_analog(adc_bits=None)
    with torch.no_grad():
        conv.multipliers.fill_(1.0)
    want = F.conv2d(x, em.quantize(conv.weight), conv.bias * 0, padding=1) * conv.scale + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(conv(x), want, atol=1e-5)


def test_gradients_reach_weights_and_multipliers():
    layer = TiledLinear(20, 6, error_model=DifferentialCells(0.05), errors="static", array=(8, 4), adc_bits=8,
                        adc_range=3.0, input_range=1.0, draws="batch")
    y = layer(torch.rand(5, 20))
    y.square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.multipliers.grad is not None and layer.multipliers.grad.abs().sum() > 0
    assert layer.multipliers.shape == (3, 3)


# ---------------------------------------------------------------------------------------------
# when errors are drawn

@pytest.mark.parametrize("analog", [IDEAL, dict(array=(8, 4), adc_bits=8, adc_range=6.0, input_range=1.0)])
def test_draws_row_versus_batch(analog):
    x = torch.rand(1, 16).repeat(6, 1)  # six identical inputs
    em = DifferentialCells(0.1)
    row = TiledLinear(16, 4, error_model=em, errors="static", draws="row", **analog)
    batch = TiledLinear(16, 4, error_model=em, errors="static", draws="batch", **analog)
    yr, yb = row(x), batch(x)
    assert not torch.allclose(yr[0], yr[1])  # one chip per row
    assert torch.equal(yb[0], yb[5])  # one chip for the whole batch
    assert torch.equal(batch(x), yb)  # static: frozen until a new inference
    batch.new_inference()
    assert not torch.allclose(batch(x), yb)
    assert "shared by the whole batch" in batch.when_drawn()


def test_dynamic_step_reads_and_per_spike_refusal():
    layer = TiledLinear(8, 3, error_model=GaussianVariation(0.2, bits=None), errors="dynamic", reads="step",
                        draws="batch", **IDEAL)
    x = torch.ones(2, 8)
    assert not torch.allclose(layer(x), layer(x))  # fresh draw per call
    layer.set_errors(reads="spike")
    with pytest.raises(ValueError, match="per spike"):
        layer(x)


def test_programmed_pins_one_chip_for_all_calls():
    torch.manual_seed(0)
    model = nn.Sequential(TiledLinear(10, 8, error_model=DifferentialCells(0.1), errors="static",
                                      array=(4, 4), adc_bits=8, adc_range=3.0, input_range=1.0),
                          nn.ReLU(),
                          sn.NoisyLinear(8, 3, error_model=GaussianVariation(0.2, bits=None), errors="static",
                                         reads="once"))
    x = torch.rand(5, 10)
    with programmed(model, seed=1):
        a = model(x)
        sn.new_inference(model)
        b = model(x[:2])  # another batch size and inference: same chip
        assert torch.allclose(a[:2], b, atol=1e-6)
        assert torch.allclose(a[0:1].expand(5, -1), model(x[0:1].expand(5, -1)), atol=1e-6)
        assert "pinned" in repr(model[0])
    with programmed(model, seed=1):
        assert torch.allclose(model(x), a, atol=1e-6)  # reproducible by seed
    with programmed(model, seed=2):
        assert not torch.allclose(model(x), a)
    # afterwards: back to per-row static draws
    sn.new_inference(model)
    y = model(x[0:1].expand(5, -1))
    assert not torch.allclose(y[0], y[1])
    dyn = TiledLinear(4, 2, error_model=DifferentialCells(0.1), errors="dynamic", reads="step", **IDEAL)
    with pytest.raises(ValueError, match="static"):
        with programmed(dyn, seed=0):
            pass


def test_programming_accuracies_and_box_stats():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = (x[:, 0] > 0).long()
    loader = [(x[:32], y[:32]), (x[32:], y[32:])]
    model = nn.Sequential(TiledLinear(6, 2, error_model=GaussianVariation(0.0, bits=None), **IDEAL))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[1, 0] = 1.0
        model[0].weight[0, 0] = -1.0
    clean = programming_accuracies(model, loader, n=4)
    assert clean == [1.0] * 4
    sn.configure(model, errors="static", error_model=GaussianVariation(1.5, bits=None))
    accs = programming_accuracies(model, loader, n=8, seed=3)
    assert len(accs) == 8 and len(set(accs)) > 1 and min(accs) < 1.0
    assert accs == programming_accuracies(model, loader, n=8, seed=3)
    s = box_stats([1, 2, 3, 4, 5, 6, 7, 8])
    assert (s["min"], s["q1"], s["median"], s["q3"], s["max"]) == (1.0, 2.75, 4.5, 6.25, 8.0)
    assert s["top25"] == 6.25 and s["top25_mean"] == 7.5 and s["n"] == 8
    with pytest.raises(ValueError):
        box_stats([])


# ---------------------------------------------------------------------------------------------
# model-level helpers

def test_tile_plain_and_converted_models_and_state_dict():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    x = torch.randn(2, 1, 5, 5)
    ideal = tile(plain, DifferentialCells(0.0, on_off=math.inf, bits=None), **IDEAL)
    assert isinstance(ideal[0], TiledConv2d) and isinstance(ideal[3], TiledLinear)
    assert torch.allclose(ideal(x), plain(x), atol=1e-5)  # mapped weights: hidden w/s, scale s
    conv = sn.convert(plain, GaussianVariation(0.0, bits=None), errors="none")
    t = tile(conv, array=(16, 4), adc_bits=8, adc_range=4.0, input_range=3.0)
    assert isinstance(t[3], TiledLinear) and t[3].array == (16, 4) and t[3].multipliers.shape == (7, 2)
    assert isinstance(t[3].error_model, GaussianVariation)  # error options kept
    sd = t.state_dict()
    assert sd["3._extra_state"]["analog"]["array"] == [16, 4]
    fresh = tile(conv, array=(16, 4), adc_bits=4, adc_range=1.0, input_range=1.0)
    fresh.load_state_dict(sd)
    assert fresh[3].adc_bits == 8 and fresh[3].adc_range == 4.0 and fresh[3].input_range == 3.0
    assert torch.allclose(fresh(x), t(x))
    with pytest.raises(ValueError, match="unknown analog"):
        tile(conv, adc=8)


def test_calibration_and_fill_range():
    torch.manual_seed(0)
    model = nn.Sequential(TiledLinear(12, 6, error_model=DifferentialCells(0.0), array=(4, 4), adc_bits=8,
                                      input_range=1.0), nn.ReLU(), TiledLinear(6, 2, **IDEAL, error_model=DifferentialCells()))
    x = torch.randn(256, 12) * 3
    ranges = calibrate_input_ranges(model, x, percentile=100.0)
    assert ranges[0] == pytest.approx(float(x.abs().max()), rel=1e-4)
    adc_ranges = calibrate_adc_ranges(model, x, percentile=100.0)
    assert adc_ranges[1] is None and adc_ranges[0] > 0 and model[0].adc_range == adc_ranges[0]
    assert model[0].adc_bits == 8 and not model[0].probing  # restored
    m = nn.Sequential(TiledLinear(5, 3, error_model=GaussianVariation(0.0, bits=None), **IDEAL))
    with torch.no_grad():
        m[0].weight.mul_(0.5)
    before = m(x[:, :5])
    fill_range(m)
    assert float(m[0].weight.detach().abs().max()) == pytest.approx(1.0)
    assert torch.allclose(m(x[:, :5]), before, atol=1e-5)


def test_input_noise_statistics():
    torch.manual_seed(0)
    layer = TiledLinear(4, 1, bias=False, error_model=GaussianVariation(0.0, bits=None), **IDEAL, input_noise=0.5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0]]))
        layer.scale.fill_(1.0)
    layer.eval()  # input noise models noisy signals: active in evaluation too
    y = layer(torch.zeros(50_000, 4)).detach().squeeze(1)
    want_var = 0.25 * (1 + 1 + 0.25)
    assert abs(float(y.mean())) < 5 * math.sqrt(want_var / 50_000)
    assert float(y.var()) == pytest.approx(want_var, rel=0.05)
    assert torch.equal(InputNoise(0.0)(torch.ones(3)), torch.ones(3))
    assert float(InputNoise(1.0)(torch.zeros(50_000)).std()) == pytest.approx(1.0, rel=0.05)


def test_level_settings():
    assert isinstance(level_settings(1, 0.04)["error_model"], GaussianVariation)
    l2 = level_settings(2, 0.04, on_off=10)
    assert isinstance(l2["error_model"], DifferentialCells) and l2["analog"]["array"] is None
    l3 = level_settings(3, 0.04)
    assert l3["analog"]["array"] == (256, 64) and l3["analog"]["adc_bits"] == 8
    with pytest.raises(ValueError):
        level_settings(4)


# ---------------------------------------------------------------------------------------------
# spiking networks

class _SNN(nn.Module):
    """Two snnTorch Leaky layers with explicit state; every forward is one inference of T steps."""

    def __init__(self):
        super().__init__()
        import snntorch as snn

        self.fc1, self.fc2 = nn.Linear(20, 16), nn.Linear(16, 4)
        self.lif1 = snn.Leaky(beta=0.9)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x):  # x: (T, B, 20) spikes
        m1 = self.lif1.init_leaky()
        m2 = self.lif2.init_leaky()
        out = 0
        for t in range(x.shape[0]):
            s1, m1 = self.lif1(self.fc1(x[t]), m1)
            s2, m2 = self.lif2(self.fc2(s1), m2)
            out = out + s2
        return out


def test_snn_with_programming_variation_and_tiles():
    pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = _SNN()
    with torch.no_grad():
        net.fc1.weight.mul_(4)
    spikes = (torch.rand(12, 8, 20) < 0.3).float()
    em = DifferentialCells(0.08, on_off=10, bits=8)
    snn_net = sn.convert(net, em, errors="static", reads="step")
    torch.set_grad_enabled(False)  # snnTorch keeps state tensors on the module: no graphs to deep-copy
    try:
        _snn_checks(net, snn_net, spikes, em)
    finally:
        torch.set_grad_enabled(True)


def _snn_checks(net, snn_net, spikes, em):
    assert isinstance(snn_net.fc1.error_model, DifferentialCells)
    # static: one draw per inference held over all 12 timesteps; a new inference redraws
    calls = []
    snn_net.fc1.register_forward_hook(lambda m, a, o: calls.append(m.draw.clone()))
    a = snn_net(spikes)
    assert len(calls) == 12 and all(torch.equal(c, calls[0]) for c in calls)
    snn_net(spikes)
    assert not torch.equal(calls[12], calls[0])
    # one programmed chip: identical spike trains run to run; another chip differs
    with programmed(snn_net, seed=0):
        r1, r2 = snn_net(spikes), snn_net(spikes)
    with programmed(snn_net, seed=5):
        r3 = snn_net(spikes)
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    # the same network on 8 x 8 arrays with 6-bit ADCs, spikes as inputs (input range 1)
    tiled = tile(snn_net, array=(8, 8), adc_bits=6, adc_range=4.0, input_bits=1, input_range=1.0)
    assert isinstance(tiled.fc1, TiledLinear) and tiled.fc1.multipliers.shape == (3, 4)
    with programmed(tiled, seed=0):
        out = tiled(spikes)
    assert out.shape == (8, 4) and torch.all(out >= 0) and torch.all(out <= 12)
    clean = tile(snn_net, errors="none", array=None, adc_bits=None, input_bits=None, input_range=None)
    ref = sn.convert(net, em, errors="none")(spikes)
    assert torch.equal(clean(spikes), ref)


def test_tile_names_weights_it_cannot_put_on_tiles_instead_of_leaving_them_clean():
    from spikenoise.synapse import convert
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(8, 3))
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=r"(?s)0\.weight \(4, 2, 3\) in Conv1d.*keep_clean"):
        tile(net, inplace=True)
    # nothing was replaced by the refused in-place call
    assert type(net[2]) is nn.Linear and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    kept = tile(net, keep_clean=["0"])
    assert type(kept[0]) is nn.Conv1d and type(kept[2]).__name__ == "TiledLinear"
    # a noisy layer type without a tiled twin is named too
    with pytest.raises(ValueError, match=r"'?0 \(NoisyConv1d\)"):
        tile(convert(nn.Sequential(nn.Conv1d(2, 4, 3))))
    # plain recurrent weights are named; converted first, their gates tile
    with pytest.raises(ValueError, match=r"(?s)weight_ih_l0 .* in GRU.*convert\(model\) first"):
        tile(nn.Sequential(nn.GRU(3, 4)))
    tiled = tile(convert(nn.Sequential(nn.GRU(3, 4))))
    kinds = {type(m).__name__ for m in tiled.modules()}
    assert "TiledLinear" in kinds and "NoisyLinear" not in kinds
    assert tiled(torch.randn(5, 2, 3))[0].shape == (5, 2, 4)
