"""Property-based tests (hypothesis) for the parts whose inputs vary most: confusion matrices of
any sigma and level count, quantization with its straight-through gradient on any tensor, and
the result store under any interleaving of writes, reopens and torn lines.

References are derived from the definitions (Gaussian CDF via ``math.erf``, nearest level by
exhaustive comparison, Student-t interval from scipy), never from the code under test.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import spikenoise as sn  # noqa: E402
from spikenoise import MultiLevelNVM, ResultStore, mean_ci  # noqa: E402

# derandomize: CI runs the same examples every time (a new failure is a code change, not luck)
FAST = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

sigmas = st.floats(min_value=0.02, max_value=5.0, allow_nan=False)
n_levels = st.integers(min_value=2, max_value=16)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# ------------------------------------------------------------------------------------------
# confusion matrices

@FAST
@given(L=n_levels, sigma=sigmas)
def test_confusion_rows_are_distributions_with_the_gaussian_interval_probabilities(L, sigma):
    P = MultiLevelNVM(sigma=sigma, n_levels=L).confusion.numpy()
    assert P.shape == (L, L)
    assert (P >= 0).all() and (P <= 1).all()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    for i in range(L):
        for j in range(L):
            # read as j: the analog value falls between the mid-points around j (edges open)
            lo = 0.0 if j == 0 else _phi((j - 0.5 - i) / sigma)
            hi = 1.0 if j == L - 1 else _phi((j + 0.5 - i) / sigma)
            assert P[i, j] == pytest.approx(hi - lo, abs=1e-12)


@FAST
@given(L=n_levels, sigma=sigmas)
def test_confusion_is_mirror_symmetric_and_translation_invariant(L, sigma):
    P = MultiLevelNVM(sigma=sigma, n_levels=L).confusion.numpy()
    # the levels are equally spaced with one sigma: mirroring the level axis maps P onto itself
    np.testing.assert_allclose(P, P[::-1, ::-1], atol=1e-13)
    # away from the open edge intervals, the error law does not depend on the level ...
    for i in range(L):
        for k in range(L):
            for d in range(-L + 1, L):
                j, m = i + d, k + d
                if 0 < j < L - 1 and 0 < m < L - 1:
                    assert P[i, j] == pytest.approx(P[k, m], abs=1e-13)
    # ... and is symmetric around the stored level
    for i in range(L):
        for d in range(1, L):
            if 0 < i - d and i + d < L - 1:
                assert P[i, i - d] == pytest.approx(P[i, i + d], abs=1e-13)


@FAST
@given(L=n_levels, s1=sigmas, s2=sigmas)
def test_p_correct_decreases_with_sigma(L, s1, s2):
    lo, hi = sorted((s1, s2))
    assume(hi - lo > 1e-6)
    d_lo = np.diag(MultiLevelNVM(sigma=lo, n_levels=L).confusion.numpy())
    d_hi = np.diag(MultiLevelNVM(sigma=hi, n_levels=L).confusion.numpy())
    assert (d_hi <= d_lo + 1e-15).all()
    if d_lo[L // 2] < 1 - 1e-9:  # strictly, unless both are 1 to float precision
        assert d_hi[L // 2] < d_lo[L // 2]
    # error magnitude grows with sigma
    a = MultiLevelNVM(sigma=lo, n_levels=L).error_magnitude().numpy()
    b = MultiLevelNVM(sigma=hi, n_levels=L).error_magnitude().numpy()
    assert (b >= a - 1e-12).all()


@FAST
@given(L=st.integers(2, 8), data=st.data())
def test_confusion_roundtrips_through_config_and_read_moments_match_definition(L, data):
    rows = data.draw(hnp.arrays(np.float64, (L, L), elements=st.floats(0.0, 1.0)))
    assume((rows.sum(1) > 1e-3).all())
    P = rows / rows.sum(1, keepdims=True)
    step = data.draw(st.floats(0.1, 4.0))
    v0 = data.draw(st.floats(-10.0, 10.0))
    values = [v0 + step * k for k in range(L)]
    nvm = MultiLevelNVM.from_confusion(P, values=values)
    again = sn.error_model_from_config(json.loads(json.dumps(nvm.config())))
    np.testing.assert_allclose(again.confusion.numpy(), P, atol=1e-12)
    mean, var = nvm.read_moments(torch.tensor(values, dtype=torch.float64))
    v = np.asarray(values)
    want_mean = P @ v
    np.testing.assert_allclose(mean.numpy(), want_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(var.numpy(), (P * (v[None, :] - want_mean[:, None]) ** 2).sum(1),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------
# quantization and the straight-through gradient

@st.composite
def level_grids(draw):
    L = draw(st.integers(2, 16))
    step = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0]))
    v0 = draw(st.integers(-8, 4)) * step
    return MultiLevelNVM(values=[v0 + step * k for k in range(L)])


weights = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                     elements=st.floats(-60.0, 60.0, width=32))


@FAST
@given(nvm=level_grids(), w=weights)
def test_quantize_returns_the_nearest_level(nvm, w):
    wt = torch.from_numpy(w)
    q = nvm.quantize(wt)
    vals = nvm.values.to(torch.float32)
    assert q.shape == wt.shape and q.dtype == wt.dtype
    assert torch.isin(q, vals).all()
    dist = (wt.unsqueeze(-1).double() - vals.double()).abs()  # distance to every level
    assert torch.all((wt.double() - q.double()).abs() <= dist.min(-1).values + 1e-6)
    assert torch.equal(nvm.quantize(q), q)  # levels are fixed points


@FAST
@given(nvm=level_grids(), w=weights)
def test_straight_through_gradient_is_one_inside_the_range_and_zero_outside(nvm, w):
    lo, hi = nvm.ste_range()
    assert lo == pytest.approx(float(nvm.values[0]) - nvm.step / 2)
    assert hi == pytest.approx(float(nvm.values[-1]) + nvm.step / 2)
    flat = torch.from_numpy(w).flatten()
    assume(not torch.any((flat == lo) | (flat == hi)))  # the kink itself has either gradient
    layer = sn.NoisyLinear(flat.numel(), 1, bias=False, error_model=nvm)
    with torch.no_grad():
        layer.weight.copy_(flat.view(1, -1))
    wq = layer.quantized_weight()
    assert torch.equal(wq.detach(), nvm.quantize(layer.weight.detach()))
    g = torch.randn_like(wq)
    wq.backward(g)
    inside = ((flat > lo) & (flat < hi)).view(1, -1)
    assert torch.equal(layer.weight.grad, torch.where(inside, g, torch.zeros_like(g)))


# ------------------------------------------------------------------------------------------
# the result store

row_keys = st.integers(0, 5)
ops = st.lists(st.one_of(st.tuples(st.just("add"), st.integers(0, 1), row_keys, st.integers(0, 2)),
                         st.tuples(st.just("reopen"), st.integers(0, 1))), max_size=25)


def _key(k: int) -> dict:
    return {"model": "m", "level": k % 4, "seed": k}


def _first_per_key(lines: list[tuple[int, int]]) -> tuple[dict[int, int], bool]:
    """What a reader of ``lines`` (key, value) sees: the first value per key, and whether two
    lines give one key different values (a conflict the store must refuse to guess about)."""
    seen: dict[int, int] = {}
    conflict = False
    for k, v in lines:
        if k in seen:
            conflict |= seen[k] != v
        else:
            seen[k] = v
    return seen, conflict


@FAST
@given(script=ops)
def test_store_under_interleaved_writers_and_reopens(script):
    """Two stores on one folder, writes interleaved with reopens, against a model of the file:
    each store knows the rows on disk when it opened plus its own; re-adding a known row is a
    no-op, a known key with other values is refused without writing; rows the other writer
    added meanwhile are appended again, and differing duplicates make the next open refuse."""
    from spikenoise.results import ConflictingRowError

    cfg = {"study": "prop", "n": 3}
    with tempfile.TemporaryDirectory() as d:
        stores = [ResultStore(d, cfg), ResultStore(d, cfg)]
        lines: list[tuple[int, int]] = []  # what the file should hold, in order
        known: list[dict[int, int]] = [{}, {}]
        for op in script:
            if op[0] == "add":
                _, w, k, v = op
                if k in known[w] and known[w][k] != v:
                    with pytest.raises(ConflictingRowError):
                        stores[w].add(_key(k), {"value": v})
                    continue
                stores[w].add(_key(k), {"value": v})
                if k not in known[w]:
                    lines.append((k, v))
                    known[w][k] = v
                assert stores[w].done(_key(k))
            else:
                w = op[1]
                seen, conflict = _first_per_key(lines)
                if conflict:
                    with pytest.raises(ConflictingRowError):
                        ResultStore(d, cfg)
                    return
                stores[w] = ResultStore(d, cfg)
                known[w] = dict(seen)
                assert [(r["key"], r["value"]) for r in stores[w].rows()] == [(_key(k), v) for k, v in seen.items()]
        raw = [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()] if lines else []
        assert [(r["key"], r["value"]) for r in raw] == [(_key(k), v) for k, v in lines]
        seen, conflict = _first_per_key(lines)
        if conflict:
            with pytest.raises(ConflictingRowError):
                ResultStore(d, cfg)
            return
        fresh = ResultStore(d, cfg)
        assert [(r["key"], r["value"]) for r in fresh.rows()] == [(_key(k), v) for k, v in seen.items()]
        for k in range(6):
            assert fresh.done(_key(k)) == (k in seen)
        assert not fresh.done({**_key(0), "extra": 1})  # the whole key counts, not a prefix
        if lines:
            with pytest.raises(ValueError, match="different configuration"):
                ResultStore(d, {**cfg, "n": 4})


@FAST
@given(values=st.lists(st.integers(0, 100), min_size=1, max_size=8), cut=st.integers(1, 200))
def test_a_torn_last_line_is_set_aside_and_the_rest_is_kept(values, cut):
    """A run killed mid-write leaves a partial last line: reopening keeps every complete row and
    moves the fragment to results.jsonl.torn, with a warning."""
    from spikenoise.results import ResultStoreWarning

    cfg = {"study": "torn"}
    with tempfile.TemporaryDirectory() as d:
        s = ResultStore(d, cfg)
        for k, v in enumerate(values):
            s.add(_key(k), {"value": v})
        path = Path(d) / "results.jsonl"
        torn = json.dumps({"key": _key(99), "value": 1})
        fragment = torn[: min(cut, len(torn) - 1)]  # never the complete line
        with open(path, "a") as fh:
            fh.write(fragment)
        with pytest.warns(ResultStoreWarning, match="cut short"):
            again = ResultStore(d, cfg)
        assert [r["value"] for r in again.rows()] == values
        assert not again.done(_key(99))
        assert (Path(d) / "results.jsonl.torn").read_text() == fragment + "\n"
        assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == len(values)


@FAST
@given(values=st.lists(st.integers(0, 100), min_size=1, max_size=5), cut=st.integers(1, 40))
def test_resume_after_a_torn_line_keeps_the_new_rows(values, cut):
    from spikenoise.results import ResultStoreWarning

    cfg = {"study": "torn-resume"}
    with tempfile.TemporaryDirectory() as d:
        s = ResultStore(d, cfg)
        for k, v in enumerate(values):
            s.add(_key(k), {"value": v})
        with open(Path(d) / "results.jsonl", "a") as fh:
            fh.write(json.dumps({"key": _key(99), "value": 1})[:cut])
        with pytest.warns(ResultStoreWarning):
            resumed = ResultStore(d, cfg)
        resumed.add(_key(99), {"value": -1})  # the redone condition
        final = ResultStore(d, cfg)
        assert [r["value"] for r in final.rows()] == values + [-1]
        assert final.done(_key(99))


@FAST
@given(xs=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30),
       conf=st.floats(0.5, 0.999))
def test_mean_ci_is_the_student_t_interval(xs, conf):
    from scipy import stats

    m, half = mean_ci(xs, conf)
    assert m == pytest.approx(float(np.mean(xs)), abs=1e-9)
    if len(xs) == 1:
        assert half == 0.0
        return
    sem = float(np.std(xs, ddof=1)) / math.sqrt(len(xs))
    want = float(stats.t.ppf(0.5 + conf / 2, len(xs) - 1)) * sem
    assert half == pytest.approx(want, rel=1e-9, abs=1e-9)
    # a wider confidence never gives a narrower interval
    assert mean_ci(xs, min(0.9999, conf + 0.0005))[1] >= half - 1e-12
