"""Seed 004: MLP / CNN / weight re-use RNN, jitter, input noise, energy model, and the two study CLIs."""
import argparse
import json

import pytest
import torch
import torch.nn as nn

import spikenoise as sn
from spikenoise.energy import RERAM, SONOS, OpCosts, count_ops, estimate_energy
from spikenoise.studies.resilience import seed004_check
from spikenoise.models.resilience import MLP, Jitter, ResilienceCNN, ReuseRNN, build_resilience_model
from spikenoise.noise.analog import GaussianVariation
from spikenoise.synapse import TiledLinear, programmed, set_analog


def _params(m):
    return sum(p.numel() for n, p in m.named_parameters() if n.endswith(("weight", "bias")))


def test_seed004_parameter_counts_at_mnist_size():
    """The layouts reproduce the seed's parameter counts (MLP 101,770; RNN t=7 118,378; CNN 119,322)."""
    assert _params(MLP(784, (128,), 10)) == 101_770
    assert _params(ReuseRNN(784, steps=7, core_size=400)) == 118_378
    assert _params(ReuseRNN(784, steps=56, core_size=400)) == 158_656
    assert _params(ResilienceCNN((28, 28))) == 119_322


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_models_run_and_train(name):
    torch.manual_seed(0)
    m = build_resilience_model(name)
    x = torch.rand(5, 8, 8)
    y = m(x)
    assert y.shape == (5, 10)
    y.sum().backward()
    assert all(s.weight.grad is not None for s in sn.synapses(m))


def test_rnn_reuses_one_matrix_with_one_static_draw():
    torch.manual_seed(0)
    rnn = ReuseRNN(64, steps=8, core_size=40, error_model=GaussianVariation(0.1, bits=None), errors="static")
    assert rnn.chunk == 8 and rnn.hidden_size == 32 and rnn.core.reads == "step"
    draws = []
    rnn.core.register_forward_hook(lambda m, a, o: draws.append(m.draw))
    rnn(torch.rand(3, 64))
    assert len(draws) == 8 and all(d is draws[0] for d in draws)  # t calls of the same programmed array
    sn.configure(rnn, errors="dynamic")
    draws.clear()
    rnn(torch.rand(3, 64))
    assert len(draws) == 8  # dynamic: a fresh read per step (engine per-row path)
    with pytest.raises(ValueError):
        ReuseRNN(64, steps=3)
    with pytest.raises(ValueError):
        ReuseRNN(64, steps=1, core_size=64)


def test_jitter_only_in_training():
    j = Jitter(0.5)
    x = torch.zeros(10_000)
    j.train()
    assert float(j(x).std()) == pytest.approx(0.5, rel=0.05)
    j.eval()
    assert torch.equal(j(x), x)
    m = MLP(16, (8,), 3, jitter=0.3)
    x = torch.rand(4, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.equal(m(x), m(x))


def test_input_noise_on_every_layer_and_programmed_chip():
    torch.manual_seed(0)
    m = MLP(16, (8,), 3, error_model=GaussianVariation(0.1, bits=None), errors="static", draws="batch")
    m.eval()
    x = torch.rand(4, 16)
    with programmed(m, seed=0):
        a, b = m(x), m(x)
    assert torch.equal(a, b)  # one chip, no input noise: deterministic
    set_analog(m, input_noise=0.2)
    assert all(l.input_noise == 0.2 for l in m.modules() if isinstance(l, TiledLinear))
    with programmed(m, seed=0):
        c, d = m(x), m(x)
    assert not torch.equal(c, d)  # input noise is fresh at every call


# ---------------------------------------------------------------------------------------------
# energy

def test_operation_counts_by_hand():
    lin = nn.Linear(3, 2)
    (r,) = count_ops(lin, torch.zeros(4, 3))
    assert (r["macs"], r["activations"], r["adc"], r["dac"]) == (4 * 2, 2, 4, 4)  # bias = one more row
    (r,) = count_ops(lin, torch.zeros(1, 3), count_bias=False)
    assert r["macs"] == 6
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    (r,) = count_ops(conv, torch.zeros(1, 2, 4, 5))
    assert (r["macs"], r["activations"]) == (20 * 18 * 3, 20 * 3)  # one VMM per output position
    tiled = TiledLinear(600, 40, bias=False)  # 3 x 2 arrays of 256 x 64
    (r,) = count_ops(tiled, torch.zeros(1, 600))
    assert r["adc"] == 2 * 40 * 3 and r["dac"] == 600 * 2
    rnn = ReuseRNN(64, steps=4, core_size=40)
    ops = count_ops(rnn, torch.zeros(1, 64))
    assert len(ops) == 5  # the core is counted at every one of its 4 uses, then the readout
    assert ops[0]["macs"] == 41 * 24
    rep = estimate_energy(rnn, torch.zeros(1, 64), OpCosts(mac=1e-15, activation=1e-12, adc=2e-12))
    assert rep.macs == 4 * 41 * 24 + 25 * 10 and rep.activations == 4 * 24 + 10
    assert rep.total_J == pytest.approx(rep.macs * 1e-15 + rep.activations * 1e-12 + rep.adc * 2e-12)
    with pytest.raises(ValueError):
        OpCosts(mac=-1.0, activation=0.0)


def test_energy_defaults_against_seed004_table():
    assert RERAM.mac == pytest.approx(4.22e-9 / 101_770) and SONOS.mac > RERAM.mac
    rows = {(r["system"], r["device"]): r for r in seed004_check()}
    assert rows[("mlp", "reram")]["ratio_ours_to_seed"] == pytest.approx(1.0, abs=0.01)
    assert rows[("rnn", "reram")]["ratio_ours_to_seed"] == pytest.approx(1.0, abs=0.1)
    # the seed's CNN energy (480 nJ) is not reproduced by counting its stated layout's cell reads
    assert rows[("cnn", "reram")]["macs"] < 4 * rows[("mlp", "reram")]["macs"]
    assert rows[("cnn", "reram")]["ratio_ours_to_seed"] < 0.1
    # weight re-use: the RNN reads its core t times
    assert rows[("rnn", "reram")]["macs"] == 7 * 401 * 288 + 289 * 10


# ---------------------------------------------------------------------------------------------
# the study command lines (tiny synthetic runs)

def _run(module, argv):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return module.main(p.parse_args(argv))


@pytest.mark.slow
def test_resilience_study_smoke_and_resume(tmp_path):
    from spikenoise.studies import resilience

    out = tmp_path / "res"
    argv = ["--preset", "smoke", "--out", str(out), "--no-progress", "--models", "mlp", "rnn", "--seeds", "1",
            "--epochs", "2", "--jitters", "0", "--syn-sigmas", "0", "0.2", "--te-sigmas", "0", "0.2",
            "--step-sweep", "2", "--core-size", "64"]
    assert _run(resilience, argv) == 0
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 * 2 + 2  # 2 models x 2 noise_at x 2 x 2 sigmas + t=2 sweep (2 sigmas)
    assert all(len(r["accuracies"]) == 2 for r in rows)
    for f in ("summary.md", "summary.csv", "energy.csv", "energy_seed004.csv", "resilience_data.png", "steps.png"):
        assert (out / f).exists(), f
    mtime = (out / "results.jsonl").stat().st_mtime
    assert _run(resilience, argv) == 0  # resumes: nothing recomputed
    assert (out / "results.jsonl").stat().st_mtime == mtime


@pytest.mark.slow
def test_analog_study_smoke(tmp_path):
    from spikenoise.studies import analog

    out = tmp_path / "ana"
    argv = ["--preset", "smoke", "--out", str(out), "--no-progress", "--epochs", "2", "--programmings", "3",
            "--train-sigmas", "0", "0.1", "--test-sigmas", "0.1", "--levels", "1", "3"]
    assert _run(analog, argv) == 0
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["key"]["level"], r["key"]["train_sigma"]) for r in rows} == {(1, 0.0), (1, 0.1), (3, 0.0), (3, 0.1)}
    assert all(r["key"]["train_seed"] == 0 for r in rows)
    for r in rows:
        assert len(r["accuracies"]) == 3 and r["min"] <= r["q1"] <= r["median"] <= r["q3"] <= r["max"]
    for f in ("summary.md", "results.csv", "deterministic.csv", "boxplots.png", "top25.png"):
        assert (out / f).exists(), f
