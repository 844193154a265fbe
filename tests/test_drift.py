"""DriftingPCM: drift statistics vs closed form, confusion vs Monte Carlo, compensation, config, aihwkit."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import spikenoise as sn
from spikenoise.noise.drift import DAY, HOUR, YEAR, folded_normal_moments

DATA = Path(__file__).parent / "data" / "aihwkit_drift_reference.json"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("t", [HOUR, YEAR])
def test_log_conductance_matches_closed_form(t):
    # without programming and read noise, log G(t) = log g_T - nu ln((t + t0) / t0), nu = |N(mu, s^2)|
    p = sn.PCMParams(prog_noise_scale=0.0, read_noise_scale=0.0)
    pcm = sn.DriftingPCM(t, p)
    targets = torch.tensor([6.25, 18.75, 25.0], dtype=torch.float64)
    n = 40000
    logg = torch.log(pcm.cell_conductance(targets, n, _gen(1))).numpy()
    mu, sd = p.nu_mean_std(targets.numpy())
    m_nu, v_nu = folded_normal_moments(mu, sd)
    lr = math.log((t + p.t0) / p.t0)
    mean_cf = np.log(targets.numpy()) - m_nu * lr
    var_cf = v_nu * lr * lr
    se_mean = np.sqrt(var_cf / n)
    assert np.all(np.abs(logg.mean(0) - mean_cf) < 5 * se_mean), (logg.mean(0), mean_cf)
    se_var = var_cf * math.sqrt(2.0 / (n - 1))  # nu is near-normal here (mu/s >= 4)
    assert np.all(np.abs(logg.var(0, ddof=1) - var_cf) < 5 * se_var), (logg.var(0), var_cf)


def test_folded_normal_moments_brute_force():
    z = torch.randn(400000, generator=_gen(2), dtype=torch.float64).numpy()
    for mu, s in [(0.049, 0.045), (0.1, 0.045), (0.0, 1.0), (0.3, 0.0)]:
        m, v = folded_normal_moments(mu, s)
        x = np.abs(mu + s * z)
        assert abs(x.mean() - m) < 5 * max(x.std(), 1e-12) / math.sqrt(z.size) + 1e-15
        assert abs(x.var() - v) < 0.02 * v + 1e-15


def test_mean_difference_of_pair_matches_numerical_integration():
    pcm = sn.DriftingPCM(DAY)
    stored = pcm.values.to(torch.float64)
    n = 20000
    gp, gm = pcm.conductances(stored, n, _gen(3))
    d = (gp - gm).numpy()
    exact = pcm.level_mean_uS()
    se = d.std(0) / math.sqrt(n)
    assert np.all(np.abs(d.mean(0) - exact) < 5 * se + 1e-9)


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    n = counts.sum()
    exp = probs * n
    keep = exp >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(exp[keep], exp[~keep].sum())
    if exp[-1] < 5:  # merge the tiny remainder into the largest category
        j = int(np.argmax(exp[:-1]))
        obs[j] += obs[-1]
        exp[j] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    if obs.size < 2:
        return 1.0
    return float(chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("t,comp", [(0.0, False), (HOUR, False), (YEAR, True)])
def test_confusion_matches_monte_carlo(t, comp):
    pcm = sn.DriftingPCM(t, compensation=comp)
    P = pcm.confusion.numpy()
    vals = pcm.values.numpy()
    stored = pcm.values.to(torch.float64)
    simulated = pcm.decide(pcm.sense(stored, 30000, _gen(4))).numpy()  # cells simulated, then decided
    sampled = pcm.read(stored, 30000, _gen(5)).numpy()  # what the engine uses
    pvals = []
    for reads in (simulated, sampled):
        for i in range(len(vals)):
            counts = np.array([(reads[:, i] == v).sum() for v in vals], dtype=np.float64)
            pvals.append(_chi2_pvalue(counts, P[i]))
    # 16 tests per case at a fixed seed: Bonferroni at 1e-3 overall
    assert min(pvals) > 1e-3 / len(pvals), pvals


def test_confusion_rows_sum_to_one_and_degrade_over_time():
    pcm = sn.DriftingPCM()
    pc_prev = None
    for t in [0.0, 60.0, HOUR, DAY, YEAR]:
        P = pcm.confusion_at(t).numpy()
        assert np.allclose(P.sum(1), 1.0, atol=1e-12)
        assert np.all(P >= 0)
        pc = np.diag(P)
        if pc_prev is not None:  # drift only makes the outer levels worse
            assert pc[7] <= pc_prev[7] + 1e-9 and pc[0] <= pc_prev[0] + 1e-9
        pc_prev = pc
    # compensation restores most of it
    assert sn.DriftingPCM(YEAR, compensation=True).p_correct()[7] > 0.5 > float(pcm.p_correct(YEAR)[7])


def test_compensation_restores_mean_reference_read():
    vals = sn.DriftingPCM().values
    nz = vals != 0
    ref = float(vals[nz].abs().sum())  # programmed: E[g_prog] = target for levels != 0 (>= 9 sigma above 0)
    stored = vals.to(torch.float64)
    plain = sn.DriftingPCM(YEAR, readout="analog")
    comp = plain.with_options(compensation=True)
    assert 1.8 < comp.compensation_factor() < 2.2  # nu ~ 0.049 over ln(1 year / 20 s) = 14.3: 0.5x
    n = 20000
    r_plain = plain.read(stored, n, _gen(5))[:, nz].abs().mean(0).sum().item()
    r_comp = comp.read(stored, n, _gen(5))[:, nz].abs().mean(0).sum().item()
    assert abs(r_comp - ref) < 0.01 * ref
    assert r_plain < 0.6 * ref
    # the closed-form read moments agree with the sampled reads
    m, v = comp.level_moments()
    draws = comp.read(stored, n, _gen(6)).numpy()
    assert np.all(np.abs(draws.mean(0) - m) < 5 * np.sqrt(v / n) + 1e-12)


def test_exact_per_spike_sampler_matches_brute():
    torch.manual_seed(0)
    pcm = sn.DriftingPCM(DAY)
    lin = sn.NoisyLinear(16, 4, bias=False, error_model=pcm, errors="dynamic", reads="spike")
    with torch.no_grad():
        lin.weight.copy_(torch.randint(-4, 4, (4, 16)).float())
    x = torch.randint(0, 3, (1, 16)).float().expand(4000, 16).contiguous()
    with torch.no_grad():
        lin.set_errors(sampler="exact")
        ye = lin(x)
        lin.set_errors(sampler="brute")
        yb = lin(x)
    se = torch.sqrt(ye.var(0) / 4000 + yb.var(0) / 4000)
    assert torch.all((ye.mean(0) - yb.mean(0)).abs() < 5 * se + 1e-6)
    assert torch.all((ye.var(0) / yb.var(0) - 1).abs() < 0.15)  # F-test scale at n = 4000


def test_config_round_trip_and_state_dict():
    pcm = sn.DriftingPCM(HOUR, sn.PCMParams(drift_scale=1.5), compensation=True, readout="level")
    again = sn.error_model_from_config(json.loads(json.dumps(pcm.config())))
    assert again == pcm and again.t == HOUR and again.params.drift_scale == 1.5
    assert torch.equal(again.confusion, pcm.confusion)
    net = sn.convert(torch.nn.Sequential(torch.nn.Linear(8, 3)), pcm.at(DAY))
    fresh = sn.convert(torch.nn.Sequential(torch.nn.Linear(8, 3)), sn.DriftingPCM())
    fresh.load_state_dict(net.state_dict())
    em = next(sn.synapses(fresh)).error_model
    assert isinstance(em, sn.DriftingPCM) and em.t == DAY and em.compensation


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="t .*>= 0"):
        sn.DriftingPCM().at(-1.0)
    with pytest.raises(ValueError, match="t "):
        sn.DriftingPCM(float("nan"))
    with pytest.raises(ValueError, match="prog_noise_scale"):
        sn.PCMParams(prog_noise_scale=-0.1)
    with pytest.raises(ValueError, match="g_max"):
        sn.PCMParams(g_max=0)
    with pytest.raises(ValueError, match="nu_std_range"):
        sn.PCMParams(nu_std_range=(0.05, 0.01))
    with pytest.raises(ValueError, match="readout"):
        sn.DriftingPCM(readout="digital")
    with pytest.raises(ValueError, match="values must contain 0"):
        sn.DriftingPCM(values=[1, 2, 3])


def test_matches_recorded_aihwkit_statistics():
    # numbers recorded by scripts/compare_aihwkit_drift.py from aihwkit 1.1.0 (200k float32 cells each)
    doc = json.loads(DATA.read_text())
    assert doc["aihwkit_version"] == "1.1.0" and len(doc["rows"]) >= 20
    pcm = sn.DriftingPCM()
    worst = 0.0
    for r in doc["rows"]:
        g, t = r["g_target_uS"], r["t_inference_s"]
        m, s = pcm.cell_moments(g, programmed_only=True) if t is None else pcm.cell_moments(g, t)
        # 60 comparisons: |z| < 4.5 each keeps the family-wise false alarm below 1e-3;
        # 0.01 % relative slack covers aihwkit's float32 arithmetic
        zm = abs(m - r["aihwkit_mean"]) / math.hypot(r["aihwkit_se_mean"], 1e-4 * abs(m))
        zs = abs(s - r["aihwkit_std"]) / math.hypot(r["aihwkit_se_std"], 1e-4 * s)
        worst = max(worst, zm, zs)
        assert zm < 4.5 and zs < 4.5, (r, m, s)
    # and a model without drift would be far off: the check has power
    nodrift = sn.DriftingPCM(0, sn.PCMParams(drift_scale=0.0))
    r = next(r for r in doc["rows"] if r["g_target_uS"] == 25.0 and r["time"] == "1 day")
    assert abs(nodrift.cell_moments(25.0, DAY)[0] - r["aihwkit_mean"]) > 100 * r["aihwkit_se_mean"]


def test_drift_cli_tiny(tmp_path):
    from spikenoise.cli import main

    out = tmp_path / "drift"
    assert main(["drift", "--preset", "tiny", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.startswith("{")]
    acc = {(r["key"]["condition"], r["key"]["t"]): r["acc"] for r in rows if "acc" in r}
    clean = acc[("clean", 0.0)]
    assert clean > 0.4  # the toy task is learned (chance 1/12)
    # one year of drift without compensation halves every conductance: near chance, far below clean
    assert acc[("static", YEAR)] < clean - 0.25 and acc[("dynamic", YEAR)] < clean - 0.25
    # global drift compensation restores most of it; 1 s after programming is close to clean
    assert acc[("static+comp", YEAR)] > acc[("static", YEAR)] + 0.25
    assert abs(acc[("static", 1.0)] - clean) < 0.15
    assert ("aware+comp static", YEAR) in acc and ("aware+comp dynamic", YEAR) in acc
    table = (out / "table.md").read_text()
    assert "1 year" in table and "static+comp" in table
    assert (out / "drift_accuracy.png").stat().st_size > 0 and (out / "drift_confusion.png").stat().st_size > 0
    # resumable: a second run adds no rows
    n = len(rows)
    assert main(["drift", "--preset", "tiny", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    assert sum(1 for line in (out / "results.jsonl").read_text().splitlines() if line.startswith("{")) == n
