"""Exact samplers: single reads and sums of n reads against exact distributions (chi-square)."""
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from spikenoise import MultiLevelNVM
from spikenoise.noise._tables import InverseCDFTable, SumOfReads, convolution_powers


def _chi2_pvalue(samples: np.ndarray, support_min: int, pmf: np.ndarray, min_expected: float = 5.0):
    """Chi-square goodness of fit, pooling cells with small expected counts."""
    n = samples.size
    counts = np.bincount(samples - support_min, minlength=pmf.size)
    assert counts.size == pmf.size, "samples outside the support"
    exp = pmf * n
    obs_p, exp_p, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(counts, exp):
        acc_o += o
        acc_e += e
        if acc_e >= min_expected:
            obs_p.append(acc_o)
            exp_p.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 or acc_o > 0:
        obs_p[-1] += acc_o
        exp_p[-1] += acc_e
    return chisquare(obs_p, exp_p).pvalue


def test_inverse_cdf_table_matches_random_pmfs():
    rng = np.random.default_rng(1)
    pmfs = [rng.dirichlet(np.ones(k)) for k in (1, 2, 5, 9, 30)]
    offs = [0, -3, 7, 2, -10]
    tab = InverseCDFTable(pmfs, offs)
    torch.manual_seed(0)
    for r, (p, o) in enumerate(zip(pmfs, offs)):
        s = tab.sample(torch.full((200_000,), r)).numpy()
        assert s.min() >= o and s.max() < o + p.size
        if p.size == 1:
            assert (s == o).all()
        else:
            assert _chi2_pvalue(s, o, p) > 1e-3


def test_rare_outcomes_have_their_exact_frequency():
    # float32 uniforms (2**-24) could not even represent p = 1e-7; the 2**-52 grid can
    p = np.array([1e-3, 1 - 1e-3 - 2e-7, 2e-7])
    tab = InverseCDFTable([p], [0])
    torch.manual_seed(0)
    s = tab.sample(torch.zeros(4_000_000, dtype=torch.int64))
    assert abs(float((s == 0).float().mean()) - 1e-3) < 5 * (1e-3 / 4e6) ** 0.5
    assert int((s == 2).sum()) <= 8  # expected 0.8


def test_single_reads_follow_the_confusion_matrix():
    nvm = MultiLevelNVM.noise_level(3)
    torch.manual_seed(0)
    P = nvm.confusion.numpy()
    for lvl, v in enumerate(nvm.values.tolist()):
        reads = nvm.read(torch.full((50_000,), v), 2).flatten()
        idx = (reads - nvm.values[0]).long().numpy()
        assert _chi2_pvalue(idx, 0, P[lvl]) > 1e-3


def test_convolution_powers_equal_direct_enumeration():
    p = np.array([0.1, 0.6, 0.3])
    pmfs, offs = convolution_powers(p, -1, 4)
    # n = 3 by brute enumeration of all 27 outcomes
    ref = {}
    for a in range(3):
        for b in range(3):
            for c in range(3):
                s = a + b + c - 3
                ref[s] = ref.get(s, 0.0) + p[a] * p[b] * p[c]
    got = {offs[3] + k: v for k, v in enumerate(pmfs[3])}
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-12)
    assert pmfs[0].tolist() == [1.0] and offs[0] == 0


@pytest.mark.parametrize("n", [1, 3, 17, 120])
def test_sum_of_reads_matches_brute_force_sum(n):
    """The table sampler against summing n independent single reads (the brute-force reference)."""
    nvm = MultiLevelNVM.noise_level(2)
    sums = SumOfReads(nvm.confusion.numpy())
    lvl = 2
    torch.manual_seed(1)
    m = 20_000
    fast = sums.sample(torch.full((m,), lvl), torch.full((m,), n)).numpy()
    brute_reads = nvm.read(torch.full((n,), float(nvm.values[lvl])), m)  # (m, n) values
    brute = (brute_reads - nvm.values[lvl]).sum(1).long().numpy()
    # both against the exact pmf
    pmf, off = convolution_powers(nvm.confusion.numpy()[lvl], -lvl, n)
    assert _chi2_pvalue(fast, off[n], pmf[n]) > 1e-3
    assert _chi2_pvalue(brute, off[n], pmf[n]) > 1e-3
    # and moments: mean n*mu, variance n*var
    P = nvm.confusion.numpy()[lvl]
    d = np.arange(8) - lvl
    mu, var = (P * d).sum(), (P * d * d).sum() - (P * d).sum() ** 2
    assert fast.mean() == pytest.approx(n * mu, abs=5 * (n * var / m) ** 0.5)
    assert fast.var() == pytest.approx(n * var, rel=0.05)


def test_sum_table_grows_on_demand():
    sums = SumOfReads(MultiLevelNVM.noise_level(1).confusion.numpy())
    sums.sample(torch.tensor([0]), torch.tensor([3]))
    small = sums.n_max
    sums.sample(torch.tensor([7]), torch.tensor([small * 3]))
    assert sums.n_max >= small * 3
    assert sums.sample(torch.tensor([4]), torch.tensor([0])).item() == 0  # zero reads: no error
