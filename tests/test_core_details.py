"""Details of the core that mutation testing (README "Development") found unchecked: tail
accuracy of the confusion matrix, dtypes and generators of reads, argument pass-through of the
constructors, SNR edge cases, layer scale fitting and the printed summary."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import log_ndtr

import spikenoise as sn
from spikenoise import MultiLevelNVM


def _tail_accurate_interval(lo: float, hi: float) -> float:
    """P(lo < Z < hi) to full relative precision in both tails (log-CDF differences)."""
    if lo > 0:  # right tail: mirror
        lo, hi = -hi, -lo
    lh, ll = log_ndtr(hi), log_ndtr(lo)
    return math.exp(lh) * -math.expm1(ll - lh) if ll > -math.inf else math.exp(lh)


@pytest.mark.parametrize("sigma", [0.08, 0.15, 0.3])
def test_confusion_tails_have_full_relative_precision(sigma):
    """The exact sampler resolves 2**-52, so tiny far-off entries must be right relatively,
    not just to 1e-16 absolutely (1 - cdf cancellation would zero or distort them)."""
    L = 8
    P = MultiLevelNVM(sigma=sigma, n_levels=L).confusion.numpy()
    checked = 0
    for i in range(L):
        for j in range(L):
            lo = -math.inf if j == 0 else (j - 0.5 - i) / sigma
            hi = math.inf if j == L - 1 else (j + 0.5 - i) / sigma
            want = _tail_accurate_interval(lo, hi)
            if want > 1e-300:
                assert P[i, j] == pytest.approx(want, rel=1e-8), (i, j)
                checked += want < 1e-15
    assert checked > 0  # the tails were really exercised


def test_defaults_and_argument_pass_through():
    assert MultiLevelNVM().noiseless  # default sigma 0: error-free
    assert MultiLevelNVM(values=[0, 1, 2]).values.dtype == torch.float64  # ints become float64
    n4 = MultiLevelNVM.noise_level(2, n_levels=4)
    assert n4.values.tolist() == [-2, -1, 0, 1]
    shifted = MultiLevelNVM.noise_level(1, values=[0.0, 0.5, 1.0])
    assert shifted.values.tolist() == [0.0, 0.5, 1.0]
    again = sn.error_model_from_config(MultiLevelNVM(sigma=0.3, values=[0, 2, 4]).config())
    assert again.values.tolist() == [0, 2, 4] and float(again.sigma[0]) == 0.3


@pytest.mark.parametrize("p0", [0.0, -0.1, 1.5, float("nan")])
def test_sigma_for_p0_rejects_non_probabilities(p0):
    with pytest.raises(ValueError, match=r"p0 must be in \(0, 1\]"):
        MultiLevelNVM.sigma_for_p0(p0)


def test_sigma_for_p0_inverts_p_correct():
    assert MultiLevelNVM.sigma_for_p0(1.0) == 0.0
    for p0 in (0.2, 0.5, 0.99):
        s = MultiLevelNVM.sigma_for_p0(p0)
        assert math.erf(0.5 / s / math.sqrt(2)) == pytest.approx(p0, rel=1e-12)


def test_snr_edge_cases():
    clean = MultiLevelNVM()  # error-free: every non-zero value has infinite SNR, the value 0 none
    snr = clean.snr_db().numpy()
    assert snr[4] == -math.inf
    assert np.isposinf(np.delete(snr, 4)).all()
    noisy = MultiLevelNVM.noise_level(2)
    snr = noisy.snr_db().numpy()
    err = noisy.error_magnitude().numpy()
    assert snr[5] == pytest.approx(20 * math.log10(1 / err[5]))  # value +1: finite
    assert snr[3] == pytest.approx(20 * math.log10(1 / err[3]))  # value -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning leaks to the user
        clean.snr_db()
        noisy.snr_db()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reads_and_moments_keep_the_stored_dtype(dtype):
    nvm = MultiLevelNVM.noise_level(2)
    stored = torch.tensor([-4.0, -1.0, 0.0, 3.0], dtype=dtype)
    assert nvm.read(stored, 3).dtype == dtype
    assert nvm.quantize(stored).dtype == dtype
    m, v = nvm.read_moments(stored)
    assert m.dtype == dtype and v.dtype == dtype


def test_read_uses_the_given_generator():
    nvm = MultiLevelNVM.noise_level(3)
    stored = torch.zeros(1000)
    a = nvm.read(stored, 4, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG must not matter
    b = nvm.read(stored, 4, generator=torch.Generator().manual_seed(5))
    c = nvm.read(stored, 4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("w, want", [([3.0, -8.0], 2.0), ([1.5, -2.0], 0.5), ([-2.0, -1.0], 0.5),
                                     ([0.0, 0.0], 1.0), ([6.0, 1.0], 2.0)])
def test_fit_scale_maps_the_largest_weight_onto_the_stored_range(w, want):
    nvm = MultiLevelNVM()  # levels -4..3
    assert nvm.fit_scale(torch.tensor(w)) == pytest.approx(want)
    assert MultiLevelNVM(values=[0, 1, 2, 3]).fit_scale(torch.tensor([-1.0, 6.0])) == 2.0  # no negative side


def test_printed_summary():
    assert repr(MultiLevelNVM.noise_level(2)) == "MultiLevelNVM(levels=-4..3 (8), sigma=0.741, p_correct[-1]=0.50)"
    per_level = MultiLevelNVM(sigma=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert repr(per_level) == ("MultiLevelNVM(levels=-4..3 (8), sigma=[0.100, 0.200, 0.300, 0.400, 0.500, 0.600, "
                               "0.700, 0.800], p_correct[-1]=0.79)")
    measured = MultiLevelNVM.from_confusion([[0.9, 0.1], [0.2, 0.8]])
    assert repr(measured) == "MultiLevelNVM(levels=-1,0 (2), measured confusion, p_correct[-1]=0.90)"


def test_discrete_view_and_sum_sampler_are_the_models_own():
    nvm = MultiLevelNVM.noise_level(1, n_levels=4)
    lv = nvm.discrete()
    assert lv.values.tolist() == [-2, -1, 0, 1] and lv.step == 1.0
    assert torch.equal(lv.confusion, nvm.confusion)
    s = nvm.sum_sampler()
    assert s is nvm.sum_sampler()  # built once, cached
    np.testing.assert_array_equal(s.confusion, nvm.confusion.numpy())
