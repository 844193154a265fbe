"""Example comparison script with the spikenoise pytest plugin: static vs dynamic NVM errors.

Copy this file to start your own comparison. The ``spikenoise_grid`` marker runs
``test_output_error`` for every (model, noise level, error type, seed); each run records the
relative output error of a small noisy layer with ``sn_record``, and pytest prints a table with
the mean and 95% confidence interval over the seeds at the end::

    pytest tests/test_compare_example.py --spikenoise-results compare.csv
    pytest tests/test_compare_example.py --spikenoise-seeds 10      # more repetitions

``test_dynamic_errors_degrade_less_than_static`` then compares grid points through the
``sn_results`` fixture: per-spike dynamic errors average out over the many reads of an inference,
so they disturb a spiking layer less than static errors at the same noise level (seed paper 000).
"""
from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch

import spikenoise as sn

N_IN, N_OUT, T, ROWS = 64, 16, 40, 128  # inputs, neurons, timesteps, independent inferences
LEVELS = [0, 1, 2, 3]
ERRORS = ["static", "dynamic"]


def make_layer(seed: int, error_model: sn.ErrorModel, errors: str) -> sn.NoisyLinear:
    """A NoisyLinear whose weights sit on random levels of the 8-level NVM (seeded: one network per seed)."""
    g = torch.Generator().manual_seed(1000 + seed)
    layer = sn.NoisyLinear(N_IN, N_OUT, bias=False, error_model=error_model, errors=errors, reads="spike")
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-2, 4, (N_OUT, N_IN), generator=g).float())  # mostly excitatory
        layer.scale.fill_(0.05)
    return layer


def input_spikes(seed: int) -> torch.Tensor:
    """(T, N_IN) Poisson spike train, 10% per step; the same for every inference of a seed."""
    g = torch.Generator().manual_seed(2000 + seed)
    return (torch.rand(T, N_IN, generator=g) < 0.1).float()


@torch.no_grad()
def integrator(layer: sn.NoisyLinear, spikes: torch.Tensor) -> torch.Tensor:
    """Non-spiking readout: input current summed over time, (ROWS, N_OUT)."""
    layer.new_inference()
    return sum(layer(spikes[t].expand(ROWS, N_IN)) for t in range(T))


@torch.no_grad()
def lif(layer: sn.NoisyLinear, spikes: torch.Tensor) -> torch.Tensor:
    """snnTorch LIF layer: output spike counts, (ROWS, N_OUT)."""
    layer.new_inference()
    neuron = snn.Leaky(beta=0.9, threshold=1.0)
    mem = neuron.init_leaky()
    count = torch.zeros(ROWS, N_OUT)
    for t in range(T):
        spk, mem = neuron(layer(spikes[t].expand(ROWS, N_IN)), mem)
        count += spk
    return count


MODELS = {"integrator": integrator, "lif": lif}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: thread start-up costs more than it saves, and on a busy CI machine
    two spinning threads per op slow each call down many times. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def output_error(model, error_model: sn.ErrorModel, errors: str, seed: int) -> float:
    """Relative output error ``mean|noisy - clean| / mean|clean|`` of one seeded network."""
    spikes = input_spikes(seed)
    clean = model(make_layer(seed, error_model, "none"), spikes)
    noisy = model(make_layer(seed, error_model, errors), spikes)  # ROWS independent draws
    return float((noisy - clean).abs().mean() / clean.abs().mean().clamp_min(1e-9))


def integrator_error_closed_form(seed: int, error_model: sn.MultiLevelNVM, errors: str) -> float:
    """Expected relative error of :func:`integrator`, from the confusion matrix alone.

    Output ``j`` sums ``c_i`` reads of weight ``w_ij`` (``c_i`` = spikes of input ``i``). Each read
    errs by a draw with mean ``m(w)`` and variance ``v(w)``; dynamic reads are independent
    (variance ``sum c_i v``), a static draw is shared by the ``c_i`` reads (variance
    ``sum c_i^2 v``). The sum of many such terms is close to Gaussian, whose mean absolute
    value is closed form.
    """
    from scipy.stats import norm

    layer = make_layer(seed, error_model, "none")
    w = layer.weight.detach().double()  # integer levels
    c = input_spikes(seed).sum(0).double()
    vals, P = error_model.values, error_model.confusion
    idx = (w - vals[0]).round().long()
    m = (P @ vals - vals)[idx]
    v = (P @ vals ** 2 - (P @ vals) ** 2)[idx]
    s = float(layer.scale.detach())
    mean = s * (m * c).sum(1)
    var = s * s * (v * (c if errors == "dynamic" else c * c)).sum(1)
    sd = var.sqrt().numpy()
    mu = mean.numpy()
    abs_err = sd * math.sqrt(2 / math.pi) * torch.exp(-mean ** 2 / (2 * var)).numpy() + mu * (1 - 2 * norm.cdf(-mu / sd))
    clean = s * (w @ c)
    return float(abs_err.mean() / clean.abs().mean())


@pytest.mark.spikenoise_grid(models=MODELS, noise_levels=LEVELS, errors=ERRORS, seeds=3)
def test_output_error(sn_model, sn_error_model, sn_errors, sn_seed, sn_record):
    """Relative output error of one small noisy layer vs the same layer without errors."""
    rel = output_error(sn_model, sn_error_model, sn_errors, sn_seed)
    if sn_error_model.noiseless:
        assert rel == 0.0, "noise level 0 is error-free"
    else:
        assert rel > 0.0
        if sn_model is integrator:
            # ROWS x N_OUT = 2048 outputs: the mean is within a few percent of its expectation
            assert rel == pytest.approx(integrator_error_closed_form(sn_seed, sn_error_model, sn_errors), rel=0.1)
    sn_record("rel_error", rel)


def test_dynamic_errors_degrade_less_than_static(sn_results):
    rows = sn_results.summary(test="test_output_error")
    if len(rows) == len(MODELS) * len(LEVELS) * len(ERRORS):
        err = {(r["model"], r["noise_level"], r["errors"]): r["mean"] for r in rows}
    else:  # the grid did not run in this session (deselected or distributed): compute it here
        err = {}
        for name, model in MODELS.items():
            for level in LEVELS:
                for errors in ERRORS:
                    vals = []
                    for seed in range(3):
                        torch.manual_seed(seed)
                        vals.append(output_error(model, sn.MultiLevelNVM.noise_level(level), errors, seed))
                    err[name, level, errors] = sum(vals) / len(vals)
    for model in MODELS:
        for errors in ERRORS:
            assert err[model, 0, errors] == 0.0, "noise level 0 is error-free"
            # more noise, more output error
            assert err[model, 1, errors] < err[model, 2, errors] < err[model, 3, errors], (model, errors, err)
        for level in LEVELS[1:]:
            assert err[model, level, "dynamic"] < err[model, level, "static"], (model, level, err)
