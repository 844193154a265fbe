"""Midpoint noise level: the logistic fit recovers known parameters from synthetic sweeps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spikenoise.midpoint import fit_midpoint, log_grid, logistic, plot_midpoint, sweep_probabilities


def _synthetic(mu: float, sigma: float, a_max: float, a_min: float, noise: float, seed: int, repeats: int = 3):
    grid = log_grid(1e-8, 0.5, per_decade=3)
    rng = np.random.default_rng(seed)

    def evaluate(p: float, r: int) -> float:
        a = logistic(math.log10(p), math.log10(mu), sigma, (a_max - a_min) / 2, a_min)
        return float(np.clip(a + rng.normal(0, noise), 0, 1))

    return sweep_probabilities(evaluate, grid, repeats=repeats)


@pytest.mark.parametrize("mu,sigma", [(2.2e-6, 0.15), (1.2e-3, 0.3), (3e-2, 0.08)])
def test_fit_recovers_known_midpoint(mu, sigma):
    p, acc = _synthetic(mu, sigma, a_max=0.92, a_min=0.1, noise=0.01, seed=1)
    fit = fit_midpoint(p, acc, n_classes=10)
    assert fit.ok and fit.in_range
    assert abs(math.log10(fit.mu) - math.log10(mu)) < 0.05  # within 12 % in p
    assert fit.a_max == pytest.approx(0.92, abs=0.01)
    assert fit.sigma == pytest.approx(sigma, rel=0.25)
    # 99 % of peak, from the closed form of eq. 2
    z = math.log(2 * 0.41 / (0.99 * 0.92 - 0.1) - 1)
    assert abs(math.log10(fit.p99) - (math.log10(mu) + sigma * z)) < 0.08
    assert fit.p99 < fit.mu
    # the fitted curve passes through the data
    assert fit.rmse < 0.02


def test_free_floor_is_fitted():
    p, acc = _synthetic(1e-4, 0.2, a_max=0.8, a_min=0.3, noise=0.005, seed=2)
    fit = fit_midpoint(p, acc)
    assert fit.a_min == pytest.approx(0.3, abs=0.02)
    assert abs(math.log10(fit.mu) + 4) < 0.05


def test_fixed_floor_differs_from_wrong_truth():
    """The test is not vacuous: a curve with another midpoint is told apart."""
    p, acc = _synthetic(1e-5, 0.2, a_max=0.9, a_min=0.1, noise=0.01, seed=3)
    fit = fit_midpoint(p, acc, n_classes=10)
    assert abs(math.log10(fit.mu) - math.log10(3e-5)) > 0.3


def test_no_drop_is_reported_off_range():
    """Mantissa-only noise: accuracy never falls in the probed range -> mu beyond it, flagged."""
    p = np.repeat(log_grid(1e-8, 1e-2, 2), 2)
    acc = np.full(p.shape, 0.9) + np.random.default_rng(0).normal(0, 0.003, p.shape)
    fit = fit_midpoint(p, acc, n_classes=10)
    assert not fit.in_range and fit.mu > 1e-2 and "beyond" in fit.message


def test_linear_space_fit():
    x = np.linspace(0, 1, 41)
    acc = logistic(x, 0.4, 0.05, 0.4, 0.1)
    fit = fit_midpoint(x, acc, n_classes=10, space="linear")
    assert fit.mu == pytest.approx(0.4, abs=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="p > 0"):
        fit_midpoint([0, 1e-3, 1e-2, 1e-1], [0.9, 0.9, 0.5, 0.1])
    with pytest.raises(ValueError, match="at least 4"):
        fit_midpoint([1e-3, 1e-2], [0.9, 0.1])
    with pytest.raises(ValueError, match="p_min"):
        log_grid(0, 1e-2)
    with pytest.raises(ValueError, match="space"):
        fit_midpoint([1e-4, 1e-3, 1e-2, 1e-1], [0.9, 0.9, 0.5, 0.1], space="ln")


def test_log_grid_and_plot(tmp_path):
    g = log_grid(1e-6, 1e-2, per_decade=2)
    assert g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e-2) and len(g) == 9
    p, acc = _synthetic(1e-4, 0.2, 0.9, 0.1, 0.01, seed=4, repeats=2)
    out = plot_midpoint({"synthetic": (p, acc, fit_midpoint(p, acc, n_classes=10))}, str(tmp_path / "m.png"))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
