"""``spikenoise drift``: keyword-spotting accuracy over time on drifting multi-level PCM.

Protocol
    Each KWS model (``--models``, :func:`spikenoise.models.build_model`) is trained error-free
    (:func:`spikenoise.train.fit`, checkpointed). Its weights are then "programmed" into 8-level
    PCM pairs (:class:`spikenoise.DriftingPCM`, aihwkit's PCM statistics) and tested at times
    ``--times`` after programming (1 s .. 1 year), with static errors (one chip draw per test
    sample, frozen for its inference) and dynamic errors (a fresh draw at every read), without and
    with global drift compensation, ``--repeats`` times. Error-aware fine-tuning at the time of
    use (``--aware-times``): a copy of the trained network is fine-tuned
    (:func:`spikenoise.train.finetune`, static errors) on the compensated PCM at that time, then
    tested there. Rows go to a resumable :class:`~spikenoise.results.ResultStore`.

Outputs (``--out``, default ``runs/drift``): ``results.jsonl/csv``, ``table.md`` and ``summary.csv``
(mean accuracy per model x condition x time), ``drift_accuracy.png``, ``drift_confusion.png``
(P(level read correctly) vs time), ``config.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..noise.drift import DAY, HOUR, YEAR, DriftingPCM, plot_confusion_vs_time
from ..data.synthetic import toy_kws
from ..models import WIDTHS
from ..results import ResultStore
from .scaffold import StudyError, add_common_options, add_data_options, fsdd_root, open_store, set_threads

__all__ = ["add_arguments", "main", "PRESETS", "CONDITIONS", "run", "report", "time_label"]

MONTH = YEAR / 12
#: evaluation conditions: name -> (errors, compensation, aware)
CONDITIONS = {
    "static": ("static", False, False),
    "static+comp": ("static", True, False),
    "dynamic": ("dynamic", False, False),
    "dynamic+comp": ("dynamic", True, False),
    "aware+comp static": ("static", True, True),
    "aware+comp dynamic": ("dynamic", True, True),
}

PRESETS: dict[str, dict[str, Any]] = {
    # ~10 min on a 2-core CPU (measured: 601 s CPU time on one thread, README): half-width models, the
    # embedded "tiny" set subsampled to 960/120/240 clips, one training each
    "quick": dict(data="embedded", sizes=(960, 120, 240), width="half", models="cnn,rnn,scnn,srnn", epochs=8,
                  finetune_epochs=2, finetune_lr_scale=0.3, times=f"1,{HOUR},{DAY},{MONTH},{YEAR}",
                  aware_times=f"{DAY},{YEAR}", repeats=2, batch_size=32, lr=1e-3, weight_lr=3e-2),
    # tens of minutes: more data, epochs, times and repetitions
    "default": dict(data="embedded", sizes=(2000, 240, 480), width="half", models="cnn,rnn,scnn,srnn", epochs=20,
                    finetune_epochs=4, finetune_lr_scale=0.3,
                    times=f"1,60,{HOUR},{6 * HOUR},{DAY},{7 * DAY},{MONTH},{YEAR}",
                    aware_times=f"{HOUR},{DAY},{MONTH},{YEAR}", repeats=3, batch_size=32, lr=1e-3, weight_lr=3e-2),
    # for tests: toy data, tiny models, seconds
    "tiny": dict(data="toy", sizes=(96, 16, 48), width="tiny", models="cnn", epochs=3, finetune_epochs=1,
                 finetune_lr_scale=1.0, times=f"1,{YEAR}", aware_times=f"{YEAR}", repeats=1, batch_size=16,
                 lr=3e-3, weight_lr=3e-2),
}
_KEYS = list(PRESETS["quick"])


def time_label(t: float) -> str:
    """Readable time after programming: 1 s, 1 h, 1 day, 1 month, 1 year, ..."""
    for unit, sec in (("year", YEAR), ("month", MONTH), ("day", DAY), ("h", HOUR), ("min", 60.0)):
        if t >= sec * 0.999:
            v = t / sec
            return f"{v:.3g} {unit}" + ("s" if unit in ("year", "month", "day") and v > 1.001 else "")
    return f"{t:.3g} s"


def _times(text: str, name: str) -> list[float]:
    try:
        ts = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be a comma list of seconds, got {text!r}") from None
    if any(not (t >= 0) for t in ts):
        raise ValueError(f"{name} must be seconds >= 0, got {text!r}")
    return ts


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, "drift", PRESETS, "quick",
                       preset_help="defaults for everything below (quick: ~10 min on 2 cores; default: longer; "
                                   "tiny: tests)")
    add_data_options(p, ("embedded", "fsdd", "toy"))
    p.add_argument("--models", help="comma list of cnn,rnn,scnn,srnn")
    p.add_argument("--width", choices=tuple(WIDTHS))
    p.add_argument("--epochs", type=int, help="error-free training epochs")
    p.add_argument("--finetune-epochs", type=int, help="error-aware fine-tuning epochs at the time of use")
    p.add_argument("--finetune-lr-scale", type=float, help="fine-tuning learning rates = this x the training ones")
    p.add_argument("--times", help="comma list of seconds after programming (e.g. 1,3600,86400,31557600)")
    p.add_argument("--aware-times", help="comma list of times to fine-tune error-aware at ('' = none)")
    p.add_argument("--repeats", type=int, help="noisy test repetitions per condition")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-lr", type=float)


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration: the preset, overridden by every flag given."""
    cfg = dict(PRESETS[args.preset])
    for k in _KEYS:
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    cfg["preset"] = args.preset
    cfg["seed"] = args.seed
    cfg["root"] = getattr(args, "root", None)
    cfg["models"] = [m for m in str(cfg["models"]).split(",") if m.strip()]
    cfg["times"] = _times(cfg["times"], "--times")
    cfg["aware_times"] = _times(cfg["aware_times"], "--aware-times")
    return cfg


def _load(cfg: dict[str, Any], progress: bool):
    if cfg["data"] == "toy":
        return toy_kws(cfg["seed"], cfg["sizes"])
    from ..data import load_kws

    n_train, n_val, n_test = cfg["sizes"]
    kw: dict[str, Any] = dict(seed=cfg["seed"], n_train=n_train, n_val=n_val, n_test=n_test, progress=progress)
    if cfg["data"] == "embedded":
        kw["preset"] = "tiny"
    return load_kws(cfg["data"], root=cfg["root"], **kw)


def _loaders(data, batch_size: int, seed: int):
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    if isinstance(data, SimpleNamespace):  # toy data
        g = torch.Generator().manual_seed(seed)
        return (DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=g),
                DataLoader(data.val, batch_size=batch_size), DataLoader(data.test, batch_size=128))
    from ..data import make_loaders

    tr, va, _ = make_loaders(data, batch_size=batch_size, seed=seed)
    _, _, te = make_loaders(data, batch_size=128, seed=seed)
    return tr, va, te


def _new_model(name: str, n_classes: int, width: str, seed: int):
    from ..models import build_model
    from ..train import derive_seed

    torch.manual_seed(derive_seed(seed, name, "init"))
    return build_model(name, n_classes=n_classes, **WIDTHS[width].get(name, {}))


def run(cfg: dict[str, Any], out: Path, progress: bool = True, fresh: bool = False) -> ResultStore:
    """Train, fine-tune and evaluate everything not yet in ``out``; returns the store."""
    from tqdm.auto import tqdm

    from ..evaluate import cache_batches, noisy_accuracy, repetition_seed
    from ..train import derive_seed, finetune, fit, load_checkpoint

    data = _load(cfg, progress)
    n_classes = len(data.classes)
    store_cfg = {k: cfg[k] for k in ("data", "sizes", "width", "epochs", "finetune_epochs", "finetune_lr_scale",
                                     "batch_size", "lr", "weight_lr", "seed")}
    store = open_store(out, {**store_cfg, "pcm": DriftingPCM().config()}, fresh)
    train_loader, val_loader, test_loader = _loaders(data, cfg["batch_size"], cfg["seed"])
    test = cache_batches(test_loader)
    ck = out / "checkpoints"
    hp = dict(lr=cfg["lr"], weight_lr=cfg["weight_lr"], progress=progress)
    ft = dict(hp, lr=cfg["lr"] * cfg["finetune_lr_scale"], weight_lr=cfg["weight_lr"] * cfg["finetune_lr_scale"])
    plan = []  # (model, condition, t, rep)
    for m in cfg["models"]:
        plan.append((m, "clean", 0.0, 0))
        for cond, (_, _, aware) in CONDITIONS.items():
            for t in (cfg["aware_times"] if aware else cfg["times"]):
                plan += [(m, cond, t, r) for r in range(cfg["repeats"])]
    bar = tqdm(total=len(plan), desc="drift", disable=not progress, dynamic_ncols=True)
    pcm = DriftingPCM()
    for m in cfg["models"]:
        todo = [p for p in plan if p[0] == m and not store.done(_key(*p))]
        bar.update(sum(1 for p in plan if p[0] == m) - len(todo))
        if not todo:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        net = _new_model(m, n_classes, cfg["width"], cfg["seed"])
        agnostic = ck / f"{m}_agnostic.pt"
        fit(net, train_loader, val_loader, epochs=cfg["epochs"], checkpoint=agnostic,
            seed=derive_seed(cfg["seed"], m, "agnostic"), desc=f"train {m}", **hp)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        aware_nets: dict[float, Any] = {}
        ft_cpu: dict[float, float] = {}  # CPU seconds of each fine-tuning
        for (_, cond, t, rep) in todo:
            errors, comp, aware = CONDITIONS.get(cond, ("none", False, False))
            model = net
            if aware:
                if t not in aware_nets:
                    c2 = time.process_time()
                    a = _new_model(m, n_classes, cfg["width"], cfg["seed"])
                    load_checkpoint(agnostic, a)
                    finetune(a, train_loader, val_loader, error_model=pcm.at(t).with_options(compensation=True),
                             errors="static", epochs=cfg["finetune_epochs"],
                             checkpoint=ck / f"{m}_aware_t{t:g}.pt", seed=derive_seed(cfg["seed"], m, "aware", t),
                             desc=f"aware {m} @ {time_label(t)}", **ft)
                    aware_nets[t] = a
                    ft_cpu[t] = time.process_time() - c2
                model = aware_nets[t]
            key = _key(m, cond, t, rep)
            seed = repetition_seed(cfg["seed"], {k: v for k, v in key.items() if k != "rep"}, rep)
            t1, c1 = time.perf_counter(), time.process_time()
            em = pcm.at(t).with_options(compensation=comp)
            acc = noisy_accuracy(model, test, errors, em, seed)
            # wall and CPU seconds of this row (aware rows include their fine-tuning when first used)
            store.add(key, {"acc": acc, "eval_seed": seed, "seconds": time.perf_counter() - t1,
                            "cpu_seconds": time.process_time() - c1, "train_seconds": train_s,
                            "train_cpu_seconds": train_cpu, "finetune_cpu_seconds": ft_cpu.get(t) if aware else None,
                            "p_correct_mean": float(em.p_correct().mean()) if errors != "none" else 1.0})
            bar.set_postfix(model=m, cond=cond, t=time_label(t), acc=f"{acc:.3f}", refresh=False)
            bar.update(1)
    bar.close()
    return store


def _key(model: str, cond: str, t: float, rep: int) -> dict[str, Any]:
    return {"model": model, "condition": cond, "t": float(t), "rep": int(rep)}


def report(store: ResultStore, out: Path, cfg: dict[str, Any]) -> str:
    """summary.csv, table.md and drift_accuracy.png from the stored rows of this configuration."""
    rows = [r for r in store.rows() if r["key"]["model"] in cfg["models"]]
    store.write_csv()
    acc: dict[tuple[str, str, float], list[float]] = {}
    for r in rows:
        k = r["key"]
        acc.setdefault((k["model"], k["condition"], k["t"]), []).append(r["acc"])
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "condition", "t_seconds", "time", "mean_acc", "std_acc", "n"])
        for (m, c, t), v in sorted(acc.items()):
            w.writerow([m, c, t, time_label(t), f"{np.mean(v):.6f}", f"{np.std(v):.6f}", len(v)])
    times = cfg["times"]
    head = "| model | condition | clean | " + " | ".join(time_label(t) for t in times) + " |"
    lines = [head, "|" + "---|" * (len(times) + 3)]
    for m in cfg["models"]:
        clean = mean.get((m, "clean", 0.0))
        for cond in CONDITIONS:
            cells = [("" if (m, cond, t) not in mean else f"{100 * mean[(m, cond, t)]:.1f}") for t in times]
            if not any(cells):
                continue
            cs = "" if clean is None else f"{100 * clean:.1f}"
            lines.append(f"| {m} | {cond} | {cs} | " + " | ".join(cells) + " |")
    pc = " | ".join(f"{100 * float(DriftingPCM(t, compensation=c).p_correct().mean()):.1f}"
                    for c in (False,) for t in times)
    pcc = " | ".join(f"{100 * float(DriftingPCM(t, compensation=True).p_correct().mean()):.1f}" for t in times)
    lines.append(f"| (cell) | P(level read correctly), mean of 8 levels | 100 | {pc} |")
    lines.append(f"| (cell) | same, compensated | 100 | {pcc} |")
    text = ("accuracy (%) vs time after programming; mean over repetitions; static = one chip draw per test "
            "sample, dynamic = fresh draw per read; +comp = global drift compensation; aware = fine-tuned at "
            "that time (blank: not run)\n\n" + "\n".join(lines))
    (out / "table.md").write_text(text + "\n")
    _plot(mean, cfg, out / "drift_accuracy.png")
    plot_confusion_vs_time(DriftingPCM(), sorted({0.0, *times}), out / "drift_confusion.png")
    return text


def _plot(mean: dict, cfg: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = cfg["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.6), sharey=True, squeeze=False)
    styles = {"static": ("C0", "-"), "static+comp": ("C1", "-"), "dynamic": ("C0", "--"),
              "dynamic+comp": ("C1", "--"), "aware+comp static": ("C2", "-"), "aware+comp dynamic": ("C2", "--")}
    for ax, m in zip(axes[0], models):
        for cond, (col, ls) in styles.items():
            ts = sorted(t for (mm, c, t) in mean if mm == m and c == cond)
            if ts:
                ax.plot([t + 20.0 for t in ts], [mean[(m, cond, t)] for t in ts], color=col, ls=ls,
                        marker="o", ms=3, label=cond)
        if (m, "clean", 0.0) in mean:
            ax.axhline(mean[(m, "clean", 0.0)], color="k", lw=0.8, ls=":", label="error-free")
        ax.set_xscale("log")
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("time since programming (s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.suptitle("KWS accuracy on drifting 8-level PCM (aihwkit PCM statistics)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    try:
        cfg = resolve(args)
    except ValueError as e:
        raise StudyError(str(e)) from None
    if cfg["data"] == "fsdd":
        cfg["root"] = fsdd_root(cfg["root"])
    out = Path(args.out)
    t0 = time.perf_counter()
    store = run(cfg, out, progress=args.progress, fresh=args.fresh)
    text = report(store, out, cfg)
    (out / "run.json").write_text(json.dumps({"config": cfg, "seconds": time.perf_counter() - t0}, indent=2))
    print(text)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s on {torch.get_num_threads()} thread(s); results in {out}/")
    return 0
