"""The studies' headline numbers (bitflip, bnn, analog, resilience) against hand-computed examples."""
from __future__ import annotations

import math

import pytest

from spikenoise.studies import analog, bitflip, bnn, resilience
from spikenoise.studies.scaffold import write_headline


def test_midpoint_ratio_hand_computed():
    # log10 ratio = -2.0 - (-4.5) = 2.5; se = hypot(0.03, 0.04) = 0.05; half = 1.959964 * 0.05 = 0.0979982
    i8 = {"ok": True, "in_range": True, "mu_x": -2.0, "mu_x_stderr": 0.03}
    f32 = {"ok": True, "in_range": True, "mu_x": -4.5, "mu_x_stderr": 0.04}
    r, lo, hi = bitflip.midpoint_ratio(i8, f32)
    assert r == pytest.approx(10 ** 2.5)
    assert lo == pytest.approx(10 ** (2.5 - 0.0979982), rel=1e-6)
    assert hi == pytest.approx(10 ** (2.5 + 0.0979982), rel=1e-6)
    assert bitflip.midpoint_ratio(i8, {**f32, "in_range": False}) is None
    assert bitflip.midpoint_ratio({**i8, "mu_x_stderr": float("nan")}, f32) is None


def test_tolerated_ber_hand_computed_and_edges():
    # threshold 0.90 - 0.05 = 0.85; first below at 0.1 (0.50); between 1e-2 (0.86) and 1e-1:
    # log10 BER = -2 + (0.86 - 0.85) / (0.86 - 0.50) = -2 + 0.0277778 -> 0.0106605
    assert bnn.tolerated_ber([1e-3, 1e-2, 1e-1], [0.9, 0.86, 0.5], 0.9) == pytest.approx(10 ** (-2 + 1 / 36))
    assert bnn.tolerated_ber([1e-3, 1e-2], [0.80, 0.7], 0.9) == 0.0  # already below at the smallest BER
    assert bnn.tolerated_ber([1e-3, 1e-2], [0.89, 0.88], 0.9) == math.inf  # never below: beyond the range
    with pytest.raises(ValueError, match="ascending"):
        bnn.tolerated_ber([1e-2, 1e-3], [0.9, 0.8], 0.9)
    with pytest.raises(ValueError, match="as many"):
        bnn.tolerated_ber([1e-3], [0.9, 0.8], 0.9)


def _analog_row(seed, train_sigma, mean, test_sigma=0.08, level=3):
    return {"key": {"level": level, "train_sigma": train_sigma, "test_sigma": test_sigma, "train_seed": seed},
            "mean": mean, "q3": mean + 0.01}


def test_analog_injection_gain_pairs_by_training_seed():
    # gains 0.02, 0.04, 0.03 on very different baselines: mean 0.03, sd 0.01,
    # t(0.975, 2) = 4.302653 -> half = 4.302653 * 0.01 / sqrt(3) = 0.0248414
    rows = [_analog_row(0, 0.0, 0.50), _analog_row(0, 0.08, 0.52), _analog_row(1, 0.0, 0.80),
            _analog_row(1, 0.08, 0.84), _analog_row(2, 0.0, 0.65), _analog_row(2, 0.08, 0.68),
            _analog_row(0, 0.08, 0.10, test_sigma=0.04)]  # another test sigma: not part of the pairs
    d, ci = analog.injection_gain(rows, 3, 0.08, 0.0, 0.08)
    assert d == pytest.approx([0.02, 0.04, 0.03])
    assert ci.mean == pytest.approx(0.03) and ci.hi - ci.mean == pytest.approx(0.0248414, abs=1e-6)
    assert analog.injection_gain(rows, 2, 0.08, 0.0, 0.08) == ([], None)


def _res_row(model, seed, syn, te, mean, steps=None):
    return {"key": {"model": model, "steps": steps if steps is not None else (8 if model == "rnn" else 0),
                    "jitter": 0.0, "seed": seed, "noise_at": "data", "sigma_syn": syn, "sigma_te": te},
            "mean": mean}


def test_resilience_model_difference_by_seed_over_cells():
    cells = [(0.025, 0.025), (0.1, 0.1)]
    rows = [_res_row("rnn", 0, 0.025, 0.025, 0.90), _res_row("rnn", 0, 0.1, 0.1, 0.80),
            _res_row("cnn", 0, 0.025, 0.025, 0.85), _res_row("cnn", 0, 0.1, 0.1, 0.70),
            _res_row("rnn", 1, 0.025, 0.025, 0.92), _res_row("rnn", 1, 0.1, 0.1, 0.84),
            _res_row("cnn", 1, 0.025, 0.025, 0.90), _res_row("cnn", 1, 0.1, 0.1, 0.80),
            _res_row("rnn", 1, 0.1, 0.1, 0.10, steps=2),  # another t of the step sweep: ignored
            _res_row("rnn", 2, 0.025, 0.025, 0.9)]  # seed 2 has no CNN: no pair
    d, ci = resilience.model_difference(rows, "rnn", "cnn", cells, steps={"rnn": 8, "cnn": 0})
    # seed 0: (0.05 + 0.10) / 2 = 0.075; seed 1: (0.02 + 0.04) / 2 = 0.03; mean 0.0525,
    # sd 0.0318198, se 0.0225, t(0.975, 1) = 12.706205 -> half 0.285890
    assert d == pytest.approx([0.075, 0.03])
    assert ci.mean == pytest.approx(0.0525) and ci.hi - ci.mean == pytest.approx(0.285890, abs=1e-5)


def test_write_headline(tmp_path):
    text = write_headline(tmp_path, "question?", ["answer 1", "answer 2"])
    assert (tmp_path / "headline.txt").read_text() == text + "\n"
    assert text.splitlines() == ["headline: question?", "  answer 1", "  answer 2"]
