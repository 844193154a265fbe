"""Training (fit / finetune / resume), the evaluation sweep and the analysis helpers.

Everything runs on a tiny stand-in network built from NoisyLinear, so these tests do not depend on
the KWS models or data sets and take a few seconds.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import spikenoise as sn
from spikenoise import analysis
from spikenoise.evaluate import (Condition, accuracy, cache_batches, noisy_accuracy, repetition_seed, summarize,
                                 sweep)
from spikenoise.results import ResultStore, mean_ci
from spikenoise.train import finetune, fit, load_checkpoint, make_optimizer, param_groups


class Tiny(nn.Module):
    """(B, T, F) -> logits: a noisy MLP on the time-averaged features; one forward = one inference."""

    def __init__(self, f: int = 8, hidden: int = 16, classes: int = 3, reads: str = "once"):
        super().__init__()
        self.fc1 = sn.NoisyLinear(f, hidden, reads=reads)
        self.fc2 = sn.NoisyLinear(hidden, classes, reads=reads)
        self.gain = nn.Parameter(torch.ones(()))  # a non-synapse parameter (lr group "other")

    def forward(self, x):
        sn.new_inference(self)
        return self.fc2(torch.tanh(self.gain * self.fc1(x.mean(dim=1))))


def _problem(n=192, f=8, classes=3, seed=0):
    centers = torch.randn(classes, f, generator=torch.Generator().manual_seed(1234)) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y].unsqueeze(1) + 0.7 * torch.randn(n, 4, f, generator=g)
    return x, y


def _loaders(batch=32, shuffle_seed=0):
    x, y = _problem()
    xt, yt = _problem(96, seed=1)
    g = torch.Generator().manual_seed(shuffle_seed)
    train = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=g)
    test = DataLoader(TensorDataset(xt, yt), batch_size=batch)
    return train, test


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return Tiny(**kw)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------------------------
# training

def test_param_groups_have_the_right_learning_rates():
    m = _model()
    opt = make_optimizer(m, lr=1e-3, weight_lr=1e-2)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-3]
    ids_w = {id(p) for p in opt.param_groups[0]["params"]}
    assert ids_w == {id(m.fc1.weight), id(m.fc2.weight)}
    other = {id(p) for p in opt.param_groups[1]["params"]}
    assert other == {id(m.fc1.bias), id(m.fc2.bias), id(m.fc1.scale), id(m.fc2.scale), id(m.gain)}
    # every trainable parameter in exactly one group
    assert len(ids_w) + len(other) == sum(1 for p in m.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="no trainable noisy-synapse"):
        param_groups(nn.Linear(3, 2))


def test_fit_reduces_loss_and_anneals_the_learning_rate():
    train, test = _loaders()
    m = _model()
    before = accuracy(m, test)
    hist = fit(m, train, test, epochs=6, lr=1e-2, weight_lr=5e-2, progress=False)
    assert len(hist) == 6 and [h["epoch"] for h in hist] == list(range(1, 7))
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    assert hist[-1]["val_acc"] > max(before, 0.8)
    # cosine annealing: lr at the start of each epoch decreases, first one is the initial lr
    wl = [h["weight_lr"] for h in hist]
    assert wl[0] == pytest.approx(5e-2) and all(a > b for a, b in zip(wl, wl[1:]))
    assert wl[-1] == pytest.approx(5e-2 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert hist[0]["lr"] == pytest.approx(1e-2)


class _Killed(RuntimeError):
    pass


class _KillingLoader:
    """Wraps a loader; raises after ``after`` batches in total (a kill in the middle of an epoch)."""

    def __init__(self, loader, after):
        self.loader, self.after, self.seen = loader, after, 0

    def __getattr__(self, name):  # sampler, generator, dataset: as the wrapped loader
        return getattr(self.__dict__["loader"], name)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for b in self.loader:
            if self.seen == self.after:
                raise _Killed()
            self.seen += 1
            yield b


@pytest.mark.parametrize("aware", [False, True])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, aware):
    """Kill in the middle of epoch 3 (6 batches/epoch), resume, compare with a run never killed.

    With aware=True the static errors draw from the global RNG during training: resume must
    reproduce those draws too."""
    nvm = sn.MultiLevelNVM.noise_level(2)
    kw = dict(epochs=4, lr=1e-2, weight_lr=5e-2, seed=7, progress=False)

    def run(ckpt, loader):
        m = _model(seed=0)
        if aware:
            return m, finetune(m, loader, None, error_model=nvm, checkpoint=ckpt, **kw)
        return m, fit(m, loader, None, checkpoint=ckpt, **kw)

    ref_model, ref_hist = run(tmp_path / "ref.pt", _loaders()[0])

    ckpt = tmp_path / "killed.pt"
    with pytest.raises(_Killed):
        run(ckpt, _KillingLoader(_loaders()[0], after=2 * 6 + 3))
    assert load_checkpoint(ckpt)["epoch"] == 2  # the last finished epoch is on disk
    assert not list(tmp_path.glob(".*.tmp"))  # no leftover temporary file
    torch.manual_seed(12345)  # the resumed process has some other global RNG state
    np.random.seed(99)
    logged = []
    m, hist = run(ckpt, _loaders(shuffle_seed=0)[0]) if not aware else (None, None)
    if aware:
        m = _model(seed=3)  # a different init: resume must load everything from the checkpoint
        hist = finetune(m, _loaders()[0], None, error_model=nvm, checkpoint=ckpt, log=logged.append, **kw)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    if aware:
        assert [r["epoch"] for r in logged] == [3, 4]  # only the remaining epochs ran
    for k, v in _params(ref_model).items():
        assert torch.equal(v, _params(m)[k]), k
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in ref_hist]
    # the checkpoint remembers the error configuration of the fine-tuned model
    assert all(s.errors == ("static" if aware else "none") for s in sn.synapses(m))
    # a finished checkpoint just loads
    m2 = _model(seed=5)
    again = fit(m2, _KillingLoader(_loaders()[0], after=0), None, checkpoint=ckpt, **kw) if not aware else \
        finetune(m2, _KillingLoader(_loaders()[0], after=0), None, error_model=nvm, checkpoint=ckpt, **kw)
    assert len(again) == 4 and torch.equal(m2.fc1.weight, m.fc1.weight)
    # different hyper-parameters on the same checkpoint are refused
    with pytest.raises(ValueError, match="was written with"):
        fit(_model(), _loaders()[0], None, checkpoint=ckpt, **{**kw, "epochs": 5})


def test_finetune_starts_from_agnostic_checkpoint_with_static_errors(tmp_path):
    train, test = _loaders()
    m = _model()
    fit(m, train, None, epochs=3, lr=1e-2, weight_lr=5e-2, checkpoint=tmp_path / "ag.pt", progress=False)
    w_ag = m.fc1.weight.detach().clone()
    m2 = _model(seed=9)
    nvm = sn.MultiLevelNVM.noise_level(3)
    seen = []
    orig = m2.fc1.forward

    def spy(x):
        seen.append((m2.fc1.errors, m2.fc1.error_model == nvm))
        return orig(x)

    m2.fc1.forward = spy
    hist = finetune(m2, train, None, error_model=nvm, init=tmp_path / "ag.pt", epochs=1, lr=1e-3,
                    weight_lr=1e-3, progress=False)
    assert len(hist) == 1 and seen and all(s == ("static", True) for s in seen)
    # started from the agnostic weights (small lr: still close to them, far from m2's own init)
    assert (m2.fc1.weight - w_ag).abs().max() < 0.05
    with pytest.raises(ValueError, match="static"):
        finetune(m2, train, error_model=nvm, errors="none", epochs=1, progress=False)


def test_fit_rejects_bad_arguments():
    train, _ = _loaders()
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), train, epochs=0, progress=False)
    with pytest.raises(ValueError, match="weight_lr"):
        fit(_model(), train, epochs=1, weight_lr=-1.0, progress=False)


# ------------------------------------------------------------------------------------------------
# evaluation

def test_noisy_accuracy_is_seeded_and_restores_configuration():
    _, test = _loaders()
    m = _model()
    batches = cache_batches(test)
    a1 = noisy_accuracy(m, batches, "static", 3, seed=11)
    a2 = noisy_accuracy(m, batches, "static", 3, seed=11)
    assert a1 == a2
    accs = {noisy_accuracy(m, batches, "static", 3, seed=s) for s in range(6)}
    assert len(accs) > 1  # different seeds draw different errors
    assert all(s.errors == "none" and s.error_model.noiseless for s in sn.synapses(m))
    assert noisy_accuracy(m, batches, "none", 0, seed=0) == accuracy(m, batches)


def test_repetition_seed_depends_on_everything():
    c = {"model": "cnn", "errors": "static", "level": 2}
    s = repetition_seed(0, c, 0)
    assert s == repetition_seed(0, dict(reversed(list(c.items()))), 0)
    others = {repetition_seed(1, c, 0), repetition_seed(0, c, 1), repetition_seed(0, {**c, "level": 3}, 0),
              repetition_seed(0, {**c, "errors": "dynamic"}, 0)}
    assert s not in others and len(others) == 4
    assert 0 <= s < 2 ** 63


def test_mean_ci_known_values():
    m, h = mean_ci([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653; sd = 1; half = t * 1 / sqrt(3)
    assert m == 2.0 and h == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    m, h = mean_ci([0.8, 0.9])
    assert m == pytest.approx(0.85) and h == pytest.approx(12.706205 * 0.0707107 / math.sqrt(2), rel=1e-5)
    assert mean_ci([0.5]) == (0.5, 0.0)


def test_summarize_means_over_repeats_then_ci_over_trainings():
    rows = []
    for seed, accs in [(0, [0.5, 0.7]), (1, [0.8, 0.8]), (2, [0.9, 0.7])]:
        rows.append({"key": {"model": "m", "training": "agnostic", "train_level": 0, "seed": seed,
                             "errors": "static", "level": 2}, "acc": sum(accs) / 2, "accs": accs})
    (s,) = summarize(rows)
    assert s["accs"] == pytest.approx([0.6, 0.8, 0.8])
    m, h = mean_ci([0.6, 0.8, 0.8])
    assert s["mean"] == pytest.approx(m) and s["ci"] == pytest.approx(h) and s["n"] == 3
    (s1,) = summarize(rows, seeds=[1])
    assert s1["mean"] == pytest.approx(0.8) and s1["ci"] == 0.0


class _Counter:
    def __init__(self):
        self.forwards = 0
        self.models = []


def _counting_factory(counter, fail_on=None):
    def get_model(cond: Condition):
        if fail_on is not None and fail_on(cond):
            raise _Killed(cond)
        counter.models.append(cond)
        m = _model(seed=cond.seed)
        if cond.training == "aware":
            sn.configure(m, errors="static", error_model=sn.MultiLevelNVM.noise_level(cond.train_level))

        def hook(*_):
            counter.forwards += 1

        m.register_forward_pre_hook(hook)
        return m

    return get_model


def test_sweep_writes_rows_incrementally_and_resumes_without_recomputing(tmp_path):
    _, test = _loaders()
    batches = cache_batches(test)  # 3 batches
    nb = len(batches)
    kw = dict(models=["a", "b"], seeds=[0, 1], repeats=2, levels=[0, 2], aware=2, progress=False)
    store = ResultStore(tmp_path, {"exp": 1})
    c1 = _Counter()
    written = []

    def on_row(row):  # rows are on disk when reported
        written.append(sum(1 for _ in open(tmp_path / "results.jsonl")))

    with pytest.raises(_Killed):
        sweep(_counting_factory(c1, fail_on=lambda c: c.model == "b" and c.seed == 1), batches, store,
              on_row=on_row, **kw)
    # model a: 2 seeds x (agnostic + aware@2) x 2 errors x 2 levels = 16 rows; b seed 0: 8 rows
    assert written == list(range(1, 25))
    # level 0 once per network (shared by static/dynamic), level 2: 2 errors x 2 repeats
    assert c1.forwards == 6 * nb * (1 + 4)

    c2 = _Counter()
    store2 = ResultStore(tmp_path, {"exp": 1})
    rows = sweep(_counting_factory(c2), batches, store2, **kw)
    assert [(c.model, c.seed) for c in c2.models] == [("b", 1), ("b", 1)]  # only what was missing
    assert c2.forwards == 2 * nb * (1 + 4)
    assert len(rows) == 32 == len(open(tmp_path / "results.jsonl").read().splitlines())
    keys = [json.dumps(r["key"], sort_keys=True) for r in rows]
    assert len(set(keys)) == 32
    for r in rows:
        k = r["key"]
        assert r["acc"] == pytest.approx(sum(r["accs"]) / len(r["accs"]))
        assert len(r["accs"]) == (1 if k["level"] == 0 else 2)
    # static and dynamic share the clean accuracy at level 0
    by = {json.dumps(r["key"], sort_keys=True): r["acc"] for r in rows}
    for r in rows:
        if r["key"]["level"] == 0:
            other = {**r["key"], "errors": "dynamic" if r["key"]["errors"] == "static" else "static"}
            assert by[json.dumps(other, sort_keys=True)] == r["acc"]
    # a third run computes nothing
    c3 = _Counter()
    sweep(_counting_factory(c3), batches, ResultStore(tmp_path, {"exp": 1}), **kw)
    assert c3.forwards == 0 and c3.models == []
    # the noisy rows reproduce from their stored seeds
    r = next(r for r in rows if r["key"]["level"] == 2 and r["key"]["training"] == "agnostic")
    m = _model(seed=r["key"]["seed"])
    assert noisy_accuracy(m, batches, r["key"]["errors"], 2, r["rep_seeds"][1]) == r["accs"][1]


def test_sweep_match_mode_uses_agnostic_network_at_level_zero(tmp_path):
    _, test = _loaders()
    c = _Counter()
    rows = sweep(_counting_factory(c), cache_batches(test), ResultStore(tmp_path, {}), models=["a"], seeds=[0],
                 repeats=1, levels=[0, 1], error_types=["dynamic"], aware="match", progress=False)
    conds = {(x.training, x.train_level) for x in c.models}
    assert conds == {("agnostic", 0), ("aware", 1)}
    keys = {(r["key"]["training"], r["key"]["train_level"], r["key"]["level"]) for r in rows}
    assert keys == {("agnostic", 0, 0), ("agnostic", 0, 1), ("aware", 0, 0), ("aware", 1, 1)}
    table = analysis.format_table(summarize(rows))
    assert "aware " in table and "aware@" not in table
    with pytest.raises(ValueError, match="noise level"):
        sweep(_counting_factory(c), [], ResultStore(tmp_path / "x", {}), models=["a"], seeds=[0], repeats=1,
              levels=[5], progress=False)


# ------------------------------------------------------------------------------------------------
# analysis

def test_analysis_numbers_and_plots(tmp_path):
    m = _model()
    with torch.no_grad():
        m.fc1.weight.fill_(3.2)  # all stored at level +3
        m.fc1.scale.fill_(0.25)
    st = analysis.weight_stats(m)
    assert st["scales"]["fc1"] == pytest.approx(0.25)
    assert st["levels"]["fc1"] == [0.0] * 7 + [1.0]
    assert sum(st["levels"]["fc2"]) == pytest.approx(1.0)
    assert st["values"] == [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    n1, n2 = st["sizes"]["fc1"], st["sizes"]["fc2"]
    assert st["pooled_levels"][7] == pytest.approx((n1 + n2 * st["levels"]["fc2"][7]) / (n1 + n2))
    lt = analysis.level_table([2])
    mid = next(r for r in lt if r["value"] == -1.0)
    assert mid["snr_db"] < next(r for r in lt if r["value"] == -4.0)["snr_db"]  # outer levels: higher SNR
    assert next(r for r in lt if r["value"] == 0.0)["snr_db"] == -math.inf

    recs = [{"model": "tiny", "train_level": tl, "stats": analysis.weight_stats(_model(seed=s))}
            for tl in (0, 2) for s in (0, 1)]
    summary = [{"model": mdl, "training": t, "train_level": tl, "errors": e, "level": lv, "mean": 0.5 + 0.1 * lv,
                "ci": 0.02, "n": 2, "accs": [0.5, 0.5]}
               for mdl in ("cnn", "srnn") for (t, tl) in (("agnostic", 0), ("aware", 2))
               for e in ("static", "dynamic") for lv in range(4)]
    paths = [analysis.plot_accuracy(summary, tmp_path / "acc.png"),
             analysis.plot_scales(recs, tmp_path / "scales.png"),
             analysis.plot_weight_levels(recs, tmp_path / "w.png"),
             analysis.plot_level_snr(tmp_path / "snr.png")]
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    table = analysis.format_table(summary)
    lines = table.splitlines()
    assert len(lines) == 3 + 2 * 2 * 2  # unit, header, rule + models x trainings x errors
    assert "aware@2" in table and " 80.0 ±  2.0" in table
