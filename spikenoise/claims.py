"""Seed paper 000's claims as paired differences with 95 % CIs and a verdict (``spikenoise compare``).

The claims (per model that was run)
    (a) CNN: the static and the dynamic accuracy drop are equal;
    (b) RNN, SCNN, SRNN: the dynamic drop is smaller than the static drop;
    (c) every model, at the aware training level: aware beats agnostic (per error type).

What is paired
    (a), (b) compare two error types on the *same* error-agnostic network and the same test clips:
    the drop is ``clean - noisy`` of one network, so ``static drop - dynamic drop = acc(dynamic) -
    acc(static)`` and the clean accuracy and the network-to-network spread cancel. (c) compares
    the aware network with the agnostic network it was fine-tuned from (same training seed, same
    test clips, same error type and level), so the initialisation and first training are shared.

The interval (:func:`paired_ci`, Student t)
    With M >= 2 trainings: one difference per training (each side averaged over its N
    repetitions), t-CI over the M trainings with M - 1 degrees of freedom. It covers the
    training-to-training variance and the repetition (error draw) variance; it is conditional on
    the fixed test set. With M = 1: the r-th repetition of one side is paired with the r-th of the
    other (their error draws are independent, so the N differences are i.i.d. with the true mean
    difference) and the t-CI is over the N repetitions: it covers the error-draw variance of *this one
    network* only, not the training variance (``ci_over = "repetitions"``). One value (M = 1, N = 1),
    or differences that are all equal (no spread can be estimated): no interval, the verdict is
    "unresolved".

Levels
    Each noisy test level (1-3) is a claim row of its own, and ``levels 1-3 mean`` (the mean
    difference over the noisy levels that were run, computed per training or repetition before
    the CI) is the headline row. For (c) the levels are the aware training levels (each level's
    aware network at its own level with ``--aware each``; the one level ``k`` with ``--aware k``).

Recompute the report of an existing ``compare`` output folder (no training, no evaluation):
``python -m spikenoise.claims RUN_DIR`` (reads ``run.json`` and ``results.jsonl``).

Verdicts (differences in accuracy points)
    (a) holds when the CI lies within +-``EQUAL_MARGIN``; contradicted when it lies entirely outside
    (above +2 or below -2); otherwise unresolved. (b), (c) hold when the CI lies above 0,
    contradicted when below 0, otherwise unresolved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["PairedCI", "paired_ci", "verdict_equal", "verdict_positive", "compare_claims", "format_claims",
           "write_claims", "claims_of_run", "EQUAL_MARGIN", "VERDICTS", "CLAIM_OF_MODEL", "OUTPUTS"]

#: (a): an absolute difference below this many accuracy points counts as "equal"
EQUAL_MARGIN = 2.0
#: which of seed 000's error-type claims applies to a model ("equal": (a), "dynamic_smaller": (b))
CLAIM_OF_MODEL = {"cnn": "equal", "rnn": "dynamic_smaller", "scnn": "dynamic_smaller", "srnn": "dynamic_smaller"}
#: files :func:`write_claims` writes
OUTPUTS = ("claims.txt", "claims.csv")
VERDICTS = ("holds", "contradicted", "unresolved")


@dataclass(frozen=True)
class PairedCI:
    """Mean of paired differences and its Student-t CI (``lo``/``hi`` NaN with fewer than 2 values
    or with no spread among them)."""

    mean: float
    lo: float
    hi: float
    n: int
    df: int
    t: float  # the t quantile used (NaN without an interval)


def paired_ci(diffs: Sequence[float], confidence: float = 0.95) -> PairedCI:
    """Mean and t-CI of paired differences ``diffs`` (one value per pair, any unit)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_ci confidence must be in (0, 1), got {confidence!r}")
    xs = [float(d) for d in diffs]
    if not xs:
        raise ValueError("paired_ci needs at least one difference, got none")
    bad = [i for i, x in enumerate(xs) if not math.isfinite(x)]
    if bad:
        raise ValueError(f"paired_ci diffs[{bad[0]}] is {xs[bad[0]]!r}, not a finite number")
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return PairedCI(m, math.nan, math.nan, n, 0, math.nan)
    from scipy.stats import t as student_t

    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    if sd <= 1e-9 * max(1.0, max(abs(x) for x in xs)):
        # identical differences (few pairs on a discrete accuracy grid) estimate no spread: a
        # zero-width t-interval would claim certainty the data do not have. "Identical" up to
        # float rounding: the same grid value reached by different sums differs in its last bits
        return PairedCI(m, math.nan, math.nan, n, n - 1, math.nan)
    t = float(student_t.ppf(0.5 + confidence / 2.0, n - 1))
    half = t * sd / math.sqrt(n)
    return PairedCI(m, m - half, m + half, n, n - 1, t)


def verdict_equal(ci: PairedCI, margin: float = EQUAL_MARGIN) -> str:
    """(a): "holds" if the CI lies within +-margin, "contradicted" if entirely outside it."""
    if math.isnan(ci.lo):
        return "unresolved"
    if -margin <= ci.lo and ci.hi <= margin:
        return "holds"
    if ci.lo > margin or ci.hi < -margin:
        return "contradicted"
    return "unresolved"


def verdict_positive(ci: PairedCI) -> str:
    """(b), (c): "holds" if the CI lies above 0, "contradicted" if below 0."""
    if math.isnan(ci.lo):
        return "unresolved"
    if ci.lo > 0:
        return "holds"
    if ci.hi < 0:
        return "contradicted"
    return "unresolved"


def _index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, list[float]]:
    out = {}
    for r in rows:
        k = r["key"]
        out[(k["model"], k["training"], int(k["train_level"]), int(k["seed"]), k["errors"], int(k["level"]))] = \
            [float(a) for a in r.get("accs") or [r["acc"]]]
    return out


def _pair(idx, pairs: list[tuple[tuple, tuple]], seeds: Sequence[int]) -> tuple[list[float], str] | None:
    """Paired differences (points) of ``A - B`` averaged over ``pairs`` (one per level), per training
    (M >= 2) or per repetition (M = 1); None when a row is missing."""
    if len(seeds) >= 2:
        diffs = []
        for s in seeds:
            per_level = []
            for a, b in pairs:
                ra, rb = idx.get((*a[:3], s, *a[3:])), idx.get((*b[:3], s, *b[3:]))
                if ra is None or rb is None:
                    return None
                per_level.append(sum(ra) / len(ra) - sum(rb) / len(rb))
            diffs.append(100.0 * sum(per_level) / len(per_level))
        return diffs, "trainings"
    s = seeds[0]
    reps = []
    for a, b in pairs:
        ra, rb = idx.get((*a[:3], s, *a[3:])), idx.get((*b[:3], s, *b[3:]))
        if ra is None or rb is None:
            return None
        if len(ra) != len(rb):
            raise ValueError(f"cannot pair {len(ra)} with {len(rb)} repetitions ({a} vs {b})")
        reps.append([x - y for x, y in zip(ra, rb)])
    n = len(reps[0])
    if any(len(r) != n for r in reps):
        raise ValueError("levels with different numbers of repetitions cannot be averaged per repetition")
    return [100.0 * sum(r[i] for r in reps) / len(reps) for i in range(n)], "repetitions"


def _mean_acc(idx, keys: list[tuple], seeds: Sequence[int]) -> float:
    vals = []
    for s in seeds:
        per = [idx[(*k[:3], s, *k[3:])] for k in keys]
        vals.append(sum(sum(v) / len(v) for v in per) / len(per))
    return 100.0 * sum(vals) / len(vals)


def compare_claims(rows: Iterable[Mapping[str, Any]], models: Sequence[str], seeds: Sequence[int],
                   levels: Sequence[int], aware_levels: Sequence[int], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One dict per (claim, model, error type, level or "1-3 mean") from :func:`spikenoise.evaluate.sweep` rows.

    Args:
        models, seeds, levels: what the run covered (other rows in ``rows`` are ignored).
        aware_levels: training levels of the aware networks; with more than one, each is tested at
            its own level (``--aware each``), with one (``k``) it is compared at level ``k``.

    Returns dicts with ``claim`` ("a", "b", "c"), ``model``, ``statement``, ``errors``, ``level``,
    ``a_acc``/``b_acc`` (mean accuracy of the two sides, points), ``diff`` (mean paired
    difference, points), ``ci_low``/``ci_high``, ``n``, ``ci_over`` ("trainings"/"repetitions"),
    ``df``, ``t``, ``verdict``.
    """
    idx = _index(rows)
    seeds = sorted(int(s) for s in seeds)
    noisy = [int(lv) for lv in levels if int(lv) > 0]
    out: list[dict[str, Any]] = []

    def add(claim, model, statement, errors, level, a_keys, b_keys, judge):
        got = _pair(idx, list(zip(a_keys, b_keys)), seeds)
        if got is None:
            return
        diffs, over = got
        ci = paired_ci(diffs, confidence)
        out.append({"claim": claim, "model": model, "statement": statement, "errors": errors, "level": level,
                    "a_acc": _mean_acc(idx, a_keys, seeds), "b_acc": _mean_acc(idx, b_keys, seeds),
                    "diff": ci.mean, "ci_low": ci.lo, "ci_high": ci.hi, "n": ci.n, "ci_over": over, "df": ci.df,
                    "t": ci.t, "verdict": judge(ci)})

    def level_rows(claim, model, statement, errors, lvs, a_of, b_of, judge):
        for lv in lvs:
            add(claim, model, statement, errors, str(lv), [a_of(lv)], [b_of(lv)], judge)
        if len(lvs) > 1:
            add(claim, model, statement, errors, "-".join(map(str, [lvs[0], lvs[-1]])) + " mean",
                [a_of(lv) for lv in lvs], [b_of(lv) for lv in lvs], judge)

    for m in models:
        kind = CLAIM_OF_MODEL.get(m)
        if kind and noisy:
            dyn = lambda lv, m=m: (m, "agnostic", 0, "dynamic", lv)  # noqa: E731
            sta = lambda lv, m=m: (m, "agnostic", 0, "static", lv)  # noqa: E731
            if kind == "equal":
                level_rows("a", m, "static drop = dynamic drop (+-%g points)" % EQUAL_MARGIN, "both", noisy,
                           dyn, sta, verdict_equal)
            else:
                level_rows("b", m, "dynamic drop < static drop", "both", noisy, dyn, sta, verdict_positive)
        aw = [int(k) for k in aware_levels if int(k) in noisy]
        if not aw:
            continue
        for e in ("static", "dynamic"):
            if len(aware_levels) > 1:  # each aware network at its own level
                aware_of = lambda lv, m=m, e=e: (m, "aware", lv, e, lv)  # noqa: E731
            else:
                aware_of = lambda lv, m=m, e=e, k=aw[0]: (m, "aware", k, e, lv)  # noqa: E731
            agn_of = lambda lv, m=m, e=e: (m, "agnostic", 0, e, lv)  # noqa: E731
            level_rows("c", m, "aware beats agnostic", e, aw, aware_of, agn_of, verdict_positive)
    return out


def _num(x: float, fmt: str = "+.2f") -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


def format_claims(claims: Sequence[Mapping[str, Any]]) -> str:
    """The claims as a text table (differences and CIs in accuracy points)."""
    lines = ["claims of seed 000 (paired differences, accuracy points, 95% CI; "
             "(a),(b): static drop - dynamic drop of the agnostic network; (c): aware - agnostic)"]
    if not claims:
        return "\n".join(lines + ["  (no claim applies to the models and levels of this run)"])
    lines.append(f"{'claim':5s} {'model':6s} {'statement':40s} {'errors':8s} {'level':9s} {'A':>6s} {'B':>6s} "
                 f"{'diff':>7s} {'95% CI':>20s} {'n':>3s} {'over':11s} verdict")
    for c in claims:
        ci = f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]"
        lines.append(f"({c['claim']})   {c['model']:6s} {c['statement']:40s} {c['errors']:8s} {c['level']:9s} "
                     f"{c['a_acc']:6.1f} {c['b_acc']:6.1f} {c['diff']:+7.2f} {ci:>20s} {c['n']:3d} "
                     f"{c['ci_over']:11s} {c['verdict']}")
    lines += ["A, B: mean accuracy (%) of the two sides ((a),(b): dynamic, static; (c): aware, agnostic). "
              "over trainings: CI covers training + error-draw variance;",
              "over repetitions (M = 1): error-draw variance of one network only. "
              "Verdicts: see spikenoise.claims."]
    return "\n".join(lines)


def write_claims(rows: Iterable[Mapping[str, Any]], out: str | Path, *, models: Sequence[str],
                 seeds: Sequence[int], levels: Sequence[int], aware_levels: Sequence[int]) -> str:
    """``claims.txt`` and ``claims.csv`` in ``out``; returns the text."""
    from .studies.scaffold import write_csv

    claims = compare_claims(rows, models, seeds, levels, aware_levels)
    text = format_claims(claims)
    out = Path(out)
    (out / "claims.txt").write_text(text + "\n")
    header = ["claim", "model", "statement", "errors", "level", "a_acc", "b_acc", "diff", "ci_low", "ci_high", "n",
              "ci_over", "df", "t", "verdict"]
    if claims:
        write_csv(out / "claims.csv", claims, float_format=".4f")
    else:
        (out / "claims.csv").write_text(",".join(header) + "\n")
    return text


def claims_of_run(out: str | Path) -> str:
    """Write (and return) the claims of a finished ``spikenoise compare`` folder from its ``run.json``
    and ``results.jsonl``."""
    import json

    from .studies.compare.protocol import aware_levels

    out = Path(out)
    for name in ("run.json", "results.jsonl"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} not found: is {str(out)!r} a spikenoise compare output folder?")
    cfg = json.loads((out / "run.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return write_claims(rows, out, models=cfg["models"], seeds=cfg["seeds"], levels=cfg["levels"],
                        aware_levels=aware_levels(cfg))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m spikenoise.claims RUN_DIR  (a spikenoise compare --out folder)")
    try:
        print(claims_of_run(sys.argv[1]))
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"spikenoise.claims: error: {e}")
