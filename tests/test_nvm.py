"""MultiLevelNVM: presets, confusion matrix against numerical integration, per-level statistics."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from spikenoise import MultiLevelNVM, error_model_from_config


def test_noise_level_2_matches_paper_numbers():
    nvm = MultiLevelNVM.noise_level(2)
    P = nvm.confusion.numpy()
    mid = 3  # digital value -1
    assert nvm.values[mid] == -1
    assert P[mid, mid] == pytest.approx(0.50, abs=1e-12)
    for d, want in ((1, 0.23), (2, 0.02)):
        assert P[mid, mid - d] == pytest.approx(want, abs=0.005)
        assert P[mid, mid + d] == pytest.approx(want, abs=0.005)
    assert float(nvm.sigma[0]) == pytest.approx(0.741, abs=5e-4)


def test_presets_are_ordered_and_level_0_is_error_free():
    p0 = [float(MultiLevelNVM.noise_level(k).confusion[3, 3]) for k in range(4)]
    assert p0 == pytest.approx([1.0, 0.80, 0.50, 0.35], abs=1e-12)
    assert MultiLevelNVM.noise_level(0).noiseless
    assert not MultiLevelNVM.noise_level(1).noiseless
    with pytest.raises(ValueError, match="noise level"):
        MultiLevelNVM.noise_level(4)


def test_default_levels_are_minus4_to_plus3():
    assert MultiLevelNVM().values.tolist() == [-4, -3, -2, -1, 0, 1, 2, 3]


def _integrated_confusion(sigmas, L):
    """Brute-force reference: integrate each level's Gaussian density between read thresholds."""
    P = np.zeros((L, L))
    for i, s in enumerate(sigmas):
        for k in range(L):
            lo = -np.inf if k == 0 else k - 0.5
            hi = np.inf if k == L - 1 else k + 0.5
            lo_c = max(lo, i - 12 * s)
            hi_c = min(hi, i + 12 * s)
            if hi_c <= lo_c:
                continue
            P[i, k] = integrate.quad(lambda v: norm.pdf(v, loc=i, scale=s), lo_c, hi_c, epsabs=1e-14)[0]
    return P


def test_confusion_equals_numerical_integration_with_per_level_sigmas():
    sig = [0.3, 0.5, 0.9, 0.741, 0.2, 1.3]
    nvm = MultiLevelNVM(sigma=sig, values=[-3, -2, -1, 0, 1, 2])
    np.testing.assert_allclose(nvm.confusion.numpy(), _integrated_confusion(sig, 6), atol=1e-9)
    np.testing.assert_allclose(nvm.confusion.sum(1).numpy(), 1.0, atol=1e-12)


def test_per_level_statistics_by_definition():
    nvm = MultiLevelNVM.noise_level(3)
    v = nvm.values.numpy()
    P = nvm.confusion.numpy()
    err = v[None, :] - v[:, None]
    np.testing.assert_allclose(nvm.mean_error().numpy(), (P * err).sum(1), atol=1e-12)
    np.testing.assert_allclose(nvm.error_magnitude().numpy(), (P * np.abs(err)).sum(1), atol=1e-12)
    snr = nvm.snr_db().numpy()
    assert snr[4] == -math.inf  # value 0 carries no signal
    assert snr[0] == pytest.approx(20 * math.log10(4 / (P[0] * np.abs(err[0])).sum()))
    # outer levels have fewer neighbours and larger values: highest SNR (paper Fig. 3D)
    assert snr[0] > snr[1] > snr[2] > snr[3]
    # edges are one-sided, so their mean error points inwards
    assert nvm.mean_error()[0] > 0 > nvm.mean_error()[-1]


def test_from_confusion_and_config_roundtrip():
    P = torch.tensor([[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.2, 0.8]])
    nvm = MultiLevelNVM.from_confusion(P, values=[-1, 0, 1])
    np.testing.assert_allclose(nvm.confusion.numpy(), P.numpy(), atol=1e-7)
    assert nvm.sigma is None
    again = error_model_from_config(nvm.config())
    assert again == nvm
    g = MultiLevelNVM.noise_level(2)
    assert error_model_from_config(g.config()) == g


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma=-0.1), "sigma"),
    (dict(sigma=[0.1, 0.2]), "sigma"),
    (dict(sigma=float("nan")), "sigma"),
    (dict(values=[0, 2, 3]), "equally spaced"),
    (dict(values=[1, 0]), "increasing"),
    (dict(values=[1]), "at least 2"),
    (dict(n_levels=1), "n_levels"),
])
def test_bad_parameters_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiLevelNVM(**kwargs)


def test_bad_confusion_raises():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MultiLevelNVM.from_confusion([[1.2, -0.2], [0.0, 1.0]])
    with pytest.raises(ValueError, match="sum to 1"):
        MultiLevelNVM.from_confusion([[0.5, 0.2], [0.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        MultiLevelNVM.from_confusion([[0.5, 0.5]])
    with pytest.raises(ValueError, match="unknown error model kind"):
        error_model_from_config({"kind": "nope"})


def test_quantize_rounds_to_nearest_level_and_clips():
    nvm = MultiLevelNVM()
    w = torch.tensor([-9.0, -4.4, -0.6, -0.4, 0.49, 2.51, 7.0])
    assert nvm.quantize(w).tolist() == [-4, -4, -1, 0, 0, 3, 3]
    assert nvm.ste_range() == (-4.5, 3.5)


def test_a_subclass_without_its_own_kind_does_not_take_over_loading():
    class Spy(MultiLevelNVM):  # inherits kind from MultiLevelNVM
        pass

    rebuilt = error_model_from_config(Spy.noise_level(2).config())
    assert type(rebuilt) is MultiLevelNVM
    assert type(error_model_from_config(MultiLevelNVM.noise_level(1).config())) is MultiLevelNVM
