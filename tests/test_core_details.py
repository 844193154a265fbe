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
    with pytest.raises(ValueError, match=r"p0 must be a number in \(0, 1\]"):
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


# ------------------------------------------------------------------------------------------
# the ErrorModel base class

class _Ternary(sn.ErrorModel):
    """A minimal discrete model (levels -1, 0, +1) that relies on the base-class defaults."""

    kind = "test_ternary"

    def __init__(self, p: float = 0.1):
        self.p = p

    def discrete(self):
        P = torch.tensor([[1 - self.p, self.p, 0.0], [self.p / 2, 1 - self.p, self.p / 2], [0.0, self.p, 1 - self.p]],
                         dtype=torch.float64)
        return sn.DiscreteLevels(values=torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64), confusion=P)

    def config(self):
        return {"kind": self.kind, "p": self.p}

    @classmethod
    def from_config(cls, cfg):
        return cls(**cfg)


class _Graded(sn.ErrorModel):
    kind = ""  # not registered

    def config(self):
        return {"kind": "graded"}


def test_base_defaults_and_registry():
    t = _Ternary(0.2)
    assert t.fit_scale(torch.tensor([5.0, -7.0])) == 1.0
    assert t.ste_range() is None and not t.noiseless
    with pytest.raises(NotImplementedError, match="_Ternary has no read moments; use sampler='exact'"):
        t.read_moments(torch.zeros(2))
    again = sn.error_model_from_config(t.config())  # registered by its kind
    assert isinstance(again, _Ternary) and again == t and again != _Ternary(0.3)
    assert t != "not a model" and hash(again) == hash(t) and len({t, again, _Ternary(0.3)}) == 2
    with pytest.raises(ValueError, match="unknown error model kind 'graded'"):
        sn.error_model_from_config(_Graded().config())


def test_base_sum_sampler_is_built_from_discrete_and_cached():
    t = _Ternary(0.25)
    s = t.sum_sampler()
    assert s is t.sum_sampler()
    np.testing.assert_allclose(s.confusion, t.discrete().confusion.numpy())
    n = 20_000
    torch.manual_seed(0)
    err = s.sample(torch.full((n,), 1), torch.full((n,), 4))  # 4 reads of the middle level
    assert err.float().mean().item() == pytest.approx(0.0, abs=5 * (4 * 0.25 / n) ** 0.5)
    assert err.float().var().item() == pytest.approx(4 * 0.25, rel=0.05)  # var of one read: p
    with pytest.raises(ValueError, match="_Graded is not discrete"):
        _Graded().sum_sampler()


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), "x", None])
def test_check_probability_names_the_parameter_and_value(bad):
    from spikenoise.noise import check_probability

    with pytest.raises(ValueError, match=r"p_flip must be a probability in \[0, 1\], got " + repr(bad)[:4].replace("(", r"\(")):
        check_probability("p_flip", bad)


def test_check_probability_accepts_the_closed_interval():
    from spikenoise.noise import check_probability

    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    assert check_probability("p", 0.25) == 0.25 and isinstance(check_probability("p", 1), float)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got '0.25'"):
        check_probability("p", "0.25")  # a string is refused, not parsed: no silent coercion


# ------------------------------------------------------------------------------------------
# the result store's CSV export

def test_write_csv_flattens_keys_first_and_json_encodes_lists(tmp_path):
    import csv
    import json as _json

    store = sn.ResultStore(tmp_path, {"x": 1})
    store.add({"model": "a", "level": 1}, {"acc": 0.5, "accs": [0.4, 0.6]})
    store.add({"model": "b", "level": 2}, {"acc": 0.7, "extra": {"k": 1}})
    out = store.write_csv()
    assert out == tmp_path / "results.csv"
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(list(rows[0])[:2]) == {"model", "level"}  # key fields first
    assert set(rows[0]) == {"model", "level", "acc", "accs", "time", "extra"}
    assert rows[0]["model"] == "a" and float(rows[0]["acc"]) == 0.5
    assert _json.loads(rows[0]["accs"]) == [0.4, 0.6] and rows[0]["extra"] == ""
    assert _json.loads(rows[1]["extra"]) == {"k": 1} and rows[1]["accs"] == ""
    assert store.write_csv("other.csv") == tmp_path / "other.csv"


# ------------------------------------------------------------------------------------------
# the synapse samplers

def _moments(nvm, values):
    P, v = nvm.confusion.numpy(), nvm.values.numpy()
    idx = np.rint(np.asarray(values, dtype=np.float64) - v[0]).astype(int)
    m = P @ v
    return m[idx], (P @ (v * v) - m ** 2)[idx]


@pytest.mark.parametrize("sampler", ["brute", "gaussian"])
@pytest.mark.parametrize("x", [[0.5, -1.5, 0.25, 2.0], [1.0, 0.0, 1.0, 1.0]], ids=["graded", "binary"])
def test_linear_per_spike_graded_and_binary_inputs_have_closed_form_moments(sampler, x):
    """A graded input x is one read weighted by x (variance x^2 v); a 0/1 spike is one read."""
    nvm = MultiLevelNVM.noise_level(3)
    layer = sn.NoisyLinear(4, 1, bias=False, error_model=nvm, errors="dynamic", reads="spike", sampler=sampler)
    w = [3.0, -2.0, 1.0, -4.0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([w]))
        layer.scale.fill_(1.0)
    xs = np.array(x)
    m, v = _moments(nvm, w)
    n = 30_000
    torch.manual_seed(9)
    with torch.no_grad():
        y = layer(torch.tensor(xs, dtype=torch.float32).expand(n, 4).contiguous())[:, 0].double()
    want_var = float((xs ** 2 * v).sum())
    assert y.mean().item() == pytest.approx(float((xs * m).sum()), abs=5 * (want_var / n) ** 0.5)
    assert y.var().item() == pytest.approx(want_var, rel=0.06)


@pytest.mark.parametrize("sampler", ["brute", "gaussian", "auto"])
def test_per_spike_training_gradient_reaches_the_hidden_weights(sampler):
    """Straight-through: dL/dW_hidden = scale * sum over the batch of x (for L = sum of outputs),
    inside the stored range, whatever the drawn reads were."""
    nvm = MultiLevelNVM.noise_level(2)
    layer = sn.NoisyLinear(5, 3, bias=False, error_model=nvm, errors="dynamic", reads="spike", sampler=sampler)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-3.0, 3.0, 15).view(3, 5))  # all inside (-4.5, 3.5)
        layer.scale.fill_(0.5)
    x = torch.tensor([[1.0, 0.0, 2.0, 1.0, 0.0], [0.0, 1.0, 1.0, 3.0, 1.0]])
    layer(x).sum().backward()
    want = 0.5 * x.sum(0).expand(3, 5)
    assert torch.allclose(layer.weight.grad, want)


def _shift_nvm():
    """Deterministic but not error-free: level -4 always reads as -3, every other level as itself."""
    P = np.eye(8)
    P[0] = 0.0
    P[0, 1] = 1.0
    return MultiLevelNVM.from_confusion(P)


@pytest.mark.parametrize("sampler", ["brute", "exact", "gaussian"])
@pytest.mark.parametrize("geo", [dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
                                 dict(kernel_size=(2, 3), stride=(1, 3), padding=(0, 2), dilation=(2, 1), groups=2)],
                         ids=["asym", "groups"])
def test_conv_samplers_follow_the_conv_geometry(sampler, geo):
    """With deterministic reads every sampler must give exactly conv2d(x, W_read), on
    non-square inputs and asymmetric kernel, stride, padding and dilation."""
    nvm = _shift_nvm()
    conv = sn.NoisyConv2d(2, 4, bias=False, error_model=nvm, errors="dynamic", reads="spike", sampler=sampler, **geo)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-4, 4, conv.weight.shape, generator=g).float())
        conv.scale.fill_(1.0)
    x = torch.randint(0, 3, (3, 2, 9, 7), generator=g).float()  # spike counts 0..2
    w_read = conv.weight.detach().clone()
    w_read[w_read == -4] = -3
    want = torch.nn.functional.conv2d(x, w_read, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        got = conv(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4)
    # in training (gradients on) the straight-through term must not change the value
    assert torch.allclose(conv(x).detach(), want, atol=1e-4)


@pytest.mark.parametrize("reads, sampler", [("spike", "brute"), ("spike", "exact"), ("spike", "gaussian"),
                                            ("step", "auto"), ("step", "gaussian"), ("once", "auto")])
@pytest.mark.parametrize("errors", ["dynamic", "static"])
def test_linear_samplers_with_deterministic_reads_equal_the_read_weights(reads, sampler, errors):
    """(B, T, in) inputs with negative and multiple spikes: every path gives x @ W_read^T."""
    nvm = _shift_nvm()
    layer = sn.NoisyLinear(6, 5, error_model=nvm, errors=errors, reads=reads, sampler=sampler)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-4, 4, (5, 6), generator=g).float())
        layer.scale.fill_(0.25)
    x = torch.randint(-2, 3, (4, 3, 6), generator=g).float()
    w_read = layer.weight.detach().clone()
    w_read[w_read == -4] = -3
    want = 0.25 * x @ w_read.T + layer.bias.detach()
    with torch.no_grad():
        got = layer(x)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("sampler", ["brute", "gaussian"])
def test_conv_graded_input_with_deterministic_reads(sampler):
    """A graded input is one read weighted by its value, also in the brute reference."""
    nvm = _shift_nvm()
    conv = sn.NoisyConv2d(1, 2, (2, 3), padding=(1, 0), bias=False, error_model=nvm, errors="dynamic",
                          reads="spike", sampler=sampler)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-4, 4, conv.weight.shape, generator=g).float())
        conv.scale.fill_(1.0)
    x = torch.rand(2, 1, 5, 6, generator=g) * 3 - 1  # graded, some negative, some above 1
    w_read = conv.weight.detach().clone()
    w_read[w_read == -4] = -3
    want = torch.nn.functional.conv2d(x, w_read, None, 1, (1, 0))
    with torch.no_grad():
        assert torch.allclose(conv(x), want, atol=1e-4)


@pytest.mark.parametrize("chunk_elems", [1, 700])
def test_brute_conv_chunks_over_the_batch_give_the_same_result(chunk_elems):
    """Small memory chunks (one or a few batch rows at a time) must cover every row once."""
    from spikenoise.synapse.sampling import brute_conv_reads

    nvm = _shift_nvm()
    conv = sn.NoisyConv2d(2, 3, 3, padding=1, bias=False, error_model=nvm, errors="dynamic", reads="spike")
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-4, 4, conv.weight.shape, generator=g).float())
    x = torch.randint(0, 3, (5, 2, 4, 4), generator=g).float()
    wq = conv.quantized_weight().detach()
    w_read = wq.clone()
    w_read[w_read == -4] = -3
    with torch.no_grad():
        got = brute_conv_reads(nvm, x, wq, conv, chunk_elems=chunk_elems)
    assert torch.allclose(got, torch.nn.functional.conv2d(x, w_read, None, 1, 1), atol=1e-4)


def test_empty_batch_through_the_per_spike_samplers():
    for sampler in ("brute", "exact", "gaussian"):
        layer = sn.NoisyLinear(4, 3, error_model=MultiLevelNVM.noise_level(2), errors="dynamic", sampler=sampler)
        with torch.no_grad():
            assert layer(torch.zeros(0, 4)).shape == (0, 3)


@pytest.mark.parametrize("sampler", ["brute", "gaussian", "auto"])
def test_conv_per_spike_training_gradient_is_the_clean_conv_gradient(sampler):
    nvm = MultiLevelNVM.noise_level(2)
    conv = sn.NoisyConv2d(2, 3, (2, 3), stride=(1, 2), padding=1, bias=False, error_model=nvm, errors="dynamic",
                          reads="spike", sampler=sampler)
    with torch.no_grad():
        conv.weight.copy_(torch.linspace(-3.0, 3.0, conv.weight.numel()).view_as(conv.weight))
        conv.scale.fill_(0.5)
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 3, (2, 2, 5, 6), generator=g).float()
    conv(x).sum().backward()
    ref_w = conv.weight.detach().clone().requires_grad_(True)
    (0.5 * torch.nn.functional.conv2d(x, ref_w, None, (1, 2), 1)).sum().backward()
    assert torch.allclose(conv.weight.grad, ref_w.grad, atol=1e-5)


@pytest.mark.parametrize("sampler", ["exact", "brute", "gaussian"])
def test_samplers_on_levels_with_a_non_unit_step(sampler):
    """Levels 0, 0.5, ..., 3.5 (step 0.5): level 0.0 always reads as 0.5, errors in value units."""
    P = np.eye(8)
    P[0] = 0.0
    P[0, 1] = 1.0
    nvm = MultiLevelNVM.from_confusion(P, values=[0.5 * k for k in range(8)])
    layer = sn.NoisyLinear(6, 4, bias=False, error_model=nvm, errors="dynamic", reads="spike", sampler=sampler)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(0, 8, (4, 6), generator=g).float() * 0.5)
        layer.scale.fill_(1.0)
    x = torch.randint(-2, 3, (5, 6), generator=g).float()
    w_read = layer.weight.detach().clone()
    w_read[w_read == 0.0] = 0.5
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ w_read.T, atol=1e-5)


def test_exact_reads_refuse_a_non_discrete_model_naming_it():
    from spikenoise.synapse.sampling import exact_spike_reads

    with pytest.raises(ValueError, match="exact per-spike reads need a discrete error model, got .*_Graded"):
        exact_spike_reads(_Graded(), torch.ones(1, 2), torch.ones(3, 2), torch.nn.functional.linear)


def test_exact_sampler_chunked_by_a_tiny_memory_budget(monkeypatch):
    """One output channel per chunk (budget 1 byte): every channel still gets its reads, also
    with fewer inputs than outputs, and grouped convolutions are not split inside a group."""
    import spikenoise.synapse.sampling as sampling

    monkeypatch.setattr(sampling, "MEMORY_BUDGET", 1)
    nvm = _shift_nvm()
    g = torch.Generator().manual_seed(7)
    layer = sn.NoisyLinear(3, 7, bias=False, error_model=nvm, errors="dynamic", reads="spike", sampler="exact")
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-4, 4, (7, 3), generator=g).float())
        layer.weight[:, 0] = -4.0  # every output channel holds a noisy level
        layer.scale.fill_(1.0)
    x = torch.randint(0, 3, (4, 3), generator=g).float()
    w_read = layer.weight.detach().clone()
    w_read[w_read == -4] = -3
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ w_read.T, atol=1e-5)
    conv = sn.NoisyConv2d(4, 6, 3, padding=1, groups=2, bias=False, error_model=nvm, errors="dynamic",
                          reads="spike", sampler="exact")
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-4, 4, conv.weight.shape, generator=g).float())
        conv.scale.fill_(1.0)
    xc = torch.randint(0, 2, (2, 4, 5, 5), generator=g).float()
    wc = conv.weight.detach().clone()
    wc[wc == -4] = -3
    with torch.no_grad():
        assert torch.allclose(conv(xc), torch.nn.functional.conv2d(xc, wc, None, 1, 1, 1, 2), atol=1e-4)


# ------------------------------------------------------------------------------------------
# the exact sampling tables

@pytest.mark.parametrize("pmf", [np.array([0.5, np.nan]), np.array([0.5, -0.1, 0.6]), np.array([]),
                                 np.array([[0.5, 0.5]]), np.array([0.0, 0.0]), np.array([np.inf, 1.0])],
                         ids=["nan", "negative", "empty", "2d", "zero-sum", "inf"])
def test_inverse_cdf_table_refuses_invalid_rows(pmf):
    from spikenoise.noise._tables import InverseCDFTable

    with pytest.raises(ValueError, match="row 1: not a valid probability vector"):
        InverseCDFTable([np.array([1.0]), pmf], [0, 0])


def test_inverse_cdf_table_normalises_each_row():
    from scipy.stats import binomtest

    from spikenoise.noise._tables import InverseCDFTable

    tab = InverseCDFTable([np.array([2.0, 6.0])], [10])  # probabilities 1/4, 3/4 of values 10, 11
    s = tab.sample(torch.zeros(20_000, dtype=torch.int64), torch.Generator().manual_seed(8))
    assert set(s.unique().tolist()) <= {10, 11}
    assert binomtest(int((s == 10).sum()), s.numel(), 0.25).pvalue > 1e-3


def test_sum_of_reads_uses_the_given_generator():
    sums = MultiLevelNVM.noise_level(3).sum_sampler()
    level, n = torch.full((2000,), 3), torch.full((2000,), 5)
    a = sums.sample(level, n, torch.Generator().manual_seed(1))
    torch.manual_seed(99)
    b = sums.sample(level, n, torch.Generator().manual_seed(1))
    c = sums.sample(level, n, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_inverse_cdf_table_needs_one_offset_per_row():
    from spikenoise.noise._tables import InverseCDFTable

    with pytest.raises(ValueError, match="got 1 pmfs but 2 offsets"):
        InverseCDFTable([np.array([0.5, 0.5])], [0, 1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_isfinite_including_overflowing_sums(dtype):
    from spikenoise.synapse.nonfinite import all_finite
    big = torch.finfo(dtype).max
    cases = [torch.zeros(0, dtype=dtype), torch.randn(50, dtype=torch.float64).to(dtype),
             torch.full((4,), big, dtype=dtype),                      # finite, but the sum overflows
             torch.tensor([big, -big, big], dtype=dtype)]
    for bad in (float("nan"), float("inf"), float("-inf")):
        t = torch.randn(7, 9, dtype=torch.float64).to(dtype)
        t[3, 4] = bad
        cases.append(t)
        cases.append(torch.tensor([float("inf"), float("-inf")], dtype=dtype) if bad == float("nan") else t.t())
    for t in cases:
        assert all_finite(t) == bool(torch.isfinite(t).all()), t
    assert all_finite(torch.tensor([1, 2], dtype=torch.int64))
