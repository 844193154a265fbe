"""Study of seed paper 003: programming variation in tiled analog in-memory computing.

``spikenoise analog --preset quick --root PATH/TO/FSDD`` (or set ``SPIKENOISE_FSDD``; output in ``runs/analog``)

Pipeline (seed 003 Fig. 2 and 3):

1. Train a floating-point model (level 0; hidden weights in [-1, 1] with a per-layer scale).
2. Calibrate every layer's full-scale input (DAC range) on training data (99.9th percentile).
3. For every training variation ``s`` (noise injection, one draw per minibatch, seed 003 sec. 5):
   fine-tune level 1 (8-bit weights and activations) from the float model, level 2 (+ two
   cells per weight, on/off ratio) from level 1, level 3 (+ 256 x 64 arrays, 8-bit ADC of range
   15 G_max, trainable per-array multipliers) from level 2, each with variation ``s`` injected.
4. Evaluate every level-``l`` model in the level-``l`` inference pipeline at every test
   variation, over ``--programmings`` independently programmed chips (default 40): box-plot
   statistics and the 75th percentile ("top 25 %") accuracy.
5. Deterministic effects (seed 003 Fig. 4): the error-free model of each training level in each
   inference pipeline, without variation.

Outputs in ``--out``: ``results.jsonl`` (resumable, one row per condition), ``results.csv``,
``deterministic.csv``, ``summary.md``, ``boxplots.png``, ``top25.png``, ``headline.txt``, model
checkpoints in ``models/``.

Headline (seed 003): the noise-injection gain at the highest pipeline level -- mean accuracy over
the programmed chips of the network fine-tuned with the largest training variation minus that of
the network fine-tuned without (smallest variation), both tested at that largest variation, paired
by training seed (the two share the float model and the data order), t-CI over the training seeds:
it covers the training variance and the chip-to-chip variance (needs >= 2 seeds). Data: ``fsdd`` (Free Spoken Digit Dataset, 67 x 40 log-Mel, real speech; default),
``embedded`` (synthesized KWS words), ``digits`` (scikit-learn 8 x 8 digits; needs scikit-learn)
or ``synthetic`` (Gaussian blobs, for tests).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data.tensors import TENSOR_SETS, load_tensors, tensor_loaders
from .executor import add_executor_options, make_executor
from .scaffold import (StudyError, add_common_options, add_data_options, finish_panels, fsdd_root, open_store,
                       pyplot, resolve_preset, set_threads, write_headline,
                       paired_points_line)

__all__ = ["add_arguments", "main", "PRESETS", "build_study_model", "aggregate", "injection_gain"]

#: preset -> defaults (command-line options override them)
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests and a first look
    "smoke": dict(data="synthetic", model="mlp", hidden=32, epochs=3, ft_epochs=1, programmings=3,
                  train_sigmas=[0.0, 0.08], test_sigmas=[0.0, 0.08], levels=[1, 2, 3], batch_size=64,
                  array=[16, 8], n_train=None, n_test=None, adc_range="auto", train_seeds=1),
    # minutes on 2 CPU cores
    "quick": dict(data="fsdd", model="mlp", hidden=256, epochs=25, ft_epochs=6, programmings=40,
                  train_sigmas=[0.0, 0.04, 0.08], test_sigmas=[0.0, 0.04, 0.08, 0.12, 0.16, 0.24],
                  levels=[1, 2, 3], batch_size=64, array=[256, 64], n_train=None, n_test=None, adc_range="auto",
                  train_seeds=3),
    # the KWS CNN of the model zoo (16/32/64 channels), slower
    "full": dict(data="fsdd", model="cnn", hidden=256, epochs=30, ft_epochs=8, programmings=40,
                 train_sigmas=[0.0, 0.04, 0.08], test_sigmas=[0.0, 0.04, 0.08, 0.12, 0.16, 0.24],
                 levels=[1, 2, 3], batch_size=64, array=[256, 64], n_train=None, n_test=None, adc_range="auto",
                 train_seeds=3),
}


_EXTRA = ["on_off", "adc_bits", "bits", "act_bits", "mapping", "state_dependent", "seed", "root"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``spikenoise analog`` (unset options take the preset's value)."""
    add_common_options(p, "analog", PRESETS, "quick")
    add_data_options(p, TENSOR_SETS)
    p.add_argument("--model", choices=["mlp", "cnn"], help="mlp: one hidden layer; cnn: the KWS zoo CNN")
    p.add_argument("--hidden", type=int, help="hidden units of the MLP")
    p.add_argument("--epochs", type=int, help="epochs of float training")
    p.add_argument("--ft-epochs", type=int, help="epochs of each level's fine-tuning")
    p.add_argument("--programmings", type=int, help="programmed chips per condition (seed 003: 40)")
    p.add_argument("--train-seeds", type=int, help="independent trainings (float + fine-tunes) per condition")
    p.add_argument("--train-sigmas", type=float, nargs="+", help="variation injected in training (relative)")
    p.add_argument("--test-sigmas", type=float, nargs="+", help="programming variation at inference (relative)")
    p.add_argument("--levels", type=int, nargs="+", choices=[1, 2, 3], help="pipeline levels")
    p.add_argument("--array", type=int, nargs=2, metavar=("ROWS", "COLS"), help="array size (default 256 64)")
    p.add_argument("--on-off", type=float, default=10.0, help="G_max / G_min (default 10)")
    p.add_argument("--adc-bits", type=int, default=8, help="ADC resolution (default 8)")
    p.add_argument("--adc-range", default=None,
                   help="ADC full scale in G_max x full-scale input: a number (seed 003: 15) or 'auto' "
                        "(per layer, 99.9th percentile of the column currents on training data)")
    p.add_argument("--bits", type=int, default=8, help="weight / programming target bits (default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="activation (DAC) bits (default 8)")
    p.add_argument("--mapping", choices=["proportional", "offset"], default="proportional")
    p.add_argument("--state-dependent", action="store_true", help="variation proportional to conductance")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--n-train", type=int, help="limit training samples")
    p.add_argument("--n-test", type=int, help="limit test samples")
    add_executor_options(p)


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = resolve_preset(PRESETS, args, _EXTRA)
    if cfg["adc_range"] != "auto":
        try:
            cfg["adc_range"] = float(cfg["adc_range"])
        except ValueError:
            raise StudyError(f"--adc-range must be a number or 'auto', got {cfg['adc_range']!r}") from None
    if cfg["data"] == "fsdd":
        cfg["root"] = fsdd_root(cfg.get("root"))
    return cfg


# ----------------------------------------------------------------------------------------------
# models

def build_study_model(kind: str, input_shape: tuple[int, ...], n_classes: int, hidden: int = 256) -> nn.Module:
    """A float (level 0) model on ideal tiled layers: ``mlp`` or the zoo ``cnn``."""
    from spikenoise.synapse import level_settings, tile

    st = level_settings(0)
    if kind == "mlp":
        from spikenoise.models.resilience import MLP

        # unbounded ReLU would be clipped by the DAC range anyway; MLP uses a bounded ReLU
        return MLP(int(np.prod(input_shape)), (hidden,), n_classes, error_model=st["error_model"],
                   **st["analog"], input_range=None)
    if kind == "cnn":
        from spikenoise.models import build_model

        if len(input_shape) != 2:
            raise ValueError(f"the zoo CNN needs (time, freq) inputs, got {input_shape}")
        m = build_model("cnn", n_classes=n_classes, input_shape=tuple(input_shape))
        return tile(m, st["error_model"], errors="none", reads="once", **st["analog"], input_range=None)
    raise ValueError(f"model must be 'mlp' or 'cnn', got {kind!r}")


def _set_level(model: nn.Module, level: int, sigma: float, cfg: dict[str, Any], errors: str = "static",
               draws: str | None = None, calib: torch.Tensor | None = None) -> nn.Module:
    """Put ``model`` into pipeline ``level`` at variation ``sigma``.

    With ``adc_range="auto"`` a model's ADC ranges are kept, or calibrated on ``calib`` if given.
    """
    from spikenoise.synapse import ADC_RANGE, calibrate_adc_ranges, level_settings, tile

    auto = cfg["adc_range"] == "auto"
    st = level_settings(level, sigma, on_off=cfg["on_off"], bits=cfg["bits"], act_bits=cfg["act_bits"],
                        array=tuple(cfg["array"]), adc_bits=cfg["adc_bits"],
                        adc_range=ADC_RANGE if auto else cfg["adc_range"],
                        mapping=cfg["mapping"], state_dependent=cfg["state_dependent"])
    analog = dict(st["analog"])
    if auto:
        analog.pop("adc_range", None)
    if draws is not None:
        analog["draws"] = draws
    model = tile(model, st["error_model"], errors=errors, inplace=True, **analog)
    if auto and level == 3 and calib is not None:
        calibrate_adc_ranges(model, calib)
    return model


# ----------------------------------------------------------------------------------------------
# main

def _train_float(cfg: dict[str, Any], shape: tuple[int, ...], n_classes: int, tensors, ts: int, slot, calib,
                 progress: bool) -> dict[str, Any]:
    """Task: the floating-point (level 0) model of training seed ``ts`` (checkpoint in ``slot``), its
    test accuracy and DAC input ranges (calibrated on ``calib``, kept by every level)."""
    from spikenoise.evaluate import accuracy
    from spikenoise.synapse import calibrate_input_ranges
    from spikenoise.train import fit, seed_everything

    tseed = _train_seed(cfg, ts)
    tr_loader, te_loader = tensor_loaders(*tensors, cfg["batch_size"], tseed)
    seed_everything(tseed)
    model = build_study_model(cfg["model"], shape, n_classes, cfg["hidden"])
    with slot.open() as ckpt:
        fit(model, tr_loader, None, epochs=cfg["epochs"], lr=1e-3, weight_lr=1e-2, seed=tseed, checkpoint=ckpt,
            progress=progress, desc=f"seed {ts}: float")
    acc = accuracy(model, te_loader)
    ranges = calibrate_input_ranges(model, calib)
    return {"model": model, "checkpoint": slot.payload(), "accuracy": acc, "ranges": ranges}


def _fine_tune(cfg: dict[str, Any], tensors, ts: int, level: int, sigma: float, slot, calib, progress: bool,
               prev: dict[str, Any]) -> dict[str, Any]:
    """Task: level ``level`` fine-tuned from ``prev`` (the float model or level - 1) with training
    variation ``sigma`` injected (architecture-aware fine-tuning; checkpoint in ``slot``)."""
    from spikenoise.train import fit

    tseed = _train_seed(cfg, ts)
    tr_loader, _ = tensor_loaders(*tensors, cfg["batch_size"], tseed)
    m = _set_level(copy.deepcopy(prev["model"]), level, sigma, cfg, errors="static" if sigma > 0 else "none",
                   draws="batch", calib=calib)
    with slot.open() as ckpt:
        fit(m, tr_loader, None, epochs=cfg["ft_epochs"], lr=2e-4, weight_lr=2e-3, seed=tseed + level,
            checkpoint=ckpt, progress=progress, desc=f"seed {ts}: level {level}, train var {sigma:g}")
    adc = [l.adc_range for l in m.modules() if getattr(l, "adc_bits", None) is not None] if level == 3 else None
    return {"model": m, "checkpoint": slot.payload(), "adc_ranges": adc}


def _deterministic(cfg: dict[str, Any], tensors, ts: int, levels_needed: list[int], calib,
                   **trained: dict[str, Any]) -> list[dict[str, Any]]:
    """Task: error-free models of each training level (``trained["level<t>"]``) in each inference
    pipeline (seed 003 Fig. 4)."""
    from spikenoise.evaluate import accuracy
    from spikenoise.synapse import set_analog

    _, te_loader = tensor_loaders(*tensors, cfg["batch_size"], _train_seed(cfg, ts))
    det = []
    for name, net in trained.items():
        t = int(name[len("level"):])
        for p in [0] + levels_needed:
            mm = _set_level(copy.deepcopy(net["model"]), p, 0.0, cfg, errors="none", calib=None if t == 3 else calib)
            if p == 0:
                set_analog(mm, input_range=None)
            det.append({"train_seed": ts, "trained": t, "pipeline": p, "accuracy": accuracy(mm, te_loader)})
    return det


def _variation(cfg: dict[str, Any], tensors, key: dict[str, Any], net: dict[str, Any]) -> tuple[dict, dict]:
    """Task: programming variation: many programmed chips of one (level, train sigma, test sigma, seed)."""
    from spikenoise.evaluate import programming_accuracies
    from spikenoise.synapse import box_stats

    lv, t = key["level"], key["test_sigma"]
    tseed = _train_seed(cfg, key["train_seed"])
    _, te_loader = tensor_loaders(*tensors, cfg["batch_size"], tseed)
    m = _set_level(copy.deepcopy(net["model"]), lv, t, cfg, errors="static", draws="batch")
    n = cfg["programmings"] if t > 0 else 1  # no variation: every chip is the same
    t1 = time.time()
    accs = programming_accuracies(m, te_loader, n=n, seed=tseed * 1000 + 7)
    if t == 0:
        accs = accs * cfg["programmings"]
    return key, {"accuracies": accs, **box_stats(accs), "seconds": time.time() - t1}


def _train_seed(cfg: dict[str, Any], ts: int) -> int:
    return cfg["seed"] + 1000 * ts  # data split fixed by --seed; initialization and order by ts


def _tasks(run: SimpleNamespace, executor, tensors, shape: tuple[int, ...]):
    """Per training seed: float training, the fine-tuning chains (level 1 <- float, 2 <- 1, 3 <- 2 per
    training variation), the deterministic table, the variation cells not stored; and ``on_result``.

    Finished trainings are tasks too: :func:`spikenoise.train.fit` loads their checkpoints at once.
    """
    from .executor import CheckpointSlot, Task

    cfg, out = run.cfg, run.out
    progress = run.progress and executor.in_process
    tensors, calib = executor.share(tensors), executor.share(run.calib)
    tasks: list[Task] = []
    slots: dict[str, CheckpointSlot] = {}

    def slot(name: str, file: str) -> CheckpointSlot:
        slots[name] = CheckpointSlot.for_executor(out / "models" / file, executor)
        return slots[name]

    s0 = min(cfg["train_sigmas"], key=abs)
    for ts in range(cfg["train_seeds"]):
        fname = f"seed {ts}: float"
        tasks.append(Task(fname, _train_float, (cfg, shape, run.n_classes, tensors, ts,
                                                 slot(fname, f"seed{ts}_float.pt"), calib, progress)))
        chain: dict[tuple[int, float], str] = {}
        for sg in cfg["train_sigmas"]:
            prev = fname
            for lv in run.levels_needed:
                name = f"seed {ts}: level {lv}, train var {sg:g}"
                tasks.append(Task(name, _fine_tune, (cfg, tensors, ts, lv, sg,
                                                     slot(name, f"seed{ts}_level{lv}_train{sg:g}.pt"), calib,
                                                     progress), deps={"prev": prev}))
                chain[(lv, sg)] = prev = name
        deps = {"level0": fname, **{f"level{lv}": chain[(lv, s0)] for lv in run.levels_needed}}
        tasks.append(Task(f"seed {ts}: deterministic", _deterministic, (cfg, tensors, ts, run.levels_needed, calib),
                          deps=deps))
        for lv in cfg["levels"]:
            for sg in cfg["train_sigmas"]:
                for t in cfg["test_sigmas"]:
                    key = {"level": lv, "train_sigma": sg, "test_sigma": t, "train_seed": ts}
                    if not run.store.done(key):
                        tasks.append(Task(f"seed {ts}: level {lv}, train var {sg:g}, test var {t:g}", _variation,
                                          (cfg, tensors, key), deps={"net": chain[(lv, sg)]}))

    def on_result(task, value):
        if task.name in slots:
            slots[task.name].commit(value["checkpoint"])
        if task.fn is _train_float:
            ts = task.args[4]
            run.float_accs[ts], run.ranges[ts] = value["accuracy"], value["ranges"]
        elif task.fn is _fine_tune and value["adc_ranges"] is not None:
            ts, sg = task.args[2], task.args[4]
            run.adc_ranges[f"seed{ts}_train{sg:g}"] = value["adc_ranges"]
        elif task.fn is _deterministic:
            run.det_by_seed[task.args[2]] = value
        elif task.fn is _variation:
            run.store.add(*value)

    return tasks, on_result


def _write_outputs(run: SimpleNamespace, info: dict[str, Any]) -> str:
    out = run.out
    with open(out / "deterministic.csv", "w") as fh:
        fh.write("train_seed,trained_level,pipeline_level,accuracy\n")
        for d in run.det:
            fh.write(f"{d['train_seed']},{d['trained']},{d['pipeline']},{d['accuracy']:.6f}\n")
    rows = run.store.rows()
    run.store.write_csv()
    (out / "summary.json").write_text(json.dumps({"config": run.cfg, "info": info, "deterministic": run.det},
                                                 indent=2))
    text = _summary(rows, run.det, run.cfg, info) + "\n" + _headline(rows, run.cfg, out) + "\n"
    (out / "summary.md").write_text(text)
    pngs = _plot(rows, run.cfg, out)
    return text + "\n" + f"wrote {out / 'results.csv'}, {out / 'summary.md'}, " + ", ".join(str(p) for p in pngs)


def main(args: argparse.Namespace) -> int:
    """Run the study; returns 0 on success."""
    cfg = _resolve(args)
    set_threads(args.threads)
    with make_executor(args) as executor:
        return _run(args, cfg, executor)


def _run(args: argparse.Namespace, cfg: dict[str, Any], executor) -> int:
    out = Path(args.out)
    store = open_store(out, cfg, args.fresh)
    (out / "models").mkdir(exist_ok=True)
    t0 = time.time()
    train, test, n_classes = load_tensors(cfg["data"], cfg["seed"], cfg.get("root"), cfg.get("n_train"),
                                          cfg.get("n_test"), args.progress)
    run = SimpleNamespace(cfg=cfg, out=out, store=store, progress=args.progress, n_classes=n_classes,
                          adc_ranges={}, float_accs={}, ranges={}, det_by_seed={},
                          calib=train[0][:512],  # calibration batch of DAC / ADC ranges (training data)
                          levels_needed=[lv for lv in (1, 2, 3) if lv <= max(cfg["levels"])])
    tasks, on_result = _tasks(run, executor, (train, test), tuple(train[0].shape[1:]))
    executor.run(tasks, on_result, desc="analog")
    seeds = range(cfg["train_seeds"])
    run.det = [d for ts in seeds for d in run.det_by_seed[ts]]
    float_accs, ranges = [run.float_accs[ts] for ts in seeds], [run.ranges[ts] for ts in seeds]
    order = [f"seed{ts}_train{sg:g}" for ts in seeds for sg in cfg["train_sigmas"]]
    run.adc_ranges = {k: run.adc_ranges[k] for k in order if k in run.adc_ranges}
    info = {"n_train": len(train[1]), "n_test": len(test[1]), "float_accs": float_accs, "input_ranges": ranges,
            "adc_ranges": run.adc_ranges, "seconds": time.time() - t0}
    print(_write_outputs(run, info) + f" in {time.time() - t0:.0f} s")
    return 0


# ----------------------------------------------------------------------------------------------
# report

def _conditions(rows: list[dict[str, Any]]) -> dict[tuple[int, float, float], list[dict[str, Any]]]:
    """Rows grouped by (level, train sigma, test sigma), one row per training seed."""
    groups: dict[tuple[int, float, float], list[dict[str, Any]]] = {}
    for r in rows:
        k = r["key"]
        groups.setdefault((k["level"], k["train_sigma"], k["test_sigma"]), []).append(r)
    return groups


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition: the chips of all training seeds pooled (box statistics) and the per-seed
    top-25 % (q3) and mean accuracies as mean +- 95 % CI over training seeds."""
    from spikenoise.results import mean_ci
    from spikenoise.synapse import box_stats

    out = []
    for (lv, tr, te), rs in sorted(_conditions(rows).items()):
        pooled = [a for r in rs for a in r["accuracies"]]
        q3m, q3ci = mean_ci([r["q3"] for r in rs])
        mm, mci = mean_ci([r["mean"] for r in rs])
        out.append({"level": lv, "train_sigma": tr, "test_sigma": te, "train_seeds": len(rs),
                    "chips": len(pooled), **{f"pooled_{k}": v for k, v in box_stats(pooled).items() if k != "n"},
                    "top25": q3m, "top25_ci": q3ci, "mean": mm, "mean_ci": mci})
    return out


_LEVEL_TITLES = {1: "level 1: quantized", 2: "level 2: + two cells, on/off", 3: "level 3: + arrays, ADC"}


def _plot_boxes(rows: list[dict[str, Any]], cfg: dict[str, Any], path: Path) -> Path:
    """Box plots of the chips' accuracies per level, train and test variation (whiskers min/max)."""
    plt = pyplot()
    groups = _conditions(rows)
    levels, trs, tes = (sorted({k[i] for k in groups}) for i in range(3))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 4.2), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(trs))
    for ax, lv in zip(axes[0], levels):
        for j, tr in enumerate(trs):
            data, pos = [], []
            for i, te in enumerate(tes):
                rs = groups.get((lv, tr, te))
                if rs:
                    data.append([100 * a for r in rs for a in r["accuracies"]])
                    pos.append(i - 0.4 + width * (j + 0.5))
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, whis=(0, 100),
                                manage_ticks=False)
                for b in bp["boxes"]:
                    b.set_facecolor(colors[j % len(colors)])
                    b.set_alpha(0.6)
                ax.plot([], [], color=colors[j % len(colors)], lw=6, alpha=0.6, label=f"train var {100 * tr:g}%")
        ax.set_xticks(range(len(tes)))
        ax.set_xticklabels([f"{100 * t:g}" for t in tes])
        ax.set_xlabel("programming variation at inference (% of range)")
        ax.set_title(_LEVEL_TITLES[lv])
        ax.grid(alpha=0.3)
    n_seeds = max(len(rs) for rs in groups.values())
    return finish_panels(fig, axes, f"test accuracy (%): {cfg['programmings']} chips x {n_seeds} trainings", path,
                         legend_loc="lower left",
                         title=f"seed 003 on {cfg['data']} ({cfg['model']}), on/off {cfg['on_off']:g}, "
                               f"ADC range {cfg['adc_range']}, whiskers = min/max")


def _plot_top25(rows: list[dict[str, Any]], path: Path) -> Path:
    """75th percentile accuracy (mean +- 95 % CI over trainings) vs test variation, per level."""
    plt = pyplot()
    agg = aggregate(rows)
    levels, trs = sorted({a["level"] for a in agg}), sorted({a["train_sigma"] for a in agg})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 3.8), squeeze=False, sharey=True)
    for ax, lv in zip(axes[0], levels):
        for j, tr in enumerate(trs):
            pts = sorted((a["test_sigma"], 100 * a["top25"], 100 * a["top25_ci"]) for a in agg
                         if a["level"] == lv and a["train_sigma"] == tr)
            if pts:
                ax.errorbar([100 * p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-",
                            capsize=3, color=colors[j % len(colors)], label=f"train var {100 * tr:g}%")
        ax.set_title(f"level {lv}: 75th percentile accuracy")
        ax.set_xlabel("programming variation at inference (%)")
        ax.grid(alpha=0.3)
    return finish_panels(fig, axes, "top-25% accuracy (%), mean +- 95% CI over trainings", path)


def _plot(rows: list[dict[str, Any]], cfg: dict[str, Any], out: Path) -> list[Path]:
    return [_plot_boxes(rows, cfg, out / "boxplots.png"), _plot_top25(rows, out / "top25.png")]


def _deterministic_table(det: list[dict[str, Any]]) -> list[str]:
    pipes = sorted({d["pipeline"] for d in det})
    lines = ["| trained at | " + " | ".join(f"pipeline {p}" for p in pipes) + " |", "|---" * (len(pipes) + 1) + "|"]
    for t in sorted({d["trained"] for d in det}):
        cells = []
        for p in pipes:
            v = [d["accuracy"] for d in det if d["trained"] == t and d["pipeline"] == p]
            cells.append("" if not v else f"{100 * sum(v) / len(v):.2f}")
        lines.append(f"| level {t} | " + " | ".join(cells) + " |")
    return lines


def _variation_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| level | train var | test var | min | q1 | median | top 25% (q3) | max | mean |",
             "|---|---|---|---|---|---|---|---|---|"]
    for a in aggregate(rows):
        lines.append(f"| {a['level']} | {100 * a['train_sigma']:g}% | {100 * a['test_sigma']:g}% | "
                     f"{100 * a['pooled_min']:.2f} | {100 * a['pooled_q1']:.2f} | {100 * a['pooled_median']:.2f} | "
                     f"{100 * a['top25']:.2f} +- {100 * a['top25_ci']:.2f} | {100 * a['pooled_max']:.2f} | "
                     f"{100 * a['mean']:.2f} +- {100 * a['mean_ci']:.2f} |")
    return lines


def _gain_table(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> list[str]:
    """Injection effect: per training seed, the gain of injected over not-injected models."""
    from spikenoise.results import mean_ci

    base = min(cfg["train_sigmas"])
    groups = _conditions(rows)
    lines = []
    for (lv, tr, te), rs in sorted(groups.items()):
        if tr == base:
            continue
        ref = {r["key"]["train_seed"]: r for r in groups.get((lv, base, te), [])}
        d = [r["mean"] - ref[r["key"]["train_seed"]]["mean"] for r in rs if r["key"]["train_seed"] in ref]
        if d:
            m, ci = mean_ci(d)
            lines.append(f"| {lv} | {100 * tr:g}% | {100 * te:g}% | {100 * m:+.2f} +- {100 * ci:.2f} | {len(d)} |")
    if not lines:
        return []
    return ["", "## Noise injection: gain in mean accuracy over training without injection (paired by "
            "training seed; percentage points, mean +- 95% CI)", "",
            "| level | train var | test var | gain | trainings |", "|---|---|---|---|---|"] + lines


def injection_gain(rows: list[dict[str, Any]], level: int, train_sigma: float, base_sigma: float,
                   test_sigma: float, field: str = "mean"):
    """Per-training-seed gain ``row[field](train_sigma) - row[field](base_sigma)`` at ``(level,
    test_sigma)`` and its :class:`~spikenoise.claims.PairedCI` (None without a common seed)."""
    from spikenoise.claims import paired_ci

    groups = _conditions(rows)
    ref = {r["key"]["train_seed"]: r for r in groups.get((level, base_sigma, test_sigma), [])}
    d = [r[field] - ref[r["key"]["train_seed"]][field] for r in groups.get((level, train_sigma, test_sigma), [])
         if r["key"]["train_seed"] in ref]
    return (d, paired_ci(d)) if d else (d, None)


def _headline(rows: list[dict[str, Any]], cfg: dict[str, Any], out: Path) -> str:
    lv, hi, base = max(cfg["levels"]), max(cfg["train_sigmas"]), min(cfg["train_sigmas"])
    te = hi if hi in cfg["test_sigmas"] else max(cfg["test_sigmas"])
    lines = []
    for field, name in (("mean", "mean accuracy"), ("q3", "top-25% (q3) accuracy")):
        d, ci = injection_gain(rows, lv, hi, base, te, field) if hi != base else ([], None)
        if ci is None:
            lines.append(f"{name}: not determined (needs two training variations and matching rows)")
        else:
            lines.append(paired_points_line(name, "gain", ci, d, "one training seed; use --train-seeds >= 2"))
    lines.append(f"level {lv}, trained with {100 * hi:g}% vs {100 * base:g}% variation, tested at {100 * te:g}%, "
                 f"{cfg['programmings']} chips per seed; paired by training seed, t-CI over seeds (training + chip "
                 "variance)")
    return write_headline(out, "how much does noise injection in training help under programming variation "
                               "(seed 003)", lines)


def _summary(rows: list[dict[str, Any]], det: list[dict[str, Any]], cfg: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [f"# seed 003 study: {cfg['data']}, {cfg['model']}, preset {cfg['preset']}", ""]
    lines.append(f"Train/test samples: {info['n_train']}/{info['n_test']}; {cfg['train_seeds']} training seed(s); "
                 f"{cfg['programmings']} programmed chips per condition and training; on/off {cfg['on_off']:g}; "
                 f"array {cfg['array'][0]}x{cfg['array'][1]}; ADC {cfg['adc_bits']} bit, range {cfg['adc_range']}; "
                 f"weights {cfg['bits']} bit, activations {cfg['act_bits']} bit; mapping {cfg['mapping']}"
                 f"{', state-dependent variation' if cfg['state_dependent'] else ''}.")
    fa = info["float_accs"]
    lines.append(f"Float model test accuracy per training seed: {', '.join(f'{100 * a:.2f}' for a in fa)}%. "
                 f"DAC ranges per layer (seed 0): {', '.join(f'{r:.3g}' for r in info['input_ranges'][0])}. "
                 f"ADC ranges per layer (G_max x full-scale input): {json.dumps(info['adc_ranges'])}.")
    lines += ["", "## Deterministic effects (no variation; mean over training seeds; rows: training level, "
              "columns: inference pipeline)", ""] + _deterministic_table(det)
    lines += ["", "## Programming variation (accuracy %)", "",
              "Pooled over all chips of all trainings: min / q1 / median / max. Top 25% (q3) and mean: per "
              "training, then mean +- 95% CI over trainings.", ""] + _variation_table(rows)
    return "\n".join(lines + _gain_table(rows, cfg)) + "\n"
