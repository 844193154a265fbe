"""``spikenoise compare``: seed paper 000 end to end -- train, sweep, table, figures.

Trains (or loads from the checkpoints in ``--out``) the KWS models, error-agnostic and then
error-aware (fine-tuned from the agnostic network with static errors), evaluates them under static
and dynamic NVM errors at noise levels 0-3 (M trainings x N noisy test repetitions), and writes

``results.jsonl`` / ``results.csv``
    one row per (model, training, training level, seed, error type, noise level), written as soon
    as it is computed; ``config.json`` holds the configuration and the environment.
``summary.csv``, ``table.txt``
    mean and 95% CI over the trainings (the printed table).
``accuracy.png``
    Fig. 2A: accuracy vs noise level, static / dynamic x agnostic / aware.
``scales.png``, ``weight_levels.png``, ``level_snr.png``, ``analysis.json``
    Fig. 3B-D: learned scale per layer, weights per NVM level, per-level SNR and error magnitude.
``models.csv``
    Fig. 2B: parameters, operations and NVM weight reads per inference.
``checkpoints/``, ``train_log.jsonl``, ``run.json``
    training state (resumable), per-epoch log, the resolved options.

Re-running the same command resumes: finished trainings are loaded, finished conditions skipped.
``--fresh`` starts over (deletes what an earlier run wrote there).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

__all__ = ["PRESETS", "add_arguments", "main", "resolve", "toy_data"]

DEFAULT_MODELS = ["cnn", "rnn", "scnn", "srnn"]

#: Presets; every field can be overridden by its flag. Sizes are (train, val, test) clips,
#: None = all of the data set. "aware": a training noise level, "each" (one aware network per
#: level, tested at its own level, as in the paper), or "none".
PRESETS: dict[str, dict[str, Any]] = {
    # minutes on a 2-core CPU (measured timings in the README): half-width models, a small
    # embedded set, few epochs, M=2 trainings x N=3 repetitions, aware training at level 2
    # (a short fine-tuning starts at 0.3 x the learning rates: a restart at the full rates costs
    # more clean accuracy than 2 epochs can win back)
    "quick": dict(data="embedded", embedded_preset="tiny", sizes=(960, 120, 120), width="half", epochs=8,
                  finetune_epochs=2, finetune_lr_scale=0.3, trainings=2, repeats=3, models=DEFAULT_MODELS,
                  levels=[0, 1, 2, 3], aware="2", batch_size=32, lr=1e-3, weight_lr=3e-2),
    # the paper's protocol (section II.D): 100 epochs, batch 128, lr 1e-3 / weights 1e-2, M=5
    # trainings, N=10 repetitions, aware training at each test noise level, GSCD v2
    "paper": dict(data="gscd", embedded_preset="default", sizes=(None, None, None), width="full", epochs=100,
                  finetune_epochs=100, finetune_lr_scale=1.0, trainings=5, repeats=10, models=DEFAULT_MODELS,
                  levels=[0, 1, 2, 3], aware="each", batch_size=128, lr=1e-3, weight_lr=1e-2),
    # for tests: synthetic toy data, tiny models, seconds
    "smoke": dict(data="toy", embedded_preset="tiny", sizes=(16, 4, 8), width="tiny", epochs=1, finetune_epochs=1,
                  finetune_lr_scale=1.0, trainings=1, repeats=2, models=["cnn", "scnn"], levels=[0, 2], aware="2",
                  batch_size=8, lr=1e-3, weight_lr=1e-2),
}
VISIBLE_PRESETS = ("quick", "paper")

#: Model widths. "full": the paper's (CNN/SCNN channels 16-32-64, RNN/SRNN 2 x 128 units);
#: "half": half the channels / units (about 1/4 of the weights; same topologies and read
#: semantics) so that the quick preset fits on a laptop CPU; "tiny" is for tests only.
WIDTHS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {},
    "half": {"cnn": {"channels": [8, 16, 32]}, "scnn": {"channels": [8, 16, 32]},
             "cnn_pixel": {"channels": [8, 16, 32]}, "rnn": {"hidden": [64, 64]}, "srnn": {"hidden": [64, 64]}},
    "tiny": {"cnn": {"channels": [4, 8, 8]}, "scnn": {"channels": [4, 8, 8], "timesteps": 3},
             "cnn_pixel": {"channels": [4, 8, 8]}, "rnn": {"hidden": [16, 16]}, "srnn": {"hidden": [16, 16]}},
}
DATA_SOURCES = ("embedded", "gscd", "fsdd")


class UsageError(Exception):
    """Bad command-line input: reported as one clear line, exit status 2."""


# ------------------------------------------------------------------------------------------------
# arguments

def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("presets:\n" + "\n".join(
        f"  {n:6s} {PRESETS[n]['data']} data, {PRESETS[n]['epochs']} epochs (+{PRESETS[n]['finetune_epochs']} "
        f"aware), {PRESETS[n]['width']}-width models, M={PRESETS[n]['trainings']} trainings, "
        f"N={PRESETS[n]['repeats']} repetitions, aware training "
        f"{'at each test level' if PRESETS[n]['aware'] == 'each' else 'at level ' + PRESETS[n]['aware']}"
        for n in VISIBLE_PRESETS)
        + "\nflags override the preset; re-running resumes, --fresh starts over.")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), metavar="{quick,paper}",
                   help="protocol preset (default: quick)")
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATA_SOURCES + ("toy",), metavar="{embedded,gscd,fsdd}",
                   help="data set (default: the preset's; quick: embedded, paper: gscd)")
    g.add_argument("--root", help="data folder for --data gscd (speech_commands_v0.02) or fsdd (with recordings/)")
    g.add_argument("--n-train", type=int, help="training clips (subsample; embedded: generated size)")
    g.add_argument("--n-val", type=int, help="validation clips")
    g.add_argument("--n-test", type=int, help="test clips")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the data set itself (default 0)")
    g = p.add_argument_group("protocol")
    g.add_argument("--models", type=_name_list, help="comma-separated: cnn,rnn,scnn,srnn[,cnn_pixel]")
    g.add_argument("--levels", type=_int_list, help="test noise levels, comma-separated from 0,1,2,3")
    g.add_argument("--aware-level", dest="aware",
                   help="error-aware training: a noise level 1-3 (tested at all levels), 'each' (one per "
                        "level, tested at its level, as in the paper) or 'none'")
    g.add_argument("--epochs", type=int, help="error-agnostic training epochs")
    g.add_argument("--finetune-epochs", type=int, help="error-aware fine-tuning epochs")
    g.add_argument("--finetune-lr-scale", type=float,
                   help="learning rates of the error-aware fine-tuning, as a fraction of --lr/--weight-lr")
    g.add_argument("--trainings", type=int, help="M: trainings (seeds) per model")
    g.add_argument("--repeats", type=int, help="N: noisy test repetitions per training")
    g.add_argument("--seed", type=int, default=0, help="first training seed (trainings use seed..seed+M-1)")
    g.add_argument("--width", choices=list(WIDTHS), metavar="{full,half}",
                   help="model width: full (the paper's) or half (quick's: half the channels/units)")
    g.add_argument("--batch-size", type=int, help="training batch size")
    g.add_argument("--lr", type=float, help="learning rate of everything but the synapse weights")
    g.add_argument("--weight-lr", type=float, help="learning rate of the hidden synapse weights")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--fresh", action="store_true", help="delete earlier results/checkpoints in --out and start over")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Preset + flags -> validated options (raises UsageError with a clear message)."""
    from spikenoise.models import MODEL_NAMES
    from spikenoise.noise.nvm import NOISE_LEVEL_P0

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose one of {list(VISIBLE_PRESETS)}")
    cfg = dict(PRESETS[args.preset])
    cfg["preset"] = args.preset
    for k in ("data", "models", "levels", "aware", "epochs", "finetune_epochs", "trainings", "repeats",
              "batch_size", "lr", "weight_lr", "width", "finetune_lr_scale"):
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    sizes = list(cfg["sizes"])
    for i, k in enumerate(("n_train", "n_val", "n_test")):
        v = getattr(args, k, None)
        if v is not None:
            if v < 1:
                raise UsageError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
            sizes[i] = v
    cfg["sizes"] = sizes
    if cfg["width"] not in WIDTHS:
        raise UsageError(f"--width must be one of {list(WIDTHS)[:2]}, got {cfg['width']!r}")
    cfg["model_kwargs"] = WIDTHS[cfg["width"]]
    # data
    data = cfg["data"]
    if data not in DATA_SOURCES + ("toy",):
        raise UsageError(f"unknown data set {data!r}; choose one of {list(DATA_SOURCES)}")
    root = getattr(args, "root", None)
    if data in ("gscd", "fsdd"):
        if not root:
            hint = " (the paper preset uses GSCD v2; or pick --data embedded)" if args.preset == "paper" else ""
            raise UsageError(f"--data {data} needs --root PATH, the folder of the data set{hint}")
        if not Path(root).expanduser().is_dir():
            raise UsageError(f"data folder not found: {root!r} (--root of --data {data})")
        root = str(Path(root).expanduser().resolve())
    elif root:
        raise UsageError(f"--root applies to --data gscd or fsdd, not to {data!r}")
    cfg["root"] = root
    # models
    models = cfg["models"]
    if not models:
        raise UsageError("--models is empty")
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        raise UsageError(f"unknown model(s) {bad}; choose from {list(MODEL_NAMES)}")
    if len(set(models)) != len(models):
        raise UsageError(f"--models lists a model twice: {models}")
    # levels / aware
    levels = cfg["levels"]
    badl = [lv for lv in levels if lv not in NOISE_LEVEL_P0]
    if not levels or badl:
        raise UsageError(f"noise levels must be among {sorted(NOISE_LEVEL_P0)}, got {levels}")
    cfg["levels"] = sorted(set(levels))
    aware = str(cfg["aware"]).lower()
    if aware in ("each", "match"):
        aware = "each"
    elif aware != "none":
        if aware not in {str(k) for k in NOISE_LEVEL_P0 if k > 0}:
            raise UsageError(f"--aware-level must be 1, 2, 3, 'each' or 'none', got {cfg['aware']!r}")
    cfg["aware"] = aware
    for k in ("epochs", "finetune_epochs", "trainings", "repeats", "batch_size"):
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be a positive integer, got {cfg[k]!r}")
    for k in ("lr", "weight_lr", "finetune_lr_scale"):
        if not (cfg[k] > 0 and math.isfinite(cfg[k])):
            raise UsageError(f"--{k.replace('_', '-')} must be a positive number, got {cfg[k]!r}")
    dev = str(getattr(args, "device", "cpu") or "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    try:
        torch.device(dev)
    except RuntimeError:
        raise UsageError(f"unknown --device {dev!r}; use cpu or cuda") from None
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    cfg.update(device=dev, seeds=[int(args.seed) + i for i in range(cfg["trainings"])],
               data_seed=int(args.data_seed), out=str(args.out), threads=args.threads)
    if cfg["data_seed"] < 0:
        raise UsageError(f"--data-seed must be >= 0, got {cfg['data_seed']}")
    return cfg


# ------------------------------------------------------------------------------------------------
# data

def toy_data(seed: int = 0, sizes=(48, 16, 24), n_classes: int = 12) -> SimpleNamespace:
    """A tiny synthetic 67 x 40 task (class templates + noise) for fast end-to-end tests.

    Same interface as ``spikenoise.data.KWSData`` as far as ``compare`` uses it.
    """
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(10_000 + seed)
    templates = torch.randn(n_classes, 67, 40, generator=g)
    splits = []
    for n in sizes:
        y = torch.arange(n) % n_classes
        x = templates[y] + 1.0 * torch.randn(n, 67, 40, generator=g)
        splits.append(TensorDataset(x.float(), y))
    classes = [f"class{i}" for i in range(n_classes)]
    info = {"source": "toy", "sizes": dict(zip(("train", "val", "test"), sizes)), "seed": seed}
    return SimpleNamespace(train=splits[0], val=splits[1], test=splits[2], classes=classes, info=info,
                           summary=lambda: f"toy: {n_classes} classes, train/val/test = {sizes[0]}/{sizes[1]}/{sizes[2]}")


def _load_data(cfg: dict[str, Any]):
    if cfg["data"] == "toy":
        return toy_data(cfg["data_seed"], [s or 32 for s in cfg["sizes"]])
    from spikenoise.data import load_kws

    n_train, n_val, n_test = cfg["sizes"]
    kw: dict[str, Any] = dict(seed=cfg["data_seed"], n_train=n_train, n_val=n_val, n_test=n_test,
                              progress=cfg["progress"])
    if cfg["data"] == "embedded":
        kw["preset"] = cfg["embedded_preset"]
    try:
        return load_kws(cfg["data"], root=cfg["root"], **kw)
    except (FileNotFoundError, ValueError, ImportError) as e:  # DataLayoutError is a FileNotFoundError
        raise UsageError(f"cannot load --data {cfg['data']}: {e}") from None


def _loaders(data, batch_size: int, seed: int):
    if isinstance(data, SimpleNamespace):  # toy data
        from torch.utils.data import DataLoader

        g = torch.Generator().manual_seed(seed)
        return (DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=g),
                DataLoader(data.val, batch_size=batch_size), DataLoader(data.test, batch_size=batch_size))
    from spikenoise.data import make_loaders

    return make_loaders(data, batch_size=batch_size, seed=seed)


# ------------------------------------------------------------------------------------------------
# the run

_OUTPUTS = ("results.jsonl", "results.csv", "config.json", "summary.csv", "table.txt", "accuracy.png",
            "scales.png", "weight_levels.png", "level_snr.png", "analysis.json", "models.csv", "train_log.jsonl",
            "run.json")


def _fresh(out: Path) -> None:
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    for name in _OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for old in out.glob("results.*.jsonl"):
        old.unlink()


def _store_config(cfg: dict[str, Any], data) -> dict[str, Any]:
    """What gives a stored row its meaning (a resumed run must match it)."""
    keep = ("preset", "data", "root", "embedded_preset", "sizes", "data_seed", "epochs", "finetune_epochs",
            "repeats", "batch_size", "lr", "weight_lr", "finetune_lr_scale", "width", "model_kwargs")
    return {**{k: cfg[k] for k in keep}, "classes": list(data.classes), "aware_training_errors": "static"}


def _fmt_seconds(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.1f} s"


def main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as e:
        print(f"spikenoise compare: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from spikenoise import analysis
    from spikenoise.evaluate import Condition, cache_batches, summarize, sweep
    from spikenoise.models import build_model
    from spikenoise.noise.nvm import MultiLevelNVM
    from spikenoise.results import ResultStore
    from spikenoise.train import derive_seed, finetune, fit, load_checkpoint

    args.progress = getattr(args, "progress", True)
    cfg = resolve(args)
    cfg["progress"] = args.progress
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        _fresh(out)
    say = print
    say(f"spikenoise compare: preset {cfg['preset']}, models {','.join(cfg['models'])} ({cfg['width']} width), "
        f"levels {cfg['levels']}, "
        f"M={cfg['trainings']} x N={cfg['repeats']}, {cfg['epochs']} epochs + {cfg['finetune_epochs']} aware "
        f"(aware: {cfg['aware']}), out {out}")

    t0 = time.perf_counter()
    data = _load_data(cfg)
    t_data = time.perf_counter() - t0
    say(f"data: {data.summary()} ({_fmt_seconds(t_data)})")
    n_classes = len(data.classes)
    dev = torch.device(cfg["device"])
    (out / "run.json").write_text(json.dumps({**cfg, "data_info": data.info}, indent=2, default=str))
    try:
        store = ResultStore(out, _store_config(cfg, data), resume=True)
    except ValueError as e:
        raise UsageError(f"{e}; or pass --fresh") from None

    # evaluation in larger batches (per-call overhead of the recurrent models); results do not depend on it
    _, _, test_loader = _loaders(data, max(cfg["batch_size"], 128), 0)
    test_batches = cache_batches(test_loader)
    ckdir = out / "checkpoints"
    log_path = out / "train_log.jsonl"
    timings = {"train": 0.0, "sweep": 0.0}
    aware_levels = [] if cfg["aware"] == "none" else \
        ([lv for lv in cfg["levels"] if lv > 0] if cfg["aware"] == "each" else [int(cfg["aware"])])

    def ckpt_path(name: str, train_level: int, seed: int) -> Path:
        tag = "agnostic" if train_level == 0 else f"aware{train_level}"
        return ckdir / f"{name}_{tag}_s{seed}.pt"

    def new_model(name: str, seed: int):
        torch.manual_seed(derive_seed(seed, name, "init"))
        return build_model(name, n_classes=n_classes, **cfg["model_kwargs"].get(name, {})).to(dev)

    def train(name: str, train_level: int, seed: int):
        """Trained network (agnostic, or aware at train_level); trains only what is not on disk."""
        t = time.perf_counter()
        train_loader, val_loader, _ = _loaders(data, cfg["batch_size"], seed)
        model = new_model(name, seed)

        def logger(tag):
            def log(rec):
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"model": name, "training": tag, "seed": seed, **rec}) + "\n")
            return log

        hp = dict(lr=cfg["lr"], weight_lr=cfg["weight_lr"], progress=cfg["progress"])
        ft = cfg["finetune_lr_scale"]
        hp_ft = dict(hp, lr=cfg["lr"] * ft, weight_lr=cfg["weight_lr"] * ft)
        aware_ckpt = ckpt_path(name, train_level, seed) if train_level else None
        if aware_ckpt is None or not aware_ckpt.exists():
            fit(model, train_loader, val_loader, epochs=cfg["epochs"], checkpoint=ckpt_path(name, 0, seed),
                seed=derive_seed(seed, name, "agnostic"), log=logger("agnostic"),
                desc=f"train {name} agnostic s{seed}", **hp)
        if train_level:
            finetune(model, train_loader, val_loader, error_model=MultiLevelNVM.noise_level(train_level),
                     errors="static", epochs=cfg["finetune_epochs"], checkpoint=aware_ckpt,
                     seed=derive_seed(seed, name, "aware", train_level), log=logger(f"aware{train_level}"),
                     desc=f"train {name} aware{train_level} s{seed}", **hp_ft)
        timings["train"] += time.perf_counter() - t
        return model

    def get_model(cond: Condition):
        return train(cond.model, cond.train_level if cond.training == "aware" else 0, cond.seed)

    t0 = time.perf_counter()
    try:
        rows = sweep(get_model, test_batches, store, models=cfg["models"], seeds=cfg["seeds"],
                     repeats=cfg["repeats"], levels=cfg["levels"],
                     aware=None if cfg["aware"] == "none" else ("match" if cfg["aware"] == "each" else int(cfg["aware"])),
                     device=dev, progress=cfg["progress"])
    except ValueError as e:
        if "was written with" in str(e):
            raise UsageError(f"{e} (the checkpoints in {ckdir} are from other options; pass --fresh)") from None
        raise
    timings["sweep"] = time.perf_counter() - t0 - timings["train"]

    # -- this run's table ---------------------------------------------------------------------
    def wanted(k: dict[str, Any]) -> bool:
        if k["model"] not in cfg["models"] or k["level"] not in cfg["levels"] or k["seed"] not in cfg["seeds"]:
            return False
        if k["training"] == "agnostic":
            return True
        if cfg["aware"] == "each":
            return k["train_level"] == k["level"]
        return cfg["aware"] != "none" and k["train_level"] == int(cfg["aware"])

    mine = [r for r in rows if wanted(r["key"])]
    summary = summarize(mine)
    order = {m: i for i, m in enumerate(cfg["models"])}
    summary.sort(key=lambda e: (order[e["model"]], e["training"] != "agnostic", e["train_level"], e["errors"],
                                e["level"]))
    table = analysis.format_table(summary)
    say("")
    say(table)
    (out / "table.txt").write_text(table + "\n")
    store.write_csv("results.csv")
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "training", "train_level", "errors", "level", "mean", "ci95", "n_trainings",
                    "per_training"])
        for e in summary:
            w.writerow([e["model"], e["training"], e["train_level"], e["errors"], e["level"], f"{e['mean']:.6f}",
                        f"{e['ci']:.6f}", e["n"], " ".join(f"{a:.6f}" for a in e["accs"])])
    src = cfg["data"] if cfg["data"] != "embedded" else f"embedded ({cfg['embedded_preset']})"
    analysis.plot_accuracy(summary, out / "accuracy.png",
                           title=f"{src}: M={cfg['trainings']} trainings x N={cfg['repeats']} repetitions, 95% CI")

    # -- Fig. 3 analysis from the checkpoints --------------------------------------------------------
    records, missing = [], 0
    for name in cfg["models"]:
        for seed in cfg["seeds"]:
            for tl in [0] + aware_levels:
                p = ckpt_path(name, tl, seed)
                if not p.exists():
                    missing += 1
                    continue
                m = new_model(name, seed)
                load_checkpoint(p, m, map_location=dev)
                records.append({"model": name, "train_level": tl, "seed": seed, "stats": analysis.weight_stats(m)})
    if records:
        analysis.plot_scales(records, out / "scales.png")
        analysis.plot_weight_levels(records, out / "weight_levels.png")
    analysis.plot_level_snr(out / "level_snr.png", [lv for lv in (1, 2, 3)])
    (out / "analysis.json").write_text(json.dumps(
        {"networks": records, "levels": analysis.level_table([1, 2, 3])}, indent=1, default=str))
    if missing:
        say(f"note: {missing} checkpoint(s) missing in {ckdir}; Fig. 3 plots use the others")

    # -- Fig. 2B: size and operations per inference -----------------------------------------------
    model_rows = _model_costs(cfg["models"], lambda name: ckpt_path(name, 0, cfg["seeds"][0]), new_model,
                              test_batches[0][0][:32], dev)
    if model_rows:
        with open(out / "models.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(model_rows[0]))
            w.writeheader()
            w.writerows(model_rows)
        say("")
        say("model      parameters  NVM weights   ops/inference  weight reads/inference  (agnostic, error-free)")
        for r in model_rows:
            say(f"{r['model']:10s} {r['parameters']:>10,d}  {r['nvm_weights']:>11,d}  {r['ops']:>14,.0f}  "
                f"{r['weight_reads']:>22,.0f}")
    total = time.perf_counter() - t_start
    say("")
    say(f"wall time {_fmt_seconds(total)} (data {_fmt_seconds(t_data)}, training {_fmt_seconds(timings['train'])}, "
        f"noisy evaluation {_fmt_seconds(timings['sweep'])}), CPU time {_fmt_seconds(time.process_time() - cpu_start)} "
        f"on {torch.get_num_threads()} thread(s); results in {out}/")
    return 0


def _model_costs(models, ckpt_of, new_model, x, dev) -> list[dict[str, Any]]:
    """Parameters and operations per inference of each model (error-agnostic network of the first
    seed, error-free, on a few test clips: spike counts depend on the trained weights)."""
    from spikenoise.counters import count_operations, count_parameters
    from spikenoise.train import load_checkpoint

    rows = []
    for name in models:
        m = new_model(name, 0)
        p = ckpt_of(name)
        if p.exists():
            load_checkpoint(p, m, map_location=dev)
        m.eval()
        n = count_parameters(m)
        with torch.no_grad():
            ops = count_operations(m, x.to(dev))["total"]
        rows.append({"model": name, "parameters": int(n["total"]), "nvm_weights": int(n["nvm_weights"]),
                     "ops": float(ops["ops"]), "macs": float(ops["macs"]), "synops": float(ops["synops"]),
                     "weight_reads": float(ops["weight_reads"])})
    return rows
