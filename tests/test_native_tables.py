"""The native table sampler (spikenoise/native/tables.c): the same exact inversion as the torch path.

Deterministic checks recompute each draw's uniform from the counter-based stream (splitmix64 in
numpy) and invert it with the torch path's binary search; statistical checks compare against
exact pmfs (chi-square, fixed seeds).
"""
import numpy as np
import pytest
import torch
from scipy.stats import binomtest, chi2_contingency

from spikenoise import MultiLevelNVM, native
from spikenoise.noise._tables import InverseCDFTable, SumOfReads, convolution_powers
from test_sampling import _chi2_pvalue


@pytest.fixture
def lib(monkeypatch):
    monkeypatch.setenv("SPIKENOISE_NATIVE", "auto")
    lib = native.load("tables")
    if lib is None:
        pytest.skip(f"no native build here: {native.build_error('tables')}")
    return lib


def _words(key: int, index: np.ndarray) -> np.ndarray:
    """Word ``index`` of the stream ``key`` (rng.h), in numpy's wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (index.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _torch_invert(monkeypatch, tab, rows, u):
    monkeypatch.setenv("SPIKENOISE_NATIVE", "0")
    out = tab.invert(rows, u)
    monkeypatch.setenv("SPIKENOISE_NATIVE", "auto")
    return out


# a pmf with thresholds inside buckets and an outcome of probability 2**-40 (it occupies 2**10
# points of the 2**50 grid, far less than one bucket: only the exact search can return it)
TINY = np.array([0.3, 2.0 ** -40, 1e-4, 0.2, 0.5 - 1e-4 - 2.0 ** -40])


def test_inversion_at_threshold_edges_matches_the_search(lib, monkeypatch):
    tab = InverseCDFTable([TINY, np.array([0.25, 0.75])], [0, 10])
    full = 1 << tab.bits
    thr = np.rint(np.cumsum(TINY / TINY.sum()) * full).astype(np.int64)
    u = np.concatenate([thr[:-1] - 1, thr[:-1], thr[:-1] + 1, [0, full - 1]])
    got = tab.invert(torch.zeros(u.size, dtype=torch.int64), torch.from_numpy(u))
    assert torch.equal(got, _torch_invert(monkeypatch, tab, torch.zeros(u.size, dtype=torch.int64),
                                          torch.from_numpy(u)))
    # u just below threshold k draws k, at it k + 1: the 2**-40 outcome (1) sits in [thr[0], thr[1])
    k = np.arange(thr.size - 1)
    assert got[:k.size].tolist() == k.tolist() and got[k.size:2 * k.size].tolist() == (k + 1).tolist()
    assert int(tab.invert(torch.tensor([0]), torch.tensor([int(thr[0]) + 5]))) == 1
    assert int(tab.invert(torch.tensor([1]), torch.tensor([full // 4]))) == 11


def test_native_draws_are_the_inversion_of_their_stream_word(lib, monkeypatch):
    rng = np.random.default_rng(0)
    pmfs = [TINY] + [rng.dirichlet(np.ones(k)) for k in (2, 7, 40)]
    tab = InverseCDFTable(pmfs, [0, -3, 5, -20])
    rows = torch.from_numpy(rng.integers(0, 4, 50_000)).to(torch.int32)
    key = native.key_from(torch.Generator().manual_seed(4))
    got = tab.sample(rows, torch.Generator().manual_seed(4))
    u = torch.from_numpy((_words(key, np.arange(rows.numel())) >> np.uint64(64 - tab.bits)).astype(np.int64))
    assert torch.equal(got, _torch_invert(monkeypatch, tab, rows, u))
    # lookup: the same draws, mapped
    lookup = torch.arange(-40, 60, dtype=torch.float32) * 0.5
    mapped = tab.sample(rows, torch.Generator().manual_seed(4), lookup=lookup)
    assert torch.equal(mapped, lookup[got])


def test_native_sample_follows_the_pmf_including_a_rare_outcome_inside_a_mixed_bucket(lib):
    tab = InverseCDFTable([TINY], [0])
    s = tab.sample(torch.zeros(1_000_000, dtype=torch.int64), torch.Generator().manual_seed(1)).numpy()
    counts = np.bincount(s, minlength=5)
    assert counts[1] == 0  # expected 1e6 * 2**-40
    assert binomtest(int(counts[2]), s.size, 1e-4).pvalue > 1e-4  # ~100 draws, all via the search
    assert _chi2_pvalue(s, 0, TINY / TINY.sum()) > 1e-4


def test_native_and_torch_paths_draw_the_same_distribution(lib, monkeypatch):
    sums = SumOfReads(MultiLevelNVM.noise_level(2).confusion.numpy())
    level, n = torch.full((100_000,), 3), torch.full((100_000,), 9)
    a = sums.sample(level, n, torch.Generator().manual_seed(2)).numpy()
    monkeypatch.setenv("SPIKENOISE_NATIVE", "0")
    b = sums.sample(level, n, torch.Generator().manual_seed(2)).numpy()
    lo = min(a.min(), b.min())
    table = np.stack([np.bincount(a - lo, minlength=max(a.max(), b.max()) - lo + 1),
                      np.bincount(b - lo, minlength=max(a.max(), b.max()) - lo + 1)])
    table = table[:, table.sum(0) >= 20]  # drop cells too sparse for the chi-square approximation
    assert chi2_contingency(table).pvalue > 1e-4
    pmf, off = convolution_powers(sums.confusion[3], -3, 9)
    assert _chi2_pvalue(a, off[9], pmf[9]) > 1e-4


def _packed_case(seed=0):
    torch.manual_seed(seed)
    widths, levels = [4, 6, 3], [1, 4, 7]
    counts = [torch.randint(0, 2 ** w, (6, 5, 7)) for w in widths]
    counts[1][0, 0, :3] = 0  # zero counts draw nothing
    packed = sum(c.to(torch.float64) * 2.0 ** sum(widths[:j]) for j, c in enumerate(counts))
    return widths, levels, counts, packed


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64])
def test_packed_sums_are_the_inversions_of_their_words(lib, monkeypatch, out_dtype):
    sums = SumOfReads(MultiLevelNVM.noise_level(3).confusion.numpy())
    widths, levels, counts, packed = _packed_case()
    sums.sample(torch.tensor([0]), torch.tensor([2 ** max(widths)]))  # tables for every count here
    big = torch.full((6, 9, 7), 7.0, dtype=out_dtype)
    out = big[:, 2:7]  # a slice of the output channels: strided, as in exact_spike_reads
    sums.add_packed_sums(out, [(packed.to(torch.float32), levels, widths)], 0.5, torch.Generator().manual_seed(9))
    key = native.key_from(torch.Generator().manual_seed(9))
    i = np.arange(packed.numel())
    want = torch.zeros(packed.numel(), dtype=torch.int64)
    for j, (lvl, c) in enumerate(zip(levels, counts)):
        u = torch.from_numpy((_words(key, i * 3 + j) >> np.uint64(64 - sums.table.bits)).astype(np.int64))
        drawn = _torch_invert(monkeypatch, sums.table, lvl * (sums.n_max + 1) + c.reshape(-1), u)
        want += torch.where(c.reshape(-1) > 0, drawn, 0)
    assert torch.equal(out, (7.0 + 0.5 * want.to(torch.float64)).to(out_dtype).view(6, 5, 7))
    assert bool((big[:, :2] == 7).all()) and bool((big[:, 7:] == 7).all())  # other channels untouched


def test_packed_sums_do_not_depend_on_threads_or_the_vector_path(lib):
    sums = SumOfReads(MultiLevelNVM.noise_level(3).confusion.numpy())
    widths, levels, _, packed = _packed_case(1)
    packed = packed.repeat(40, 1, 1)  # several blocks of 4096 elements

    def draw():
        out = torch.zeros(packed.shape)
        sums.add_packed_sums(out, [(packed, levels, widths)], 1.0, torch.Generator().manual_seed(3))
        return out

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = draw()
        torch.set_num_threads(2)
        assert torch.equal(draw(), one)
    finally:
        torch.set_num_threads(threads)
    lib.sn_tables_simd(0)
    try:
        assert torch.equal(draw(), one)
    finally:
        lib.sn_tables_simd(-1)
    torch.manual_seed(5)
    a = sums.sample(torch.full((5000,), 2), torch.full((5000,), 6))
    torch.manual_seed(5)
    assert torch.equal(sums.sample(torch.full((5000,), 2), torch.full((5000,), 6)), a)


@pytest.mark.parametrize("native_mode", ["auto", "0"])
def test_packed_sums_beyond_the_tables_follow_the_exact_pmf(monkeypatch, native_mode):
    """Counts past the table (grown on demand) and past table_max_n (multinomial counts) stay exact."""
    monkeypatch.setenv("SPIKENOISE_NATIVE", native_mode)
    P = MultiLevelNVM.noise_level(3).confusion.numpy()
    sums = SumOfReads(P, table_max_n=24)
    sums.sample(torch.tensor([0]), torch.tensor([2]))  # a small table to start from
    m = 40_000
    n_a = torch.cat([torch.full((m,), 20), torch.full((m,), 40)])  # 20: a second pass; 40: multinomial
    packed = (n_a + 3 * 2 ** 6).to(torch.float64)  # level 2 reads n_a times, level 5 three times
    out = torch.zeros(2 * m, dtype=torch.float64)
    sums.add_packed_sums(out, [(packed, [2, 5], [6, 2])], 1.0, torch.Generator().manual_seed(11))
    for half, n in ((out[:m], 20), (out[m:], 40)):
        pa, oa = convolution_powers(P[2], -2, n)
        pb, ob = convolution_powers(P[5], -5, 3)
        pmf = np.convolve(pa[n], pb[3])
        assert _chi2_pvalue(half.numpy().astype(np.int64), oa[n] + ob[3], pmf) > 1e-4


@pytest.mark.parametrize("native_mode", ["auto", "0"])
@pytest.mark.parametrize("top_present", [False, True], ids=["all-counted", "top-level-clean"])
def test_exact_spike_reads_of_deterministic_reads(monkeypatch, native_mode, top_present):
    """Every level but the top one reads one level up. Without autograd and with every stored level
    noisy, the error-free output comes from the counts themselves (no op of its own): it must
    equal the op with the shifted weights, as with autograd (the op path)."""
    from spikenoise.synapse import NoisyConv2d, NoisyLinear

    monkeypatch.setenv("SPIKENOISE_NATIVE", native_mode)
    L = 8
    P = np.zeros((L, L))
    for lvl in range(L):
        P[lvl, min(lvl + 1, L - 1)] = 1.0
    nvm = MultiLevelNVM.from_confusion(P)
    vals = nvm.values.float()
    torch.manual_seed(0)
    for layer, x in ((NoisyLinear(40, 9, error_model=nvm), torch.randint(-3, 4, (5, 40)).float()),
                     (NoisyConv2d(3, 6, 3, padding=1, error_model=nvm), torch.randint(0, 3, (2, 3, 7, 7)).float())):
        idx = torch.randint(0, L if top_present else L - 1, layer.weight.shape)
        with torch.no_grad():
            layer.weight.copy_(vals[idx])
        layer.set_errors(errors="dynamic", reads="spike", sampler="exact")
        shifted = vals[(idx + 1).clamp_max(L - 1)] * layer.scale.detach()
        want = (torch.nn.functional.linear(x, shifted, layer.bias) if isinstance(layer, NoisyLinear)
                else torch.nn.functional.conv2d(x, shifted, layer.bias, padding=1))
        with torch.no_grad():
            got = layer(x)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)
        assert torch.allclose(layer(x.requires_grad_(True)), want, rtol=1e-5, atol=1e-4)  # the op path
