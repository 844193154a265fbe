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


@pytest.mark.spikenoise_grid(models=MODELS, noise_levels=LEVELS, errors=ERRORS, seeds=3)
def test_output_error(sn_model, sn_error_model, sn_errors, sn_seed, sn_record):
    """Relative output error of one small noisy layer vs the same layer without errors."""
    spikes = input_spikes(sn_seed)
    clean = sn_model(make_layer(sn_seed, sn_error_model, "none"), spikes)
    noisy = sn_model(make_layer(sn_seed, sn_error_model, sn_errors), spikes)  # ROWS independent draws
    rel = float((noisy - clean).abs().mean() / clean.abs().mean().clamp_min(1e-9))
    assert math.isfinite(rel) and rel >= 0.0
    sn_record("rel_error", rel)


def test_dynamic_errors_degrade_less_than_static(sn_results):
    rows = sn_results.summary(test="test_output_error")
    if len(rows) < len(MODELS) * len(LEVELS) * len(ERRORS):
        pytest.skip("the test_output_error grid did not run in this session (deselected or distributed)")
    err = {(r["model"], r["noise_level"], r["errors"]): r["mean"] for r in rows}
    for model in MODELS:
        for errors in ERRORS:
            assert err[model, 0, errors] == 0.0, "noise level 0 is error-free"
            # more noise, more output error
            assert err[model, 1, errors] < err[model, 2, errors] < err[model, 3, errors], (model, errors, err)
        for level in LEVELS[1:]:
            assert err[model, level, "dynamic"] < err[model, level, "static"], (model, level, err)
