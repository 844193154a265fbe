"""``spikenoise bitflip``: bit flips in float / int8 weights, biases and activations (seed paper 001).

Protocol
    1. Train a float32 model (VGG-11/13/16/19 with batch norm on images, or a KWS model of the zoo)
       error-free with :func:`spikenoise.train.fit` (checkpointed, resumable), then fold batch norm
       into the preceding layers (deployment: every parameter is then a synapse weight or bias).
    2. For every condition -- storage format (``--dtypes``), noisy-bit mask (``--masks``), what is
       stored in noisy memory (``--targets``: w = weights, b = biases, a = activations) -- re-store
       the trained weights in that format (int8: symmetric per-layer post-training quantization,
       activation scales calibrated on training batches) and evaluate the test set at every flip
       probability of a log grid, ``--repeats`` times with fresh errors. Weight and bias errors are
       static (drawn per test sample, i.e. per inference; ``--errors dynamic`` redraws per read),
       activation errors are fresh at every write.
    3. Fit seed 001's logistic (eq. 2) per condition: midpoint noise level ``mu`` and the 99 %-of-peak
       noise level; write tables (CSV, JSON, Markdown) and PNG plots.

Every (condition, p, repeat) is one row of a :class:`~spikenoise.results.ResultStore`: a rerun skips
finished rows, and new conditions can be added to an existing output folder.

Data: ``digits`` is scikit-learn's bundled 8 x 8 handwritten digits (1797 images, shipped inside the
package, no download), upsampled bilinearly to ``--image-size`` (default 32, VGG's CIFAR size);
``embedded`` / ``fsdd`` are the 67 x 40 KWS features of :func:`spikenoise.data.load_kws`.

Non-finite outputs (inf/NaN from exponent flips) are kept; ``argmax`` scores them as PyTorch does and
the fraction of test samples with a non-finite logit is stored as ``nonfinite``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn

from ..midpoint import fit_midpoint, log_grid, plot_midpoint
from ..noise.bitflip import DTYPES, BitFlip
from ..results import ResultStore
from ..synapse import (BiasFlips, calibrate_activations, configure, insert_activation_flips, requantize,
                       set_activation_flips, synapses)

__all__ = ["add_arguments", "main", "load_data", "parse_mask", "evaluate_flips", "PRESETS", "DataBundle"]

#: preset -> defaults (the command line overrides any of them)
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: a smoke run of the whole pipeline
    "quick": dict(data="digits", model="vgg11", width=0.125, image_size=16, epochs=3, dtypes="float32,int8",
                  masks="all", targets="w", p_min=1e-6, p_max=0.3, per_decade=1, repeats=1),
    # minutes on 2 CPU cores: the evidence run
    "default": dict(data="digits", model="vgg11", width=0.125, image_size=32, epochs=20,
                    dtypes="float32,float16,bfloat16,float64,int8", masks="all", targets="w",
                    p_min=1e-8, p_max=0.5, per_decade=2, repeats=3),
    # the seed-001 figure set (long)
    "full": dict(data="digits", model="vgg11", width=0.25, image_size=32, epochs=30,
                 dtypes="float32,float16,bfloat16,float64,int8", masks="all,thermometer", targets="w,w+b+a",
                 p_min=1e-9, p_max=0.5, per_decade=3, repeats=5),
}
_FALLBACK = dict(batch_size=64, lr=1e-3, weight_lr=1e-2, seed=0, errors="static", floor_margin=0.02)

MODEL_CHOICES = ("vgg11", "vgg13", "vgg16", "vgg19", "cnn", "rnn", "scnn", "srnn")
DATA_CHOICES = ("digits", "embedded", "fsdd")


# ----------------------------------------------------------------------------------------------
# data


class DataBundle:
    """Loaders and shapes of one data set: ``train`` (DataLoader), ``test`` (list of batches)."""

    def __init__(self, name: str, train, test: list, in_channels: int, input_size: tuple[int, int],
                 num_classes: int, info: dict[str, Any]):
        self.name, self.train, self.test = name, train, test
        self.in_channels, self.input_size, self.num_classes, self.info = in_channels, input_size, num_classes, info


def _digits(batch_size: int, seed: int, image_size: int, test_fraction: float = 0.3) -> DataBundle:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError("--data digits needs scikit-learn (pip install scikit-learn): its 8x8 digits "
                         "ship inside the package") from e
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.int64)
    # stratified split, seeded: test_fraction of each class
    g = np.random.default_rng([seed, 0xD161])
    test_idx = []
    for c in range(10):
        idx = np.nonzero(d.target == c)[0]
        g.shuffle(idx)
        test_idx += idx[: int(round(len(idx) * test_fraction))].tolist()
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    if image_size != 8:
        x = nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean, std = float(x[~mask].mean()), float(x[~mask].std())
    x = (x - mean) / std
    tr = torch.utils.data.TensorDataset(x[~mask], y[~mask])
    train = torch.utils.data.DataLoader(tr, batch_size=batch_size, shuffle=True)  # torch RNG, seeded per epoch by fit
    test = [(x[mask][i:i + 256], y[mask][i:i + 256]) for i in range(0, int(mask.sum()), 256)]
    info = {"source": "scikit-learn load_digits (bundled)", "n_train": int((~mask).sum()),
            "n_test": int(mask.sum()), "image_size": image_size}
    return DataBundle("digits", train, test, 1, (image_size, image_size), 10, info)


def load_data(name: str, batch_size: int = 64, seed: int = 0, image_size: int = 32,
              kws_preset: str = "quick", progress: bool = True) -> DataBundle:
    """``digits`` (scikit-learn, bundled) or a KWS set (``embedded``, ``fsdd``) as a :class:`DataBundle`."""
    if name == "digits":
        return _digits(batch_size, seed, image_size)
    if name not in DATA_CHOICES:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATA_CHOICES}")
    from ..data import load_kws, make_loaders

    kw: dict[str, Any] = {"progress": progress}
    if name == "embedded":
        kw["preset"] = kws_preset
    else:
        kw["root"] = "/work/shared/data/fsdd"
    data = load_kws(name, seed=seed, **kw)
    train, _val, test = make_loaders(data, batch_size=batch_size, seed=seed)
    batches = [(x, y) for x, y in test]
    return DataBundle(name, train, batches, 1, (67, 40), data.num_classes, {"summary": data.summary()})


# ----------------------------------------------------------------------------------------------
# model


def build(model: str, data: DataBundle, width: float) -> nn.Module:
    """An untrained float32 model (weights stored exactly: ``BitFlip(0, dtype="float32")``)."""
    exact = BitFlip(0.0, dtype="float32")
    if model.startswith("vgg"):
        from ..models.vgg import VGG

        return VGG(int(model[3:]), num_classes=data.num_classes, in_channels=data.in_channels,
                   input_size=data.input_size, width=width, error_model=exact)
    from ..models import build_model

    if data.input_size != (67, 40):
        raise ValueError(f"KWS model {model!r} needs 67 x 40 KWS features; use --data embedded or fsdd")
    return build_model(model, n_classes=data.num_classes, error_model=exact)


def parse_mask(name: str, dtype: str) -> list[int] | None:
    """Noisy bit positions of a mask name for ``dtype`` (None: all bits).

    ``all``; ``mantissa`` (sign and exponent protected); ``no-sign``; ``no-exponent``;
    ``msbK`` (seed 001 Fig. 4: big-endian bits K.. noisy, e.g. ``msb9`` = float32 mantissa).
    """
    width = DTYPES[dtype][2]
    f = BitFlip.fields(dtype)
    if name == "all":
        return None
    if name == "mantissa":
        return f["mantissa"]
    if name == "no-sign":
        return [k for k in range(width) if k not in f["sign"]]
    if name == "no-exponent":
        return [k for k in range(width) if k not in f["exponent"]]
    if name.startswith("msb") and name[3:].isdigit():
        k = int(name[3:])
        if not 0 <= k <= width:
            raise ValueError(f"mask {name!r}: first noisy bit must be in 0..{width} for {dtype}")
        return list(range(width - k))
    raise ValueError(f"unknown mask {name!r}; use all, mantissa, no-sign, no-exponent or msbK")


def _expand_masks(masks: list[str], dtype: str) -> list[str]:
    out: list[str] = []
    for m in masks:
        if m == "thermometer":
            if dtype == "int8":
                out += [f"msb{k}" for k in range(0, 8)]
            else:
                ne = DTYPES[dtype][3]
                out += [f"msb{k}" for k in range(0, ne + 2)]  # sign, each exponent bit, mantissa only
        else:
            out.append(m)
    seen: list[str] = []
    for m in out:
        if m not in seen:
            seen.append(m)
    return seen


def _parse_targets(t: str) -> tuple[bool, bool, bool]:
    parts = set(t.split("+"))
    if not parts <= {"w", "b", "a"} or not parts:
        raise ValueError(f"target {t!r} must be a '+'-joined subset of w (weights), b (biases), a (activations)")
    return "w" in parts, "b" in parts, "a" in parts


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_flips(model: nn.Module, batches: Iterable, seed: int, eval_batch: int | None = None) -> tuple[float, float]:
    """Accuracy and fraction of samples with a non-finite logit; torch RNG seeded with ``seed``.

    ``eval_batch`` splits the batches (per-row static draws hold ``batch x weights`` values).
    """
    model.eval()
    torch.manual_seed(seed)
    correct = seen = bad = 0
    for x, y in batches:
        step = eval_batch or x.shape[0]
        for i in range(0, x.shape[0], step):
            xb, yb = x[i:i + step], y[i:i + step]
            logits = model(xb)
            correct += int((logits.argmax(dim=-1) == yb).sum())
            bad += int((~torch.isfinite(logits)).any(dim=-1).sum())
            seen += int(yb.shape[0])
    return correct / seen, bad / seen


def _n_weights(model: nn.Module) -> int:
    return sum(s.weight.numel() for s in synapses(model))  # type: ignore[attr-defined]


class _Condition:
    """A model stored in one format with one mask and target set; ``set_p`` changes the flip probability."""

    def __init__(self, master: nn.Module, dtype: str, bits: list[int] | None, targets: str, errors: str,
                 calib: list):
        self.weights, self.biases, self.acts = _parse_targets(targets)
        self.dtype, self.bits = dtype, bits
        self.model = copy.deepcopy(master)
        clean = BitFlip(0.0, dtype=dtype, bit_mask=bits)
        requantize(self.model, clean, errors=errors, reads="once")
        self.bias_flips = BiasFlips(self.model, clean) if self.biases else None
        if self.acts:
            try:
                insert_activation_flips(self.model, clean)
            except ValueError as e:
                raise ValueError(f"target 'a' needs nn.ReLU modules to put activation flips after: {e}") from None
            if dtype == "int8":
                calibrate_activations(self.model, calib)

    def set_p(self, p: float) -> None:
        em = BitFlip(p, p, self.dtype, self.bits)
        none = BitFlip(0.0, dtype=self.dtype, bit_mask=self.bits)
        configure(self.model, error_model=em if self.weights else none)
        if self.bias_flips is not None:
            self.bias_flips.error_model = em
        if self.acts:
            set_activation_flips(self.model, em)


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="defaults for everything below (quick: seconds; default: minutes; full: long)")
    p.add_argument("--data", choices=DATA_CHOICES, help="digits (scikit-learn, bundled) or KWS features")
    p.add_argument("--model", choices=MODEL_CHOICES)
    p.add_argument("--width", type=float, help="VGG channel multiplier")
    p.add_argument("--image-size", type=int, help="digits are upsampled to this size (8 = native)")
    p.add_argument("--kws-preset", default="quick", help="embedded KWS data preset (tiny, quick, default)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--dtypes", help="comma list of float32, float16, bfloat16, float64, int8")
    p.add_argument("--masks", help="comma list: all, mantissa, no-sign, no-exponent, msbK, thermometer")
    p.add_argument("--targets", help="comma list of w, w+b, w+b+a, ... (weights, biases, activations)")
    p.add_argument("--p-min", type=float)
    p.add_argument("--p-max", type=float)
    p.add_argument("--per-decade", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--errors", choices=("static", "dynamic"), help="weight/bias errors per inference or per read")
    p.add_argument("--floor-margin", type=float,
                   help="stop a condition's sweep once mean accuracy <= 1/K + this (default 0.02; <0: never)")
    p.add_argument("--out", default="/tmp/evidence/bitflip", help="output folder (resumable)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    p.add_argument("--no-progress", action="store_true")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = {**_FALLBACK, **PRESETS[args.preset]}
    for k in list(PRESETS["default"]) + list(_FALLBACK) + ["weight_lr"]:
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    return cfg


def main(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..evaluate import repetition_seed
    from ..models.vgg import fold_batchnorm
    from ..train import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _resolve(args)
    progress = not args.no_progress
    dtypes = [d.strip() for d in str(cfg["dtypes"]).split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r}; choose from {sorted(DTYPES)}")
    masks = [m.strip() for m in str(cfg["masks"]).split(",") if m.strip()]
    targets = [t.strip() for t in str(cfg["targets"]).split(",") if t.strip()]
    for t in targets:
        _parse_targets(t)
    grid = log_grid(cfg["p_min"], cfg["p_max"], cfg["per_decade"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data(cfg["data"], cfg["batch_size"], cfg["seed"], cfg["image_size"], args.kws_preset, progress)
    model = build(cfg["model"], data, cfg["width"])
    # the store's config: what determines the trained model; conditions live in the row keys
    run_cfg = {k: cfg[k] for k in ("data", "model", "width", "image_size", "epochs", "batch_size", "lr",
                                   "weight_lr", "seed", "errors")}
    run_cfg["kws_preset"] = args.kws_preset if cfg["data"] == "embedded" else None
    store = ResultStore(out, run_cfg)
    t0 = time.perf_counter()
    fit(model, data.train, None, epochs=cfg["epochs"], lr=cfg["lr"], weight_lr=cfg["weight_lr"],
        checkpoint=out / "model.pt", seed=cfg["seed"], progress=progress, desc=f"train {cfg['model']}")
    model.eval()
    folded = fold_batchnorm(model)
    n_w = _n_weights(model)
    eval_batch = max(1, min(256, int(3e7 // max(n_w, 1))))  # per-row static draws: batch x weights values
    calib = [x for x, _ in list(data.train)[:4]]

    conds = [(d, m, t) for d in dtypes for m in _expand_masks(masks, d) for t in targets]
    todo_total = len(conds) * len(grid) * cfg["repeats"]
    stored = {json.dumps(r["key"], sort_keys=True): r for r in store.rows()}
    floor = 1.0 / data.num_classes + cfg["floor_margin"]
    bar = tqdm(total=todo_total, desc="bitflip", disable=not progress, dynamic_ncols=True)
    for dtype, mask, target in conds:
        bits = parse_mask(mask, dtype)
        cond: _Condition | None = None
        for ip, p in enumerate(grid):
            accs = []
            for r in range(cfg["repeats"]):
                key = {"dtype": dtype, "mask": mask, "targets": target, "p": float(p), "rep": r}
                old = stored.get(json.dumps(key, sort_keys=True))
                if old is not None:
                    accs.append(old["acc"])
                    bar.update(1)
                    continue
                if cond is None:
                    cond = _Condition(model, dtype, bits, target, cfg["errors"], calib)
                cond.set_p(float(p))
                seed = repetition_seed(cfg["seed"], {k: v for k, v in key.items() if k != "rep"}, r)
                t1 = time.perf_counter()
                acc, nonfinite = evaluate_flips(cond.model, data.test, seed, eval_batch)
                store.add(key, {"acc": acc, "nonfinite": nonfinite, "eval_seed": seed,
                                "seconds": time.perf_counter() - t1})
                accs.append(acc)
                bar.set_postfix(cond=f"{dtype}/{mask}/{target}", p=f"{p:.1e}", acc=f"{acc:.3f}", refresh=False)
                bar.update(1)
            if cfg["floor_margin"] >= 0 and ip >= 1 and sum(accs) / len(accs) <= floor:
                # accuracy is at chance: higher probabilities cannot do better; not measured
                bar.update((len(grid) - ip - 1) * cfg["repeats"])
                break
    bar.close()
    summary = report(store, data.num_classes, out, conds, info={
        "data": data.info, "model": cfg["model"], "n_weights": n_w, "folded_batchnorms": folded,
        "seconds": time.perf_counter() - t0})
    print(summary)
    return 0


def report(store: ResultStore, num_classes: int, out: Path, conds: list[tuple[str, str, str]],
           info: dict[str, Any] | None = None) -> str:
    """Fit the midpoint per condition; write ``midpoints.csv/json``, ``table.md`` and PNG plots."""
    rows = store.rows()
    store.write_csv()
    # every condition on disk (earlier invocations into the same folder included), in stored order
    for r in rows:
        c = (r["key"]["dtype"], r["key"]["mask"], r["key"]["targets"])
        if c not in conds:
            conds = conds + [c]
    fits: list[dict[str, Any]] = []
    data: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for dtype, mask, target in conds:
        rs = [r for r in rows if r["key"]["dtype"] == dtype and r["key"]["mask"] == mask
              and r["key"]["targets"] == target]
        if not rs:
            continue
        p = np.array([r["key"]["p"] for r in rs])
        a = np.array([r["acc"] for r in rs])
        nf = np.array([r.get("nonfinite", 0.0) for r in rs])
        data[(dtype, mask, target)] = (p, a, nf)
        fit = fit_midpoint(p, a, n_classes=num_classes) if len(np.unique(p)) >= 4 else None
        lowest = a[p == p.min()].mean()
        fits.append({"dtype": dtype, "mask": mask, "targets": target, "acc_at_pmin": float(lowest),
                     "p_min": float(p.min()), "p_max": float(p.max()),
                     **({k: v for k, v in fit.as_dict().items()} if fit else {"ok": False})})
    # reference: float32 with every bit noisy, same targets
    ref = {f["targets"]: f["mu"] for f in fits if f["dtype"] == "float32" and f["mask"] == "all" and f.get("ok")
           and f.get("in_range")}
    for f in fits:
        r = ref.get(f["targets"])
        f["mu_vs_float32"] = (f["mu"] / r) if (r and f.get("ok") and f.get("in_range")) else None
    (out / "midpoints.json").write_text(json.dumps({"fits": fits, "info": info or {}}, indent=2, default=str))
    import csv

    if fits:
        cols = list(dict.fromkeys(k for f in fits for k in f))
        with open(out / "midpoints.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(fits)
    lines = ["| dtype | mask | targets | acc @ p_min | mu (midpoint) | mu 95% CI | p99 (99% of peak) | mu / mu(float32, all bits) | fit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in fits:
        good = f.get("ok") and f.get("in_range")
        mu = f"{f['mu']:.2e}" if good else (
            f"> {f['p_max']:.2g} (no drop)" if f.get("ok") and f.get("mu_x", 0) > math.log10(f["p_max"]) else "n/a")
        se = f.get("mu_x_stderr")
        if good and se is not None and se == se and se < 3:  # approximate (curve_fit covariance)
            ci = f"{10 ** (f['mu_x'] - 1.96 * se):.2e} .. {10 ** (f['mu_x'] + 1.96 * se):.2e}"
        else:
            ci = "-" if not good else "undetermined"
        p99 = f"{f['p99']:.2e}" if f.get("ok") and f.get("p99") == f.get("p99") and f.get("in_range") else "n/a"
        ratio = f"{f['mu_vs_float32']:.3g}x" if f.get("mu_vs_float32") else "-"
        note = f.get("message", "") if f.get("ok") else f.get("message", "not fitted")
        lines.append(f"| {f['dtype']} | {f['mask']} | {f['targets']} | {f['acc_at_pmin']:.3f} | {mu} | {ci} | {p99} | {ratio} | {note} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    # plots: formats (mask "all") per target; masks per (dtype, target) when there are several
    by_target: dict[str, dict] = {}
    for (dtype, mask, target), (p, a, _nf) in data.items():
        fit = next((f for f in fits if (f["dtype"], f["mask"], f["targets"]) == (dtype, mask, target)), None)
        fobj = fit_midpoint(p, a, n_classes=num_classes) if fit and fit.get("ok") else None
        if mask == "all":
            by_target.setdefault(target, {})[dtype] = (p, a, fobj)
    for target, series in by_target.items():
        plot_midpoint(series, str(out / f"formats_{target.replace('+', '')}.png"),
                      title=f"bit flips in {target} (all bits noisy)")
    for (dtype, target) in {(d, t) for d, _, t in data}:
        series = {}
        for (d, mask, t), (p, a, _nf) in data.items():
            if d == dtype and t == target:
                series[mask] = (p, a, fit_midpoint(p, a, n_classes=num_classes) if len(np.unique(p)) >= 4 else None)
        if len(series) > 1:
            plot_midpoint(series, str(out / f"masks_{dtype}_{target.replace('+', '')}.png"),
                          title=f"{dtype}: noisy-bit masks ({target})")
    return table
