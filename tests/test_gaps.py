"""Tests for four bugs that once slipped through the suite (issue 17), each checked against a
reference derived independently of the implementation:

* sweep repetitions must draw different noise (distinct seeds, different accuracies);
* the Gaussian per-spike sampler counts an integer input ``c`` as ``|c|`` reads (variance adds
  ``|c|`` times, not ``c**2``), for Conv2d as well as Linear;
* the exact sampler resolves probabilities far below 2**-20 (two-sided frequency check);
* the FSDD split puts takes 0-4 (or the held-out speakers) in the test set and nowhere else,
  checked on a synthetic FSDD-shaped folder generated here, so it runs without the real data.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from scipy.stats import binom

from spikenoise import MultiLevelNVM, NoisyConv2d, NoisyLinear, ResultStore
from spikenoise.evaluate import noisy_accuracy, repetition_seed, sweep
from test_synapse import _set_levels

NVM3 = MultiLevelNVM.noise_level(3)


def _read_moments_by_definition(nvm, values):
    """Mean and variance of one read of each digital value, from the confusion matrix alone."""
    P = nvm.confusion.numpy()
    v = nvm.values.numpy()
    idx = np.rint(np.asarray(values, dtype=np.float64) - v[0]).astype(int)
    mean = P @ v
    var = P @ (v * v) - mean ** 2
    return mean[idx], var[idx]


# ------------------------------------------------------------------------------------------
# 1. sweep repetitions draw different noise

def _noise_sensitive_model_and_data(n=512):
    """A NoisyLinear on spike inputs, labels = its own clean decisions (clean accuracy 1)."""
    torch.manual_seed(0)
    model = NoisyLinear(24, 4, error_model=MultiLevelNVM.noise_level(0))
    x = (torch.rand(n, 24) < 0.4).float()
    with torch.no_grad():
        y = model(x).argmax(-1)
    return model, [(x[:256], y[:256]), (x[256:], y[256:])]


def test_sweep_repetitions_use_distinct_seeds_and_differ(tmp_path):
    model, data = _noise_sensitive_model_and_data()
    store = ResultStore(tmp_path, {"t": 1})
    rows = sweep(lambda cond: model, data, store, models=["m"], seeds=[7], repeats=4, levels=(0, 2),
                 error_types=("static", "dynamic"), aware=None, progress=False)
    by = {(r["key"]["errors"], r["key"]["level"]): r for r in rows}
    assert by["static", 0]["accs"] == [1.0] and by["dynamic", 0]["accs"] == [1.0]
    all_seeds = []
    for errors in ("static", "dynamic"):
        r = by[errors, 2]
        assert r["repeats"] == 4 and len(r["accs"]) == 4
        # N repetitions must be N independent draws, not one draw counted N times
        assert len(set(r["rep_seeds"])) == 4, r["rep_seeds"]
        assert len(set(r["accs"])) > 1, r["accs"]
        assert max(r["accs"]) < 1.0  # level 2 disturbs this model
        assert r["acc"] == pytest.approx(sum(r["accs"]) / 4)
        all_seeds += r["rep_seeds"]
        # every stored number is reproducible from its own seed
        for s, a in zip(r["rep_seeds"][:2], r["accs"][:2]):
            assert noisy_accuracy(model, data, errors, 2, s) == a
    assert len(set(all_seeds)) == 8  # static and dynamic conditions do not share draws either


def test_repetition_seed_is_a_pure_function_that_separates_its_inputs():
    key = {"model": "cnn", "errors": "static", "level": 2}
    seeds = {repetition_seed(0, key, r) for r in range(50)}
    assert len(seeds) == 50
    assert repetition_seed(0, key, 3) == repetition_seed(0, dict(reversed(list(key.items()))), 3)
    assert repetition_seed(0, key, 3) != repetition_seed(1, key, 3)
    assert repetition_seed(0, key, 3) != repetition_seed(0, {**key, "level": 3}, 3)
    assert repetition_seed(0, key, 3) != repetition_seed(0, {**key, "errors": "dynamic"}, 3)


def test_noisy_accuracy_depends_on_its_seed_only():
    model, data = _noise_sensitive_model_and_data()
    a = [noisy_accuracy(model, data, "dynamic", 3, s) for s in (11, 11, 12)]
    assert a[0] == a[1] != a[2]
    assert model.errors == "none"  # configuration restored


# ------------------------------------------------------------------------------------------
# 2. Gaussian per-spike sampler: an integer input c is |c| reads

@pytest.mark.parametrize("sampler", ["gaussian", "exact", "brute"])
def test_conv_per_spike_counts_above_one_have_the_closed_form_moments(sampler):
    conv = NoisyConv2d(1, 1, 2, bias=False, error_model=NVM3, errors="dynamic", reads="spike", sampler=sampler)
    k = [[2.0, -1.0], [3.0, 0.0]]
    _set_levels(conv, k)
    counts = np.array([[3.0, 2.0], [-2.0, 1.0]])  # spike counts; -2 = two negative spikes
    m, v = _read_moments_by_definition(NVM3, np.array(k).ravel())
    want_mean = float((counts.ravel() * m).sum())
    want_var = float((np.abs(counts.ravel()) * v).sum())  # independent reads: variances add
    wrong_var = float((counts.ravel() ** 2 * v).sum())  # one read scaled by c would give this
    assert wrong_var > 1.5 * want_var
    n = 40_000
    x = torch.tensor(counts, dtype=torch.float32).view(1, 1, 2, 2).expand(n, 1, 2, 2).contiguous()
    torch.manual_seed(5)
    with torch.no_grad():
        y = conv(x)[:, 0, 0, 0].double()
    assert y.mean().item() == pytest.approx(want_mean, abs=5 * (want_var / n) ** 0.5)
    # sample variance of n draws: relative standard error sqrt(2 / n) = 0.7 % (for a near-Gaussian sum)
    assert y.var().item() == pytest.approx(want_var, rel=0.05)


@pytest.mark.parametrize("sampler", ["gaussian", "exact"])
def test_linear_per_spike_counts_above_one_have_the_closed_form_moments(sampler):
    layer = NoisyLinear(4, 2, bias=False, error_model=NVM3, errors="dynamic", reads="spike", sampler=sampler)
    w = [[-4.0, 3.0, -1.0, 1.0], [0.0, 2.0, -3.0, -2.0]]
    _set_levels(layer, w)
    counts = np.array([4.0, 0.0, -3.0, 2.0])
    n = 40_000
    torch.manual_seed(6)
    with torch.no_grad():
        y = layer(torch.tensor(counts, dtype=torch.float32).expand(n, 4).contiguous()).double()
    for j in range(2):
        m, v = _read_moments_by_definition(NVM3, w[j])
        want_mean, want_var = float((counts * m).sum()), float((np.abs(counts) * v).sum())
        assert y[:, j].mean().item() == pytest.approx(want_mean, abs=5 * (want_var / n) ** 0.5)
        assert y[:, j].var().item() == pytest.approx(want_var, rel=0.05)


def test_conv_gaussian_graded_input_is_one_read_scaled_by_x():
    conv = NoisyConv2d(1, 1, 2, bias=False, error_model=NVM3, errors="dynamic", reads="spike", sampler="gaussian")
    k = [[2.0, -1.0], [-4.0, 1.0]]
    _set_levels(conv, k)
    xs = np.array([0.5, -1.5, 0.25, 2.0])
    m, v = _read_moments_by_definition(NVM3, np.array(k).ravel())
    n = 40_000
    torch.manual_seed(7)
    with torch.no_grad():
        y = conv(torch.tensor(xs, dtype=torch.float32).view(1, 1, 2, 2).expand(n, 1, 2, 2).contiguous())
    y = y[:, 0, 0, 0].double()
    want_var = float((xs ** 2 * v).sum())
    assert y.mean().item() == pytest.approx(float((xs * m).sum()), abs=5 * (want_var / n) ** 0.5)
    assert y.var().item() == pytest.approx(want_var, rel=0.05)


def test_linear_gaussian_step_reads_graded_input_once_per_call():
    layer = NoisyLinear(3, 1, bias=False, error_model=NVM3, errors="dynamic", reads="step", sampler="gaussian")
    w = [[3.0, -2.0, 0.0]]
    _set_levels(layer, w)
    xs = np.array([2.0, 3.0, -1.0])  # integers, but a step read is one read scaled by x
    m, v = _read_moments_by_definition(NVM3, w[0])
    n = 40_000
    torch.manual_seed(8)
    with torch.no_grad():
        y = layer(torch.tensor(xs, dtype=torch.float32).expand(n, 3).contiguous())[:, 0].double()
    assert y.var().item() == pytest.approx(float((xs ** 2 * v).sum()), rel=0.05)
    assert y.mean().item() == pytest.approx(float((xs * m).sum()), abs=0.05)


# ------------------------------------------------------------------------------------------
# 3. resolution of the exact sampler

def _aligned_rare_pmf(p_rare: float, blocks: int = 64) -> np.ndarray:
    """``blocks`` rare outcomes of probability ``p_rare``, each starting on a multiple of 1/blocks.

    Every rare interval then starts exactly on any 2**-k grid (k >= log2(blocks)): a sampler with
    a 2**-20 grid rounds each rare interval (p_rare = 2e-7 = 0.2 grid steps) to width 0, while
    a 2**-52 grid keeps them to 1e-9 relative.
    """
    pmf = np.empty(2 * blocks)
    pmf[0::2] = p_rare
    pmf[1::2] = 1.0 / blocks - p_rare
    return pmf


def _assert_binomial(count: int, n: int, p: float, alpha: float = 1e-4):
    lo, hi = binom.ppf(alpha / 2, n, p), binom.isf(alpha / 2, n, p)
    assert lo <= count <= hi, f"{count} rare outcomes in {n} draws; expected {n * p:.1f} (interval {lo:g}..{hi:g})"


def test_exact_reads_resolve_probabilities_of_2e_7():
    """Two-sided: outcomes of p = 2e-7 occur at their rate (not never, and not 2**-20 = 9.5e-7)."""
    p_rare, blocks = 2e-7, 64
    pmf = _aligned_rare_pmf(p_rare, blocks)
    L = pmf.size
    # every level reads like this (shifted rows would move the grid alignment; identical rows keep it)
    nvm = MultiLevelNVM.from_confusion(np.tile(pmf, (L, 1)))
    n = 4_000_000  # expected 51 rare reads
    g = torch.Generator().manual_seed(3)
    reads = nvm.read(torch.tensor([float(nvm.values[5])]), n, generator=g).flatten()
    idx = (reads.double() - float(nvm.values[0])).round().long()
    counts = torch.bincount(idx, minlength=L).numpy()
    _assert_binomial(int(counts[0::2].sum()), n, blocks * p_rare)
    # power: a sampler with 2**-20 resolution gives each rare outcome either 0 (here, aligned)
    # or >= 2**-20 = 9.5e-7; both fall outside the interval
    assert binom.ppf(1e-4 / 2, n, blocks * p_rare) > 0
    assert binom.isf(1e-4 / 2, n, blocks * p_rare) < n * blocks * 2.0 ** -20


def test_exact_sum_of_reads_resolves_probabilities_of_2e_7():
    """The per-spike path (sum of n reads, here n = 1) has the same resolution."""
    p_rare, blocks = 2e-7, 64
    pmf = _aligned_rare_pmf(p_rare, blocks)
    nvm = MultiLevelNVM.from_confusion(np.tile(pmf, (pmf.size, 1)))
    sums = nvm.sum_sampler()
    n = 4_000_000
    torch.manual_seed(4)
    err = sums.sample(torch.zeros(n, dtype=torch.int64), torch.ones(n, dtype=torch.int64))  # level 0: error = read
    counts = torch.bincount(err, minlength=pmf.size).numpy()
    _assert_binomial(int(counts[0::2].sum()), n, blocks * p_rare)
    _assert_binomial(int(counts[1::2].sum()), n, 1 - blocks * p_rare)


# ------------------------------------------------------------------------------------------
# 4. FSDD split on a synthetic FSDD-shaped folder

FAKE_SPEAKERS = ("theo", "jackson", "george")
FAKE_DIGITS = tuple(range(10))
FAKE_TAKES = 12  # takes 0..11: 5 test, 5 validation, 2 training per (digit, speaker)


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory):
    """``recordings/{digit}_{speaker}_{take}.wav``: 0.2-s 8-kHz noise clips, each one different."""
    sf = pytest.importorskip("soundfile")
    root = tmp_path_factory.mktemp("fsdd")
    rec = root / "recordings"
    rec.mkdir()
    for d in FAKE_DIGITS:
        for s in FAKE_SPEAKERS:
            for t in range(FAKE_TAKES):
                name = f"{d}_{s}_{t}.wav"
                rng = np.random.default_rng(zlib.crc32(name.encode()))
                tone = np.sin(2 * np.pi * (300 + 50 * d) * np.arange(1600) / 8000)
                x = 0.3 * tone + 0.05 * rng.standard_normal(1600)
                sf.write(rec / name, x.astype(np.float32), 8000)
    (root / "README.md").write_text("not a recording")
    return root


def _parse(name: str) -> tuple[int, str, int]:
    d, s, t = name[:-4].split("_")
    return int(d), s, int(t)


def _row_hashes(ds) -> list[bytes]:
    return [row.numpy().tobytes() for row in ds.logmel]


def test_fsdd_split_rules_on_the_file_list(fake_fsdd):
    from spikenoise.data.fsdd import scan_fsdd, split_fsdd

    folder, items = scan_fsdd(fake_fsdd)
    assert folder == fake_fsdd / "recordings"
    assert len(items) == len(FAKE_DIGITS) * len(FAKE_SPEAKERS) * FAKE_TAKES  # README.md is no recording
    conv = split_fsdd(items, "conventional")
    assert sorted(it["take"] for it in conv["test"]) == sorted(list(range(5)) * len(FAKE_DIGITS) * len(FAKE_SPEAKERS))
    assert {it["take"] for it in conv["val"]} == set(range(5, 10))
    assert {it["take"] for it in conv["train"]} == set(range(10, FAKE_TAKES))
    names = {k: {it["path"].name for it in v} for k, v in conv.items()}
    assert sum(len(v) for v in names.values()) == len(items)
    assert not (names["test"] & names["train"]) and not (names["test"] & names["val"])
    spk = split_fsdd(items, "speaker", test_speakers=["george"], val_speakers=["theo"])
    assert {it["speaker"] for it in spk["test"]} == {"george"}
    assert {it["speaker"] for it in spk["val"]} == {"theo"}
    assert {it["speaker"] for it in spk["train"]} == {"jackson"}
    assert len(spk["test"]) == len(FAKE_DIGITS) * FAKE_TAKES
    with pytest.raises(ValueError, match="in both test_speakers and val_speakers"):
        split_fsdd(items, "speaker", test_speakers=["theo"], val_speakers=["theo"])
    with pytest.raises(ValueError, match="'random'"):
        split_fsdd(items, "random")


@pytest.mark.parametrize("split", ["conventional", "speaker"])
def test_fsdd_load_never_leaks_test_clips_into_training(fake_fsdd, tmp_path, split):
    from spikenoise.data import load_kws
    from spikenoise.data.features import FeatureConfig, extract_files

    d = load_kws("fsdd", root=fake_fsdd, split=split, cache_dir=tmp_path, progress=False, augment=False)
    per_cell = len(FAKE_DIGITS) * len(FAKE_SPEAKERS)
    if split == "conventional":
        want = {"train": per_cell * (FAKE_TAKES - 10), "val": per_cell * 5, "test": per_cell * 5}
        rule = {"test": lambda d_, s, t: t <= 4, "val": lambda d_, s, t: 5 <= t <= 9,
                "train": lambda d_, s, t: t >= 10}
    else:
        want = {"train": len(FAKE_DIGITS) * FAKE_TAKES, "val": len(FAKE_DIGITS) * FAKE_TAKES,
                "test": len(FAKE_DIGITS) * FAKE_TAKES}
        rule = {"test": lambda d_, s, t: s == "theo", "val": lambda d_, s, t: s == "jackson",
                "train": lambda d_, s, t: s not in ("theo", "jackson")}
    assert d.info["split_sizes_full"] == want
    for part in ("train", "val", "test"):
        ds = getattr(d, part)
        assert len(ds) == want[part]
        parsed = [_parse(s) for s in ds.meta["source"]]
        assert all(rule[part](*p) for p in parsed), part
        assert [p[0] for p in parsed] == ds.labels.tolist()  # label = digit of the file
        assert [p[1] for p in parsed] == list(ds.meta["speaker"])
    # the features themselves: every clip is different, so a test clip's features in the
    # training set would show up as an identical row
    hashes = {p: _row_hashes(getattr(d, p)) for p in ("train", "val", "test")}
    assert len(set(sum(hashes.values(), []))) == sum(want.values())
    assert not set(hashes["test"]) & set(hashes["train"])
    # and each row is the features of the file it is attributed to (nearest of all rows; batched
    # resampling differs from a single clip's in the last float16 bits)
    every = torch.cat([d.train.logmel, d.val.logmel, d.test.logmel]).float()
    for part, offset in (("train", 0), ("test", len(d.train) + len(d.val))):
        ds = getattr(d, part)
        for i in (0, len(ds) - 1):
            ref, ok, _ = extract_files([fake_fsdd / "recordings" / ds.meta["source"][i]], FeatureConfig(),
                                       "center", progress=False)
            dist = (every - ref[0].float()).abs().flatten(1).amax(1)
            assert ok.all() and int(dist.argmin()) == offset + i and float(dist.min()) < 0.05
