"""``spikenoise bnn``: binarized networks with weight bit errors (seed paper 002).

Protocol
    For every training bit error rate (``--train-bers``; 0 = standard training, > 0 = error-aware
    training, seed 002 section IV) a BNN is trained with :func:`spikenoise.train.fit` (checkpointed,
    resumable): with errors, every forward draws fresh weight errors (one pattern per batch, see
    ``--draws``), computes and backpropagates with the erroneous weights, and updates the hidden
    weights. Each network is then tested at every test BER (``--test-bers``, static errors: one
    pattern per test batch of ``--eval-batch`` samples, i.e. per inference of that batch), ``--repeats``
    times. Rows go to a resumable :class:`~spikenoise.results.ResultStore`.

Outputs (``--out``): ``results.jsonl/csv``, ``table.md`` (accuracy per train x test BER), ``tolerance.csv``
(largest test BER within 1 point of the clean accuracy; midpoint and 99 % noise levels of seed 001's
logistic fit; the tolerated BER below), ``bnn_accuracy.png``, ``headline.txt``.

Headline (seed 002): the *tolerated BER* of a network is the test BER at which its accuracy has
dropped ``TOLERANCE_DROP`` (5) points below its own clean accuracy, interpolated linearly in
accuracy vs ``log10`` BER between the two tested BERs around the first crossing, per repetition
(one error draw per test BER). Aware vs standard: the ratio of tolerated BERs, with the r-th
repetition of one network paired with the r-th of the other (independent draws, so the
``log10`` ratios are i.i.d.), t-CI over the repetitions: it covers the error-draw variance of the
two trained networks, not the training variance (one training each). A repetition whose accuracy
never drops that far (or already at the smallest BER) leaves the ratio "beyond the tested range".

Data: ``digits`` (scikit-learn's bundled 8 x 8 digits; the MNIST stand-in available offline) or the
KWS features (``embedded``, ``fsdd`` from ``--root`` or ``$SPIKENOISE_FSDD``). Outputs go to ``--out``
(default ``runs/bnn``).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..data.tensors import BUNDLE_SETS, load_bundle
from ..evaluate import accuracy_nonfinite
from ..midpoint import fit_midpoint
from ..noise.binary import binary_weights
from ..synapse import configure
from .scaffold import (StudyError, add_common_options, add_data_options, fsdd_root, open_store, progress_bar,
                       pyplot, resolve_preset, save_figure, set_threads, write_csv, write_headline)

__all__ = ["add_arguments", "main", "PRESETS", "build_bnn", "report", "tolerated_ber", "TOLERANCE_DROP"]

#: accuracy points below the clean accuracy that define the tolerated BER
TOLERANCE_DROP = 5.0

PRESETS: dict[str, dict[str, Any]] = {
    # about 25 s of CPU: answers the headline (tolerated BER, standard vs aware, CI over 5 repeats); with 3
    # epochs the aware network is undertrained (83 % clean) and the ratio's CI includes 1
    "quick": dict(data="digits", arch="mlp", hidden="256,256", width=0.125, epochs=10, train_bers="0,0.1",
                  test_bers="0,1e-3,3e-3,1e-2,2e-2,4e-2,0.07,0.1,0.15,0.2,0.25,0.3,0.4", repeats=5, image_size=8),
    # minutes on 2 CPU cores: the evidence run (hidden 1024 instead of the paper's 4096 to fit CPU minutes)
    "default": dict(data="digits", arch="mlp", hidden="1024,1024", width=0.25, epochs=30,
                    train_bers="0,0.01,0.05,0.1,0.2",
                    test_bers="0,1e-5,1e-4,1e-3,3e-3,1e-2,2e-2,4e-2,0.1,0.15,0.2,0.3", repeats=3, image_size=8),
    # the paper's size (2 x 4096)
    "full": dict(data="digits", arch="mlp", hidden="4096,4096", width=1.0, epochs=100,
                 train_bers="0,0.01,0.05,0.1,0.15,0.2,0.3",
                 test_bers="0,1e-6,1e-5,1e-4,1e-3,3e-3,1e-2,2e-2,4e-2,0.1,0.15,0.2,0.3", repeats=5, image_size=8),
}
_FALLBACK = dict(batch_size=64, lr=1e-2, weight_lr=1e-2, draws="batch", eval_batch=32, dropout=0.1)


def build_bnn(arch: str, data, hidden: list[int], width: float, ber: float, draws: str, dropout: float):
    """A BNN for ``data`` (a :class:`~spikenoise.data.tensors.DataBundle`) trained at weight BER ``ber``."""
    from ..models import build_model

    syn = dict(error_model=binary_weights(ber), errors="static" if ber > 0 else "none", draws=draws)
    if arch == "mlp":
        n_in = data.in_channels * data.input_size[0] * data.input_size[1]
        return build_model("binary_mlp", n_in, data.num_classes, hidden=hidden, dropout_in=dropout, dropout=dropout,
                           **syn)
    if arch == "cnn":
        return build_model("binary_cnn", data.in_channels, data.input_size, data.num_classes, width=width,
                           dropout=dropout, **syn)
    raise StudyError(f"arch must be 'mlp' or 'cnn', got {arch!r}")


def _floats(s: str, name: str) -> list[float]:
    try:
        vals = [float(v) for v in str(s).split(",") if v.strip()]
    except ValueError:
        raise StudyError(f"{name} must be a comma list of numbers, got {s!r}") from None
    bad = [v for v in vals if not 0.0 <= v <= 1.0]
    if bad or not vals:
        raise StudyError(f"{name} must be bit error rates in [0, 1], got {s!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, "bnn", PRESETS, "default",
                       preset_help="defaults for everything below (quick: under a minute; default: minutes; full: paper size, long)")
    add_data_options(p, BUNDLE_SETS)
    p.add_argument("--arch", choices=("mlp", "cnn"))
    p.add_argument("--hidden", help="MLP hidden sizes, comma list (paper: 4096,4096)")
    p.add_argument("--width", type=float, help="CNN channel multiplier")
    p.add_argument("--image-size", type=int, help="digits image size (8 = native)")
    p.add_argument("--kws-preset", default="quick")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate of batch norm parameters")
    p.add_argument("--weight-lr", type=float, help="learning rate of the hidden weights")
    p.add_argument("--dropout", type=float)
    p.add_argument("--train-bers", help="comma list; 0 = standard training, > 0 = error-aware")
    p.add_argument("--test-bers", help="comma list of test bit error rates")
    p.add_argument("--repeats", type=int)
    p.add_argument("--draws", choices=("batch", "row"), help="one error pattern per batch (default) or per sample")
    p.add_argument("--eval-batch", type=int, help="test samples per inference (one error pattern each)")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = resolve_preset(PRESETS, args, list(_FALLBACK) + ["seed"], _FALLBACK)
    try:
        cfg["hidden"] = [int(h) for h in str(cfg["hidden"]).split(",") if h.strip()]
    except ValueError:
        raise StudyError(f"--hidden must be a comma list of sizes, got {cfg['hidden']!r}") from None
    cfg["train_bers"] = _floats(cfg["train_bers"], "--train-bers")
    cfg["test_bers"] = sorted(set(_floats(cfg["test_bers"], "--test-bers")) | set(cfg["train_bers"]))
    cfg["root"] = fsdd_root(args.root) if cfg["data"] == "fsdd" else None
    return cfg


def _train_and_test(run: SimpleNamespace, tb: float, todo: list[dict[str, Any]]) -> None:
    """Train (or load) the network of training BER ``tb`` and evaluate the keys in ``todo``."""
    from ..evaluate import repetition_seed
    from ..train import derive_seed, fit

    cfg = run.cfg
    torch.manual_seed(derive_seed(cfg["seed"], cfg["arch"], "init", f"{tb:g}"))  # a reproducible initialization
    model = build_bnn(cfg["arch"], run.data, cfg["hidden"], cfg["width"], tb, cfg["draws"], cfg["dropout"])
    hist = fit(model, run.data.train, None, epochs=cfg["epochs"], lr=cfg["lr"], weight_lr=cfg["weight_lr"],
               checkpoint=run.out / f"{cfg['arch']}_train{tb:g}.pt", seed=cfg["seed"], progress=run.progress,
               desc=f"train BER {tb:g}")
    for key in todo:
        b = key["test_ber"]
        configure(model, errors="static" if b > 0 else "none", error_model=binary_weights(b))
        seed = repetition_seed(cfg["seed"], {k: v for k, v in key.items() if k != "rep"}, key["rep"])
        t1 = time.perf_counter()
        acc, _ = accuracy_nonfinite(model, run.data.test, seed, cfg["eval_batch"])
        run.store.add(key, {"acc": acc, "eval_seed": seed, "train_acc": hist[-1]["train_acc"] if hist else None,
                            "seconds": time.perf_counter() - t1})
        run.bar.set_postfix(train=f"{tb:g}", test=f"{b:g}", acc=f"{acc:.3f}", refresh=False)
        run.bar.update(1)


def main(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    cfg = _resolve(args)
    out = Path(args.out)
    data = load_bundle(cfg["data"], cfg["batch_size"], cfg["seed"], cfg["image_size"], args.kws_preset,
                       args.progress, cfg["root"])
    run_cfg = {k: cfg[k] for k in ("data", "arch", "epochs", "batch_size", "lr", "weight_lr", "seed", "draws",
                                   "dropout", "image_size", "eval_batch")}
    run_cfg["model_size"] = cfg["hidden"] if cfg["arch"] == "mlp" else cfg["width"]
    store = open_store(out, run_cfg, args.fresh)
    stored = {json.dumps(r["key"], sort_keys=True) for r in store.rows()}
    t0 = time.perf_counter()
    train_bers, test_bers = cfg["train_bers"], cfg["test_bers"]
    total = len(train_bers) * sum(cfg["repeats"] if b > 0 else 1 for b in test_bers)
    run = SimpleNamespace(cfg=cfg, data=data, out=out, store=store, progress=args.progress,
                          bar=progress_bar(total=total, desc="bnn", enabled=args.progress))
    for tb in train_bers:
        keys = [{"arch": cfg["arch"], "train_ber": tb, "test_ber": b, "rep": r}
                for b in test_bers for r in range(cfg["repeats"] if b > 0 else 1)]
        todo = [k for k in keys if json.dumps(k, sort_keys=True) not in stored]
        run.bar.update(len(keys) - len(todo))
        if todo:
            _train_and_test(run, tb, todo)
    run.bar.close()
    print(report(store, data.num_classes, out, cfg["arch"], train_bers, test_bers,
                 info={"data": data.info, "seconds": time.perf_counter() - t0, "config": cfg}))
    return 0


def _accuracy_table(mean, train_bers: list[float], test_bers: list[float]) -> str:
    head = "| train BER \\ test BER | " + " | ".join(f"{b:g}" for b in test_bers) + " |"
    lines = [head, "|" + "---|" * (len(test_bers) + 1)]
    for tb in train_bers:
        cells = []
        for b in test_bers:
            m = mean.get((tb, b))
            cell = "" if m is None else f"{100 * m:.1f}"
            if m is not None and b == tb and tb > 0:
                cell = f"**{cell}**"  # tested at its own training BER
            cells.append(cell)
        lines.append(f"| {tb:g} ({'standard' if tb == 0 else 'error-aware'}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tolerated(ok: list[float], test_bers: list[float]) -> float:
    """Largest tested BER such that it and every smaller one are in ``ok``."""
    best = 0.0
    for b in [x for x in test_bers if x > 0]:
        if b not in ok:
            break
        best = b
    return best


def _tolerance_rows(rows, mean, num_classes: int, train_bers: list[float], test_bers: list[float]):
    ref_clean = mean.get((0.0, 0.0))
    out = []
    for tb in train_bers:
        clean = mean.get((tb, 0.0))
        if clean is None:
            continue
        ok_own = [b for b in test_bers if b > 0 and (tb, b) in mean and mean[(tb, b)] >= clean - 0.01]
        ok_ref = [b for b in test_bers if b > 0 and ref_clean is not None and (tb, b) in mean
                  and mean[(tb, b)] >= ref_clean - 0.01]
        noisy = [r for r in rows if r["key"]["train_ber"] == tb and r["key"]["test_ber"] > 0]
        ps, ac = [r["key"]["test_ber"] for r in noisy], [r["acc"] for r in noisy]
        fit = fit_midpoint(ps, ac, n_classes=num_classes) if len(set(ps)) >= 4 else None
        good = fit is not None and fit.ok and fit.in_range
        out.append({"train_ber": tb, "clean_acc": clean, "tolerated_ber_own_1pt": _tolerated(ok_own, test_bers),
                    "tolerated_ber_vs_standard_clean_1pt": _tolerated(ok_ref, test_bers),
                    "mu": fit.mu if good else None, "p99": fit.p99 if good else None,
                    "fit": fit.message if fit else "not fitted"})
    return out


def tolerated_ber(bers: list[float], accs: list[float], clean: float, drop: float = TOLERANCE_DROP) -> float:
    """BER at which accuracy first falls ``drop`` points (accuracies are fractions) below ``clean``.

    ``bers`` > 0, ascending; linear interpolation in ``log10`` BER. Returns 0.0 when the first BER
    is already below the threshold and ``inf`` when no BER is (beyond the tested range).
    """
    if len(bers) != len(accs) or not bers:
        raise ValueError(f"tolerated_ber needs as many accuracies as BERs, got {len(accs)} and {len(bers)}")
    if any(b <= 0 for b in bers) or list(bers) != sorted(bers):
        raise ValueError(f"tolerated_ber bers must be positive and ascending, got {bers}")
    thr = clean - drop / 100.0
    for i, (b, a) in enumerate(zip(bers, accs)):
        if a < thr:
            if i == 0:
                return 0.0
            x0, x1, a0 = math.log10(bers[i - 1]), math.log10(b), accs[i - 1]
            return 10 ** (x0 + (x1 - x0) * (a0 - thr) / (a0 - a))
    return math.inf


def _tolerated_per_rep(rows, tb: float, clean: float) -> list[float]:
    by_rep: dict[int, dict[float, float]] = {}
    for r in rows:
        k = r["key"]
        if k["train_ber"] == tb and k["test_ber"] > 0:
            by_rep.setdefault(k["rep"], {})[k["test_ber"]] = r["acc"]
    common = sorted(set.intersection(*(set(v) for v in by_rep.values()))) if by_rep else []
    return [tolerated_ber(common, [by_rep[rep][b] for b in common], clean) for rep in sorted(by_rep)] if common else []


def _headline(rows, mean, train_bers: list[float], out: Path) -> tuple[str, list[dict[str, Any]]]:
    from ..claims import paired_ci

    tol = {tb: _tolerated_per_rep(rows, tb, mean[(tb, 0.0)]) for tb in train_bers if (tb, 0.0) in mean}
    found = {tb: [t for t in ts if 0 < t < math.inf] for tb, ts in tol.items()}
    lines, recs = [], []

    def geo(ts):
        if len(ts) == 0:
            return "beyond the tested range"
        ci = paired_ci([math.log10(t) for t in ts])
        band = f" (95% CI {10 ** ci.lo:.3g} .. {10 ** ci.hi:.3g})" if ci.n > 1 else ""
        return f"{10 ** ci.mean:.3g}{band}"

    for tb, ts in tol.items():
        note = "" if len(found[tb]) == len(ts) else f" ({len(ts) - len(found[tb])} of {len(ts)} repeats beyond range)"
        lines.append(f"{'standard' if tb == 0 else f'aware (train BER {tb:g})'}: clean {100 * mean[(tb, 0.0)]:.1f}%, "
                     f"tolerated BER {geo(found[tb])}{note}")
    std = tol.get(0.0)
    for tb, ts in tol.items():
        if tb == 0 or not std:
            continue
        rec = {"train_ber": tb, "ratio": None, "ci_low": None, "ci_high": None, "repeats": min(len(ts), len(std))}
        if len(ts) == len(std) and all(0 < t < math.inf for t in ts + std):
            ci = paired_ci([math.log10(a / b) for a, b in zip(ts, std)])
            rec.update(ratio=10 ** ci.mean, ci_low=10 ** ci.lo if ci.n > 1 else None,
                       ci_high=10 ** ci.hi if ci.n > 1 else None)
            band = f"95% CI {10 ** ci.lo:.3g} .. {10 ** ci.hi:.3g}" if ci.n > 1 else "no CI: one repeat"
            lines.append(f"aware (train BER {tb:g}) / standard: {10 ** ci.mean:.3g}x ({band}, {ci.n} paired repeats)")
        else:
            lines.append(f"aware (train BER {tb:g}) / standard: not determined (a repeat's accuracy does not cross "
                         "the threshold inside the tested BERs; widen --test-bers)")
        recs.append(rec)
    lines.append(f"tolerated BER: accuracy {TOLERANCE_DROP:g} points below the network's own clean accuracy "
                 "(log-interpolated, per repeat); CI over repeats: error draws of one training per network")
    return write_headline(out, "how much higher a weight bit error rate error-aware training tolerates than "
                               "standard training", lines), recs


def _tolerance_table(tol_rows) -> str:
    fmt = (lambda v: "n/a" if v is None else f"{v:.2g}")
    tl = ["| train BER | clean acc | tolerated BER (<= 1 pt below own clean) | tolerated BER (<= 1 pt below standard clean) | mu | p99 |",
          "|---|---|---|---|---|---|"]
    for t in tol_rows:
        tl.append(f"| {t['train_ber']:g} | {100 * t['clean_acc']:.1f} | {t['tolerated_ber_own_1pt']:g} | "
                  f"{t['tolerated_ber_vs_standard_clean_1pt']:g} | {fmt(t['mu'])} | {fmt(t['p99'])} |")
    return "\n".join(tl)


def report(store, num_classes: int, out: Path, arch: str, train_bers: list[float],
           test_bers: list[float], info: dict[str, Any] | None = None) -> str:
    """Accuracy table, tolerance table (csv + markdown) and the accuracy-vs-BER plot."""
    rows = [r for r in store.rows() if r["key"]["arch"] == arch]
    store.write_csv()
    acc: dict[tuple[float, float], list[float]] = {}
    for r in rows:
        acc.setdefault((r["key"]["train_ber"], r["key"]["test_ber"]), []).append(r["acc"])
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    std = {k: float(np.std(v)) for k, v in acc.items()}
    tol_rows = _tolerance_rows(rows, mean, num_classes, train_bers, test_bers)
    headline, ratios = _headline(rows, mean, train_bers, out)
    for t in tol_rows:
        reps = _tolerated_per_rep(rows, t["train_ber"], t["clean_acc"])
        t[f"tolerated_ber_{TOLERANCE_DROP:g}pt_per_repeat"] = " ".join(f"{v:.4g}" for v in reps)
    write_csv(out / "tolerance.csv", tol_rows)
    text = ("accuracy (%) of each trained network (rows) at each test bit error rate (columns); bold: test BER = train BER\n\n"
            + _accuracy_table(mean, train_bers, test_bers) + "\n\n" + _tolerance_table(tol_rows))
    (out / "table.md").write_text(text + "\n\n" + headline + "\n")
    (out / "summary.json").write_text(json.dumps({"tolerance": tol_rows, "headline": ratios, "info": info or {}},
                                                 indent=2, default=str))
    _plot(mean, std, train_bers, test_bers, out / f"bnn_accuracy_{arch}.png", arch)
    return text + "\n\n" + headline


def _plot(mean, std, train_bers, test_bers, path: Path, arch: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    pos = [b for b in test_bers if b > 0]
    for i, tb in enumerate(train_bers):
        xs = [b for b in pos if (tb, b) in mean]
        if not xs:
            continue
        ys = [mean[(tb, b)] for b in xs]
        es = [std[(tb, b)] for b in xs]
        label = "standard training" if tb == 0 else f"error-aware, train BER {tb:g}"
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, color=f"C{i}", label=label)
        if (tb, 0.0) in mean:
            ax.axhline(mean[(tb, 0.0)], color=f"C{i}", ls=":", lw=0.8)
        if tb > 0 and (tb, tb) in mean:
            ax.plot([tb], [mean[(tb, tb)]], marker="*", ms=10, color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("weight bit error rate at test")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"BNN ({arch}) vs weight BER  (dotted: BER 0; star: test = train BER)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)
