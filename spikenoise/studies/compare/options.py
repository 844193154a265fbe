"""``spikenoise compare`` options: presets, widths, the command line and its validation."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import torch

from spikenoise.models import WIDTHS

from ..executor import BACKENDS, add_executor_options, auto_backend
from ..scaffold import StudyError, add_common_options, add_data_options, resolve_preset

__all__ = ["PRESETS", "VISIBLE_PRESETS", "WIDTHS", "DATA_SOURCES", "DEFAULT_MODELS", "add_arguments", "resolve"]

DEFAULT_MODELS = ["cnn", "rnn", "scnn", "srnn"]

#: Presets; every field can be overridden by its flag. Sizes are (train, val, test) clips,
#: None = all of the data set. "aware": a training noise level, "each" (one aware network per
#: level, tested at its own level, as in the paper), or "none".
PRESETS: dict[str, dict[str, Any]] = {
    # minutes on a 2-core CPU (measured in the README, scripts/operating_point.py): half-width
    # models on the embedded 4000/500/500 set, 16 epochs at batch 64 (twice the paper's learning
    # rates: half as many steps), M=3 trainings x N=3 repetitions (t(2) = 4.3 against t(1) = 12.7:
    # paired CIs about 3x narrower than with M=2, for 1.5x the time), aware training at level 2 (a
    # short fine-tuning starts at 0.3 x the learning rates: a restart at the full rates costs more
    # clean accuracy than 2 epochs can win back); tasks on every core through a local Ray
    # instance where Ray is installed ("auto")
    "quick": dict(data="embedded", embedded_preset="quick", sizes=(4000, 500, 500), width="half", epochs=16,
                  finetune_epochs=2, finetune_lr_scale=0.3, trainings=3, repeats=3, models=DEFAULT_MODELS,
                  levels=[0, 1, 2, 3], aware="2", batch_size=64, lr=2e-3, weight_lr=6e-2, backend="auto",
                  # the convolutional models converge more slowly on these data (measured: CNN 70.8 %
                  # after 16 epochs, 75.6-76.2 % converged); a few more epochs cost little for the CNN.
                  # The SRNN too (3 seeds, from 16 to 24 epochs: validation 82.1 -> 83.8 %, test 74.5 ->
                  # 76.3 %; the RNN: validation 83.7 -> 84.7 %, test 80.5 -> 80.6 %, so it stays at 16)
                  model_epochs={"cnn": 24, "scnn": 20, "srnn": 24}),
    # the paper's protocol (section II.D): 100 epochs, batch 128, Adam with cosine annealing, lr
    # 1e-3 / weights 1e-2, M=5 trainings, N=10 repetitions, aware training at each test noise
    # level, GSCD v2
    "paper": dict(data="gscd", embedded_preset="default", sizes=(None, None, None), width="full", epochs=100,
                  finetune_epochs=100, finetune_lr_scale=1.0, trainings=5, repeats=10, models=DEFAULT_MODELS,
                  levels=[0, 1, 2, 3], aware="each", batch_size=128, lr=1e-3, weight_lr=1e-2, backend="serial"),
    # for tests: synthetic toy data, tiny models, seconds
    "smoke": dict(data="toy", embedded_preset="tiny", sizes=(16, 4, 8), width="tiny", epochs=1, finetune_epochs=1,
                  finetune_lr_scale=1.0, trainings=1, repeats=2, models=["cnn", "scnn"], levels=[0, 2], aware="2",
                  batch_size=8, lr=1e-3, weight_lr=1e-2, backend="serial"),
}
VISIBLE_PRESETS = ("quick", "paper")

DATA_SOURCES = ("embedded", "gscd", "fsdd")
#: options that override a preset field of the same name
_OVERRIDES = ("data", "models", "levels", "aware", "epochs", "finetune_epochs", "trainings", "repeats",
              "batch_size", "lr", "weight_lr", "width", "finetune_lr_scale", "backend")


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def _epilog() -> str:
    lines = []
    for n in VISIBLE_PRESETS:
        p = PRESETS[n]
        aware = "at each test level" if p["aware"] == "each" else "at level " + p["aware"]
        backend = "ray where installed, else serial" if p["backend"] == "auto" else p["backend"]
        lines.append(f"  {n:6s} {p['data']} data, {p['epochs']} epochs (+{p['finetune_epochs']} aware), "
                     f"{p['width']}-width models, M={p['trainings']} trainings, N={p['repeats']} repetitions, "
                     f"aware training {aware}, backend {backend}")
    return "presets:\n" + "\n".join(lines) + "\nflags override the preset; re-running resumes, --fresh starts over."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _epilog()
    add_common_options(p, "compare", PRESETS, "quick", visible=VISIBLE_PRESETS, device=True,
                       preset_help="protocol preset (default: quick)")
    g = p.add_argument_group("data")
    add_data_options(g, DATA_SOURCES + ("toy",), metavar="{embedded,gscd,fsdd}",
                     root_help="data folder for --data gscd (speech_commands_v0.02) or fsdd (with recordings/; "
                               "default $SPIKENOISE_FSDD)")
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
    g.add_argument("--trainings", type=int, help="M: trainings (seeds) per model; they use --seed..--seed+M-1")
    g.add_argument("--repeats", type=int, help="N: noisy test repetitions per training")
    g.add_argument("--width", choices=list(WIDTHS), metavar="{full,half}",
                   help="model width: full (the paper's) or half (quick's: half the channels/units)")
    g.add_argument("--batch-size", type=int, help="training batch size")
    g.add_argument("--lr", type=float, help="learning rate of everything but the synapse weights")
    g.add_argument("--weight-lr", type=float, help="learning rate of the hidden synapse weights")
    add_executor_options(p)


def _check_sizes(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    sizes = list(cfg["sizes"])
    for i, k in enumerate(("n_train", "n_val", "n_test")):
        v = getattr(args, k, None)
        if v is not None:
            if v < 1:
                raise StudyError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
            sizes[i] = v
    cfg["sizes"] = sizes
    if cfg["width"] not in WIDTHS:
        raise StudyError(f"--width must be one of {list(WIDTHS)[:2]}, got {cfg['width']!r}")
    cfg["model_kwargs"] = WIDTHS[cfg["width"]]


def _check_data(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    from spikenoise.data.tensors import FSDD_ENV

    data = cfg["data"]
    if data not in DATA_SOURCES + ("toy",):
        raise StudyError(f"unknown data set {data!r}; choose one of {list(DATA_SOURCES)}")
    root = getattr(args, "root", None)
    if data == "fsdd" and not root:
        root = os.environ.get(FSDD_ENV)
    if data in ("gscd", "fsdd"):
        if not root:
            hint = " (the paper preset uses GSCD v2; or pick --data embedded)" if args.preset == "paper" else ""
            env = f" or set {FSDD_ENV}" if data == "fsdd" else ""
            raise StudyError(f"--data {data} needs --root PATH, the folder of the data set{env}{hint}")
        if not Path(root).expanduser().is_dir():
            raise StudyError(f"data folder not found: {root!r} (--root of --data {data})")
        root = str(Path(root).expanduser().resolve())
    elif root:
        raise StudyError(f"--root applies to --data gscd or fsdd, not to {data!r}")
    cfg["root"] = root


def _check_models_levels(cfg: dict[str, Any]) -> None:
    from spikenoise.models import MODEL_NAMES
    from spikenoise.noise.nvm import NOISE_LEVEL_P0

    models = cfg["models"]
    if not models:
        raise StudyError("--models is empty")
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        raise StudyError(f"unknown model(s) {bad}; choose from {list(MODEL_NAMES)}")
    if len(set(models)) != len(models):
        raise StudyError(f"--models lists a model twice: {models}")
    levels = cfg["levels"]
    if not levels or [lv for lv in levels if lv not in NOISE_LEVEL_P0]:
        raise StudyError(f"noise levels must be among {sorted(NOISE_LEVEL_P0)}, got {levels}")
    cfg["levels"] = sorted(set(levels))
    aware = str(cfg["aware"]).lower()
    if aware in ("each", "match"):
        aware = "each"
    elif aware != "none" and aware not in {str(k) for k in NOISE_LEVEL_P0 if k > 0}:
        raise StudyError(f"--aware-level must be 1, 2, 3, 'each' or 'none', got {cfg['aware']!r}")
    cfg["aware"] = aware


def _check_numbers(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    for k in ("epochs", "finetune_epochs", "trainings", "repeats", "batch_size"):
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise StudyError(f"--{k.replace('_', '-')} must be a positive integer, got {cfg[k]!r}")
    for k in ("lr", "weight_lr", "finetune_lr_scale"):
        if not (cfg[k] > 0 and math.isfinite(cfg[k])):
            raise StudyError(f"--{k.replace('_', '-')} must be a positive number, got {cfg[k]!r}")
    if args.threads is not None and args.threads < 1:
        raise StudyError(f"--threads must be >= 1, got {args.threads}")
    if int(args.data_seed) < 0:
        raise StudyError(f"--data-seed must be >= 0, got {args.data_seed}")


def _check_device(args: argparse.Namespace) -> str:
    dev = str(getattr(args, "device", "cpu") or "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise StudyError("--device cuda: no CUDA device is available here")
    try:
        torch.device(dev)
    except RuntimeError:
        raise StudyError(f"unknown --device {dev!r}; use cpu or cuda") from None
    return dev


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Preset + flags -> validated options (raises :class:`StudyError` with a clear message)."""
    if args.preset not in PRESETS:
        raise StudyError(f"unknown preset {args.preset!r}; choose one of {list(VISIBLE_PRESETS)}")
    cfg = resolve_preset(PRESETS, args, _OVERRIDES)
    # per-model epochs refine the preset's; an explicit --epochs applies to every model
    cfg["model_epochs"] = {} if getattr(args, "epochs", None) is not None else dict(cfg.get("model_epochs", {}))
    _check_sizes(cfg, args)
    _check_data(cfg, args)
    _check_models_levels(cfg)
    _check_numbers(cfg, args)
    dev = _check_device(args)
    if cfg["backend"] == "auto":
        cfg["backend"] = auto_backend()
    if cfg["backend"] not in BACKENDS:
        raise StudyError(f"unknown --backend {cfg['backend']!r}; choose one of {list(BACKENDS)}")
    cfg.update(device=dev, seeds=[int(args.seed) + i for i in range(cfg["trainings"])],
               data_seed=int(args.data_seed), out=str(args.out), threads=args.threads)
    return cfg
