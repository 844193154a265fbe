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
    4. Headline (seed 001): how many times more flips int8 tolerates than float32, ``mu(int8) /
       mu(float32)`` (all bits noisy), with a 95 % CI from the two fits' standard errors of
       ``log10 mu`` (normal approximation; it covers the error draws and the fit of *one* trained
       network, not the training variance); printed and written to ``headline.txt``.

Every (condition, p, repeat) is one row of a :class:`~spikenoise.results.ResultStore`: a rerun skips
finished rows, and new conditions can be added to an existing output folder.

Data: ``digits`` is scikit-learn's bundled 8 x 8 handwritten digits (1797 images, shipped inside the
package, no download), upsampled bilinearly to ``--image-size`` (default 32, VGG's CIFAR size);
``embedded`` / ``fsdd`` are the 67 x 40 KWS features of :func:`spikenoise.data.load_kws` (FSDD from
``--root`` or ``$SPIKENOISE_FSDD``). Outputs go to ``--out`` (default ``runs/bitflip``).

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
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data.tensors import BUNDLE_SETS, DataBundle, load_bundle
from ..evaluate import accuracy_nonfinite
from ..midpoint import fit_midpoint, log_grid, plot_midpoint
from ..noise.bitflip import DTYPES, BitFlip
from ..synapse import (BiasFlips, calibrate_activations, configure, insert_activation_flips, requantize,
                       set_activation_flips, synapses)
from .executor import add_executor_options, make_executor
from .scaffold import (StudyError, add_common_options, add_data_options, fsdd_root, open_store,
                       resolve_preset, set_threads, write_csv, write_headline)

__all__ = ["add_arguments", "main", "parse_mask", "PRESETS", "report", "build", "midpoint_ratio"]

#: preset -> defaults (the command line overrides any of them)
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: a smoke run of the whole pipeline
    # about 35 s of CPU: answers the headline (float32 vs int8 midpoint ratio); float32 loses accuracy near
    # 1e-5, so the grid starts at 1e-9 for both midpoints to be fitted; 10 epochs: 96 % clean (3 gave 68 %)
    "quick": dict(data="digits", model="vgg11", width=0.125, image_size=16, epochs=10, dtypes="float32,int8",
                  masks="all", targets="w", p_min=1e-9, p_max=0.3, per_decade=2, repeats=2),
    # minutes on 2 CPU cores: the evidence run
    "default": dict(data="digits", model="vgg11", width=0.125, image_size=32, epochs=20,
                    dtypes="float32,float16,bfloat16,float64,int8", masks="all", targets="w",
                    p_min=1e-8, p_max=0.5, per_decade=2, repeats=3),
    # the seed-001 figure set (long)
    "full": dict(data="digits", model="vgg11", width=0.25, image_size=32, epochs=30,
                 dtypes="float32,float16,bfloat16,float64,int8", masks="all,thermometer", targets="w,w+b+a",
                 p_min=1e-9, p_max=0.5, per_decade=3, repeats=5),
}
_FALLBACK = dict(batch_size=64, lr=1e-3, weight_lr=1e-2, errors="static", floor_margin=0.02)

MODEL_CHOICES = ("vgg11", "vgg13", "vgg16", "vgg19", "cnn", "rnn", "scnn", "srnn")
DATA_CHOICES = BUNDLE_SETS


def build(model: str, data: DataBundle, width: float) -> nn.Module:
    """An untrained float32 model (weights stored exactly: ``BitFlip(0, dtype="float32")``)."""
    from ..models import build_model

    exact = BitFlip(0.0, dtype="float32")
    if model.startswith("vgg"):
        return build_model(model, num_classes=data.num_classes, in_channels=data.in_channels,
                           input_size=data.input_size, width=width, error_model=exact)
    if data.input_size != (67, 40):
        raise StudyError(f"KWS model {model!r} needs 67 x 40 KWS features; use --data embedded or fsdd")
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
    add_common_options(p, "bitflip", PRESETS, "default",
                       preset_help="defaults for everything below (quick: about a minute; default: minutes; full: long)")
    add_data_options(p, DATA_CHOICES)
    p.add_argument("--model", choices=MODEL_CHOICES)
    p.add_argument("--width", type=float, help="VGG channel multiplier")
    p.add_argument("--image-size", type=int, help="digits are upsampled to this size (8 = native)")
    p.add_argument("--kws-preset", default="quick", help="embedded KWS data preset (tiny, quick, default)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-lr", type=float)
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
    add_executor_options(p)


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = resolve_preset(PRESETS, args, list(_FALLBACK) + ["seed"], _FALLBACK)
    cfg["dtypes"] = [d.strip() for d in str(cfg["dtypes"]).split(",") if d.strip()]
    for d in cfg["dtypes"]:
        if d not in DTYPES:
            raise StudyError(f"unknown dtype {d!r} in --dtypes; choose from {sorted(DTYPES)}")
    cfg["masks"] = [m.strip() for m in str(cfg["masks"]).split(",") if m.strip()]
    cfg["targets"] = [t.strip() for t in str(cfg["targets"]).split(",") if t.strip()]
    try:
        for t in cfg["targets"]:
            _parse_targets(t)
        for d in cfg["dtypes"]:
            for m in _expand_masks(cfg["masks"], d):
                parse_mask(m, d)
        cfg["grid"] = log_grid(cfg["p_min"], cfg["p_max"], cfg["per_decade"])
    except ValueError as e:
        raise StudyError(str(e)) from None
    cfg["root"] = fsdd_root(args.root) if cfg["data"] == "fsdd" else None
    return cfg


def _train(cfg: dict[str, Any], data: DataBundle, slot, progress: bool) -> dict[str, Any]:
    """Task: the trained float32 model with batch norm folded (checkpoint in ``slot``, resumable).

    Returns ``model``, ``checkpoint`` (bytes for the driver to write, or None: in place), ``folded``."""
    from ..models.vgg import fold_batchnorm
    from ..train import derive_seed, fit

    torch.manual_seed(derive_seed(cfg["seed"], cfg["model"], "init"))  # a reproducible initialization
    model = build(cfg["model"], data, cfg["width"])
    with slot.open() as ckpt:
        fit(model, data.train, None, epochs=cfg["epochs"], lr=cfg["lr"], weight_lr=cfg["weight_lr"],
            checkpoint=ckpt, seed=cfg["seed"], progress=progress, desc=f"train {cfg['model']}")
    model.eval()
    return {"model": model, "checkpoint": slot.payload(), "folded": fold_batchnorm(model)}


def _sweep_condition(cfg: dict[str, Any], cond: tuple[str, str, str], stored: dict[str, float], test, calib: list,
                     eval_batch: int, floor: float, net: dict[str, Any]) -> list[tuple[dict, dict]]:
    """Task: every flip probability and repetition of one (dtype, mask, targets) condition not in
    ``stored`` (accuracies by row key); returns the new ``(key, values)`` rows.

    The sweep of a condition stops once its mean accuracy is at chance (``floor``).
    """
    from ..evaluate import repetition_seed

    dtype, mask, target = cond
    bits = parse_mask(mask, dtype)
    made: _Condition | None = None
    grid = cfg["grid"]
    rows: list[tuple[dict, dict]] = []
    for ip, p in enumerate(grid):
        accs = []
        for r in range(cfg["repeats"]):
            key = {"dtype": dtype, "mask": mask, "targets": target, "p": float(p), "rep": r}
            acc = stored.get(json.dumps(key, sort_keys=True))
            if acc is None:
                if made is None:
                    made = _Condition(net["model"], dtype, bits, target, cfg["errors"], calib)
                made.set_p(float(p))
                seed = repetition_seed(cfg["seed"], {k: v for k, v in key.items() if k != "rep"}, r)
                t1 = time.perf_counter()
                acc, nonfinite = accuracy_nonfinite(made.model, test, seed, eval_batch)
                rows.append((key, {"acc": acc, "nonfinite": nonfinite, "eval_seed": seed,
                                   "seconds": time.perf_counter() - t1}))
            accs.append(acc)
        if cfg["floor_margin"] >= 0 and ip >= 1 and sum(accs) / len(accs) <= floor:
            break  # accuracy is at chance: higher probabilities cannot do better; not measured
    return rows


def _tasks(cfg, data: DataBundle, store, out: Path, conds, executor, progress: bool):
    """Training (unless finished on disk) and one task per condition; the driver's ``on_result``;
    the trained network if it was on disk."""
    from ..train import checkpoint_done
    from .executor import CheckpointSlot, Task

    ckpt = out / "model.pt"
    tasks: list[Task] = []
    net = None
    if checkpoint_done(ckpt):  # loaded here, as a serial run does
        net = _train(cfg, data, CheckpointSlot(ckpt, in_place=True), False)
        kw, deps = {"net": net}, {}
    else:
        slot = CheckpointSlot.for_executor(ckpt, executor)
        tasks.append(Task(f"train {cfg['model']}", _train, (cfg, executor.share(data), slot, progress)))
        kw, deps = {}, {"net": tasks[0].name}
    n_w = _n_weights(build(cfg["model"], data, cfg["width"]))
    eval_batch = max(1, min(256, int(3e7 // max(n_w, 1))))  # per-row static draws: batch x weights values
    floor = 1.0 / data.num_classes + cfg["floor_margin"]
    test, calib = executor.share(data.test), executor.share([x for x, _ in list(data.train)[:4]])
    stored: dict[tuple, dict[str, float]] = {}  # condition -> accuracy by row key
    for r in store.rows():
        k = r["key"]
        stored.setdefault((k["dtype"], k["mask"], k["targets"]), {})[json.dumps(k, sort_keys=True)] = r["acc"]
    for cond in conds:
        mine = stored.get(cond, {})
        if len(mine) == len(cfg["grid"]) * cfg["repeats"]:
            continue
        tasks.append(Task(f"sweep {'/'.join(cond)}", _sweep_condition,
                          (cfg, cond, mine, test, calib, eval_batch, floor), dict(kw), dict(deps)))
    trained: dict[str, Any] = {"net": net}

    def on_result(task, value):
        if task.fn is _train:
            slot.commit(value["checkpoint"])
            trained["net"] = value
        else:
            for key, row in value:
                store.add(key, row)

    return tasks, on_result, trained, n_w


def main(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    cfg = _resolve(args)
    with make_executor(args) as executor:
        return _run(args, cfg, executor)


def _run(args: argparse.Namespace, cfg: dict[str, Any], executor) -> int:
    data = load_bundle(cfg["data"], cfg["batch_size"], cfg["seed"], cfg["image_size"], args.kws_preset,
                       args.progress, cfg["root"])
    # the store's config: what determines the trained model; conditions live in the row keys
    run_cfg = {k: cfg[k] for k in ("data", "model", "width", "image_size", "epochs", "batch_size", "lr",
                                   "weight_lr", "seed", "errors")}
    run_cfg["kws_preset"] = args.kws_preset if cfg["data"] == "embedded" else None
    out = Path(args.out)
    store = open_store(out, run_cfg, args.fresh)
    t0 = time.perf_counter()
    conds = [(d, m, t) for d in cfg["dtypes"] for m in _expand_masks(cfg["masks"], d) for t in cfg["targets"]]
    tasks, on_result, trained, n_w = _tasks(cfg, data, store, out, conds, executor,
                                            args.progress and executor.in_process)
    executor.run(tasks, on_result, desc="bitflip")
    folded = trained["net"]["folded"] if trained["net"] else None
    print(report(store, data.num_classes, out, conds, info={
        "data": data.info, "model": cfg["model"], "n_weights": n_w, "folded_batchnorms": folded,
        "seconds": time.perf_counter() - t0}))
    return 0


# ----------------------------------------------------------------------------------------------
# report


def _fit_conditions(rows, conds, num_classes: int):
    """Per condition: the logistic fit summary (list of dicts) and the ``(p, acc, nonfinite)`` arrays."""
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
        fits.append({"dtype": dtype, "mask": mask, "targets": target, "acc_at_pmin": float(a[p == p.min()].mean()),
                     "p_min": float(p.min()), "p_max": float(p.max()),
                     **({k: v for k, v in fit.as_dict().items()} if fit else {"ok": False})})
    # reference: float32 with every bit noisy, same targets
    ref = {f["targets"]: f["mu"] for f in fits if f["dtype"] == "float32" and f["mask"] == "all" and f.get("ok")
           and f.get("in_range")}
    refs = {f["targets"]: f for f in fits if f["dtype"] == "float32" and f["mask"] == "all"}
    for f in fits:
        r = ref.get(f["targets"])
        f["mu_vs_float32"] = (f["mu"] / r) if (r and f.get("ok") and f.get("in_range")) else None
        ref_f = refs.get(f["targets"])
        lo_hi = midpoint_ratio(f, ref_f) if ref_f is not None and ref_f is not f and f["mu_vs_float32"] else None
        f["mu_vs_float32_ci_low"], f["mu_vs_float32_ci_high"] = lo_hi[1:] if lo_hi else (None, None)
    return fits, data


def midpoint_ratio(fit: dict[str, Any], ref: dict[str, Any], z: float = 1.959964) -> tuple[float, float, float] | None:
    """``mu / mu_ref`` of two fitted conditions and its CI: ``log10`` of the ratio is ``mu_x - mu_x_ref``
    with standard error ``sqrt(se^2 + se_ref^2)`` (independent fits); None unless both are fitted
    in range with a finite standard error."""
    for f in (fit, ref):
        se = f.get("mu_x_stderr")
        if not (f.get("ok") and f.get("in_range")) or se is None or not math.isfinite(se):
            return None
    d = fit["mu_x"] - ref["mu_x"]
    half = z * math.hypot(fit["mu_x_stderr"], ref["mu_x_stderr"])
    return 10 ** d, 10 ** (d - half), 10 ** (d + half)


def _headline(fits: list[dict[str, Any]], out: Path) -> str:
    lines = []
    for target in dict.fromkeys(f["targets"] for f in fits):
        f32 = next((f for f in fits if (f["dtype"], f["mask"], f["targets"]) == ("float32", "all", target)), None)
        i8 = next((f for f in fits if (f["dtype"], f["mask"], f["targets"]) == ("int8", "all", target)), None)
        if f32 is None or i8 is None:
            continue
        r = midpoint_ratio(i8, f32)
        if r is None:
            why = "; ".join(f"{f['dtype']}: {f.get('message', 'not fitted')}" for f in (f32, i8)
                            if not (f.get("ok") and f.get("in_range")))
            lines.append(f"targets {target}: not determined ({why or 'no standard error'}); widen --p-min/--p-max")
            continue
        lines.append(f"targets {target}: mu(int8) / mu(float32) = {r[0]:.3g} (95% CI {r[1]:.3g} .. {r[2]:.3g}); "
                     f"mu float32 {f32['mu']:.2e}, int8 {i8['mu']:.2e} (clean acc {f32['acc_at_pmin']:.3f} / "
                     f"{i8['acc_at_pmin']:.3f})")
    if not lines:
        lines = ["not determined: run both --dtypes float32,int8 with --masks all"]
    lines.append("CI from the two logistic fits' standard errors of log10 mu: error draws and fit of one trained "
                 "network (not the training variance)")
    return write_headline(out, "how many times higher a bit-flip probability int8 weights tolerate than float32 "
                               "(midpoint ratio, all bits noisy)", lines)


def _table_row(f: dict[str, Any]) -> str:
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
    return f"| {f['dtype']} | {f['mask']} | {f['targets']} | {f['acc_at_pmin']:.3f} | {mu} | {ci} | {p99} | {ratio} | {note} |"


def _plots(data, fits, num_classes: int, out: Path) -> None:
    """Formats (mask "all") per target; masks per (dtype, target) when there are several."""
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


def report(store, num_classes: int, out: Path, conds: list[tuple[str, str, str]],
           info: dict[str, Any] | None = None) -> str:
    """Fit the midpoint per condition; write ``midpoints.csv/json``, ``table.md``, PNG plots and
    ``headline.txt``; returns the table and the headline."""
    rows = store.rows()
    store.write_csv()
    # every condition on disk (earlier invocations into the same folder included), in stored order
    for r in rows:
        c = (r["key"]["dtype"], r["key"]["mask"], r["key"]["targets"])
        if c not in conds:
            conds = conds + [c]
    fits, data = _fit_conditions(rows, conds, num_classes)
    (out / "midpoints.json").write_text(json.dumps({"fits": fits, "info": info or {}}, indent=2, default=str))
    write_csv(out / "midpoints.csv", fits)
    lines = ["| dtype | mask | targets | acc @ p_min | mu (midpoint) | mu 95% CI | p99 (99% of peak) | mu / mu(float32, all bits) | fit |",
             "|---|---|---|---|---|---|---|---|---|"] + [_table_row(f) for f in fits]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    _plots(data, fits, num_classes, out)
    return table + "\n\n" + _headline(fits, out)
