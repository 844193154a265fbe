"""Programming-variation error models (seed 003): storage grid, per-cell statistics, moments, config."""
import json
import math

import pytest
import torch

import spikenoise as sn
from spikenoise.noise.analog import DifferentialCells, GaussianVariation
from spikenoise.noise.base import error_model_from_config

N = 40_000  # reads per statistic: sample-mean tolerance 5 sigma / sqrt(N) ~ 2.5 % of sigma


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _check_mean_var(samples: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Sample mean within 5 standard errors; sample variance within 5 standard errors (Gaussian)."""
    n = samples.shape[0]
    m = samples.double().mean(0)
    v = samples.double().var(0)
    sd = var.double().sqrt()
    assert torch.all((m - mean.double()).abs() <= 5 * sd / math.sqrt(n) + 1e-12), (m, mean)
    # var of the sample variance of a Gaussian: 2 sigma^4 / (n - 1)
    assert torch.all((v - var.double()).abs() <= 5 * var.double() * math.sqrt(2 / (n - 1)) + 1e-12), (v, var)


# ---------------------------------------------------------------------------------------------
# GaussianVariation (level 1)

def test_gaussian_variation_grid_and_clipping():
    m = GaussianVariation(0.04, bits=8)
    w = torch.tensor([-2.0, -1.0, 0.004, 0.0041, 0.5, 1.3])
    q = m.quantize(w)
    # 8-bit signed: step 1/127; 0.004 * 127 = 0.508 -> 1 step; out of range clipped to +-1
    assert torch.allclose(q * 127, torch.tensor([-127.0, -127.0, 1.0, 1.0, 64.0, 127.0]))
    assert m.step == pytest.approx(1 / 127)
    assert torch.equal(GaussianVariation(0.0, bits=None).quantize(w), w.clamp(-1, 1))
    assert m.ste_range() == (-1.0, 1.0)
    assert m.fit_scale(torch.tensor([0.2, -0.7])) == pytest.approx(0.7)


def test_gaussian_variation_statistics_and_moments():
    stored = torch.tensor([-1.0, -0.25, 0.0, 0.6])
    for sd in (False, True):
        m = GaussianVariation(0.05, bits=None, state_dependent=sd)
        reads = m.read(stored, N, _gen(1))
        assert reads.shape == (N, 4)
        mean, var = m.read_moments(stored)
        assert torch.equal(mean, stored)
        want = (0.05 * stored.abs()) ** 2 if sd else torch.full_like(stored, 0.05 ** 2)
        assert torch.allclose(var, want)
        if sd:  # zero weight, zero variation
            assert torch.all(reads[:, 2] == 0)
            _check_mean_var(reads[:, [0, 1, 3]], mean[[0, 1, 3]], var[[0, 1, 3]])
        else:
            _check_mean_var(reads, mean, var)


def test_gaussian_variation_seeded_and_noiseless():
    m = GaussianVariation(0.1)
    w = torch.linspace(-1, 1, 7)
    assert torch.equal(m.read(w, 3, _gen(5)), m.read(w, 3, _gen(5)))
    assert not torch.equal(m.read(w, 3, _gen(5)), m.read(w, 3, _gen(6)))
    assert GaussianVariation(0.0).noiseless and not m.noiseless


# ---------------------------------------------------------------------------------------------
# DifferentialCells (level 2)

def test_two_cell_mapping_and_on_off_floor():
    m = DifferentialCells(0.0, on_off=10, bits=None, mapping="proportional")  # G_min 0.1, dG 0.9
    assert m.g_min == pytest.approx(0.1) and m.dg == pytest.approx(0.9)
    h = torch.tensor([1.0, 0.5, 0.1, 0.05, 0.0, -0.05, -0.5, -1.0])
    stored = m.quantize(h)
    # dead zone |h| <= 1/on_off, the rest shifted by G_min and stretched by 1/dG
    want = torch.tensor([1.0, 0.4 / 0.9, 0.0, 0.0, 0.0, 0.0, -0.4 / 0.9, -1.0])
    assert torch.allclose(stored, want, atol=1e-6)
    gp, gm = m.cells(stored)
    # the active cell holds |h| (proportional), the idle one the floor G_min
    assert torch.allclose(gp, torch.tensor([1.0, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), atol=1e-6)
    assert torch.allclose(gm, torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 1.0]), atol=1e-6)
    assert torch.all(gp >= m.g_min - 1e-7) and torch.all(gm >= m.g_min - 1e-7)
    assert torch.allclose((gp - gm) / m.dg, stored, atol=1e-6)
    # offset mapping: the full range is used and G_min cancels
    off = DifferentialCells(0.0, on_off=10, bits=None, mapping="offset")
    assert torch.allclose(off.quantize(h), h)
    # ideal cells (on_off = inf): no floor
    ideal = DifferentialCells(0.0, on_off=math.inf, bits=None)
    assert ideal.g_min == 0.0 and torch.allclose(ideal.quantize(h), h)


def test_two_cell_target_resolution():
    m = DifferentialCells(0.0, on_off=math.inf, bits=4)  # 16 levels per cell: weight step 1/15
    q = m.quantize(torch.tensor([0.5, 1 / 30 + 1e-4, -0.99]))
    assert torch.allclose(q * 15, torch.tensor([8.0, 1.0, -15.0]))  # 7.5 -> 8 (half to even)


def test_per_cell_variation_statistics_independence_and_floor():
    m = DifferentialCells(0.05, on_off=10, bits=None, mapping="offset")
    stored = torch.tensor([0.8, 0.0, -0.3])
    gp0, gm0 = m.cells(stored)
    gp, gm = m.read_cells(stored, N, _gen(2))
    assert gp.shape == gm.shape == (N, 3)
    cell_var = torch.full((3,), (0.05 * m.dg) ** 2)  # 5 % of the cells' dynamic range
    _check_mean_var(gp, gp0, cell_var)
    _check_mean_var(gm, gm0, cell_var)
    # idle cells sit at the floor G_min = G_max / on_off on average
    assert gm0[0] == pytest.approx(0.1) and gp0[2] == pytest.approx(0.1)
    # the two cells of a weight are programmed independently: correlation ~ 0 (|r| < 5 / sqrt(N))
    for j in range(3):
        r = torch.corrcoef(torch.stack([gp[:, j], gm[:, j]]))[0, 1]
        assert abs(float(r)) < 5 / math.sqrt(N)
    # ... and so are different weights
    r = torch.corrcoef(torch.stack([gp[:, 0], gp[:, 1]]))[0, 1]
    assert abs(float(r)) < 5 / math.sqrt(N)
    # a weight read has the variance of two cells: 2 sigma^2 (sqrt(2) more than level 1)
    w = m.read(stored, N, _gen(3))
    mean, var = m.read_moments(stored)
    assert torch.allclose(var, torch.full((3,), 2 * 0.05 ** 2))
    _check_mean_var(w, mean, var)


def test_state_dependent_cell_variation():
    m = DifferentialCells(0.1, on_off=10, bits=None, mapping="offset", state_dependent=True)
    stored = torch.tensor([1.0, 0.0])
    gp0, gm0 = m.cells(stored)  # (1.0, 0.1) and (0.1, 0.1)
    gp, gm = m.read_cells(stored, N, _gen(4))
    # std proportional to conductance: sigma * dG * G / G_max
    _check_mean_var(gp, gp0, (0.1 * m.dg * gp0) ** 2)
    _check_mean_var(gm, gm0, (0.1 * m.dg * gm0) ** 2)
    assert float(gp[:, 0].std()) > 5 * float(gm[:, 0].std())  # G_max cell varies ~10x the floor cell
    mean, var = m.read_moments(stored)
    assert torch.allclose(var, torch.tensor([0.1 ** 2 * (1.0 + 0.01), 0.1 ** 2 * 0.02]))
    _check_mean_var(m.read(stored, N, _gen(5)), mean, var)


@pytest.mark.parametrize("model", [
    GaussianVariation(0.03, bits=6, state_dependent=True),
    GaussianVariation(0.0, bits=None),
    DifferentialCells(0.04, on_off=10, bits=8),
    DifferentialCells(0.02, on_off=math.inf, bits=None, mapping="offset", state_dependent=True),
])
def test_config_round_trip(model):
    cfg = model.config()
    cfg2 = json.loads(json.dumps(cfg))  # JSON-serialisable (inf on/off included)
    back = error_model_from_config(cfg2)
    assert type(back) is type(model) and back == model and back.config() == cfg
    w = torch.linspace(-1, 1, 11)
    assert torch.equal(back.quantize(w), model.quantize(w))
    assert torch.allclose(back.read_moments(model.quantize(w))[1], model.read_moments(model.quantize(w))[1])


@pytest.mark.parametrize("bad", [dict(sigma=-0.1), dict(on_off=1.0), dict(on_off=0.5), dict(bits=0),
                                 dict(mapping="diagonal"), dict(sigma=float("nan"))])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError):
        DifferentialCells(**bad)


def test_engine_gaussian_sampler_uses_exact_moments():
    """Per-spike dynamic reads with sampler='gaussian' need read_moments: output variance matches."""
    torch.manual_seed(0)
    em = DifferentialCells(0.1, on_off=10, bits=8)
    layer = sn.NoisyLinear(6, 2, bias=False, error_model=em, errors="dynamic", reads="spike", sampler="gaussian")
    x = torch.tensor([[1.0, 0.0, 2.0, 1.0, 0.0, 3.0]]).repeat(20_000, 1)  # spike counts: c reads each
    with torch.no_grad():
        y = layer(x)
        wq = layer.quantized_weight()
        mean, var = em.read_moments(wq)
        s = float(layer.scale)
        want_mean = s * (x[0] @ mean.T)
        want_var = s ** 2 * (x[0] @ var.T)  # an integer input c is c independent reads
    _check_mean_var(y, want_mean, want_var)
    # the brute (reference) sampler agrees in distribution
    layer.set_errors(sampler="brute")
    with torch.no_grad():
        yb = layer(x[:20_000])
    _check_mean_var(yb, want_mean, want_var)


def test_static_errors_in_engine_layers():
    em = GaussianVariation(0.2, bits=None)
    layer = sn.NoisyLinear(5, 3, error_model=em, errors="static", reads="once")
    x = torch.ones(4, 5)
    y1, y2 = layer(x), layer(x)
    assert torch.equal(y1, y2)  # frozen until a new inference
    assert not torch.allclose(y1[0], y1[1])  # every batch row is its own draw
    layer.new_inference()
    assert not torch.allclose(layer(x), y1)
