"""Paired claim statistics of ``spikenoise compare`` (:mod:`spikenoise.claims`)."""
from __future__ import annotations

import math

import pytest

from spikenoise import claims
from spikenoise.claims import PairedCI, compare_claims, paired_ci, verdict_equal, verdict_positive


def test_paired_ci_hand_computed():
    # diffs 1, 2, 3, 6: mean 3, sample variance ((-2)^2 + 1 + 0 + 9) / 3 = 14/3, sd 2.160247,
    # se = sd / 2 = 1.080123; t(0.975, df 3) = 3.182446; half = t * se = 3.437435
    ci = paired_ci([1.0, 2.0, 3.0, 6.0])
    assert ci.mean == pytest.approx(3.0)
    assert ci.df == 3 and ci.n == 4
    assert ci.t == pytest.approx(3.182446, abs=1e-6)
    assert ci.lo == pytest.approx(3.0 - 3.437435, abs=1e-5)
    assert ci.hi == pytest.approx(3.0 + 3.437435, abs=1e-5)


def test_paired_ci_single_value_has_no_interval_and_bad_input_is_named():
    ci = paired_ci([4.0])
    assert ci.mean == 4.0 and math.isnan(ci.lo) and math.isnan(ci.hi) and ci.n == 1
    assert verdict_positive(ci) == "unresolved" and verdict_equal(ci) == "unresolved"
    with pytest.raises(ValueError, match="diffs\\[1\\]"):
        paired_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        paired_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="at least one"):
        paired_ci([])


def _ci(lo, hi):
    return PairedCI((lo + hi) / 2, lo, hi, 3, 2, 4.3)


@pytest.mark.parametrize("lo,hi,expected", [(-1.5, 1.9, "holds"), (2.5, 4.0, "contradicted"),
                                            (-6.0, -2.1, "contradicted"), (0.5, 3.0, "unresolved"),
                                            (-3.0, 3.0, "unresolved")])
def test_verdict_equal_branches(lo, hi, expected):
    assert verdict_equal(_ci(lo, hi)) == expected


@pytest.mark.parametrize("lo,hi,expected", [(0.1, 3.0, "holds"), (-3.0, -0.2, "contradicted"),
                                            (-1.0, 2.0, "unresolved")])
def test_verdict_positive_branches(lo, hi, expected):
    assert verdict_positive(_ci(lo, hi)) == expected


def _row(model, training, tl, seed, errors, level, accs):
    return {"key": {"model": model, "training": training, "train_level": tl, "seed": seed, "errors": errors,
                    "level": level}, "accs": accs, "acc": sum(accs) / len(accs)}


def test_compare_claims_pairs_by_training_and_cancels_network_spread():
    # two trainings with very different accuracy (0.9 vs 0.5), but dynamic - static is 4 and 6
    # points in each: the paired difference has a small spread although the marginals do not
    rows = []
    for seed, base, d in ((0, 0.90, 0.04), (1, 0.50, 0.06)):
        rows += [_row("rnn", "agnostic", 0, seed, "static", 2, [base - 0.10, base - 0.10]),
                 _row("rnn", "agnostic", 0, seed, "dynamic", 2, [base - 0.10 + d, base - 0.10 + d]),
                 _row("rnn", "aware", 2, seed, "static", 2, [base - 0.05, base - 0.07]),
                 _row("rnn", "aware", 2, seed, "dynamic", 2, [base, base])]
    out = compare_claims(rows, ["rnn"], [0, 1], [0, 2], [2])
    b = next(c for c in out if c["claim"] == "b")
    # diffs 4, 6: mean 5, sd sqrt(2), se 1, t(0.975, 1) = 12.706205 -> CI 5 -+ 12.706205
    assert b["diff"] == pytest.approx(5.0) and b["n"] == 2 and b["ci_over"] == "trainings"
    assert b["ci_low"] == pytest.approx(5.0 - 12.706205, abs=1e-4) and b["verdict"] == "unresolved"
    c_static = next(c for c in out if c["claim"] == "c" and c["errors"] == "static")
    # aware - agnostic, static: (base - .06) - (base - .10) = 4 points for both trainings (up to
    # float rounding) -> sd 0: no interval, no verdict (as test_identical_differences_...)
    assert c_static["diff"] == pytest.approx(4.0) and math.isnan(c_static["ci_low"])
    assert c_static["verdict"] == "unresolved"


def test_compare_claims_one_training_pairs_repetitions_and_averages_levels():
    rows = [_row("cnn", "agnostic", 0, 0, "static", 1, [0.80, 0.82, 0.81]),
            _row("cnn", "agnostic", 0, 0, "dynamic", 1, [0.81, 0.82, 0.80]),
            _row("cnn", "agnostic", 0, 0, "static", 3, [0.60, 0.62, 0.64]),
            _row("cnn", "agnostic", 0, 0, "dynamic", 3, [0.61, 0.60, 0.66])]
    out = compare_claims(rows, ["cnn"], [0], [0, 1, 3], [])
    assert [c["level"] for c in out] == ["1", "3", "1-3 mean"]
    mean_row = out[-1]
    # per repetition, mean over levels of dynamic - static: (1 + 1)/2, (0 - 2)/2, (-1 + 2)/2 points
    # = 1, -1, 0.5 -> mean 1/6, sd 1.040833, se 0.600925, t(0.975, 2) = 4.302653, half 2.585573
    assert mean_row["ci_over"] == "repetitions" and mean_row["n"] == 3
    assert mean_row["diff"] == pytest.approx(1 / 6)
    assert mean_row["ci_low"] == pytest.approx(1 / 6 - 2.585573, abs=1e-5)
    assert mean_row["verdict"] == "unresolved"  # CI wider than +-2 points
    assert mean_row["a_acc"] == pytest.approx(100 * (0.81 + 0.6233333) / 2, abs=1e-3)


def test_write_claims_files(tmp_path):
    rows = [_row("scnn", "agnostic", 0, 0, "static", 2, [0.5, 0.52]),
            _row("scnn", "agnostic", 0, 0, "dynamic", 2, [0.7, 0.71])]
    text = claims.write_claims(rows, tmp_path, models=["scnn"], seeds=[0], levels=[0, 2], aware_levels=[])
    assert (tmp_path / "claims.txt").read_text().strip() == text
    csv = (tmp_path / "claims.csv").read_text().splitlines()
    assert csv[0].startswith("claim,model,statement") and len(csv) == 2 and csv[1].endswith("holds")


def test_smoke_compare_writes_and_prints_claims(tmp_path, capsys):
    from spikenoise import cli

    out = tmp_path / "run"
    assert cli.main(["compare", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    text = (out / "claims.txt").read_text().strip()
    assert text in printed
    rows = (out / "claims.csv").read_text().splitlines()[1:]
    # smoke: cnn + scnn, one noisy level (2), aware at 2: (a) cnn, (b) scnn, (c) both x static/dynamic
    assert sorted(r.split(",")[0] + r.split(",")[1] for r in rows) == ["acnn", "bscnn", "ccnn", "ccnn", "cscnn",
                                                                       "cscnn"]
    assert all(r.split(",")[-1] in claims.VERDICTS for r in rows)
    assert all(",repetitions," in r for r in rows)  # M = 1: CI over the N = 2 repetitions
    # recomputed from the folder alone: the same report
    (out / "claims.txt").unlink()
    assert claims.claims_of_run(out) == text and (out / "claims.txt").read_text().strip() == text
    with pytest.raises(FileNotFoundError, match="run.json"):
        claims.claims_of_run(tmp_path)


def test_identical_differences_give_no_interval_and_no_verdict():
    # two trainings whose differences happen to coincide on the 1/120 accuracy grid: the sample
    # spread is 0, and a zero-width t-interval would turn chance into "holds"
    ci = claims.paired_ci([1.67, 1.67])
    assert ci.mean == pytest.approx(1.67) and math.isnan(ci.lo) and math.isnan(ci.hi)
    assert claims.verdict_equal(ci) == "unresolved"
    assert claims.verdict_positive(claims.paired_ci([13.6, 13.6, 13.6])) == "unresolved"
    assert claims.verdict_positive(claims.paired_ci([13.6, 13.7, 13.5])) == "holds"
    # the same grid value from different sums (an FSDD run: -5.33 points for both trainings,
    # 1e-15 apart) is identical too, not a zero-width "contradicted"
    a = (0.8466666666666667 + 0.83 + 0.82) / 3 - (0.9 + 0.88 + 0.8766666666666667) / 3
    b = (0.8133333333333334 + 0.81 + 0.7866666666666666) / 3 - (0.8566666666666667 + 0.8666666666666667
                                                                 + 0.8466666666666667) / 3
    assert a != b and abs(a - b) < 1e-12
    ci = claims.paired_ci([100 * a, 100 * b])
    assert math.isnan(ci.lo) and claims.verdict_positive(ci) == "unresolved"

