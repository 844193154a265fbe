"""Native keyed reads (native/reads.c): exact law, independence, frozen draws, gradients, threads, seeds."""
import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from spikenoise import MultiLevelNVM, NoisyLinear, new_inference
from spikenoise import native
from spikenoise.noise.native_reads import KERNEL, KeyedReads

pytestmark = pytest.mark.skipif(not native.available(KERNEL, torch.zeros(1)),
                                reason="native reads kernel off (SPIKENOISE_NATIVE=0) or not built")


def _keyed(em: MultiLevelNVM, levels: torch.Tensor) -> KeyedReads:
    return KeyedReads(levels, em.threshold_reads().thresholds, em.values)


def _pooled_chi2(counts: np.ndarray, pmf: np.ndarray, min_expected: float = 5.0) -> float:
    exp = pmf * counts.sum()
    obs_p, exp_p, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(counts, exp):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= min_expected:
            obs_p.append(acc_o)
            exp_p.append(acc_e)
            acc_o = acc_e = 0.0
    obs_p[-1] += acc_o
    exp_p[-1] += acc_e
    return chisquare(obs_p, exp_p).pvalue


def _fused_reads(em, levels_per_output: torch.Tensor, rows: int, key: int) -> np.ndarray:
    """Level indices read by the fused Linear kernel: one input x = 1, so y[b, j] is read (b, j, 0)."""
    k = _keyed(em, levels_per_output.view(-1, 1))
    y = k.linear(torch.ones(rows, 1), key)
    v = em.values.numpy()
    return np.rint((y.numpy() - v[0]) / (v[1] - v[0])).astype(np.int64)  # (rows, out)


@pytest.mark.parametrize("em", [MultiLevelNVM.noise_level(2), MultiLevelNVM(sigma=[0.3, 0.5, 0.7, 0.9], n_levels=4)])
def test_fused_and_materialized_reads_follow_the_confusion_row_of_every_level(em):
    L = em.n_levels
    levels = torch.arange(L).repeat_interleave(16)  # 16 outputs per level, end levels included
    fused = _fused_reads(em, levels, 3000, key=11)
    # the materializing path (per-sample convolution kernels, static draws): a 4-D level tensor
    v = em.values.numpy()
    values = _keyed(em, levels.view(L, 4, 2, 2)).read(12, 3000).reshape(3000, -1).numpy()
    materialized = np.rint((values - v[0]) / (v[1] - v[0])).astype(np.int64)
    P = em.confusion
    for reads in (fused, materialized):
        for lvl in range(L):
            counts = np.bincount(reads[:, levels.numpy() == lvl].ravel(), minlength=L)
            assert _pooled_chi2(counts, P[lvl]) > 1e-4, (lvl, counts)


def test_reads_resolve_thresholds_inside_a_16_bit_bucket_at_52_bits():
    # P(read 0 | level 1) = 1.5 * 2**-16: one whole 16-bit bucket and half of the next (a mixed
    # bucket that only the 36 lower bits decide); a 16-bit sampler would give 1 or 2 buckets
    p = 1.5 * 2.0 ** -16
    em = MultiLevelNVM(values=[0.0, 1.0], confusion=[[1.0, 0.0], [p, 1 - p]])
    k = _keyed(em, torch.ones(4096, dtype=torch.int64))
    n = 4096 * 6400
    zeros = int((k.read(7, 6400) == 0).sum())
    mean = n * p
    assert abs(zeros - mean) < 4.5 * mean ** 0.5, (zeros, mean)


def test_reads_are_independent_across_outputs_rows_and_steps():
    em = MultiLevelNVM.noise_level(3)
    L = em.n_levels
    levels = torch.full((64,), 3)
    a = _fused_reads(em, levels, 4000, key=5)
    b = _fused_reads(em, levels, 4000, key=6)  # the next step: a fresh key
    pairs = {"neighbour outputs (one stream word)": (a[:, 0::2], a[:, 1::2]),
             "neighbour rows": (a[0::2], a[1::2]),
             "consecutive steps": (a, b)}
    for what, (u, v) in pairs.items():
        table = np.zeros((L, L))
        np.add.at(table, (u.ravel(), v.ravel()), 1)
        table = table[table.sum(1) > 0][:, table.sum(0) > 0]
        assert chi2_contingency(table).pvalue > 1e-4, what


def test_materialized_reads_are_the_fused_reads_and_give_its_input_gradient():
    torch.manual_seed(0)
    em = MultiLevelNVM.noise_level(2)
    levels = torch.randint(0, em.n_levels, (24, 37))
    k = _keyed(em, levels)
    x = torch.randn(5, 37)
    x[:, ::3] = 0.0  # zero inputs read nothing forward, but their reads still carry a gradient
    x.requires_grad_(True)
    y = k.linear(x, 99)
    W = k.read(99, 5)  # (5, 24, 37): the very reads of key 99
    x2 = x.detach().clone().requires_grad_(True)
    y2 = torch.bmm(W, x2.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn(5, 24)
    (y * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    assert not torch.equal(W, k.read(100, 5))  # another key, another draw


def test_results_do_not_depend_on_the_thread_count():
    em = MultiLevelNVM.noise_level(2)
    levels = torch.randint(0, em.n_levels, (70, 33), generator=torch.Generator().manual_seed(1))
    k = _keyed(em, levels)
    x = torch.randn(9, 33)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 3):
            torch.set_num_threads(threads)
            xg = x.clone().requires_grad_(True)
            y = k.linear(xg, 3)
            y.sum().backward()
            out.append((y.detach(), xg.grad, k.read(3, 4)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*out):
        assert torch.equal(a, b)


def _layer(errors: str, reads: str) -> NoisyLinear:
    torch.manual_seed(3)
    return NoisyLinear(20, 12, error_model=MultiLevelNVM.noise_level(2), errors=errors, reads=reads)


def test_static_draw_is_one_key_frozen_for_the_inference_and_fresh_after():
    layer = _layer("static", "step")
    x = torch.randn(6, 20)
    with torch.no_grad():
        y1, y2 = layer(x), layer(x)
        W = layer.draw  # the reads of this inference, materialized from its key
        assert W.shape == (6, 12, 20)
        torch.testing.assert_close(y1, layer.scale * torch.bmm(W, x.unsqueeze(-1)).squeeze(-1) + layer.bias)
        y2b = layer(x)  # from the uint8 read levels kept since the second call
    # the input gradient of a later call: through the same frozen reads
    xg = x.clone().requires_grad_(True)
    layer(xg).sum().backward()
    torch.testing.assert_close(xg.grad, layer.scale.detach() * W.sum(1))
    with torch.no_grad():
        new_inference(layer)
        y3 = layer(x)
    assert torch.equal(y1, y2) and torch.equal(y1, y2b)
    assert not torch.equal(y1, y3)
    with pytest.raises(ValueError, match="batch of 6"):
        layer(torch.randn(4, 20))


def test_dynamic_step_reads_are_fresh_per_call_and_reproducible_by_seed():
    layer = _layer("dynamic", "step")
    x = torch.randn(6, 20)
    with torch.no_grad():
        torch.manual_seed(42)
        a, b = layer(x), layer(x)
        torch.manual_seed(42)
        c = layer(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)
